"""``export_c`` of one layer: a float layer is the one-node graph of
:meth:`tconv.graph.Graph.of_layer`, written by the one C pipeline of :mod:`tconv.cexport.model`
(header, library, weights, harness, README); a quantized layer gets integer-only C
(:mod:`tconv.cexport.quantized`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import ops
from ..graph import Graph
from ..layer import TransposedConv
from ..quant import QuantizedTransposeConv
from . import quantized
from .files import prepare_dir
from .model import write_project
from .spec import from_layer


def expected_output(layer: TransposedConv, x: np.ndarray) -> np.ndarray:
    """The engine's output for ``x`` (layer layout), float32.

    Computed in float64 with the layer's weights rounded to float32 (what the C holds), then
    the layer's activation (``softmax`` normalises the last axis of the layer's layout).
    """

    def as64(a: np.ndarray) -> np.ndarray:
        return np.asarray(a, np.float32).astype(np.float64)

    geometry = layer.geometry(layer.spatial_shape(x.shape))
    bias = None if layer.bias is None else as64(layer.bias)
    y = ops.run(layer.to_canonical(as64(x)), as64(layer.kernel), geometry, bias)
    return np.ascontiguousarray(layer.activate(y)).astype(np.float32)


def export_c(
    layer: TransposedConv | QuantizedTransposeConv,
    out_dir: str | Path,
    *,
    name: str = "tconv_layer",
    style: str = "fast",
    input_shape: Sequence[int] | None = None,
    weights: str = "inline",
    batch: int = 2,
    seed: int = 0,
    test_input: np.ndarray | None = None,
    force: bool = False,
) -> list[Path]:
    """Write ``layer`` as a C99 project into ``out_dir``; return the files written.

    Args:
        layer: a :class:`tconv.layer.TransposedConv` (any adapter's layer).
        out_dir: a new or empty folder (any folder with ``force=True``).
        name: the C prefix: ``NAME.h``, ``NAME.c``, ``int NAME(const float *input,
            float *output, int batch)``.
        style: ``"fast"`` (stride-phase, register-blocked, OpenMP), ``"reference"`` (the gather
            loops of the definition) or ``"scatter"`` (the plain port, a benchmark baseline).
        input_shape: one input item, no batch axis, in the layer's layout, e.g. ``(8, 8, 1024)``;
            may be omitted when the layer knows it.
        weights: ``"inline"`` (exact hex-float literals in ``NAME_weights.c``) or ``"file"``
            (``NAME_weights.bin`` plus a checking loader ``NAME_load_weights``).
        batch, seed: the test vectors ``NAME_input.bin``/``NAME_expected.bin``: ``batch``
            random items (uniform in [-1, 1)) and tconv's output for them.
        test_input: the test vectors' input instead, ``(N, *input_shape)``.
        force: write into a non-empty folder.

    A :class:`tconv.quant.QuantizedTransposeConv` (int8, 16x8) gets integer-only C instead
    (:mod:`tconv.cexport.quantized`): ``int NAME(const int8_t *input, int8_t *output, int
    batch)`` (``int16_t`` for 16x8), bit-exact; its test vectors add all-minimum, all-maximum
    and alternating items to ``batch`` random ones.
    """
    if isinstance(layer, QuantizedTransposeConv):
        files = quantized.project_files(
            layer, name=name, style=style, weights=weights, batch=batch, seed=seed,
            test_input=test_input, input_shape=input_shape,
        )  # fmt: skip
        folder = prepare_dir(out_dir, force)
        for fname, content in files.items():
            (folder / fname).write_bytes(
                content if isinstance(content, bytes) else content.encode()
            )
        return [folder / fname for fname in files]
    spec = from_layer(layer, input_shape, name)  # checks the layer, its shape and the name
    graph = Graph.of_layer(layer, spec.in_item, name=getattr(layer, "name", "") or spec.name)
    return write_project(
        graph, out_dir, name=spec.name, style=style, weights=weights, batch=batch, seed=seed,
        test_input=test_input, force=force, layer_names=True,
    )  # fmt: skip
