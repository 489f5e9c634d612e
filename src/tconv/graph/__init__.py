"""A framework-neutral inference graph (:mod:`.graph`) and its NumPy executor
(:mod:`.executor`); front ends (:func:`tconv.keras.load_model`) build it, the C export
(:mod:`tconv.cexport`) plans its memory and emits it."""

from __future__ import annotations

from . import executor
from .graph import ALIASES, MERGES, OPS, Graph, Node, conv_length, macs, output_shape

__all__ = [
    "ALIASES",
    "MERGES",
    "OPS",
    "Graph",
    "Node",
    "conv_length",
    "executor",
    "macs",
    "output_shape",
]
