"""The interactive page: one self-contained HTML file (inline CSS/JS, no network, file:// ok).

It shows the input, kernel and output grids of a 2D slice (1D: one row; 3D: the output plane at
the chosen depth, inputs and taps of every depth folded onto it).  Hovering or clicking an output
cell highlights the input cells and kernel taps that reach it and shows that element's
arithmetic; a selector switches the output channel and buttons step through the stride phases.
Every number comes from :func:`tconv.explanation.explain`, embedded as JSON.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np

from ..layer import TransposedConv
from .core import Explanation, axis_names, crop_text, explain, ix
from .views import phase_table

MAX_SIDE = 16
"""Largest output window drawn per axis."""
MAX_CHANNELS = 8
"""Output channels embedded (the chosen one and the next ones)."""


def _window(center: int, size: int, side: int) -> range:
    side = min(side, size)
    start = min(max(center - side // 2, 0), size - side)
    return range(start, start + side)


def _key(pos: Sequence[int]) -> str:
    return ",".join(str(int(v)) for v in pos)


def page_data(
    layer: TransposedConv,
    x: np.ndarray,
    at: Sequence[int],
    max_side: int = MAX_SIDE,
    max_channels: int = MAX_CHANNELS,
) -> dict[str, Any]:
    """The JSON the page embeds: grids, per-cell taps and, per channel, every cell's arithmetic.

    Positions are plane positions (the last one or two spatial axes), keyed ``"r,c"`` (``"c"``
    in 1D); the fixed leading spatial index of a 3D layer is stated in ``slice``.
    """
    x = np.asarray(x)
    chosen = explain(layer, x, at)
    g = chosen.geometry
    rank, names = g.rank, axis_names(g.rank)
    plane = list(range(max(0, rank - 2), rank))  # spatial axes drawn
    fixed = [a for a in range(rank) if a not in plane]
    out_win = [_window(chosen.o[a], g.axes[a].out, max_side) for a in plane]
    f0 = chosen.f
    channels = [(f0 + t) % g.out_channels for t in range(min(max_channels, g.out_channels))]
    cells: dict[str, Any] = {}
    values: dict[str, dict[str, Any]] = {str(f): {} for f in channels}
    roles: dict[str, str] = {}
    reached: list[set[int]] = [set() for _ in plane]
    for pos in np.ndindex(*(len(w) for w in out_win)):
        op = tuple(w[p] for w, p in zip(out_win, pos, strict=True))
        o = list(chosen.o)
        for a, v in zip(plane, op, strict=True):
            o[a] = v
        key = _key(op)
        for f in channels:
            e = explain(layer, x, _layer_index(layer, chosen.n, o, f))
            values[str(f)][key] = _cell_values(e)
            roles.setdefault(str(f), e.filter_role())
            if f == f0:
                cells[key] = {
                    "at": list(e.at),
                    "taps": [
                        {
                            "in": _key([t.input_position[a] for a in plane]),
                            "k": _key([t.kernel_position[a] for a in plane]),
                            "input_index": t.input_index,
                            "kernel_index": "kernel" + t.kernel_index,
                        }
                        for t in e.taps
                    ],
                }
                for t in e.taps:
                    for s, a in zip(reached, plane, strict=True):
                        s.add(t.input_position[a])
    in_win = [
        range(min(s), max(s) + 1) if s else _window(0, g.axes[a].size, max_side)
        for s, a in zip(reached, plane, strict=True)
    ]
    xc = layer.to_canonical(x)[chosen.n]
    per_group = g.in_per_group
    input_values = {}
    for pos in np.ndindex(*(len(w) for w in in_win)):
        ip = tuple(w[p] for w, p in zip(in_win, pos, strict=True))
        column = xc[ix(*([slice(None)] * len(fixed)), *ip)]  # (*folded axes, C)
        column = column.reshape(-1, g.in_channels)
        input_values[_key(ip)] = float(np.sqrt(np.sum(column.astype(np.float64) ** 2)))
        if per_group == 1 and g.in_channels == 1 and not fixed:
            input_values[_key(ip)] = float(column[0, 0])
    kernel_norms = {}
    for f in channels:
        w = layer.kernel[..., f, :].astype(np.float64)
        norms = np.sqrt((w**2).sum(axis=(*range(len(fixed)), -1)))  # plane of taps
        kernel_norms[str(f)] = {_key(j): float(norms[j]) for j in np.ndindex(*norms.shape)}
    phases = []
    for ph in phase_table(g):
        members = [
            _key(op)
            for op in (
                tuple(w[p] for w, p in zip(out_win, pos, strict=True))
                for pos in np.ndindex(*(len(w) for w in out_win))
            )
            if all(
                (v - ph.residue[a]) % g.axes[a].stride == 0 for a, v in zip(plane, op, strict=True)
            )
            and all(chosen.o[a] % g.axes[a].stride == ph.residue[a] for a in fixed)
        ]
        if members:
            phases.append(
                {
                    "residue": list(ph.residue),
                    "taps": sorted({_key([j[a] for a in plane]) for j in ph.taps}),
                    "cells": members,
                }
            )
    shape_in, shape_out = tuple(x.shape), chosen.output_shape
    slice_text = ", ".join(
        [f"o{names[a]} = {chosen.o[a]} (fixed)" for a in fixed]
        + [
            f"o{names[a]} {w.start}..{w.stop - 1} of {g.axes[a].out}"
            for a, w in zip(plane, out_win, strict=True)
        ]
        + [f"batch item {chosen.n}"]
        + [f"output channels {', '.join(map(str, channels))} of {g.out_channels}"]
    )
    if fixed:
        slice_text += (
            f"; input and kernel grids fold the {'/'.join('i' + names[a] for a in fixed)} axis"
        )
    return {
        "title": f"{layer.framework} transposed convolution {shape_in} -> {shape_out}",
        "summary": [
            f"kernel {layer.kernel_layout.axes} = {tuple(layer.framework_kernel.shape)}, "
            f"strides {layer.strides}, dilation {layer.dilation}, groups {layer.groups}, "
            f"activation {layer.activation}, data_format {layer.data_format}",
            "; ".join(f"axis {names[a]}: {crop_text(g.axes[a])}" for a in range(rank)),
        ],
        "slice": slice_text,
        "plane_axes": [names[a] for a in plane],
        "out_grid": [list(w) for w in out_win],
        "in_grid": [list(w) for w in in_win],
        "k_grid": [list(range(g.axes[a].kernel)) for a in plane],
        "input_label": (
            "x value"
            if per_group == 1 and g.in_channels == 1 and not fixed
            else f"‖x‖ over the {g.in_channels} channels"
        ),
        "input_values": input_values,
        "kernel_norms": kernel_norms,
        "channels": channels,
        "values": values,
        "cells": cells,
        "phases": phases,
        "selected": _key([chosen.o[a] for a in plane]),
        "channel": f0,
        "filter_roles": roles,
        "activation": chosen.activation,
    }


def _layer_index(layer: TransposedConv, n: int, o: Sequence[int], f: int) -> tuple[int, ...]:
    return (n, f, *o) if layer.channels_first else (n, *o, f)


def _cell_values(e: Explanation) -> dict[str, Any]:
    return {
        "value": repr(float(e.value)),
        "pre": float(e.preactivation),
        "bias": e.bias,
        "sums": [t.sum for t in e.taps],
        "kidx": ["kernel" + t.kernel_index for t in e.taps],
        "at": list(e.at),
        "products": e.products,
    }


def render(
    layer: TransposedConv,
    x: np.ndarray,
    at: Sequence[int],
    max_side: int = MAX_SIDE,
    max_channels: int = MAX_CHANNELS,
) -> str:
    """The self-contained interactive HTML page for ``layer(x)`` around output ``at``."""
    data = page_data(layer, x, at, max_side, max_channels)
    payload = json.dumps(data).replace("</", "<\\/")
    return (
        _asset("html")
        .replace("%TITLE%", html.escape(data["title"]))
        .replace("%CSS%", _asset("css"))
        .replace("%JS%", _asset("js"))
        .replace("%DATA%", payload)
    )


def _asset(kind: str) -> str:
    """The page's template, style sheet or script (``tconv/assets/explain_page.*``)."""
    return (resources.files("tconv") / "assets" / f"explain_page.{kind}").read_text("utf-8")


def write(path: str, layer: TransposedConv, x: np.ndarray, at: Sequence[int]) -> str:
    """Write :func:`render` to ``path``; returns the path."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(render(layer, x, at))
    return path
