"""Explain a transposed convolution: one output element, four equivalent views, the overlap map,
pictures, animations and a self-contained interactive page.

- :func:`explain` / :class:`Explanation` (:mod:`.core`): every product entering ``y[at]``;
  for a quantized layer :class:`QuantizedExplanation` (:mod:`.quantized`), every integer step.
- :mod:`.views`: :func:`scatter`, :func:`gather`, :func:`zero_insertion`, :func:`matrix`,
  :func:`phases`, :func:`gradient_check`, :func:`agreement`.
- :func:`overlap` (:mod:`.overlap`): the checkerboard map.
- :mod:`.plots` (extra ``plot``): PNG/SVG pictures and GIF animations.
- :func:`render` (:mod:`.page`): the interactive HTML page.
"""

from __future__ import annotations

from .core import Explanation, Tap
from .overlap import Overlap, overlap
from .page import render
from .quantized import QuantizedExplanation, explain
from .views import (
    MatrixView,
    Phase,
    PhaseView,
    ScatterView,
    ZeroInsertionView,
    agreement,
    gather,
    gradient_check,
    matrix,
    phases,
    scatter,
    single_channel,
    zero_insertion,
)

__all__ = [
    "Explanation",
    "MatrixView",
    "Overlap",
    "Phase",
    "PhaseView",
    "QuantizedExplanation",
    "ScatterView",
    "Tap",
    "ZeroInsertionView",
    "agreement",
    "explain",
    "gather",
    "gradient_check",
    "matrix",
    "overlap",
    "phases",
    "render",
    "scatter",
    "single_channel",
    "zero_insertion",
]
