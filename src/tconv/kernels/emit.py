"""C99 source for one layer in three styles, plus the weight array each style reads.

- ``reference``: the gather loops of the definition, one output element at a time::

      y[n, o, f] = act(bias[f] + sum over taps (i, j) with i*stride + j*dilation == o + crop_start
                                  of sum over c in group(f) of x[n, i, c] * kernel[j, f, c])

- ``fast``: stride-phase (sub-pixel) decomposition.  Output ``o`` of an axis has phase
  ``r = (o + crop_start) mod stride`` and ``q = (o + crop_start) div stride``; exactly the taps
  ``j`` with ``j*dilation mod stride == r`` reach it, from input ``i = q - m_j`` where
  ``m_j = (j*dilation - r) / stride``.  So no product touches an inserted zero and every output
  is written once.  ``MR`` consecutive outputs of one phase (across rows) and ``NR`` output
  channels are accumulated in registers (weights pre-packed ``[group][channel block][taps in
  phase order][in_channels][NR]``), then bias and activation are applied at the store.  Work is
  split into (group, channel block, phase of the outer axes, part of the phase's register
  blocks, item) tasks, which write disjoint outputs: ``#pragma omp parallel for`` over them
  under ``-fopenmp`` (from :data:`PARALLEL_MACS` multiply-adds a call on), sequential
  without.  With large weights the item varies fastest, so that the weights of a channel
  block and phase are read once from memory for the whole batch; with small ones the channel
  block does, so that its tasks share input rows in L2 (:func:`_task_order`).
- ``scatter``: the plain port most people write first (zero the output, scatter every input
  times every tap, then bias and activation); the baseline of the benchmark.

Every style reads a flat ``weights`` array: its kernel data (``kernel_data``) followed by the
bias when the layer has one.
"""

from __future__ import annotations

import math

import numpy as np

from . import cactivations, microkernel
from .microkernel import NR_MAX
from .spec import Spec

STYLES = ("fast", "reference", "scatter")
_NAMES = {1: ("w",), 2: ("h", "w"), 3: ("d", "h", "w")}


def check_style(style: str) -> str:
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got style={style!r}")
    return style


# ---------------------------------------------------------------------------- fast-style plan


def _phase_order(kernel: int, stride: int, dilation: int) -> list[int]:
    """Kernel taps sorted by phase ``j*dilation mod stride``, then by ``j``."""
    return sorted(range(kernel), key=lambda j: ((j * dilation) % stride, j))


def _pad3(spec: Spec) -> list[tuple[int, int, int, int, int, int]]:
    """Per axis (size, kernel, stride, dilation, crop_start, out), padded to 3 axes in front."""
    axes = [(a.size, a.kernel, a.stride, a.dilation, a.crop_start, a.out) for a in spec.axes]
    return [(1, 1, 1, 1, 0, 1)] * (3 - len(axes)) + axes


def _phase_sizes(stride: int, crop: int, out: int) -> list[int]:
    """Per phase ``r`` of an axis, how many outputs it holds: ``o`` with
    ``(o + crop) mod stride == r``, the first one at ``(r - crop) mod stride``."""
    return [len(range((r - crop) % stride, out, stride)) for r in range(stride)]


def _phase_taps(kernel: int, stride: int, dilation: int) -> list[int]:
    """How many taps each phase ``r`` of an axis has (``j*dilation mod stride == r``)."""
    return [sum((j * dilation) % stride == r for j in range(kernel)) for r in range(stride)]


def _phase_totals(spec: Spec) -> list[int]:
    """How many outputs each phase holds, over all phases of the (padded) axes."""
    sizes = [1]
    for _, _, stride, _, crop, out in _pad3(spec):
        sizes = [a * b for a in sizes for b in _phase_sizes(stride, crop, out)]
    return sizes


def block_sizes(spec: Spec) -> tuple[dict[str, int], int]:
    """``(MR per target, NR)`` for this layer: the register block is MR outputs of one phase
    times NR filters (:mod:`~tconv.kernels.microkernel`; the C picks its target's MR).

    NR is :data:`~tconv.kernels.microkernel.NR_MAX` (32, a multiple of every vector width), or
    16 when that pads the filters of a group less, or the next power of two for fewer than 16
    filters; the packed weights depend on NR only."""
    cout_g = spec.geometry.out_per_group
    if cout_g < 16:
        nr = 1 << (cout_g - 1).bit_length()
    else:
        nr = min((NR_MAX, NR_MAX // 2), key=lambda n: -(-cout_g // n) * n)
    return microkernel.block_rows(nr, _phase_totals(spec), spec.geometry.in_per_group), nr


def pack_fast(spec: Spec) -> np.ndarray:
    """The fast style's kernel: ``[G][NCOB][K0][K1][K2][CIN_G][NR]``, taps in phase order."""
    g = spec.geometry
    _, nr = block_sizes(spec)
    k = spec.kernel.reshape(
        *([1] * (3 - spec.rank)), *spec.kernel.shape
    )  # (K0, K1, K2, COUT, CIN_G)
    for axis, (_, kern, stride, dil, _, _) in enumerate(_pad3(spec)):
        k = np.take(k, _phase_order(kern, stride, dil), axis=axis)
    ncob = -(-g.out_per_group // nr)
    k = k.reshape(*k.shape[:3], g.groups, g.out_per_group, g.in_per_group)
    pad = ncob * nr - g.out_per_group
    k = np.pad(k, [(0, 0)] * 4 + [(0, pad), (0, 0)])
    k = k.reshape(*k.shape[:3], g.groups, ncob, nr, g.in_per_group)
    return np.ascontiguousarray(k.transpose(3, 4, 0, 1, 2, 6, 5)).reshape(-1)


def kernel_data(spec: Spec, style: str) -> np.ndarray:
    """The kernel as the ``style``'s C reads it (flat float32)."""
    if check_style(style) == "fast":
        return pack_fast(spec)
    if style == "scatter":  # [*k][G][CIN_G][COUT_G]: the filter loop reads contiguously
        g = spec.geometry
        k = spec.kernel.reshape(*spec.kernel.shape[:-2], g.groups, g.out_per_group, -1)
        return np.ascontiguousarray(np.swapaxes(k, -1, -2), dtype=np.float32).reshape(-1)
    return np.ascontiguousarray(spec.kernel, dtype=np.float32).reshape(-1)


def weight_blob(spec: Spec, style: str) -> np.ndarray:
    """``kernel_data`` followed by the bias (if any): the array passed as ``weights``."""
    parts = [kernel_data(spec, style)]
    if spec.bias is not None:
        parts.append(spec.bias.astype(np.float32).reshape(-1))
    return np.concatenate(parts).astype(np.float32)


# ---------------------------------------------------------------------------- shared pieces


def _int_array(name: str, values: list[int]) -> str:
    return f"static const int {name}[{len(values)}] = {{{', '.join(map(str, values))}}};"


def _defines(pairs: list[tuple[str, object]]) -> tuple[str, str]:
    """``#define`` lines and the matching ``#undef`` lines (so exports can share a unit)."""
    width = max(len(k) for k, _ in pairs)
    defs = "\n".join(f"#define {k:<{width}} {v}" for k, v in pairs)
    undefs = "\n".join(f"#undef {k}" for k, _ in pairs)
    return defs, undefs


def _store(spec: Spec, value: str) -> str:
    """``value + bias[f]`` (if any) through the element-wise activation."""
    if spec.bias is not None:
        value = f"{value} + bias[f]"
    return cactivations.store_expr(spec.activation, spec.name, value)


def _data_macros(spec: Spec, letter: str, var: str, names: list[str], sizes: str) -> str:
    """An indexing macro ``X(n, i_h, i_w, c)`` for data in the layer's layout."""
    ch = "CIN" if letter == "X" else "COUT"
    dims = [f"{sizes}_{nm[1:].upper()}" for nm in names]
    order = [ch, *dims] if spec.channels_first else [*dims, ch]
    idx = ["c", *names] if spec.channels_first else [*names, "c"]
    expr = "(ptrdiff_t)(n)"
    for dim, i in zip(order, idx, strict=True):
        expr = f"({expr} * {dim} + ({i}))"
    return f"#define {letter}({', '.join(['n', *names, 'c'])}) {var}[{expr}]"


def _geometry_comment(spec: Spec) -> str:
    lines = []
    for name, a in zip(_NAMES[spec.rank], spec.axes, strict=True):
        lines.append(
            f" *   axis {name}: in {a.size}, kernel {a.kernel}, stride {a.stride}, dilation "
            f"{a.dilation}, crop {a.crop_start} at the start and {a.crop_end} at the end "
            f"-> out {a.out}"
        )
    g = spec.geometry
    lines.append(
        f" *   channels {g.in_channels} -> {g.out_channels} in {g.groups} group(s); "
        f"activation {spec.activation}; bias {'yes' if spec.bias is not None else 'no'}"
    )
    return "\n".join(lines)


def _common_defines(spec: Spec) -> list[tuple[str, object]]:
    g = spec.geometry
    pairs: list[tuple[str, object]] = []
    for name, a in zip(_NAMES[spec.rank], spec.axes, strict=True):
        u = name.upper()
        pairs += [
            (f"IN_{u}", a.size),
            (f"OUT_{u}", a.out),
            (f"K_{u}", a.kernel),
            (f"S_{u}", a.stride),
            (f"D_{u}", a.dilation),
            (f"CROP_{u}", a.crop_start),
        ]
    pairs += [
        ("CIN", g.in_channels),
        ("COUT", g.out_channels),
        ("CIN_G", g.in_per_group),
        ("COUT_G", g.out_per_group),
    ]
    return pairs


def _loop_setup(spec: Spec) -> tuple[list[str], list[str], list[str], list[str], str, str, str]:
    """Axis names, output/input/tap loop variables, the ``#define``s and their ``#undef``s,
    and the data macros X, Y of the loop styles."""
    names = list(_NAMES[spec.rank])
    o = [f"o{n}" for n in names]
    i = [f"i{n}" for n in names]
    k = [f"k{n}" for n in names]
    defs, undefs = _defines(_common_defines(spec))
    macros = _data_macros(spec, "X", "x", i, "IN") + "\n" + _data_macros(spec, "Y", "y", o, "OUT")
    return names, o, i, k, defs, undefs, macros


# ---------------------------------------------------------------------------- reference style


def _reference(spec: Spec) -> tuple[str, str]:
    names, o, i, k, defs, undefs, macros = _loop_setup(spec)
    kidx = "0"
    for kk, nm in zip(k, names, strict=True):
        kidx = f"({kidx}) * K_{nm.upper()} + {kk}" if kidx != "0" else kk
    kidx = f"(({kidx}) * COUT + f) * CIN_G + c"
    cond = "  and  ".join(
        f"{ii}*S_{nm.upper()} + {kk}*D_{nm.upper()} == {oo} + CROP_{nm.upper()}"
        for ii, kk, oo, nm in zip(i, k, o, names, strict=True)
    )
    body = []
    ind = "    "
    body.append(f"{ind}int n, {', '.join(o)}, f;")
    body.append(f"{ind}for (n = 0; n < batch; ++n)")
    for oo, nm in zip(o, names, strict=True):
        body.append(f"{ind}for ({oo} = 0; {oo} < OUT_{nm.upper()}; ++{oo})")
    body.append(f"{ind}for (f = 0; f < COUT; ++f) {{")
    ind2 = ind * 2
    body.append(f"{ind2}const int g = f / COUT_G; /* the group of filter f */")
    body.append(f"{ind2}float acc = 0.0f;")
    body.append(f"{ind2}int {', '.join(k)}, c;")
    depth = ind2
    for ii, kk, oo, nm in zip(i, k, o, names, strict=True):
        u = nm.upper()
        body.append(f"{depth}for ({kk} = 0; {kk} < K_{u}; ++{kk}) {{")
        d2 = depth + ind
        body.append(
            f"{d2}/* tap {kk} reaches {oo} from {ii} = ({oo} + CROP_{u} - {kk}*D_{u}) / S_{u} */"
        )
        body.append(f"{d2}const int p{nm} = {oo} + CROP_{u} - {kk} * D_{u};")
        body.append(f"{d2}int {ii};")
        body.append(f"{d2}if (p{nm} < 0 || p{nm} % S_{u} != 0) continue;")
        body.append(f"{d2}{ii} = p{nm} / S_{u};")
        body.append(f"{d2}if ({ii} >= IN_{u}) continue;")
        depth = d2
    body.append(f"{depth}for (c = 0; c < CIN_G; ++c)")
    body.append(f"{depth}{ind}acc += X(n, {', '.join(i)}, g * CIN_G + c) * kernel[{kidx}];")
    for _ in names:
        depth = depth[: -len(ind)]
        body.append(f"{depth}}}")
    body.append(f"{ind2}Y(n, {', '.join(o)}, f) = {_store(spec, 'acc')};")
    body.append(f"{ind}}}")
    shape = ", ".join(f"K_{n.upper()}" for n in names)
    head = f"""\
/* The definition, one output element at a time (see `tconv explain`):
 *
 *   y[n, {", ".join(o)}, f] = act(bias[f] + sum over taps with
 *       {cond}
 *     of sum over c < CIN_G of x[n, {", ".join(i)}, g*CIN_G + c] * kernel[{", ".join(k)}, f, c])
 *
 * where g = f / COUT_G is the group of filter f.  kernel is [{shape}][COUT][CIN_G] (Keras
 * layout); x and y are in the layer's data format (macros X and Y).
 */"""
    code = "\n".join(body)
    bias = "    const float *bias = w + KERNEL_COUNT;\n" if spec.bias is not None else ""
    fn = f"""{defs}
{macros}

{head}
static void {spec.name}_compute(const float *w, const float *x, float *y, int batch)
{{
    const float *kernel = w;
{bias}{code}
}}
"""
    return fn, undefs + "\n#undef X\n#undef Y"


# ---------------------------------------------------------------------------- scatter style


def _scatter(spec: Spec) -> tuple[str, str]:
    names, o, i, k, defs, undefs, macros = _loop_setup(spec)
    kidx = k[0]
    for kk, nm in zip(k[1:], names[1:], strict=True):
        kidx = f"({kidx}) * K_{nm.upper()} + {kk}"
    ind = "    "
    lines = [f"{ind}int n, {', '.join(o)}, {', '.join(i)}, {', '.join(k)}, c, f;"]
    # 1. zero the output
    loops = (
        ["for (n = 0; n < batch; ++n)"]
        + [
            f"for ({oo} = 0; {oo} < OUT_{nm.upper()}; ++{oo})"
            for oo, nm in zip(o, names, strict=True)
        ]
        + ["for (f = 0; f < COUT; ++f)"]
    )
    lines += [f"{ind}{lp}" for lp in loops]
    lines.append(f"{ind}{ind}Y(n, {', '.join(o)}, f) = 0.0f;")
    # 2. scatter
    lines.append(f"{ind}for (n = 0; n < batch; ++n)")
    lines += [
        f"{ind}for ({ii} = 0; {ii} < IN_{nm.upper()}; ++{ii})"
        for ii, nm in zip(i, names, strict=True)
    ]
    lines.append(f"{ind}for (c = 0; c < CIN; ++c) {{")
    depth = ind * 2
    lines.append(f"{depth}const int g = c / CIN_G;")
    for ii, kk, oo, nm in zip(i, k, o, names, strict=True):
        u = nm.upper()
        lines.append(f"{depth}for ({kk} = 0; {kk} < K_{u}; ++{kk}) {{")
        depth += ind
        lines.append(f"{depth}{oo} = {ii} * S_{u} + {kk} * D_{u} - CROP_{u};")
        lines.append(f"{depth}if ({oo} < 0 || {oo} >= OUT_{u}) continue;")
    lines.append(f"{depth}for (f = g * COUT_G; f < (g + 1) * COUT_G; ++f)")
    lines.append(
        f"{depth}{ind}Y(n, {', '.join(o)}, f) += X(n, {', '.join(i)}, c) * "
        f"kernel[(({kidx}) * CIN + c) * COUT_G + f - g * COUT_G];"
    )
    for _ in names:
        depth = depth[: -len(ind)]
        lines.append(f"{depth}}}")
    lines.append(f"{ind}}}")
    # 3. bias and activation
    if spec.bias is not None or spec.activation not in ("linear", *cactivations.ROW_WISE):
        lines += [f"{ind}{lp}" for lp in loops]
        target = f"Y(n, {', '.join(o)}, f)"
        lines.append(f"{ind}{ind}{target} = {_store(spec, target)};")
    bias = "    const float *bias = w + KERNEL_COUNT;\n" if spec.bias is not None else ""
    fn = (
        f"""{defs}
{macros}

/* Scatter: every input element times every tap, added where it lands
 *   o = i*S + k*D - CROP  (per axis), then bias and activation.
 * kernel is [K...][G][CIN_G][COUT_G] (c = g*CIN_G + c_local): the filter loop is contiguous. */
static void {spec.name}_compute(const float *w, const float *x, float *y, int batch)
{{
    const float *kernel = w;
{bias}"""
        + "\n".join(lines)
        + "\n}\n"
    )
    return fn, undefs + "\n#undef X\n#undef Y"


# ---------------------------------------------------------------------------- fast style

SMALL_WEIGHTS = 4 << 20
"""Bytes: packed weights up to this size make the filter block vary fastest over the tasks of a
call (see :func:`_task_order`)."""


def _task_order(weight_bytes: int) -> str:
    """The C that numbers a call's tasks (``task`` -> ``n, part, r1, r0, cob, grp``).

    Weights of at most :data:`SMALL_WEIGHTS` bytes stay in the caches between the tasks that
    re-read them, so the filter block varies fastest: its consecutive tasks read the same input
    rows (scattered rows, which the hardware prefetchers follow less well than the weights'
    one sequential stream) while they are in L2.  Measured on a Zen 4 (1 thread, × the 1-thread
    OpenBLAS matmul, against the item varying fastest): dcgan_k4_b16 (2 MiB of weights)
    46.9 -> 43.2 ms with AVX-512, audio1d_k16s8 (2 MiB) 24.9 -> 21.5 ms with AVX2, unet_k3 -3 %.
    Larger weights (the seed layers: 19-52 MiB) are read once for the whole batch instead: the
    item varies fastest, and consecutive tasks share the filter block's weights (seed_k5_b8
    121 ms against 147 the other way)."""
    if weight_bytes <= SMALL_WEIGHTS:
        return """\
        /* the filter block varies fastest: consecutive tasks read the same input rows */
        const int cob = (int)(task % NCOB);
        const int n = (int)(task / NCOB % batch);
        const long rest = task / NCOB / batch;
        const int part = (int)(rest % PARTS);
        const int r1 = (int)(rest / PARTS % S1);
        const int r0 = (int)(rest / ((long)PARTS * S1) % S0);
        const int grp = (int)(rest / ((long)PARTS * S1 * S0));
"""
    return """\
        /* the item varies fastest: consecutive tasks read the same packed weights */
        const int n = (int)(task % batch);
        const long rest = task / batch;
        const int part = (int)(rest % PARTS);
        const int r1 = (int)(rest / PARTS % S1);
        const int r0 = (int)(rest / ((long)PARTS * S1) % S0);
        const int cob = (int)(rest / ((long)PARTS * S1 * S0) % NCOB);
        const int grp = (int)(rest / ((long)PARTS * S1 * S0 * NCOB));
"""


def _fast(spec: Spec) -> tuple[str, str]:
    g = spec.geometry
    p = spec.name
    axes = _pad3(spec)
    mr, nr = block_sizes(spec)
    in_sp = [a[0] for a in axes]
    out_sp = [a[5] for a in axes]
    xs, xs_ch = spec.data_strides(in_sp, g.in_channels)
    if spec.out_row and spec.channels_first:
        raise ValueError(f"{p}: an output row stride needs channels_last data")
    ys, ys_ch = spec.data_strides(out_sp, spec.out_row or g.out_channels)
    ncob = -(-g.out_per_group // nr)  # blocks of NR filters
    wblock = math.prod(a[1] for a in axes) * g.in_per_group * nr  # floats: one filter block
    pairs: list[tuple[str, object]] = [
        ("NR", nr),
        ("G", g.groups),
        ("CIN_G", g.in_per_group),
        ("COUT_G", g.out_per_group),
        ("NCOB", ncob),
    ]
    tables = []
    for a, (size, kern, stride, dil, crop, out) in enumerate(axes):
        order = _phase_order(kern, stride, dil)
        first, qfirst, tstart, mvals = [], [], [0], []
        count = _phase_sizes(stride, crop, out)
        for r in range(stride):
            o0 = (r - crop) % stride
            first.append(o0)
            qfirst.append((o0 + crop - r) // stride)
            taps = [j for j in order if (j * dil) % stride == r]
            mvals += [(j * dil - r) // stride for j in taps]
            tstart.append(tstart[-1] + len(taps))
        pairs += [(f"IN{a}", size), (f"K{a}", kern), (f"S{a}", stride)]
        pairs += [(f"XS{a}", xs[a]), (f"YS{a}", ys[a])]
        tables += [
            f"/* axis {a}: phase r holds outputs first{a}[r] + S{a}*u (u < count{a}[r]), whose q"
            f" = qfirst{a}[r] + u;\n * its taps are packed taps tap{a}[r] .. tap{a}[r+1]-1, "
            f"reading input i = q - m{a}[tap]. */",
            _int_array(f"{p}_first{a}", first),
            _int_array(f"{p}_count{a}", count),
            _int_array(f"{p}_qfirst{a}", qfirst),
            _int_array(f"{p}_tap{a}", tstart),
            _int_array(f"{p}_m{a}", mvals),
        ]
    pairs += [
        ("PARTS", _parts(spec, max(mr.values()), ncob)),
        ("XS_CH", xs_ch),
        ("YS_CH", ys_ch),
        ("X_ITEM", spec.in_count),
        ("Y_ITEM", math.prod(out_sp) * spec.out_row if spec.out_row else spec.out_count),
        ("WBLOCK", wblock),
        ("ITEM_MACS", f"{g.macs(1)}L"),
        ("TASKS_PER_ITEM", f"({g.groups}L * NCOB * S0 * S1 * PARTS)"),
        ("TAPS", math.prod(max(_phase_taps(a[1], a[2], a[3])) for a in axes)),
    ]
    defs, undefs = _defines(pairs)
    chunks = microkernel.channel_blocks(g.in_per_group)
    targets = {
        t: [("MR", mr[t]), ("KC", chunks[t][0]), ("GB", chunks[t][1])]
        for t in microkernel.NAMES
        if t in mr
    }
    zeros = f"{p}_zeros"
    bias = "    const float *bias = w + KERNEL_COUNT;\n" if spec.bias is not None else ""
    store = _store(spec, "acc[g][m][j]")
    decode = _task_order(4 * g.groups * ncob * wblock)
    t = lambda name, a: f"{p}_{name}{a}"  # noqa: E731
    block = f"{p}_block"
    code = f"""{defs}

{chr(10).join(tables)}
/* Calls of fewer multiply-adds stay on one thread under OpenMP (-DTCONV_PARALLEL_MACS=N sets it) */
#ifdef TCONV_PARALLEL_MACS
#define PARALLEL_MACS ((long)(TCONV_PARALLEL_MACS))
#else
#define PARALLEL_MACS {PARALLEL_MACS}L
#endif
/* For the target this is compiled for: MR outputs per register block; KC channels per pass
 * over GB register blocks (all of them in one pass over one block when KC = CIN_G) */
{microkernel.target_source(nr, targets)}
{microkernel.source(block, mr, nr)}
/* Stands in for inputs outside the image, so that every register block has MR rows. */
static const float {zeros}[(CIN_G - 1) * XS_CH + 1];

/* Stride-phase decomposition: see the README.  Tasks (group, channel block, phase of axis 0,
 * phase of axis 1, part of the phase's register blocks, item) write disjoint outputs. */
static void {p}_run(const float *w, const float *x, float *y, int batch, long first, long last,
                   int parallel)
{{
{bias}    long task;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) \
    if (parallel && (long)batch * ITEM_MACS >= PARALLEL_MACS)
#else
    (void)parallel;
#endif
    for (task = first; task < last; ++task) {{
{decode}        const int f0 = grp * COUT_G + cob * NR; /* first output channel of the block */
        const int nf = COUT_G - cob * NR < NR ? COUT_G - cob * NR : NR;
        const float *xg = x + (ptrdiff_t)n * X_ITEM + (ptrdiff_t)grp * CIN_G * XS_CH;
        float *yn = y + (ptrdiff_t)n * Y_ITEM;
        const float *wb = w + (ptrdiff_t)(grp * NCOB + cob) * WBLOCK;
        int r2, t0;
        for (r2 = 0; r2 < S2; ++r2) {{
            const int n1 = {t("count", 1)}[r1], n2 = {t("count", 2)}[r2];
            const int total = {t("count", 0)}[r0] * n1 * n2; /* outputs of phase (r0, r1, r2) */
            const int blocks = (total + MR - 1) / MR; /* this part: blocks b0 .. b1-1 */
            const int b0 = (int)((long)blocks * part / PARTS);
            const int b1 = (int)((long)blocks * (part + 1) / PARTS);
            for (t0 = b0 * MR; t0 < total && t0 < b1 * MR; t0 += GB * MR) {{
                /* GB register blocks: the next GB * MR outputs of this phase (across rows) */
                int q0[MR], q1[MR], q2[MR], a, b, c, m, j, g, ng, kb, taps[GB];
                const float *xp[GB][TAPS * MR], *wp[GB][TAPS]; /* the taps that reach a block */
                ptrdiff_t yoff[GB][MR];
                int mrs[GB];
                float acc[GB][MR][NR];
                for (ng = 0; ng < GB && t0 + ng * MR < total && t0 + ng * MR < b1 * MR; ++ng) {{
                    const int t = t0 + ng * MR;
                    const int mr = total - t < MR ? total - t : MR;
                    /* output t of the phase is (u0, u1, u2) in its n0 x n1 x n2 outputs */
                    int u0 = t / (n1 * n2), u1 = t / n2 % n1, u2 = t % n2;
                    mrs[ng] = mr;
                    taps[ng] = 0;
                    for (m = 0; m < MR; ++m) {{ /* rows past mr are neither read nor stored */
                        q0[m] = {t("qfirst", 0)}[r0] + u0;
                        q1[m] = {t("qfirst", 1)}[r1] + u1;
                        q2[m] = {t("qfirst", 2)}[r2] + u2;
                        yoff[ng][m] = (ptrdiff_t)({t("first", 0)}[r0] + S0 * u0) * YS0
                            + (ptrdiff_t)({t("first", 1)}[r1] + S1 * u1) * YS1
                            + (ptrdiff_t)({t("first", 2)}[r2] + S2 * u2) * YS2;
                        if (++u2 == n2) {{ /* the next output of the phase */
                            u2 = 0;
                            if (++u1 == n1) {{ u1 = 0; ++u0; }}
                        }}
                    }}
                    for (a = {t("tap", 0)}[r0]; a < {t("tap", 0)}[r0 + 1]; ++a)
                    for (b = {t("tap", 1)}[r1]; b < {t("tap", 1)}[r1 + 1]; ++b)
                    for (c = {t("tap", 2)}[r2]; c < {t("tap", 2)}[r2 + 1]; ++c) {{
                        const float **xt = xp[ng] + (ptrdiff_t)taps[ng] * MR;
                        int live = 0;
                        for (m = 0; m < MR; ++m) {{
                            /* the input this tap reads for output m: i = q - m_tap per axis */
                            const int i0 = q0[m] - {t("m", 0)}[a], i1 = q1[m] - {t("m", 1)}[b];
                            const int i2 = q2[m] - {t("m", 2)}[c];
                            const int inside = m < mr && i0 >= 0 && i0 < IN0 && i1 >= 0
                                && i1 < IN1 && i2 >= 0 && i2 < IN2;
                            xt[m] = inside ? xg + (ptrdiff_t)i0 * XS0 + (ptrdiff_t)i1 * XS1
                                                 + (ptrdiff_t)i2 * XS2
                                           : {zeros};
                            live += inside;
                        }}
                        if (live == 0) continue; /* this tap reaches none of the block */
                        wp[ng][taps[ng]++] = wb + (ptrdiff_t)((a * K1 + b) * K2 + c) * CIN_G * NR;
                    }}
#if defined(__GNUC__)
                    /* ask for the block's output lines now: its products hide the wait for
                     * memory (without, the stores after them stall on it: unet_k3 7-15 %) */
                    for (m = 0; m < mr; ++m) {{
                        const float *yo = yn + yoff[ng][m] + (ptrdiff_t)f0 * YS_CH;
                        if (YS_CH == 1) {{ /* channels last: nf floats in a row */
                            for (j = 0; j < nf; j += 16) __builtin_prefetch(yo + j, 1, 3);
                            __builtin_prefetch(yo + nf - 1, 1, 3);
                        }} else if (m == 0 || m == mr - 1) {{ /* channels first: rows share lines */
                            for (j = 0; j < nf; ++j)
                                __builtin_prefetch(yo + (ptrdiff_t)j * YS_CH, 1, 3);
                        }}
                    }}
#endif
                }}
                /* MR outputs x NR filters in registers over all the taps, one FMA a product,
                 * from zero on the first chunk (a block no tap reaches gets zeros: bias alone);
                 * KC channels at a time for all the blocks, so that they share the weights of
                 * those channels while they are in the L2 cache */
                for (kb = 0; kb < CIN_G; kb += KC) {{
                    const int kc = CIN_G - kb < KC ? CIN_G - kb : KC;
                    /* the first block to run reads this chunk of weights from memory: the
                     * task's first for this phase, or any group's first with channel chunks */
                    int stream = t0 == b0 * MR || KC < CIN_G;
                    for (g = 0; g < ng; ++g) {{
                        const float *xk[TAPS * MR], *wk[TAPS];
                        const float *const *xc = xp[g], *const *wc = wp[g]; /* the first chunk */
                        if (kb > 0) {{ /* a later chunk: the pointers moved on by kb channels */
                            for (j = 0; j < taps[g] * MR; ++j)
                                xk[j] = xp[g][j] + (ptrdiff_t)kb * XS_CH;
                            for (j = 0; j < taps[g]; ++j) wk[j] = wp[g][j] + (ptrdiff_t)kb * NR;
                            xc = xk;
                            wc = wk;
                        }}
                        {block}(taps[g], kc, xc, XS_CH, wc, &acc[g][0][0], kb == 0, stream);
                        stream = 0;
                    }}
                }}
                for (g = 0; g < ng; ++g)
                for (m = 0; m < mrs[g]; ++m) {{
                    float *yo = yn + yoff[g][m];
                    for (j = 0; j < nf; ++j) {{
                        const int f = f0 + j;
                        yo[(ptrdiff_t)f * YS_CH] = {store};
                    }}
                }}
            }}
        }}
    }}
}}
"""
    code += f"""
static void {p}_compute(const float *w, const float *x, float *y, int batch)
{{
    {p}_run(w, x, y, batch, 0, (long)batch * TASKS_PER_ITEM, 1);
}}

"""
    return code, undefs + "\n#undef MR\n#undef KC\n#undef GB\n#undef PARALLEL_MACS"


PARALLEL_MACS = 1 << 20
"""Calls of fewer multiply-adds run on the calling thread even under OpenMP: waking the other
threads costs more (on a busy machine a scheduler time slice, milliseconds)."""

TASKS = 64
"""The fast style cuts one item's work into about this many OpenMP tasks (when its phases have
enough register blocks), so that threads finish together although phases differ in taps."""


def _parts(spec: Spec, mr: int, ncob: int) -> int:
    """Into how many parts every phase's register blocks are cut (1 when there are already
    :data:`TASKS` tasks per item, never parts of less than two blocks)."""
    axes = _pad3(spec)
    fewest = 1  # the fewest outputs a phase holds
    for _, _, stride, _, crop, out in axes:
        fewest *= min(_phase_sizes(stride, crop, out))
    fewest = -(-fewest // mr)
    tasks = spec.geometry.groups * ncob * axes[0][2] * axes[1][2]
    return max(1, min(-(-TASKS // tasks), fewest // 2))


_GENERATORS = {"reference": _reference, "fast": _fast, "scatter": _scatter}


def tasks_source(spec: Spec, prefix: str) -> str:
    """The fast style's task entry points ``prefix_task_count`` and
    ``prefix_tasks_with_weights`` (error codes ``PREFIX_ERR_*``) over the functions of
    ``spec``: C to place after the body of :func:`_fast`, before its ``#undef``s (it reads
    ``TASKS_PER_ITEM``)."""
    p, u, run = prefix, prefix.upper(), spec.name
    return f"""
/* The work of a call is {p}_task_count(batch) tasks that write disjoint outputs;
 * {p}_tasks_with_weights computes tasks first .. last-1 of it on the calling thread (no
 * OpenMP), so that threads of your own can share a call (tconv's ctypes wrapper does).  All the
 * tasks of a call give the output of {p}_with_weights, bit for bit, except that a row-wise
 * activation (softmax, log_softmax) is not applied. */
long {p}_task_count(int batch);
long {p}_task_count(int batch)
{{
    return batch < 0 ? 0 : (long)batch * TASKS_PER_ITEM;
}}

int {p}_tasks_with_weights(const float *weights, const float *input, float *output, int batch,
                           long first, long last);
int {p}_tasks_with_weights(const float *weights, const float *input, float *output, int batch,
                           long first, long last)
{{
    const long tasks = {p}_task_count(batch);
    if (batch < 0) return {u}_ERR_BATCH;
    if (weights == NULL || input == NULL || output == NULL) return {u}_ERR_NULL;
    {run}_run(weights, input, output, batch, first < 0 ? 0 : first, last > tasks ? tasks : last, 0);
    return 0;
}}"""


def library_source(spec: Spec, style: str) -> str:
    """``NAME.c`` of the kernel-level library: ``NAME_with_weights`` for ``style`` (the weights
    are passed in; a C project, :func:`tconv.cexport.export_c`, has its own library)."""
    p, u = spec.name, spec.macro
    body, undefs = _GENERATORS[check_style(style)](spec)
    act = cactivations.definitions(spec.activation, p)
    libm = "#include <math.h>\n" if cactivations.needs_libm(spec.activation) else ""
    rows = ""
    if cactivations.is_rowwise(spec.activation):
        last = spec.out_item[-1]
        rows = (
            f"    {p}_{spec.activation}_rows(output, (ptrdiff_t)batch * {u}_OUT_COUNT / {last}, "
            f"{last}); /* over the last axis */\n"
        )
    tasks = tasks_source(spec, p) if style == "fast" else ""
    return f"""\
/* {p}: transposed convolution generated by tconv (style "{style}").
 *
{_geometry_comment(spec)}
 */
#include <stddef.h>
{libm}#include "{p}.h"

#define KERNEL_COUNT {u}_KERNEL_COUNT
{act}
{body}
int {p}_with_weights(const float *weights, const float *input, float *output, int batch)
{{
    if (batch < 0) return {u}_ERR_BATCH;
    if (weights == NULL || input == NULL || output == NULL) return {u}_ERR_NULL;
    {p}_compute(weights, input, output, batch);
{rows}    return 0;
}}
{tasks}
#undef KERNEL_COUNT
{undefs}
"""


def compute_source(spec: Spec, style: str = "fast", tasks: str = "") -> str:
    """The C of ``static void NAME_compute(const float *w, const float *x, float *y, int
    batch)`` for ``spec`` in ``style``, with the activation helpers it calls; every macro it
    defines is undefined after it, so that several layers can share one C file (the model
    export).  ``w`` is :func:`weight_blob`; a row-wise activation is not applied here.  With
    ``tasks`` (a prefix) and the fast style, also :func:`tasks_source` under that prefix.  An
    output row stride (``spec.out_row``) needs the fast style."""
    if spec.out_row and check_style(style) != "fast":
        raise ValueError(f"{spec.name}: an output row stride needs style 'fast', not {style!r}")
    body, undefs = _GENERATORS[check_style(style)](spec)
    activation = "linear" if cactivations.is_rowwise(spec.activation) else spec.activation
    act = cactivations.definitions(activation, spec.name)
    count = kernel_data(spec, style).size
    if tasks and style == "fast":
        body += "\n" + tasks_source(spec, tasks) + "\n"
    return f"#define KERNEL_COUNT {count}\n{act}\n{body}\n#undef KERNEL_COUNT\n{undefs}\n"


def c_floats(values: np.ndarray) -> list[str]:
    """float32 values as exact C literals, read from their bits: ``0x1.8p+1f``, subnormals
    ``0x0.000002p-126f``, ``0.0f``/``-0.0f``, ``INFINITY``/``-INFINITY``/``NAN`` (which need
    math.h).  Every float32 bit is kept; quick enough for millions of weights."""
    return [
        _literal(b) for b in np.asarray(values, np.float32).reshape(-1).view(np.uint32).tolist()
    ]


def c_float(value: float) -> str:
    """One float32 value as an exact C literal (see :func:`c_floats`)."""
    return c_floats(np.array([value], np.float32))[0]


def _literal(bits: int) -> str:
    sign = "-" if bits >> 31 else ""
    exponent, mantissa = (bits >> 23) & 0xFF, bits & 0x7FFFFF
    if exponent == 0xFF:
        return "NAN" if mantissa else f"{sign}INFINITY"
    if exponent == 0 and mantissa == 0:
        return f"{sign}0.0f"
    digits = f"{mantissa << 1:06x}".rstrip("0")  # 23 bits, as 6 hex digits
    fraction = f".{digits}" if digits else ""
    if exponent == 0:  # subnormal: mantissa * 2**-149
        return f"{sign}0x0{fraction}p-126f"
    return f"{sign}0x1{fraction}p{exponent - 127:+d}f"


def header_source(spec: Spec, blob_size: int) -> str:
    """The header of :func:`library_source` (the kernel-level library that
    :func:`tconv.kernels.build.build_spec` compiles): shape and count macros, error codes and
    the prototype of ``NAME_with_weights`` for a weight array of ``blob_size`` floats.  (A C
    project, :func:`tconv.cexport.export_c`, has its own header.)"""
    p, u = spec.name, spec.macro
    dims = []
    for kind, shape in (("IN", spec.in_item), ("OUT", spec.out_item)):
        dims.append(f"#define {u}_{kind}_SHAPE {{{', '.join(map(str, shape))}}}")
        dims += [f"#define {u}_{kind}_DIM{a} {v}" for a, v in enumerate(shape)]
        dims.append(f"#define {u}_{kind}_COUNT {math.prod(shape)} /* floats per batch item */")
    layout = "(C, *spatial)" if spec.channels_first else "(*spatial, C)"
    kernel_count = blob_size - (0 if spec.bias is None else spec.bias.size)
    run = (
        f"input is batch x {u}_IN_COUNT floats, output batch x {u}_OUT_COUNT floats, both\n"
        f" * {layout} per item.  Returns 0, or {u}_ERR_BATCH for batch < 0, {u}_ERR_NULL for a"
        "\n * NULL pointer."
    )
    protos = [
        f"/* Runs the layer on `batch` items with `weights` ({u}_WEIGHT_COUNT floats): {run} */",
    ]
    protos.append(
        f"int {p}_with_weights(const float *weights, const float *input, float *output, int batch);"
    )
    errors = [
        f"#define {u}_ERR_BATCH (-1)",
        f"#define {u}_ERR_NULL (-2)",
    ]
    newline = "\n"
    nbias = 0 if spec.bias is None else spec.bias.size
    return f"""\
/* {p}: transposed convolution exported by tconv.  See README.md. */
#ifndef {u}_H
#define {u}_H

#define {u}_RANK {spec.rank}
{newline.join(dims)}
#define {u}_KERNEL_COUNT {kernel_count}
#define {u}_WEIGHT_COUNT {blob_size} /* kernel data, then {nbias} bias values */
#define {u}_MACS {spec.geometry.macs(1)} /* multiply-adds per batch item */
{newline.join(errors)}

#ifdef __cplusplus
extern "C" {{
#endif

{newline.join(protos)}

#ifdef __cplusplus
}}
#endif
#endif
"""
