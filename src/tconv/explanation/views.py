"""Four equivalent ways to compute a transposed convolution, plus the phase view.

Each view is computed for real from the layer's canonical geometry and returns the layer's
output (in the layer's layout) next to its own intermediate objects, so that tests and users can
check that all of them give ``layer(x)``:

- :func:`scatter`: every input pixel stamps ``x[i, :] · kernel`` into the full output, which is
  then cropped per side;
- :func:`gather`: every output element sums the (input, tap) pairs that reach it;
- :func:`zero_insertion`: insert ``stride-1`` zeros between inputs, pad, and run an ordinary
  stride-1 correlation with the spatially flipped, in/out-swapped kernel;
- :func:`matrix`: ``y = Cᵀ x`` with ``C`` the matrix of the ordinary convolution that has the
  same parameters; :func:`gradient_check` confirms numerically that the transposed convolution
  is that convolution's gradient with respect to its input;
- :func:`phases`: the output splits into ``prod(strides)`` phases, each an ordinary stride-1
  convolution with a sub-kernel (the taps that reach it).

All arrays named ``canonical`` are channels-last ``(N, *spatial, C)``; kernels are canonical
``(*kernel_size, out_channels, in_channels // groups)`` unless stated otherwise.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import ops
from ..geometry import Geometry
from ..layer import TransposedConv
from .core import ix

MATRIX_LIMIT = 1 << 22
"""Largest dense ``Cᵀ`` (rows × columns) that :func:`matrix` builds."""


@dataclass(frozen=True)
class _Prepared:
    x: np.ndarray  # canonical input in the compute dtype
    kernel: np.ndarray  # canonical kernel in the compute dtype
    bias: np.ndarray | None  # as the layer computes with it
    geometry: Geometry
    dtype: np.dtype  # the arithmetic's dtype
    out_dtype: np.dtype  # the forward's result dtype


def _prepare(layer: TransposedConv, x: np.ndarray) -> _Prepared:
    x, kernel, bias = layer.computing(x)
    geometry = layer.geometry(layer.spatial_shape(x.shape))
    dtype = ops.compute_dtype(x.dtype)
    xc, kc = layer.to_canonical(x).astype(dtype), kernel.astype(dtype)
    return _Prepared(xc, kc, bias, geometry, dtype, x.dtype)


def _finish(layer: TransposedConv, y: np.ndarray, p: _Prepared) -> np.ndarray:
    """Bias, activation, the input's dtype and the layer's layout, as the forward does."""
    if p.bias is not None:
        y = y + p.bias.astype(y.dtype)
    y = layer.activate(y)
    return np.ascontiguousarray(y.astype(p.out_dtype, copy=False))


def _mix(rows: np.ndarray, kernel: np.ndarray, groups: int) -> np.ndarray:
    """``rows (M, C_in)`` times every tap: ``(M, *kernel_size, C_out)``, group by group."""
    *k, cout, cin_g = kernel.shape
    cout_g = cout // groups
    out = np.zeros((rows.shape[0], *k, cout), rows.dtype)
    for g in range(groups):
        w = kernel[..., g * cout_g : (g + 1) * cout_g, :]
        out[..., g * cout_g : (g + 1) * cout_g] = np.tensordot(
            rows[:, g * cin_g : (g + 1) * cin_g], w, axes=([1], [-1])
        )
    return out


def window(a: np.ndarray, starts: Sequence[int], lengths: Sequence[int]) -> np.ndarray:
    """``out[:, m, ...] = a[:, start + m, ...]`` per spatial axis, zero where that is outside.

    ``a`` is canonical ``(N, *spatial, C)``.  A negative start pads zeros at the beginning, a
    window past the end pads zeros at the end: crops and pads are the same operation.
    """
    out = np.zeros((a.shape[0], *lengths, a.shape[-1]), a.dtype)
    src, dst = [slice(None)], [slice(None)]
    for start, length, size in zip(starts, lengths, a.shape[1:-1], strict=True):
        lo, hi = max(start, 0), min(start + length, size)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[tuple(dst)] = a[tuple(src)]
    return out


@dataclass(frozen=True)
class ScatterView:
    """``full``: the uncropped scatter result (layer layout, before bias); ``crops``: per axis
    ``(start, end)`` removed (negative = zero rows added); ``output``: the layer's output."""

    full: np.ndarray
    crops: tuple[tuple[int, int], ...]
    output: np.ndarray


def scatter(layer: TransposedConv, x: np.ndarray) -> ScatterView:
    """Each input pixel ``i`` adds ``x[n, i, :] · kernel[j, f, :]`` at ``i*stride + j*dilation``."""
    p = _prepare(layer, x)
    g = p.geometry
    n = p.x.shape[0]
    full = np.zeros((n, *(max(a.full, 0) for a in g.axes), g.out_channels), p.dtype)
    stamps = _mix(p.x.reshape(-1, g.in_channels), p.kernel, g.groups)
    stamps = stamps.reshape(n, *g.in_shape, *stamps.shape[1:])
    for i in np.ndindex(*g.in_shape):
        dst = tuple(
            slice(v * a.stride, v * a.stride + a.span, a.dilation)
            for v, a in zip(i, g.axes, strict=True)
        )
        full[ix(slice(None), *dst)] += stamps[ix(slice(None), *i)]
    y = window(full, [a.crop_start for a in g.axes], g.out_shape)
    crops = tuple((a.crop_start, a.crop_end) for a in g.axes)
    return ScatterView(
        np.ascontiguousarray(layer.from_canonical(full)), crops, _finish(layer, y, p)
    )


def tap_table(layer: TransposedConv, x: np.ndarray) -> list[np.ndarray]:
    """Per axis, ``table[o, j]`` = the input position reaching output ``o`` through tap ``j``,
    or -1 (from :meth:`Axis.taps`)."""
    g = layer.geometry(layer.spatial_shape(np.shape(x)))
    tables = []
    for a in g.axes:
        t = np.full((a.out, a.kernel), -1, np.int64)
        for o in range(a.out):
            for i, j in a.taps(o):
                t[o, j] = i
        tables.append(t)
    return tables


def gather(layer: TransposedConv, x: np.ndarray) -> np.ndarray:
    """Each output element gathers ``x[i]`` for every tap ``j`` that reaches it (im2col style:
    a zero where no input lands) and contracts with the kernel."""
    p = _prepare(layer, x)
    g = p.geometry
    r = g.rank
    # One zero row past the end of every axis stands for "no input" (index -1).
    xpad = np.pad(p.x, [(0, 0)] + [(0, 1)] * r + [(0, 0)])
    index = []
    for a, table in enumerate(tap_table(layer, x)):
        shape = [1] * (2 * r)
        shape[a], shape[r + a] = table.shape
        index.append(table.reshape(shape))
    cols = xpad[ix(slice(None), *index)]  # (N, *out, *kernel, C_in)
    y = np.zeros((p.x.shape[0], *g.out_shape, g.out_channels), p.dtype)
    cin, cout = g.in_per_group, g.out_per_group
    for grp in range(g.groups):
        c = cols[..., grp * cin : (grp + 1) * cin]
        w = p.kernel[..., grp * cout : (grp + 1) * cout, :]
        kaxes = [*range(r), r + 1]
        y[..., grp * cout : (grp + 1) * cout] = np.tensordot(
            c, w, axes=([*range(1 + r, 2 + 2 * r)], kaxes)
        )
    return _finish(layer, y, p)


def _correlate(
    a: np.ndarray, kernel: np.ndarray, dilation: Sequence[int], out: Sequence[int], groups: int
) -> np.ndarray:
    """Ordinary stride-1 cross-correlation: ``y[o] = Σ_j a[o + j*d] @ kernel[j]``.

    ``a`` canonical ``(N, *spatial, C_in)``, ``kernel`` in Keras ``Conv`` layout
    ``(*kernel_size, C_in // groups, C_out)``.
    """
    *k, cin, cout = kernel.shape
    cout_g = cout // groups
    y = np.zeros((a.shape[0], *out, cout), a.dtype)
    for j in np.ndindex(*k):
        shifts = (slice(t * d, t * d + n) for t, d, n in zip(j, dilation, out, strict=True))
        src = a[ix(slice(None), *shifts)]
        for g in range(groups):
            y[..., g * cout_g : (g + 1) * cout_g] += (
                src[..., g * cin : (g + 1) * cin] @ kernel[j][:, g * cout_g : (g + 1) * cout_g]
            )
    return y


@dataclass(frozen=True)
class ZeroInsertionView:
    """``padded``: the zero-inserted, padded input (layer layout); ``pads``: per axis zeros added
    ``(start, end)`` (negative = rows removed); ``kernel``: the flipped, in/out-swapped kernel
    in Keras ``Conv`` layout ``(*kernel_size, in_channels // groups, filters)``; ``output``."""

    padded: np.ndarray
    pads: tuple[tuple[int, int], ...]
    kernel: np.ndarray
    output: np.ndarray


def zero_insertion(layer: TransposedConv, x: np.ndarray) -> ZeroInsertionView:
    """Insert ``stride-1`` zeros, pad ``span-1-crop`` per side, correlate (stride 1) with the
    spatially flipped kernel whose in/out channel axes are swapped."""
    p = _prepare(layer, x)
    g = p.geometry
    n = p.x.shape[0]
    dilated = np.zeros(
        (n, *(max((a.size - 1) * a.stride + 1, 0) for a in g.axes), g.in_channels), p.dtype
    )
    dilated[ix(slice(None), *(slice(None, None, a.stride) for a in g.axes))] = p.x
    pads = tuple((a.span - 1 - a.crop_start, a.span - 1 - a.crop_end) for a in g.axes)
    lengths = [d + b + e for d, (b, e) in zip(dilated.shape[1:-1], pads, strict=True)]
    padded = window(dilated, [-b for b, _ in pads], lengths)
    flipped = p.kernel[tuple(slice(None, None, -1) for _ in g.axes)]
    conv_kernel = np.ascontiguousarray(np.swapaxes(flipped, -1, -2))
    y = _correlate(padded, conv_kernel, [a.dilation for a in g.axes], g.out_shape, g.groups)
    return ZeroInsertionView(
        np.ascontiguousarray(layer.from_canonical(padded)), pads, conv_kernel, _finish(layer, y, p)
    )


@dataclass(frozen=True)
class MatrixView:
    """``y = Cᵀ x`` on flattened canonical data (``(*spatial, C)`` in C order).

    ``transposed``: the dense ``Cᵀ`` (``out_size*filters`` × ``in_size*in_channels``) or
    ``None`` when larger than :data:`MATRIX_LIMIT`; ``blocks``: the non-zero
    ``filters × in_channels`` blocks ``(output position, input position, kernel tap)``;
    ``description``: its structure in words; ``output``: the layer's output (``None`` when the
    matrix was not built).
    """

    shape: tuple[int, int]
    blocks: tuple[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]], ...]
    description: str
    transposed: np.ndarray | None
    output: np.ndarray | None


def matrix(layer: TransposedConv, x: np.ndarray, limit: int = MATRIX_LIMIT) -> MatrixView:
    """Build ``Cᵀ`` block by block from the taps and apply it (dense only up to ``limit``)."""
    p = _prepare(layer, x)
    g = p.geometry
    nin, nout = int(np.prod(g.in_shape)), int(np.prod(g.out_shape))
    shape = (nout * g.out_channels, nin * g.in_channels)
    blocks = tuple((o, i, j) for o in np.ndindex(*g.out_shape) for i, j in g.taps(o))
    groups = f", block-diagonal over {g.groups} groups" if g.groups > 1 else ""
    nonzero = len(blocks) * g.out_channels * g.in_per_group
    description = (
        f"Cᵀ is {shape[0]:,}×{shape[1]:,} (output positions × filters by input positions × "
        f"input channels), made of {nout}×{nin} blocks of {g.out_channels}×{g.in_channels}; "
        f"{len(blocks)} blocks are non-zero (one per (output, input) pair linked by a tap j, "
        f"holding W[j]ᵀ{groups}), {nonzero:,} non-zero entries of {shape[0] * shape[1]:,}."
    )
    if shape[0] * shape[1] > limit:
        return MatrixView(shape, blocks, description, None, None)
    ct = np.zeros(shape, p.dtype)
    cin, cout = g.in_per_group, g.out_per_group
    for o, i, j in blocks:
        r = np.ravel_multi_index(o, g.out_shape) * g.out_channels
        c = np.ravel_multi_index(i, g.in_shape) * g.in_channels
        for grp in range(g.groups):
            ct[r + grp * cout : r + (grp + 1) * cout, c + grp * cin : c + (grp + 1) * cin] += (
                p.kernel[ix(*j, slice(grp * cout, (grp + 1) * cout))]
            )
    y = (p.x.reshape(p.x.shape[0], -1) @ ct.T).reshape(p.x.shape[0], *g.out_shape, g.out_channels)
    return MatrixView(shape, blocks, description, ct, _finish(layer, y, p))


def single_channel(layer: TransposedConv, f: int, c: int) -> TransposedConv:
    """``layer`` restricted to output channel ``f`` and input channel ``c`` (of ``f``'s group),
    no bias or activation, same strides, dilation, crop rule and data format: a small problem
    whose ``Cᵀ`` can be drawn and built."""
    g = f // (layer.filters // layer.groups)
    local = c - g * (layer.in_channels // layer.groups)
    if not 0 <= local < layer.kernel.shape[-1]:
        raise ValueError(f"input channel c={c} is not in the group of output channel f={f}")
    return TransposedConv(
        layer.kernel[..., f : f + 1, local : local + 1],
        None,
        layer.strides,
        layer.dilation,
        layer.crops,
        data_format=layer.data_format,
    )


def convolution(layer: TransposedConv, y: np.ndarray, spatial: Sequence[int]) -> np.ndarray:
    """The ordinary convolution whose transpose ``layer`` is: ``z = C y``.

    ``y`` canonical ``(N, *out, filters)`` -> ``z`` canonical ``(N, *spatial, in_channels)``:
    ``z[i, c] = Σ_j Σ_f y[i*stride + j*dilation - crop_start, f] · W[j, f, c]`` (strided,
    dilated, cropped like the layer; written per tap with :meth:`Axis.tap_range`).
    """
    g = layer.geometry(spatial)
    cin, cout = g.in_per_group, g.out_per_group
    z = np.zeros((y.shape[0], *g.in_shape, g.in_channels), y.dtype)
    kernel = layer.kernel.astype(y.dtype)
    for j in np.ndindex(*layer.kernel_size):
        ranges = [a.tap_range(t) for a, t in zip(g.axes, j, strict=True)]
        if any(count == 0 for _, count, _ in ranges):
            continue
        src = tuple(
            slice(o0, o0 + (cnt - 1) * a.stride + 1, a.stride)
            for (_, cnt, o0), a in zip(ranges, g.axes, strict=True)
        )
        dst = tuple(slice(i0, i0 + cnt) for i0, cnt, _ in ranges)
        for grp in range(g.groups):
            z[ix(slice(None), *dst, slice(grp * cin, (grp + 1) * cin))] += (
                y[ix(slice(None), *src, slice(grp * cout, (grp + 1) * cout))]
                @ kernel[ix(*j, slice(grp * cout, (grp + 1) * cout))]
            )
    return z


def gradient_check(
    layer: TransposedConv, x: np.ndarray, samples: int = 16, seed: int = 0
) -> tuple[float, float]:
    """Check numerically that ``layer`` (without bias/activation) is the gradient of
    ``L(y) = <x, conv(y)>`` with respect to ``y``, ``conv`` = :func:`convolution`.

    Returns ``(max |finite difference - tconv(x)|`` over ``samples`` random coordinates of
    ``y``, ``|<x, conv(v)> - <tconv(x), v>|`` relative, for a random ``v``)``, in float64.
    """
    x64 = layer.to_canonical(np.asarray(x, np.float64))
    g = layer.geometry(x64.shape[1:-1])
    linear = ops.fast(x64, layer.kernel.astype(np.float64), g)
    rng = np.random.default_rng(seed)
    y0 = rng.standard_normal(linear.shape)

    def loss(y: np.ndarray) -> float:
        return float(np.sum(x64 * convolution(layer, y, g.in_shape)))

    worst = 0.0
    flat = rng.choice(linear.size, size=min(samples, linear.size), replace=False)
    for k in flat:
        e = np.zeros(linear.shape)
        e.reshape(-1)[k] = 1.0
        fd = (loss(y0 + e) - loss(y0 - e)) / 2
        worst = max(worst, abs(fd - float(linear.reshape(-1)[k])))
    v = rng.standard_normal(linear.shape)
    lhs, rhs = loss(v), float(np.sum(linear * v))
    return worst, abs(lhs - rhs) / max(1.0, abs(rhs))


@dataclass(frozen=True)
class Phase:
    """Output positions ``o ≡ residue (mod stride)`` per axis: an ordinary stride-1 convolution
    of the input with the sub-kernel ``taps`` (kernel positions), input shifted by ``offsets``
    per tap (``y[residue + stride*m] = Σ_t x[m + offsets[t]] · W[taps[t]]``)."""

    residue: tuple[int, ...]
    shape: tuple[int, ...]
    taps: tuple[tuple[int, ...], ...]
    offsets: tuple[tuple[int, ...], ...]


def phase_table(geometry: Geometry) -> list[Phase]:
    """The ``prod(strides)`` phases of a geometry (those with output positions), from
    :meth:`Axis.taps`: a phase uses the taps that reach any of its positions."""
    per_axis = []
    for a in geometry.axes:
        options = []
        for r in range(min(a.stride, a.out)):
            offsets: dict[int, int] = {}
            for m, o in enumerate(range(r, a.out, a.stride)):
                for i, j in a.taps(o):
                    offsets.setdefault(j, i - m)
            options.append((r, len(range(r, a.out, a.stride)), sorted(offsets.items())))
        per_axis.append(options)
    phases = []
    for combo in itertools.product(*per_axis):
        taps = list(itertools.product(*[[j for j, _ in c[2]] for c in combo]))
        offs = list(itertools.product(*[[off for _, off in c[2]] for c in combo]))
        phases.append(
            Phase(tuple(c[0] for c in combo), tuple(c[1] for c in combo), tuple(taps), tuple(offs))
        )
    return phases


@dataclass(frozen=True)
class PhaseView:
    phases: tuple[Phase, ...]
    output: np.ndarray


def phases(layer: TransposedConv, x: np.ndarray) -> PhaseView:
    """Compute the output phase by phase, each as a stride-1 convolution with its sub-kernel."""
    p = _prepare(layer, x)
    g = p.geometry
    y = np.zeros((p.x.shape[0], *g.out_shape, g.out_channels), p.dtype)
    table = phase_table(g)
    cin, cout = g.in_per_group, g.out_per_group
    for ph in table:
        part = np.zeros((p.x.shape[0], *ph.shape, g.out_channels), p.dtype)
        for j, off in zip(ph.taps, ph.offsets, strict=True):
            shifted = window(p.x, off, ph.shape)
            for grp in range(g.groups):
                part[..., grp * cout : (grp + 1) * cout] += (
                    shifted[..., grp * cin : (grp + 1) * cin]
                    @ p.kernel[ix(*j, slice(grp * cout, (grp + 1) * cout))].T
                )
        dst = tuple(slice(r, None, a.stride) for r, a in zip(ph.residue, g.axes, strict=True))
        y[ix(slice(None), *dst)] = part
    return PhaseView(tuple(table), _finish(layer, y, p))


def agreement(layer: TransposedConv, x: np.ndarray) -> dict[str, float]:
    """Max |view - layer(x)| for every view (and the two engine methods), in float64."""
    y = layer(x).astype(np.float64)
    outputs = {
        "reference": layer(x, method="reference"),
        "scatter": scatter(layer, x).output,
        "gather": gather(layer, x),
        "zero insertion": zero_insertion(layer, x).output,
        "phases": phases(layer, x).output,
    }
    m = matrix(layer, x)
    if m.output is not None:
        outputs["matrix"] = m.output
    return {
        name: float(np.max(np.abs(out.astype(np.float64) - y), initial=0.0))
        for name, out in outputs.items()
    }
