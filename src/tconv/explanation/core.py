"""One output element of a transposed convolution, taken apart: every product, every tap, why.

:func:`explain` reads the layer's canonical geometry (:meth:`TransposedConv.geometry`) and its
taps (:meth:`tconv.geometry.Axis.taps`); it never re-derives which inputs reach an output.
Indices in the result speak the layer's own layouts: data in its ``data_format``, kernel in its
framework's layout (``layer.kernel_layout``).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import activations, ops
from ..geometry import Axis, Geometry
from ..layer import TransposedConv

AXIS_NAMES = {1: ("x",), 2: ("y", "x"), 3: ("z", "y", "x")}


def ix(*parts: Any) -> tuple[Any, ...]:
    """An index tuple, ``a[ix(n, *i, c)]`` (spelled as a call: mypy targets Python 3.10)."""
    return parts


def axis_names(rank: int) -> tuple[str, ...]:
    """Short names of the spatial axes: ``x``; ``y, x``; ``z, y, x``."""
    return AXIS_NAMES[rank]


class KernelIndexer:
    """Maps canonical kernel positions ``(*j, f, c_local)`` to the framework kernel's indices.

    Keeps the layout's flat position map (one int per weight) and unravels only the positions
    asked for, so that a ``3x3x512x1024`` kernel costs one int32 array, not a ``(..., 4)`` table.
    """

    def __init__(self, layer: TransposedConv) -> None:
        layout, shape = layer.kernel_layout, layer.kernel.shape
        self.shape = layout.framework_shape(shape, layer.groups)
        self.where = layout.flat_index(shape, layer.groups)

    def __call__(self, j: Sequence[int], f: int) -> np.ndarray:
        """Framework indices of ``kernel[*j, f, :]``: ints ``(in_channels // groups, ndim)``."""
        return np.stack(np.unravel_index(self.where[ix(*j, f)], self.shape), axis=-1)


def block_text(indices: np.ndarray, shape: Sequence[int]) -> str:
    """Compact index text for a set of framework indices (``(rows, ndim)``) in an array of
    ``shape``: ``[:, :, 17, :]``."""
    parts = []
    for column, size in zip(indices.T, shape, strict=True):
        lo, hi = int(column.min()), int(column.max())
        parts.append(
            str(lo) if lo == hi else ":" if (lo, hi) == (0, size - 1) else f"{lo}:{hi + 1}"
        )
    return "[" + ", ".join(parts) + "]"


@dataclass(frozen=True)
class Tap:
    """One (input position, kernel tap) pair reaching the output element, summed over channels.

    ``input_position``/``kernel_position`` are spatial (canonical order, one int per axis);
    ``input_index``/``kernel_index`` are the full index texts in the layer's layouts, with the
    channel range as a slice; ``sum`` is ``x[input, channels] · kernel[tap, f, channels]``.
    """

    input_position: tuple[int, ...]
    kernel_position: tuple[int, ...]
    input_index: str
    kernel_index: str
    channels: tuple[int, int]
    sum: float


@dataclass(frozen=True)
class AxisStep:
    """How one spatial axis picks the inputs of output position ``o`` (for the formula text)."""

    name: str
    axis: Axis
    o: int
    pairs: tuple[tuple[int, int], ...]

    def empty_reason(self) -> str:
        """Why no input reaches this axis position (when :attr:`pairs` is empty)."""
        a, n, p = self.axis, self.name, self.o + self.axis.crop_start
        if not 0 <= p < a.full:
            return (
                f"on axis {n}, p = {p} is outside the full length 0..{a.full - 1}: a zero row "
                "that the crop rule added (output_padding or padding), never written by a stamp"
            )
        if a.size == 0:
            return f"on axis {n} the input is empty"
        return (
            f"on axis {n}, p = {p} falls in a gap between the stamps of neighbouring inputs, "
            f"as the kernel span {a.span} is less than the stride {a.stride}"
            if a.span < a.stride
            else f"on axis {n}, no tap lands on p = {p}"
        )

    def lines(self) -> list[str]:
        a, n, p = self.axis, self.name, self.o + self.axis.crop_start
        lines = [f"axis {n}: {crop_text(a)}"]
        lines.append(
            f"  o{n} = {self.o} -> p = o{n} + crop_start = {self.o} + {a.crop_start} = {p} in the "
            f"full axis; i{n} = (p - k{n}*{a.dilation}) / {a.stride} for each tap k{n}:"
        )
        found = dict((j, i) for i, j in self.pairs)
        for j in range(a.kernel):
            q = p - j * a.dilation
            if j in found:
                why = f"= {found[j]}  -> used"
            elif q % a.stride:
                why = f"= {q}/{a.stride}, not an integer: no input lands here"
            else:
                why = f"= {q // a.stride}, outside the input 0..{a.size - 1}"
            lines.append(f"    k{n}={j}: i{n} = ({p} - {j * a.dilation}) / {a.stride} {why}")
        return lines


def crop_text(a: Axis) -> str:
    """``full (8-1)*2 + 3 = 17, crop 0 at the start and 1 at the end -> 16``."""

    def side(c: int, where: str) -> str:
        if c >= 0:
            return f"crop {c} at the {where}"
        return f"add {-c} zero row{'s' if c < -1 else ''} at the {where}"

    span = f"{a.dilation}*({a.kernel}-1)+1" if a.dilation > 1 else f"{a.kernel}"
    return (
        f"full length ({a.size}-1)*{a.stride} + {span} = {a.full}; "
        f"{side(a.crop_start, 'start')}, {side(a.crop_end, 'end')} -> {a.out}"
    )


def _terms_dtype(ndim: int, kdim: int, dtype: np.dtype) -> np.dtype:
    return np.dtype(
        [
            ("input_index", np.int64, (ndim,)),
            ("kernel_index", np.int64, (kdim,)),
            ("x", dtype),
            ("w", dtype),
            ("product", dtype),
        ]
    )


def _fmt(v: float) -> str:
    return f"{v: .6g}"


class Explanation:
    """Everything that enters one output element ``y[at]`` of ``layer(x)``.

    Attributes:
        layer, x, at: what was explained (``at`` in the layer's layout, non-negative).
        value: ``layer(x)[at]`` recomputed from the terms, in ``x``'s dtype.
        terms: structured array, one row per product: ``input_index`` (one int per axis of
            ``x``), ``kernel_index`` (one int per axis of the framework kernel), ``x``, ``w``,
            ``product``.
        taps: the terms grouped per (input position, kernel tap), as :class:`Tap`.
        bias: the bias of output channel ``f`` (0 without bias); ``preactivation`` = sum of the
            products + bias; ``activation`` name; ``activated`` = activation(preactivation).
        geometry: the canonical :class:`~tconv.geometry.Geometry`; ``steps``: per axis, which
            taps the stride/crop arithmetic selects.
    """

    def __init__(self, layer: TransposedConv, x: np.ndarray, at: Sequence[int]) -> None:
        x, kernel, bias = layer.computing(x)  # as the forward computes (a Keras dtype policy)
        self.layer, self.x = layer, x
        spatial = layer.spatial_shape(x.shape)
        self.geometry = g = layer.geometry(spatial)
        out_shape = layer.output_shape(x.shape)
        self.at = _normalize_at(at, out_shape)
        self.output_shape = out_shape
        n, f = self.at[0], (self.at[1] if layer.channels_first else self.at[-1])
        o = tuple(self.at[2:] if layer.channels_first else self.at[1:-1])
        self.n, self.f, self.o = n, f, o
        self.group = g.group_of(f)
        c0 = self.group * g.in_per_group
        self.channels = (c0, c0 + g.in_per_group)
        dtype = ops.compute_dtype(x.dtype)
        self.steps = tuple(
            AxisStep(name, axis, p, tuple(axis.taps(p)))
            for name, axis, p in zip(axis_names(g.rank), g.axes, o, strict=True)
        )
        xc = layer.to_canonical(x)
        kindex = KernelIndexer(layer)
        chans = np.arange(*self.channels)
        pairs = list(g.taps(o))
        rows = np.zeros(len(pairs) * g.in_per_group, _terms_dtype(x.ndim, g.rank + 2, dtype))
        taps = []
        for t, (i, j) in enumerate(pairs):
            block = rows[t * g.in_per_group : (t + 1) * g.in_per_group]
            xs = xc[ix(n, *i, slice(*self.channels))].astype(dtype)
            ws = kernel[ix(*j, f)].astype(dtype)
            block["x"], block["w"], block["product"] = xs, ws, xs * ws
            block["input_index"] = self._input_index(i, chans)
            block["kernel_index"] = ki = kindex(j, f)
            taps.append(
                Tap(
                    i,
                    j,
                    self._input_text(i),
                    block_text(ki, kindex.shape),
                    self.channels,
                    float(np.dot(xs, ws)),
                )
            )
        self.terms = rows
        self.taps = tuple(taps)
        self.block = block_text(
            np.concatenate([kindex(j, f) for j in np.ndindex(layer.kernel_size)]), kindex.shape
        )
        self.bias = 0.0 if bias is None else float(bias[f])
        total = dtype.type(sum(dtype.type(t.sum) for t in taps)) if taps else dtype.type(0)
        pre = np.asarray(total + dtype.type(self.bias), dtype=dtype).reshape(1)
        self.activation = layer.activation
        self.preactivation = float(pre[0])
        if self.activation in activations.LAST_AXIS:
            # softmax/log_softmax mix a whole output axis: that needs every element of it.
            self.activated = float(np.asarray(layer(x))[self.at])
        else:
            self.activated = float(activations.apply(self.activation, pre)[0])
        self.value = x.dtype.type(self.activated) if x.dtype.kind == "f" else self.activated

    # -- indices in the layer's layouts ------------------------------------------------------

    def _input_index(self, i: tuple[int, ...], chans: np.ndarray) -> np.ndarray:
        cols = [np.full_like(chans, v) for v in (self.n, *i)]
        if self.layer.channels_first:
            cols.insert(1, chans)
        else:
            cols.append(chans)
        return np.stack(cols, axis=-1)

    def _input_text(self, i: tuple[int, ...]) -> str:
        c0, c1 = self.channels
        ch = ":" if (c0, c1) == (0, self.geometry.in_channels) else f"{c0}:{c1}"
        parts = [str(v) for v in i]
        parts = [ch, *parts] if self.layer.channels_first else [*parts, ch]
        return f"x[{self.n}, {', '.join(parts)}]"

    # -- text ----------------------------------------------------------------------------------

    @property
    def products(self) -> int:
        """Number of products that enter the element."""
        return len(self.terms)

    @property
    def at_text(self) -> str:
        return f"y[{', '.join(map(str, self.at))}]"

    def formula(self) -> str:
        """The instantiated formula, e.g. ``y[0, 5, 4, 17] = bias[17] + Σ_c x[0, 2, 2, c]·k...``."""
        g, layer = self.geometry, self.layer
        names = axis_names(g.rank)
        sp = ", ".join(f"i{a}" for a in names)
        kp = ", ".join(f"k{a}" for a in names)
        xi = f"x[{self.n}, c, {sp}]" if layer.channels_first else f"x[{self.n}, {sp}, c]"
        pad = " " * len(self.at_text)
        terms = [f"{t.input_index}·kernel{t.kernel_index}" for t in self.taps] or ["0"]
        c0, c1 = self.channels
        over = f"Σ_c (c = {c0}..{c1 - 1})" if (c0, c1) != (0, g.in_channels) else "Σ_c"
        lines = [
            f"{self.at_text} = {self.activation}(bias[{self.f}] + Σ over taps ({sp}; {kp}) "
            f"{over} {xi}·kernel[{self._kernel_pattern()}])",
            f"{pad} = {self.activation}(bias[{self.f}]",
        ]
        lines += [f"{pad}     + {t}" for t in terms]
        lines[-1] += ")"
        return "\n".join(lines)

    def _kernel_pattern(self) -> str:
        """The framework kernel's index of weight (tap k, filter f, channel c) as text, e.g.
        ``ky, kx, 17, c`` (Keras) or ``c, 0, ky, kx`` (PyTorch): found by following canonical
        positions through the layout, so every framework layout reads right."""
        g, names = self.geometry, axis_names(self.geometry.rank)
        kindex = KernelIndexer(self.layer)
        base = kindex((0,) * g.rank, self.f)
        cols = [str(int(v)) for v in base[0]]
        if g.in_per_group > 1:
            col = int(np.flatnonzero(base[1] != base[0])[0])
            offset = self.channels[0] - int(base[0][col])
            cols[col] = "c" if offset == 0 else f"c - {offset}"
        for a, (n, size) in enumerate(zip(names, self.layer.kernel_size, strict=True)):
            if size > 1:
                step = kindex(tuple(int(b == a) for b in range(g.rank)), self.f)[0] - base[0]
                col = int(np.flatnonzero(step)[0])
                cols[col] = f"k{n}" if step[col] > 0 else f"{size - 1}-k{n}"
        return ", ".join(cols)

    def filter_role(self) -> str:
        """What filter ``f`` is: its kernel block and the channels it reads."""
        g, layer = self.geometry, self.layer
        k = "×".join(map(str, layer.kernel_size))
        text = (
            f"Filter {self.f} (output channel {self.f}) reads only kernel{self.block} "
            f"(layout {layer.kernel_layout.axes}): a {k}×{g.in_per_group} block"
        )
        if g.groups == 1:
            text += (
                f" spanning all {g.in_channels} input channels."
                if g.in_channels > 1
                else " on the single input channel."
            )
        else:
            c0, c1 = self.channels
            text += (
                f" over input channels {c0}..{c1 - 1} only (group {self.group} of {g.groups}; "
                + (
                    f"output channels {self.group * g.out_per_group}.."
                    f"{(self.group + 1) * g.out_per_group - 1} share them)."
                    if g.out_per_group > 1
                    else "no other output channel reads them)."
                )
            )
        blocks = (
            f"{g.out_channels} such blocks (filters) make the output depth {g.out_channels}."
            if g.out_channels > 1
            else "it is the only filter (output depth 1)."
        )
        text += (
            f" Each tap dots the {g.in_per_group}-deep input column with the matching "
            f"{g.in_per_group}-vector of that block; {blocks}"
        )
        return text

    def to_text(self, all: bool = False, shown: int = 3) -> str:
        """A terminal-readable account; channel sums longer than ``2*shown`` are elided unless
        ``all``."""
        layer = self.layer
        lines = [
            f"{self.at_text} of {layer.framework} transposed convolution "
            f"(input {tuple(self.x.shape)} -> output {self.output_shape}, {layer.data_format})",
            self.formula(),
            "",
            "Where the taps come from:",
        ]
        for step in self.steps:
            lines += ["  " + s for s in step.lines()]
        lines.append("")
        ntaps = int(np.prod(layer.kernel_size))
        if not self.taps:
            lines.append(
                "No (input, tap) pair reaches this element: its value is the bias alone ("
                + "; ".join(step.empty_reason() for step in self.steps if not step.pairs)
                + ")."
            )
        else:
            lines.append(
                f"Taps ({len(self.taps)} of {ntaps} kernel positions, {self.products} products):"
            )
        width = max((len(t.input_index) + len(t.kernel_index) for t in self.taps), default=16)
        for t, tap in enumerate(self.taps):
            head = f"{tap.input_index} · kernel{tap.kernel_index}"
            lines.append(f"  {head:<{width + 10}} = {_fmt(tap.sum)}")
            lines += self._channel_lines(t, all, shown)
        lines += [
            f"  {'sum of products':<{width + 10}} = {_fmt(self.preactivation - self.bias)}",
            f"  {f'+ bias[{self.f}]':<{width + 10}} = {_fmt(self.bias)}",
            f"  {'preactivation':<{width + 10}} = {_fmt(self.preactivation)}",
            f"  {f'{self.activation}(preactivation)':<{width + 10}} = {_fmt(self.activated)}",
            *(
                [f"  ({self.activation} normalises a whole output axis: {self._axis_text()})"]
                if self.activation in activations.LAST_AXIS
                else []
            ),
            "",
            self.filter_role(),
        ]
        return "\n".join(lines)

    def _axis_text(self) -> str:
        """Which output axis a softmax-like activation normalises, in words."""
        if self.layer.channels_first:
            axis = f"the last spatial axis, y[{', '.join(map(str, self.at[:-1]))}, :]"
            return f"{axis}, as Keras applies it to a channels_first output"
        c = self.output_shape[1 if self.layer.channels_first else -1]
        return f"the {c} output channels of this position"

    def _channel_lines(self, t: int, all: bool, shown: int) -> list[str]:
        per = self.geometry.in_per_group
        rows = self.terms[t * per : (t + 1) * per]
        keep = range(per) if all or per <= 2 * shown else [*range(shown), *range(per - shown, per)]
        lines, last = [], -1
        for r in keep:
            if r != last + 1:
                lines.append(f"      ... {r - last - 1} more channels ...")
            row = rows[r]
            ii = ", ".join(map(str, row["input_index"]))
            kk = ", ".join(map(str, row["kernel_index"]))
            lines.append(
                f"      x[{ii}] · W[{kk}] = {_fmt(row['x'])} · {_fmt(row['w'])} "
                f"= {_fmt(row['product'])}"
            )
            last = r
        return lines

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the element, its taps, every term, bias, activation, the texts."""
        return {
            "at": list(self.at),
            "value": float(self.value),
            "framework": self.layer.framework,
            "data_format": self.layer.data_format,
            "kernel_layout": self.layer.kernel_layout.axes,
            "input_shape": list(self.x.shape),
            "output_shape": list(self.output_shape),
            "crops": [[a.crop_start, a.crop_end] for a in self.geometry.axes],
            "taps": [
                {
                    "input_position": list(t.input_position),
                    "kernel_position": list(t.kernel_position),
                    "input_index": t.input_index,
                    "kernel_index": t.kernel_index,
                    "channels": list(t.channels),
                    "sum": t.sum,
                }
                for t in self.taps
            ],
            "terms": {
                "input_index": self.terms["input_index"].tolist(),
                "kernel_index": self.terms["kernel_index"].tolist(),
                "x": self.terms["x"].astype(float).tolist(),
                "w": self.terms["w"].astype(float).tolist(),
                "product": self.terms["product"].astype(float).tolist(),
            },
            "bias": self.bias,
            "preactivation": self.preactivation,
            "activation": self.activation,
            "activated": self.activated,
            "formula": self.formula(),
            "derivation": [s.lines() for s in self.steps],
            "filter_role": self.filter_role(),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def __repr__(self) -> str:
        return (
            f"Explanation({self.at_text} = {float(self.value):.6g}, {len(self.taps)} taps, "
            f"{self.products} products)"
        )

    def _repr_html_(self) -> str:
        """A notebook shows the explanation's text as an HTML fragment (no script, no styles
        of its own); the interactive page of the layer is :func:`tconv.explanation.render`."""
        return f'<pre class="tconv-explanation">{html.escape(self.to_text())}</pre>'


def _normalize_at(at: Sequence[int], shape: Sequence[int]) -> tuple[int, ...]:
    try:
        at = tuple(int(a) for a in at)
    except (TypeError, ValueError):
        raise TypeError(f"at must be a sequence of ints, got at={at!r}") from None
    if len(at) != len(shape):
        raise ValueError(
            f"at={at} has {len(at)} indices but the output {tuple(shape)} has {len(shape)} axes"
        )
    norm = []
    for axis, (a, n) in enumerate(zip(at, shape, strict=True)):
        if not -n <= a < n:
            raise IndexError(
                f"at={at}: index {a} is out of bounds for axis {axis} with size {n} "
                f"(output shape {tuple(shape)})"
            )
        norm.append(a % n)
    return tuple(norm)


def explain(op: Any, x: Any, at: Sequence[int], /, layer: str | None = None) -> Explanation:
    """Explain ``op(x)[at]``: its value, every product, the taps, bias, activation, and why.

    Args:
        op: any tconv transposed convolution (:class:`tconv.layer.TransposedConv`, e.g. from
            ``tconv.keras``, ``tconv.torch``, ``tconv.onnx`` or ``tconv.jax``), or a whole
            model (:func:`tconv.keras.load_model`) with ``layer``.
        x: input in the layer's layout, batch axis included; for a model, the model's input
            (a list for several inputs): the model computes the layers before ``layer`` and
            the explanation is of the input that really reaches it.
        at: output index in the layer's layout: ``(n, *o, f)`` for channels_last,
            ``(n, f, *o)`` for channels_first; negative indices count from the end.
        layer: the name of the transposed convolution inside the model ``op``.

    Raises ``IndexError`` for an index out of range and ``ValueError`` for a wrong input shape,
    the wrong number of indices, or a ``layer`` that is no transposed convolution of the model.
    """
    if layer is not None or hasattr(op, "layer_input"):
        if layer is None or not hasattr(op, "layer_input"):
            raise ValueError(
                "explain(model, x, at, layer=NAME) explains a transposed convolution inside a "
                "model: give the model and the layer's name"
            )
        x = op.layer_input(x, layer)
        op = op.get_layer(layer).op
    return Explanation(op, x, at)


def geometry_of(layer: TransposedConv, x: np.ndarray) -> Geometry:
    """The canonical geometry of ``layer`` applied to ``x`` (layer layout, batch included)."""
    return layer.geometry(layer.spatial_shape(np.shape(x)))
