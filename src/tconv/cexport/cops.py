"""C99 for each op of a :class:`tconv.graph.Graph`, one batch item at a time.

:func:`step_source` turns one node (channels-last item shapes, see :mod:`tconv.graph.graph`)
into a ``static void`` function and the call that runs it, plus the weights it reads.
Transposed convolutions, stride-1 convolutions and dense layers run the fast stride-phase
kernel of :mod:`tconv.kernels.emit` (a stride-1 forward convolution is a transposed
convolution of the flipped kernel, cropped by ``span - 1 - pad``; a dense layer one of kernel 1
over the rows); with the fast style, stride-1 convolutions of at most :data:`SMALL_COUT`
filters a loop vectorized over a row's pixels (:func:`_few_filters`); depthwise convolutions a
loop vectorized over the channels; strided forward convolutions a direct loop vectorized over
output channels.  Every other op is a plain loop over the item.  With ``style="reference"`` or
``"scatter"`` the steps run as transposed convolutions take that style's loops instead.  A
step whose output is a slice of a concatenation (``row`` > 0,
:func:`tconv.graph.planner.slices`) stores its pixels ``row`` floats apart.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..geometry import Axis, Geometry
from ..graph import Node
from ..kernels import cactivations, emit
from ..kernels.spec import Spec
from .spec import from_layer


@dataclass
class Step:
    """The C of one node: definitions, the call (``W``: the weights, ``x0..``: inputs, ``y``:
    the output, all of one item), the weights it reads, and what it does in words."""

    code: str
    call: str
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    how: str = ""
    libm: bool = False
    batch_call: str = ""
    """The call on ``batch`` consecutive items at once (``x0``, ``y``: the first item's), for
    steps whose kernel takes a batch (the convolution family); empty otherwise."""


def _floats(values: Sequence[float]) -> str:
    return ", ".join(emit.c_float(float(v)) for v in values)


def _f(value: float) -> str:
    return emit.c_float(float(np.float32(value)))


def _pad3(shape: Sequence[int]) -> list[int]:
    """Spatial sizes padded to three axes in front (with 1s)."""
    return [1] * (3 - len(shape)) + list(shape)


# --- the fast kernel ---------------------------------------------------------------------


KERNELS = {
    "fast": "fast stride-phase kernel",
    "reference": "reference gather loops",
    "scatter": "scatter loops",
}
"""How each style of :mod:`tconv.kernels.emit` computes a convolution-family step."""


def _kernel_step(
    prefix: str, spec: Spec, how: str, out_shape: tuple[int, ...], style: str, tasks: str = ""
) -> Step:
    """The step of a transposed convolution ``spec`` (a convolution-family node) in ``style``:
    ``how`` is completed with the kernel's name; ``tasks``: see :func:`step_source`."""
    code = emit.compute_source(spec, style, tasks)
    calls = {n: f"{prefix}_compute(W, x0, y, {n});" for n in ("1", "batch")}
    libm = cactivations.needs_libm(spec.activation)
    how = f"{how} ({KERNELS[style]})"
    if cactivations.is_rowwise(spec.activation):
        code += cactivations.definitions(spec.activation, prefix)
        last = out_shape[-1]
        rows = math.prod(out_shape) // last
        calls["1"] += f" {prefix}_{spec.activation}_rows(y, {rows}, {last});"
        calls["batch"] += f" {prefix}_{spec.activation}_rows(y, (ptrdiff_t)batch * {rows}, {last});"
        how += f"; {spec.activation} over the last axis after the store"
    return Step(code, calls["1"], emit.weight_blob(spec, style), how, libm, calls["batch"])


def _spec(
    prefix: str,
    geometry: Geometry,
    kernel: np.ndarray,
    bias: np.ndarray | None,
    activation: str,
    row: int = 0,
) -> Spec:
    return Spec(
        prefix,
        geometry,
        np.ascontiguousarray(kernel, np.float32),
        None if bias is None else np.asarray(bias, np.float32),
        activation,
        False,
        "keras",
        "keras",
        row,
    )


def _conv_as_transpose(
    prefix: str, node: Node, x: tuple[int, ...], style: str, row: int = 0
) -> Step:
    """A stride-1 forward convolution as the transposed convolution of the flipped kernel."""
    p = node.params
    kernel = node.weights["kernel"]  # (*k, cin_g, cout)
    rank = kernel.ndim - 2
    axes = []
    for n, k, d, (lo, hi) in zip(x[:-1], kernel.shape[:-2], p["dilation"], p["pads"], strict=True):
        span = d * (k - 1)
        axes.append(Axis(n, k, 1, d, span - lo, span - hi))
    flipped = kernel[(slice(None, None, -1),) * rank]
    canonical = np.swapaxes(flipped, -1, -2)  # (*k, cout, cin_g)
    geometry = Geometry(tuple(axes), x[-1], kernel.shape[-1], p["groups"])
    spec = _spec(prefix, geometry, canonical, node.weights.get("bias"), p["activation"], row)
    how = "stride-1 convolution run as the transposed convolution of its flipped kernel"
    return _kernel_step(prefix, spec, how, node.shape, style)


def _dense(prefix: str, node: Node, x: tuple[int, ...], style: str, row: int = 0) -> Step:
    kernel = node.weights["kernel"]  # (in, units)
    rows = math.prod(x[:-1])
    geometry = Geometry((Axis(rows, 1, 1, 1, 0, 0),), kernel.shape[0], kernel.shape[1])
    spec = _spec(
        prefix, geometry, kernel.T[None], node.weights.get("bias"), node.params["activation"], row
    )
    how = f"dense on {rows} row(s): a kernel-1 convolution"
    return _kernel_step(prefix, spec, how, node.shape, style)


def _conv_transpose(
    prefix: str, node: Node, x: tuple[int, ...], style: str, tasks: str, row: int = 0
) -> Step:
    spec = dataclasses.replace(from_layer(node.params["op"], x, prefix), out_row=row)
    return _kernel_step(prefix, spec, "transposed convolution", node.shape, style, tasks)


# --- direct strided convolution ----------------------------------------------------------


def _window_step(
    prefix: str,
    node: Node,
    x: tuple[int, ...],
    row: int,
    *,
    comment: str,
    enums: str,
    ints: str,
    body: str,
    how: str,
) -> Step:
    """A forward convolution as one loop over the output pixels (OpenMP) and, per pixel, a walk
    over the taps inside the image: ``xp`` is the input pixel a tap reads (``CIN`` floats),
    ``wp`` the tap's weights (``CING * COUT``), ``body`` adds them into ``acc[COUT]``, which is
    stored (bias, activation) ``ROW`` floats apart.  ``enums``/``ints``: the caller's own
    constants and loop variables."""
    p = node.params
    kernel = node.weights["kernel"]  # (*k, cin_g, cout)
    rank = kernel.ndim - 2
    cin_g, cout = kernel.shape[-2:]
    ins, outs = _pad3(x[:-1]), _pad3(node.shape[:-1])
    ks, ss, ds = _pad3(kernel.shape[:-2]), _pad3(p["strides"]), _pad3(p["dilation"])
    los = [0] * (3 - rank) + [lo for lo, _ in p["pads"]]
    bias = node.weights.get("bias")
    act = p["activation"]
    rowwise = cactivations.is_rowwise(act)
    store = cactivations.store_expr("linear" if rowwise else act, prefix, "acc[f]")
    defs = cactivations.definitions("linear" if rowwise else act, prefix)
    if rowwise:
        defs += cactivations.definitions(act, prefix)
    init = "W[KCOUNT + f]" if bias is not None else "0.0f"
    code = f"""{defs}
/* {comment} */
static void {prefix}(const float *W, const float *x, float *y)
{{
    enum {{ I0 = {ins[0]}, I1 = {ins[1]}, I2 = {ins[2]}, O0 = {outs[0]}, O1 = {outs[1]},
           O2 = {outs[2]}, K0 = {ks[0]}, K1 = {ks[1]}, K2 = {ks[2]}, CIN = {x[-1]},
           CING = {cin_g}, COUT = {cout}, {enums},
           ROW = {row or cout}, KCOUNT = {kernel.size} }};
    const int s0 = {ss[0]}, s1 = {ss[1]}, s2 = {ss[2]}, d0 = {ds[0]}, d1 = {ds[1]}, d2 = {ds[2]};
    const int p0 = {los[0]}, p1 = {los[1]}, p2 = {los[2]};
    long o;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if({math.prod(outs) * kernel.size} > 1000000L)
#endif
    for (o = 0; o < (long)O0 * O1 * O2; ++o) {{
        const int o0 = (int)(o / ((long)O1 * O2)), o1 = (int)(o / O2 % O1), o2 = (int)(o % O2);
        float acc[COUT]; /* not in y: the compiler need not fear that y overlaps x or W */
        int f, a, b, c, {ints};
        for (f = 0; f < COUT; ++f) acc[f] = {init};
        for (a = 0; a < K0; ++a) {{
            const int i0 = o0 * s0 + a * d0 - p0;
            if (i0 < 0 || i0 >= I0) continue;
            for (b = 0; b < K1; ++b) {{
                const int i1 = o1 * s1 + b * d1 - p1;
                if (i1 < 0 || i1 >= I1) continue;
                for (c = 0; c < K2; ++c) {{
                    const int i2 = o2 * s2 + c * d2 - p2;
                    const float *xp, *wp;
                    if (i2 < 0 || i2 >= I2) continue;
                    xp = x + (((ptrdiff_t)i0 * I1 + i1) * I2 + i2) * CIN;
                    wp = W + (ptrdiff_t)((a * K1 + b) * K2 + c) * CING * COUT;
{body}
                }}
            }}
        }}
        for (f = 0; f < COUT; ++f) y[o * ROW + f] = {store};
    }}
}}
"""
    call = f"{prefix}(W, x0, y);"
    if rowwise:
        call += f" {prefix}_{act}_rows(y, {math.prod(node.shape[:-1])}, {cout});"
    parts = [kernel.reshape(-1)] + ([bias.reshape(-1)] if bias is not None else [])
    return Step(
        code, call, np.concatenate(parts).astype(np.float32), how, cactivations.needs_libm(act)
    )


def _direct_conv(prefix: str, node: Node, x: tuple[int, ...], row: int = 0) -> Step:
    """``y[o, f] = act(b[f] + sum_taps sum_c x[o*s + t*d - lo, g*CG + c] * w[t, c, f])``."""
    groups = node.params["groups"]
    body = """\
                    for (g = 0; g < G; ++g)
                        for (k = 0; k < CING; ++k) {
                            const float v = xp[g * CING + k];
                            const float *wr = wp + (ptrdiff_t)k * COUT + g * COUTG;
                            float *ar = acc + g * COUTG;
                            for (f = 0; f < COUTG; ++f) ar[f] += v * wr[f];
                        }"""
    return _window_step(
        prefix, node, x, row,
        comment=f"Direct convolution, stride {tuple(node.params['strides'])}: per output pixel, "
        "the taps inside the\n * image, each input channel broadcast against a contiguous row "
        "of COUT weights.",
        enums=f"COUTG = {node.weights['kernel'].shape[-1] // groups}, G = {groups}",
        ints="g, k",
        body=body,
        how="direct strided convolution (vectorized over output channels)",
    )  # fmt: skip


SMALL_COUT = 4
"""Stride-1 convolutions of at most this many filters run :func:`_few_filters`: the
register-blocked kernel vectorizes over filters, most of whose lanes would be idle."""
STACK_FLOATS = 4096
"""The most floats :func:`_few_filters` keeps on the stack (its ring of transposed input rows
and its accumulators: 16 KB)."""


def _stack_floats(node: Node, x: tuple[int, ...]) -> int:
    kernel = node.weights["kernel"]
    ks = _pad3(kernel.shape[:-2])
    width = _pad3(node.shape[:-1])[2]
    return ks[1] * x[-1] * (width + ks[2] - 1) + kernel.shape[-1] * width


def _few(node: Node, x: tuple[int, ...]) -> bool:
    """Whether :func:`_few_filters` runs ``node``: at most :data:`SMALL_COUT` filters, rank 1 or
    2, groups 1, stride and dilation 1, and its stack within :data:`STACK_FLOATS`."""
    p = node.params
    return (
        node.weights["kernel"].shape[-1] <= SMALL_COUT
        and len(x) <= 3
        and p["groups"] == 1
        and all(s == 1 for s in p["strides"])
        and all(d == 1 for d in p["dilation"])
        and _stack_floats(node, x) <= STACK_FLOATS
    )


def _few_filters(prefix: str, node: Node, x: tuple[int, ...], row: int | None = None) -> Step:
    """A stride-1 convolution of few filters, vectorized over the output pixels of a row:
    each input row is transposed once into a ring of the kernel's height (channels first, the
    padding columns zero), then ``acc[f][o] += xt[k][o + c] * w[f, b, c, k]`` over the taps
    ``(b, c)`` and channels ``k`` runs along the row.  Output rows are cut into chunks (each
    refills its ring), the sum's order is the same in every chunk: bit-identical under
    OpenMP.  ``row``: floats between consecutive output pixels (default: the filters)."""
    p = node.params
    kernel = node.weights["kernel"]  # (*k, cin, cout)
    rank = kernel.ndim - 2
    cin, cout = kernel.shape[-2:]
    ins, outs = _pad3(x[:-1]), _pad3(node.shape[:-1])
    ks = _pad3(kernel.shape[:-2])
    los = [0] * (3 - rank) + [lo for lo, _ in p["pads"]]
    bias = node.weights.get("bias")
    act = p["activation"]
    rowwise = cactivations.is_rowwise(act)
    defs = cactivations.definitions(act, prefix)
    store = "v[f]" if rowwise else cactivations.store_expr(act, prefix, "v[f]")
    finish = (
        f"{prefix}_{act}_rows(v, 1, COUT); /* over the pixel's COUT values */" if rowwise else ""
    )
    init = "W[KCOUNT + f]" if bias is not None else "0.0f"
    rows = outs[0] * outs[1]
    chunks = max(1, min(16, rows // 4))
    code = f"""{defs}
/* Stride-1 convolution of {cout} filter(s), vectorized over the output pixels of a row: each
 * input row is transposed once into a ring of K1 rows (channels first, zero padding columns),
 * then acc[f][o] += xt[k][o + c] * w[f][b][c][k] along the row for every tap and channel.
 * Stack: the ring (K1 * CIN * PW floats) and the accumulators (COUT * O2 floats). */
static void {prefix}(const float *W, const float *x, float *y)
{{
    enum {{ I1 = {ins[1]}, I2 = {ins[2]}, O0 = {outs[0]}, O1 = {outs[1]}, O2 = {outs[2]},
           K1 = {ks[1]}, K2 = {ks[2]}, CIN = {cin}, COUT = {cout}, P1 = {los[1]},
           P2 = {los[2]}, PW = O2 + K2 - 1, ROW = {row or cout}, ROWS = {rows},
           CHUNKS = {chunks}, KCOUNT = {kernel.size} }};
    int chunk;
#ifdef _OPENMP
#ifdef TCONV_PARALLEL_MACS
#pragma omp parallel for schedule(static) \\
    if ({rows * kernel.size * outs[2]}L >= (long)(TCONV_PARALLEL_MACS))
#else
#pragma omp parallel for schedule(static) if({rows * kernel.size * outs[2]}L >= 1000000L)
#endif
#endif
    for (chunk = 0; chunk < CHUNKS; ++chunk) {{
        float xt[K1][CIN][PW], acc[COUT][O2];
        const int first = (int)((long)ROWS * chunk / CHUNKS);
        const int last = (int)((long)ROWS * (chunk + 1) / CHUNKS);
        int r, b, c, f, k, o, i;
        for (b = 0; b < K1; ++b)
            for (k = 0; k < CIN; ++k)
                for (o = 0; o < PW; ++o) xt[b][k][o] = 0.0f;
        for (r = first; r < last; ++r) {{
            const int o0 = r / O1, o1 = r % O1;
            /* input rows o1 - P1 + b: all of them for a chunk's first row, then the new one */
            for (b = r == first || o1 == 0 ? 0 : K1 - 1; b < K1; ++b) {{
                const int i1 = o1 - P1 + b;
                if (i1 >= 0 && i1 < I1) {{
                    const float *xr = x + ((ptrdiff_t)o0 * I1 + i1) * I2 * CIN;
                    float (*t)[PW] = xt[i1 % K1];
                    for (i = 0; i < I2; ++i)
                        for (k = 0; k < CIN; ++k) t[k][P2 + i] = xr[(ptrdiff_t)i * CIN + k];
                }}
            }}
            for (f = 0; f < COUT; ++f)
                for (o = 0; o < O2; ++o) acc[f][o] = {init};
            for (b = 0; b < K1; ++b) {{
                const int i1 = o1 - P1 + b;
                if (i1 < 0 || i1 >= I1) continue;
                for (c = 0; c < K2; ++c)
                    for (k = 0; k < CIN; ++k) {{
                        const float *xk = xt[i1 % K1][k] + c;
                        for (f = 0; f < COUT; ++f) {{
                            const float w = W[((ptrdiff_t)(f * K1 + b) * K2 + c) * CIN + k];
                            float *a = acc[f];
                            for (o = 0; o < O2; ++o) a[o] += xk[o] * w;
                        }}
                    }}
            }}
            for (o = 0; o < O2; ++o) {{
                float v[COUT];
                float *yp = y + ((ptrdiff_t)r * O2 + o) * ROW;
                for (f = 0; f < COUT; ++f) v[f] = acc[f][o];
                {finish}
                for (f = 0; f < COUT; ++f) yp[f] = {store};
            }}
        }}
    }}
}}
"""
    packed = np.moveaxis(kernel, -1, 0).reshape(-1)  # (cout, *k, cin)
    parts = [packed] + ([bias.reshape(-1)] if bias is not None else [])
    how = f"stride-1 convolution of {cout} filter(s) vectorized over the pixels of a row"
    if rowwise:
        how += f"; {act} over each pixel's {cout} values at the store"
    return Step(
        code,
        f"{prefix}(W, x0, y);",
        np.concatenate(parts).astype(np.float32),
        how,
        cactivations.needs_libm(act),
    )


def _depthwise(prefix: str, node: Node, x: tuple[int, ...], row: int = 0) -> Step:
    """One group per input channel (``DepthwiseConv``, a separable convolution's first step):
    ``y[o, c*M + m] = act(b + sum_taps x[o*s + t*d - lo, c] * w[t, c*M + m])``, the channel
    loop innermost and contiguous, so that it vectorizes."""
    mult = node.weights["kernel"].shape[-1] // x[-1]
    body = """\
                    if (M == 1) {
                        for (ch = 0; ch < CIN; ++ch) acc[ch] += xp[ch] * wp[ch];
                    } else {
                        for (ch = 0; ch < CIN; ++ch)
                            for (m = 0; m < M; ++m) acc[ch * M + m] += xp[ch] * wp[ch * M + m];
                    }"""
    return _window_step(
        prefix, node, x, row,
        comment="Depthwise convolution: per output pixel, each tap inside the image adds "
        f"x[pixel, c] *\n * w[tap, c*M + m] over the contiguous channels (M = {mult} per input "
        "channel).",
        enums=f"M = {mult}",
        ints="ch, m",
        body=body,
        how="depthwise convolution (vectorized over the channels)",
    )  # fmt: skip


# --- element-wise ------------------------------------------------------------------------

_UNARY = {
    "leaky_relu": "v >= 0.0f ? v : {slope} * v",
    "elu": "v > 0.0f ? v : {alpha} * expm1f(v)",
}


def _unary(prefix: str, node: Node, x: tuple[int, ...], row: int = 0) -> Step:
    p, op = node.params, node.op
    count = node.size
    weights = np.zeros(0, np.float32)
    libm = False
    extra = ""
    if op == "activation":
        name = p["name"]
        if cactivations.is_rowwise(name):
            code = cactivations.definitions(name, prefix)
            call = (
                f"if (y != x0) {{ memcpy(y, x0, sizeof(float) * {count}); }} "
                f"{prefix}_{name}_rows(y, {count // x[-1]}, {x[-1]});"
            )
            return Step(code, call, weights, f"{name} over the last axis", True)
        extra = cactivations.definitions(name, prefix)
        expr = cactivations.store_expr(name, prefix, "v")
        libm = cactivations.needs_libm(name)
    elif op == "relu":
        slope, top, t = p["negative_slope"], p["max_value"], p["threshold"]
        if slope != 0 and top is None and t == 0:
            expr = f"v >= 0.0f ? v : {_f(slope)} * v"
        else:
            clip = "" if top is None else f"\n    r = r > {_f(top)} ? {_f(top)} : r;"
            neg = (
                "" if slope == 0 else f" - {_f(slope)} * ({_f(t)} - v > 0.0f ? {_f(t)} - v : 0.0f)"
            )
            extra = (
                f"/* Keras' relu: x above the threshold, clipped at max_value, minus "
                f"negative_slope times how far x is below the threshold */\n"
                f"static float {prefix}_relu(float v)\n{{\n"
                f"    float r = v > {_f(t)} ? v : 0.0f;{clip}\n    return r{neg};\n}}\n"
            )
            expr = f"{prefix}_relu(v)"
    elif op in _UNARY:
        expr = _UNARY[op].format(slope=_f(p.get("negative_slope", 0)), alpha=_f(p.get("alpha", 1)))
        libm = op == "elu"
    elif op == "prelu":
        alpha = np.broadcast_to(node.weights["alpha"], node.shape).reshape(-1)
        loop = _item_loop(
            node,
            row,
            lambda y: (
                f"const float v = x[i];\n        y[{y}] = (v > 0.0f ? v : 0.0f) - W[i] * "
                "(-v > 0.0f ? -v : 0.0f);"
            ),
        )
        return Step(
            f"static void {prefix}(const float *W, const float *x, float *y)\n{{\n{loop}}}\n",
            f"{prefix}(W, x0, y);",
            alpha.astype(np.float32),
            "PReLU, alpha per element",
        )
    elif op == "rescale":
        scale = np.broadcast_to(p["scale"], node.shape).reshape(-1)
        offset = np.broadcast_to(p["offset"], node.shape).reshape(-1)
        loop = _item_loop(node, row, lambda y: f"y[{y}] = x[i] * W[i] + W[{count} + i];")
        return Step(
            f"static void {prefix}(const float *W, const float *x, float *y)\n{{\n{loop}}}\n",
            f"{prefix}(W, x0, y);",
            np.concatenate([scale, offset]).astype(np.float32),
            "x * scale + offset",
        )
    else:  # pragma: no cover - step_source dispatches only the ops above here
        raise ValueError(op)
    step = _loop(prefix, node, row, expr, f"{op} element by element")
    step.code = extra + step.code
    step.libm = step.libm or libm
    return step


def _item_loop(node: Node, row: int, body: Callable[[str], str]) -> str:
    """C that visits the item's elements in order, ``long i`` the flat index; ``body(Y)`` is
    the statement for element ``i``, storing to ``y[Y]``: ``Y`` is ``i``, or, with the output's
    pixels ``row`` floats apart (a concatenation's channel slice), ``i`` plus the gaps of the
    pixels before."""
    count, channels = node.size, node.shape[-1]
    if not row:
        return f"    long i;\n    for (i = 0; i < {count}; ++i) {{\n        {body('i')}\n    }}\n"
    return (
        f"    long px, i;\n    for (px = 0; px < {count // channels}; ++px)\n"
        f"        for (i = px * {channels}; i < (px + 1) * {channels}; ++i) {{\n"
        f"            {body(f'i + px * {row - channels}')}\n        }}\n"
    )


def _loop(prefix: str, node: Node, row: int, expr: str, how: str) -> Step:
    loop = _item_loop(node, row, lambda y: f"const float v = x[i];\n        y[{y}] = {expr};")
    code = f"static void {prefix}(const float *x, float *y)\n{{\n{loop}}}\n"
    return Step(code, f"{prefix}(x0, y);", how=how, libm="expm1f" in expr)


def _batch_norm(prefix: str, node: Node, x: tuple[int, ...], row: int = 0) -> Step:
    """``y = x * inv[c] + shift[c]`` with Keras' ``inv = gamma / sqrt(var + eps)``, ``shift =
    beta - mean * inv`` (float32, as Keras computes them); loops over (outer, channel, inner)
    with no index arithmetic per element; ``row``: floats between the output's pixels."""
    w = node.weights
    eps = np.float32(node.params["epsilon"])
    inv = (np.float32(1) / np.sqrt(w["variance"] + eps)).astype(np.float32)
    if "gamma" in w:
        inv = inv * w["gamma"]
    shift = -w["mean"] * inv
    if "beta" in w:
        shift = shift + w["beta"]
    axis = node.params["axis"]
    channels, last = node.shape[axis], node.shape[-1]
    # loops (outer, channel, mid, lane), a pixel (all but the last axis) per (o, c, m); on the
    # last axis the lanes are the channels themselves
    if axis == len(node.shape) - 1:
        outer, ch, mid, scale, shift_at = node.size // last, 1, 1, "W[l]", "W[LANES + l]"
    else:
        outer, ch, mid = math.prod(node.shape[:axis]), channels, node.size // last
        mid //= outer * channels
        scale, shift_at = "W[c]", "W[CH + c]"
    code = f"""static void {prefix}(const float *W, const float *x, float *y)
{{
    enum {{ OUTER = {outer}, CH = {ch}, MID = {mid}, LANES = {last}, ROW = {row or last} }};
    long o;
    for (o = 0; o < OUTER; ++o) {{
        int c, m, l;
        for (c = 0; c < CH; ++c)
            for (m = 0; m < MID; ++m) {{
                const ptrdiff_t pixel = ((ptrdiff_t)o * CH + c) * MID + m;
                const float *xp = x + pixel * LANES;
                float *yp = y + pixel * ROW;
                for (l = 0; l < LANES; ++l) yp[l] = xp[l] * {scale} + {shift_at};
            }}
    }}
}}
"""
    blob = np.concatenate([inv, shift]).astype(np.float32)
    return Step(code, f"{prefix}(W, x0, y);", blob, "BatchNormalization with moving statistics")


@dataclass
class _Lanes:
    """The normalized axes of an item as ``rows`` lanes of ``length`` values: lane ``r``
    starts at ``start`` (a C expression of ``r``), its value ``k`` is at ``at`` (of ``k``)
    from there; ``kind`` names the row pass of :func:`tconv.kernels.cactivations.row_pass`,
    ``code`` the helpers the expressions call."""

    kind: str
    rows: int
    length: int
    start: str
    at: str
    code: str = ""
    inner: int = 1

    @property
    def args(self) -> str:
        """The row pass's arguments after ``y``."""
        tail = f", {self.inner}" if self.kind == "lanes" else ""
        return f"{self.rows}, {self.length}{tail}"


def _offset_function(name: str, sizes: list[int], strides: list[int], var: str) -> str:
    """``static ptrdiff_t name(ptrdiff_t var)``: the offset of flat index ``var`` over axes of
    ``sizes`` (C order) whose elements are ``strides`` apart."""
    lines = [f"static ptrdiff_t {name}(ptrdiff_t {var})", "{", "    ptrdiff_t off = 0;"]
    for n, st in zip(reversed(sizes), reversed(strides), strict=True):
        lines.append(f"    off += ({var} % {n}) * {st};")
        lines.append(f"    {var} /= {n};")
    lines += ["    return off;", "}", ""]
    return "\n".join(lines)


def _lanes(prefix: str, node: Node, axes: Sequence[int]) -> _Lanes:
    """The lanes of ``node``'s item over the normalized ``axes``: neighbouring axes (anywhere)
    as rows or strided lanes; any other set through offset functions (a few integer divisions
    per value)."""
    shape = node.shape
    axes = sorted(axes)
    first, stop = axes[0], axes[-1] + 1
    length = math.prod(shape[a] for a in axes)
    rows = node.size // length
    if axes == list(range(first, stop)):
        inner = math.prod(shape[stop:])
        if inner == 1:
            return _Lanes("rows", rows, length, "r * LEN", "k")
        return _Lanes("lanes", rows, length, "(r / IN) * LEN * IN + r % IN", "k * IN", inner=inner)
    strides = [math.prod(shape[a + 1 :]) for a in range(len(shape))]
    kept = [a for a in range(len(shape)) if a not in axes]
    code = _offset_function(
        f"{prefix}_start", [shape[a] for a in kept], [strides[a] for a in kept], "r"
    ) + _offset_function(f"{prefix}_at", [shape[a] for a in axes], [strides[a] for a in axes], "k")
    return _Lanes("spread", rows, length, f"{prefix}_start(r)", f"{prefix}_at(k)", code)


def _softmax(prefix: str, node: Node, x: tuple[int, ...]) -> Step:
    lanes = _lanes(prefix, node, node.params["axes"])
    code = lanes.code + cactivations.row_pass("softmax", prefix, lanes.kind)
    call = (
        f"if (y != x0) {{ memcpy(y, x0, sizeof(float) * {node.size}); }} "
        f"{prefix}_softmax_{lanes.kind}(y, {lanes.args});"
    )
    return Step(code, call, how=f"softmax over {lanes.rows} lanes ({lanes.kind})", libm=True)


def _layer_norm(prefix: str, node: Node, x: tuple[int, ...]) -> Step:
    """Keras' layer normalization per lane (the normalized axes): mean and variance in float32
    (two passes), ``inv = gamma / sqrt(var + eps)``, ``y = x * inv + (beta - mean * inv)``;
    ``rms_scaling`` is Keras' ``x / sqrt(var + eps) * gamma``.  ``gamma``/``beta`` hold one
    value per position of the normalized axes, in C order (as Keras reshapes them)."""
    p, w = node.params, node.weights
    lanes = _lanes(prefix, node, p["axes"])
    length = lanes.length
    gamma = w.get("gamma", np.ones(length, np.float32))
    beta = w.get("beta", np.zeros(length, np.float32))
    gamma = np.broadcast_to(gamma.reshape(-1), (length,))
    beta = np.broadcast_to(beta.reshape(-1), (length,))
    at = lanes.at
    if p["rms_scaling"]:
        body = f"row_y[{at}] = row_x[{at}] * inv * W[k];"
    else:
        body = (
            f"{{ const float sc = inv * W[k]; row_y[{at}] = row_x[{at}] * sc + "
            "(W[LEN + k] - mean * sc); }"
        )
    code = f"""{lanes.code}static void {prefix}(const float *W, const float *x, float *y)
{{
    enum {{ LEN = {length}, IN = {lanes.inner} }};
    long r;
    for (r = 0; r < {lanes.rows}; ++r) {{
        const ptrdiff_t start = {lanes.start};
        const float *row_x = x + start;
        float *row_y = y + start;
        float mean = 0.0f, var = 0.0f, inv;
        int k;
        for (k = 0; k < LEN; ++k) mean += row_x[{at}];
        mean /= (float)LEN;
        for (k = 0; k < LEN; ++k) var += (row_x[{at}] - mean) * (row_x[{at}] - mean);
        var /= (float)LEN;
        inv = 1.0f / sqrtf(var + {_f(p["epsilon"])});
        for (k = 0; k < LEN; ++k) {body}
    }}
}}
"""
    blob = np.concatenate([gamma, beta]).astype(np.float32)
    how = f"LayerNormalization over {lanes.rows} lanes ({lanes.kind})"
    return Step(code, f"{prefix}(W, x0, y);", blob, how, True)


def _broadcast_loops(
    out: tuple[int, ...], shapes: list[tuple[int, ...]], split_last: bool = False
) -> tuple[list[int], list[list[int]]]:
    """The output of a broadcasting merge as few nested loops: ``(sizes, strides)``, one size
    per loop and per input one stride per loop (0 where the input is broadcast).

    Input shapes are right-aligned with the output (Keras expands a lower-rank input at axis 1
    of the batch, i.e. puts 1s in front of its item).  Axes of size 1 go, and neighbouring axes
    on which every input is broadcast alike merge into one loop: inputs of the output's shape
    make one loop over the whole item.  ``split_last``: the last axis (if not of size 1) is a
    loop of its own.
    """
    padded = [(1,) * (len(out) - len(s)) + tuple(s) for s in shapes]
    sizes: list[int] = []
    kinds: list[tuple[bool, ...]] = []
    for axis, n in enumerate(out):
        if n == 1:
            continue
        kind = tuple(p[axis] == n for p in padded)  # True: the input runs along this axis
        if kinds and kinds[-1] == kind and not (split_last and axis == len(out) - 1):
            sizes[-1] *= n
        else:
            sizes.append(n)
            kinds.append(kind)
    if not sizes:
        sizes, kinds = [1], [tuple(True for _ in shapes)]
    strides = []
    for j in range(len(shapes)):
        step, own = 1, []
        for n, kind in zip(reversed(sizes), reversed(kinds), strict=True):
            own.append(step if kind[j] else 0)
            step *= n if kind[j] else 1
        strides.append(own[::-1])
    return sizes, strides


def _merge(prefix: str, node: Node, shapes: list[tuple[int, ...]], row: int = 0) -> Step:
    """``add`` ... ``minimum`` of inputs that equal the output's shape or broadcast to it;
    with ``row``, the output's pixels are stored ``row`` floats apart."""
    n = len(shapes)
    channels = node.shape[-1]
    sizes, strides = _broadcast_loops(node.shape, shapes, split_last=bool(row))
    depth = len(sizes)
    index = [
        " + ".join(f"i{a} * {st}" if st != 1 else f"i{a}" for a, st in enumerate(own) if st) or "0"
        for own in strides
    ]
    terms = [f"x{j}[{index[j]}]" for j in range(n)]
    op = node.op
    if op in ("add", "average"):
        expr = " + ".join(terms)
        if op == "average":
            expr = f"({expr}) / {_f(n)}"
    elif op == "subtract":
        expr = f"{terms[0]} - {terms[1]}"
    elif op == "multiply":
        expr = " * ".join(terms)
    else:
        cmp = ">" if op == "maximum" else "<"
        expr = terms[0]
        for t in terms[1:]:
            expr = f"({t} {cmp} {expr} ? {t} : {expr})"
    out_index = " + ".join(f"i{a} * {math.prod(sizes[a + 1 :])}" for a in range(depth - 1))
    out_index = f"{out_index} + i{depth - 1}" if out_index else f"i{depth - 1}"
    if row and channels == 1:  # one float a pixel: the flat index counts pixels
        out_index = f"({out_index}) * {row}"
    elif row:  # the last loop runs over the channels (split_last)
        pixel = " + ".join(
            f"i{a} * {math.prod(sizes[a + 1 : depth - 1])}" for a in range(depth - 1)
        )
        out_index = f"({pixel or '0'}) * {row} + i{depth - 1}"
    loops = "".join(
        f"{'    ' * (a + 1)}for (i{a} = 0; i{a} < {sizes[a]}; ++i{a})\n" for a in range(depth)
    )
    args = ", ".join(f"const float *x{i}" for i in range(n))
    code = (
        f"static void {prefix}({args}, float *y)\n{{\n"
        f"    long {', '.join(f'i{a}' for a in range(depth))};\n"
        f"{loops}{'    ' * (depth + 1)}y[{out_index}] = {expr};\n}}\n"
    )
    call = f"{prefix}({', '.join(f'x{i}' for i in range(n))}, y);"
    broadcast = any(s != node.shape for s in shapes)
    how = f"{op} of {n} inputs element by element" + (
        f" (broadcast: {', '.join(str(s) for s in shapes)} -> {node.shape})" if broadcast else ""
    )
    return Step(code, call, how=how)


def _concat(
    prefix: str,
    node: Node,
    shapes: list[tuple[int, ...]],
    row: int = 0,
    copied: Sequence[int] | None = None,
) -> Step:
    """Row copies of the inputs ``copied`` (default all; the others wrote their slices) into
    their places; ``row``: floats between the output's pixels (channel axis only)."""
    axis = node.params["axis"]
    outer = math.prod(node.shape[:axis])
    inner = math.prod(node.shape[axis + 1 :])
    wanted = range(len(shapes)) if copied is None else copied
    width = row or node.shape[axis] * inner
    lines = []
    at = 0
    for i, s in enumerate(shapes):
        chunk = s[axis] * inner
        if i in wanted:
            lines.append(
                f"        memcpy(y + o * {width} + {at}, x{i} + o * {chunk}, "
                f"sizeof(float) * {chunk});"
            )
        at += chunk
    args = ", ".join(f"const float *x{i}" for i in range(len(shapes)))
    call = f"{prefix}({', '.join(f'x{i}' for i in range(len(shapes)))}, y);"
    if not lines:
        how = f"concatenation on item axis {axis}: every input wrote its slice, nothing to copy"
        unused = " ".join(f"(void)x{i};" for i in range(len(shapes)))
        return Step("", f"{unused} (void)y;", how=how)
    uses = "".join(lines)
    unused = "".join(f"    (void)x{i};\n" for i in range(len(shapes)) if f"x{i} +" not in uses)
    code = (
        f"static void {prefix}({args}, float *y)\n{{\n    long o;\n{unused}"
        f"    for (o = 0; o < {outer}; ++o) {{\n" + "\n".join(lines) + "\n    }\n}\n"
    )
    how = f"concatenation on item axis {axis} (row copies"
    if len(wanted) < len(shapes):
        how += f" of input(s) {', '.join(map(str, wanted))}; the others wrote their slices"
    return Step(code, call, how=how + ")")


def _transpose(prefix: str, node: Node, x: tuple[int, ...], row: int = 0) -> Step:
    perm = node.params["perm"]
    rank = len(x)
    in_strides = [math.prod(x[a + 1 :]) for a in range(rank)]
    out = node.shape
    idx = " + ".join(
        f"(i / {math.prod(out[a + 1 :])} % {out[a]}) * {in_strides[perm[a]]}" for a in range(rank)
    )
    loop = _item_loop(node, row, lambda y: f"y[{y}] = x[{idx}];")
    code = f"static void {prefix}(const float *x, float *y)\n{{\n{loop}}}\n"
    return Step(code, f"{prefix}(x0, y);", how=f"transpose of the item axes {tuple(perm)}")


def _spatial_loop(
    prefix: str,
    node: Node,
    x: tuple[int, ...],
    body: str,
    how: str,
    weights: np.ndarray | None = None,
    libm: bool = False,
    row: int = 0,
) -> Step:
    """A loop over output pixels ``(o0, o1, o2)`` (padded to 3 axes) and channels ``ch``;
    ``body`` sets ``yp[...]`` (the pixel, ``row`` floats after the one before; default: the
    output's channels) from ``x`` with the sizes ``I0..I2``, ``O0..O2``, ``C``."""
    ins, outs = _pad3(x[:-1]), _pad3(node.shape[:-1])
    counters = "o0, o1, o2, ch" if re.search(r"\bch\b", body) else "o0, o1, o2"
    code = f"""static void {prefix}(const float *W, const float *x, float *y)
{{
    enum {{ I0 = {ins[0]}, I1 = {ins[1]}, I2 = {ins[2]}, O0 = {outs[0]}, O1 = {outs[1]},
           O2 = {outs[2]}, C = {x[-1]}, ROW = {row or node.shape[-1]} }};
    int {counters};
    (void)W;
    for (o0 = 0; o0 < O0; ++o0)
    for (o1 = 0; o1 < O1; ++o1)
    for (o2 = 0; o2 < O2; ++o2) {{
        float *yp = y + (((ptrdiff_t)o0 * O1 + o1) * O2 + o2) * ROW;
{body}
    }}
}}
"""
    blob = np.zeros(0, np.float32) if weights is None else weights
    return Step(code, f"{prefix}(W, x0, y);", blob, how, libm)


def _xp(i0: str, i1: str, i2: str) -> str:
    return f"x + (((ptrdiff_t)({i0}) * I1 + ({i1})) * I2 + ({i2})) * C"


def _pool(prefix: str, node: Node, x: tuple[int, ...], row: int = 0) -> Step:
    p = node.params
    rank = len(p["pool"])
    ks, ss = _pad3(p["pool"]), _pad3(p["strides"])
    los = [0] * (3 - rank) + [lo for lo, _ in p["pads"]]
    is_max = p["kind"] == "max"
    init = "-INFINITY" if is_max else "0.0f"
    acc = "acc[ch] = v > acc[ch] ? v : acc[ch];" if is_max else "acc[ch] += v;"
    finish = "yp[ch] = acc[ch];" if is_max else "yp[ch] = acc[ch] / (float)count;"
    body = f"""        /* the taps inside the image, each a contiguous row of C channels */
        float acc[C];
        int a, b, c, count = 0;
        for (ch = 0; ch < C; ++ch) acc[ch] = {init};
        for (a = 0; a < {ks[0]}; ++a)
        for (b = 0; b < {ks[1]}; ++b)
        for (c = 0; c < {ks[2]}; ++c) {{
            const int i0 = o0 * {ss[0]} + a - {los[0]}, i1 = o1 * {ss[1]} + b - {los[1]};
            const int i2 = o2 * {ss[2]} + c - {los[2]};
            const float *xp;
            if (i0 < 0 || i0 >= I0 || i1 < 0 || i1 >= I1 || i2 < 0 || i2 >= I2) continue;
            xp = {_xp("i0", "i1", "i2")};
            for (ch = 0; ch < C; ++ch) {{
                const float v = xp[ch];
                {acc}
            }}
            ++count;
        }}
        for (ch = 0; ch < C; ++ch) {finish}"""
    how = f"{p['kind']} pooling {tuple(p['pool'])}, stride {tuple(p['strides'])}"
    if not is_max:
        how += " (divides by the elements inside the image)"
    return _spatial_loop(prefix, node, x, body, how, libm=is_max, row=row)


def _upsample(prefix: str, node: Node, x: tuple[int, ...], row: int = 0) -> Step:
    p = node.params
    size = _pad3(p["size"])
    if p["interpolation"] == "nearest":
        src = _xp(f"o0 / {size[0]}", f"o1 / {size[1]}", f"o2 / {size[2]}")
        body = f"        memcpy(yp, {src}, sizeof(float) * C);"
        how = f"nearest upsampling {tuple(p['size'])}"
        return _spatial_loop(prefix, node, x, body, how, row=row)
    sh, sw = size[1], size[2]
    body = f"""        /* tf.image.resize bilinear: half-pixel centres, clamped at the edges */
        const float fy = ((float)o1 + 0.5f) / {sh}.0f - 0.5f;
        const float fx = ((float)o2 + 0.5f) / {sw}.0f - 0.5f;
        const float ly = floorf(fy), lx = floorf(fx);
        const float wy = fy - ly, wx = fx - lx;
        const int y0 = ly < 0.0f ? 0 : (int)ly, x0 = lx < 0.0f ? 0 : (int)lx;
        const int y1 = (int)ly + 1 > I1 - 1 ? I1 - 1 : ((int)ly + 1 < 0 ? 0 : (int)ly + 1);
        const int x1 = (int)lx + 1 > I2 - 1 ? I2 - 1 : ((int)lx + 1 < 0 ? 0 : (int)lx + 1);
        const float *a = {_xp("o0", "y0", "x0")}, *b = {_xp("o0", "y0", "x1")};
        const float *c = {_xp("o0", "y1", "x0")}, *d = {_xp("o0", "y1", "x1")};
        for (ch = 0; ch < C; ++ch) {{
            const float top = a[ch] + (b[ch] - a[ch]) * wx, bot = c[ch] + (d[ch] - c[ch]) * wx;
            yp[ch] = top + (bot - top) * wy;
        }}"""
    how = f"bilinear upsampling {tuple(p['size'])}"
    return _spatial_loop(prefix, node, x, body, how, libm=True, row=row)


def _pad_or_crop(prefix: str, node: Node, x: tuple[int, ...], row: int = 0) -> Step:
    rank = len(x) - 1
    if node.op == "pad":
        los = [0] * (3 - rank) + [lo for lo, _ in node.params["pads"]]
        src = [f"o{a} - {los[a]}" for a in range(3)]
        inside = " || ".join(f"{s} < 0 || {s} >= I{a}" for a, s in enumerate(src))
        body = (
            f"        if ({inside}) memset(yp, 0, sizeof(float) * C);\n"
            f"        else memcpy(yp, {_xp(*src)}, sizeof(float) * C);"
        )
        return _spatial_loop(prefix, node, x, body, "zero padding", row=row)
    los = [0] * (3 - rank) + [lo for lo, _ in node.params["crops"]]
    body = f"        memcpy(yp, {_xp(*(f'o{a} + {los[a]}' for a in range(3)))}, sizeof(float) * C);"
    return _spatial_loop(prefix, node, x, body, "cropping", row=row)


def _global_pool(prefix: str, node: Node, x: tuple[int, ...]) -> Step:
    is_max = node.params["kind"] == "max"
    pixels = math.prod(x[:-1])
    c = x[-1]
    init = "-INFINITY" if is_max else "0.0f"
    acc = "acc = v > acc ? v : acc;" if is_max else "acc += v;"
    done = "acc" if is_max else f"acc / {_f(pixels)}"
    code = (
        f"static void {prefix}(const float *x, float *y)\n{{\n    long i;\n    int ch;\n"
        f"    for (ch = 0; ch < {c}; ++ch) {{\n        float acc = {init};\n"
        f"        for (i = 0; i < {pixels}; ++i) {{ const float v = x[i * {c} + ch]; {acc} }}\n"
        f"        y[ch] = {done};\n    }}\n}}\n"
    )
    return Step(code, f"{prefix}(x0, y);", how=f"global {node.params['kind']} pooling", libm=is_max)


def _space_to_depth(prefix: str, node: Node, x: tuple[int, ...], row: int = 0) -> Step:
    p = node.params
    rank = len(x) - 1
    block, los = _pad3(p["block"]), [0] * (3 - rank) + list(p["pads"])
    src = [f"o{a} * {block[a]} + r{a} - {los[a]}" for a in range(3)]
    outside = " || ".join(f"i{a} < 0 || i{a} >= I{a}" for a in range(3))
    body = f"""        int r0, r1, r2;
        for (r0 = 0; r0 < {block[0]}; ++r0)
        for (r1 = 0; r1 < {block[1]}; ++r1)
        for (r2 = 0; r2 < {block[2]}; ++r2) {{
            const int i0 = {src[0]}, i1 = {src[1]}, i2 = {src[2]};
            float *dst = yp + ((r0 * {block[1]} + r1) * {block[2]} + r2) * C;
            if ({outside}) memset(dst, 0, sizeof(float) * C);
            else memcpy(dst, {_xp("i0", "i1", "i2")}, sizeof(float) * C);
        }}"""
    return _spatial_loop(prefix, node, x, body, f"space-to-depth by {tuple(p['block'])}", row=row)


def step_source(
    prefix: str,
    node: Node,
    shapes: list[tuple[int, ...]],
    style: str = "fast",
    tasks: str = "",
    row: int = 0,
    copied: Sequence[int] | None = None,
) -> Step:
    """The C of ``node`` (one item; ``shapes``: its inputs' item shapes), functions prefixed
    ``prefix``.  ``style`` (:data:`tconv.kernels.STYLES`) is the kernel of the steps run as
    transposed convolutions (transposed, stride-1 and dense layers); every other op has one
    form.  ``tasks`` (a layer's export: its C name) adds the fast style's task entry points
    ``tasks_task_count``/``tasks_tasks_with_weights`` to a transposed convolution
    (:func:`tconv.kernels.emit.tasks_source`).  ``row`` > 0: store the output's pixels ``row``
    floats apart (a slice of a concatenation, :func:`tconv.graph.planner.row_writer` ops);
    ``copied``: the inputs a concatenation copies.  Raises ``ValueError`` naming the layer for
    what the C export cannot do."""
    step = _step(prefix, node, shapes, style, tasks, row, copied)
    if row:
        step.how += f"; stores its pixels {row} floats apart, into a concatenation's slice"
    return step


def _step(
    prefix: str,
    node: Node,
    shapes: list[tuple[int, ...]],
    style: str,
    tasks: str,
    row: int,
    copied: Sequence[int] | None,
) -> Step:
    op = node.op
    x = shapes[0] if shapes else ()
    emit.check_style(style)
    if op == "conv_transpose":
        return _conv_transpose(prefix, node, x, style, tasks, row)
    if op == "dense":
        return _dense(prefix, node, x, style, row)
    if op == "conv":
        if node.weights["kernel"].shape[-2] == 1 and node.params["groups"] == x[-1] > 1:
            return _depthwise(prefix, node, x, row)
        if style == "fast" and _few(node, x):
            return _few_filters(prefix, node, x, row)
        if all(s == 1 for s in node.params["strides"]):
            return _conv_as_transpose(prefix, node, x, style, row)
        return _direct_conv(prefix, node, x, row)
    if op == "concat":
        return _concat(prefix, node, shapes, row, copied)
    if op == "pool":
        return _pool(prefix, node, x, row)
    if op == "batch_norm":
        return _batch_norm(prefix, node, x, row)
    if op == "upsample":
        return _upsample(prefix, node, x, row)
    if op in ("pad", "crop"):
        return _pad_or_crop(prefix, node, x, row)
    if op == "space_to_depth":
        return _space_to_depth(prefix, node, x, row)
    return _plain(prefix, node, shapes, row)


def _plain(prefix: str, node: Node, shapes: list[tuple[int, ...]], row: int = 0) -> Step:
    """The ops whose C is one loop over the item's elements (or rows); ``row``: the output's
    pixels that many floats apart (the element-wise ops, merges and transposes)."""
    op = node.op
    x = shapes[0] if shapes else ()
    if op in ("activation", "relu", "leaky_relu", "elu", "prelu", "rescale"):
        return _unary(prefix, node, x, row)
    if op == "layer_norm":
        return _layer_norm(prefix, node, x)
    if op == "softmax":
        return _softmax(prefix, node, x)
    if op in ("add", "subtract", "multiply", "average", "maximum", "minimum"):
        return _merge(prefix, node, shapes, row)
    if op == "transpose":
        return _transpose(prefix, node, x, row)
    if op == "global_pool":
        return _global_pool(prefix, node, x)
    raise ValueError(f"layer {node.layer!r} ({node.layer_class}): op {op!r} has no C export")
