"""Integer-only C99 for a quantized 2-D transposed convolution (TFLite's TRANSPOSE_CONV).

Below the layer objects: a :class:`QSpec` holds the canonical geometry, the int8 kernel and the
precomputed requantization (per output channel: the Q31 multiplier and shift of int8, the 16-bit
multiplier and total shift of 16x8), and this module writes ``NAME.h``, ``NAME.c`` and
``NAME_weights.c``.  No float at run time, no malloc, no global mutable state.

The kernel gathers, output pixel by output pixel: an output position ``p = o + crop_start`` is
reached by the taps ``j = p mod stride, p mod stride + stride, ...`` (its stride phase) with
``i = (p - j) / stride`` inside the input, so no tap is tried that cannot land.  For each tap the
input pixel's ``C`` centred values ``x - zp_in`` multiply the tap's ``C x F`` int8 weights
(packed ``[tap][c][f]``, ``f`` contiguous), accumulated in an ``F``-long int32 array (int64 for
16x8) that compilers vectorize; then requantization, ``+ zp_out`` and the clamp.

Undefined behaviour is excluded by construction: the export checks that no accumulator can
leave int32 (int8) or ``±2**47`` (16x8, TFLite's own bound) for any input; products and shifts
are done in int64 where int32 could overflow; the one left shift that TFLite does in int32 (a
multiplier shift > 0) is done on uint32, wrapping as TFLite's int32 does on two's-complement
machines.  Right shifts of negative values are arithmetic on gcc, clang and every compiler
tconv targets (C99 leaves them implementation-defined).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..geometry import Geometry


@dataclass(frozen=True)
class QSpec:
    """One quantized layer in the terms of the generated C.

    ``kernel``: canonical ``(kh, kw, F, C)`` int8; ``bias``: ``(F,)`` int32 (int64 for 16x8) or
    None; ``multiplier``/``shift``: ``(F,)`` as TFLite's ``QuantizeMultiplier`` gives them.
    """

    name: str
    geometry: Geometry
    kernel: np.ndarray
    bias: np.ndarray | None
    sixteen: bool
    input_zero_point: int
    output_zero_point: int
    multiplier: np.ndarray
    shift: np.ndarray
    act_min: int
    act_max: int

    @property
    def macro(self) -> str:
        return self.name.upper()

    @property
    def ctype(self) -> str:
        """The activations' C type."""
        return "int16_t" if self.sixteen else "int8_t"

    @property
    def acc_type(self) -> str:
        return "int64_t" if self.sixteen else "int32_t"

    @property
    def in_item(self) -> tuple[int, ...]:
        g = self.geometry
        return (*g.in_shape, g.in_channels)

    @property
    def out_item(self) -> tuple[int, ...]:
        g = self.geometry
        return (*g.out_shape, g.out_channels)

    @property
    def max_taps(self) -> int:
        """The most taps that reach one output position."""
        per_axis = [
            max((len(a.taps(o)) for o in range(a.out)), default=0) for a in self.geometry.axes
        ]
        return math.prod(per_axis)

    def accumulator_bound(self) -> int:
        """The largest ``|acc|`` any input can give:
        ``max|x - zp| * max|w| * terms + max|bias|``."""
        info = np.iinfo(np.int16 if self.sixteen else np.int8)
        x_max = max(int(info.max) - self.input_zero_point, self.input_zero_point - int(info.min))
        w_max = int(np.abs(self.kernel.astype(np.int64)).max(initial=0))
        b_max = 0 if self.bias is None else int(np.abs(self.bias.astype(np.int64)).max(initial=0))
        return x_max * w_max * self.max_taps * self.geometry.in_channels + b_max


def check(spec: QSpec) -> None:
    """Raise ``ValueError`` when the integer C could overflow or does not apply (see the module
    docstring)."""
    g = spec.geometry
    if g.rank != 2 or g.groups != 1:
        raise ValueError(f"the integer C is for 2-D, one-group layers (TFLite's), got {g}")
    if any(a.crop_start < 0 for a in g.axes):
        raise ValueError(f"the integer C needs crop_start >= 0 (TFLite's padding), got {g}")
    limit = 2**47 if spec.sixteen else 2**31 - 1
    bound = spec.accumulator_bound()
    if bound > limit:
        raise ValueError(
            f"{spec.name}: an accumulator can reach {bound}, beyond "
            f"{'2**47 (TFLite 16x8 bound)' if spec.sixteen else 'int32'}: TFLite's own integer "
            f"arithmetic would overflow (undefined behaviour) for some inputs"
        )


def _c_int(value: int, wide: bool) -> str:
    """A C literal of ``value`` (``LL`` for int64; the most negative values as ``(m + 1) - 1``,
    since ``-2147483648`` is the negation of a literal too big for int)."""
    suffix = "LL" if wide else ""
    if value in (-(2**31), -(2**63)):
        return f"({value + 1}{suffix} - 1)"
    return f"{value}{suffix}"


def _rows(values: list[int] | list[str], per_line: int = 16) -> str:
    rows = [", ".join(map(str, values[i : i + per_line])) for i in range(0, len(values), per_line)]
    return ",\n    ".join(rows) if rows else "0"


def packed_kernel(spec: QSpec) -> np.ndarray:
    """The kernel as the C reads it: ``[ky][kx][f][c]`` int8 (the canonical order), flattened."""
    return np.ascontiguousarray(spec.kernel).reshape(-1)


def offset_table(spec: QSpec) -> np.ndarray:
    """int8 only: ``(128 + zp_in) * sum_c w[ky, kx, f, c]`` per tap and output channel,
    ``[ky][kx][f]`` flattened.  The C multiplies ``x + 128`` (unsigned, for the compilers'
    unsigned-by-signed int8 dot products) and subtracts this: ``(x - zp)·w = (x + 128)·w -
    (128 + zp)·w``.  Each entry is at most ``255 * 127 * C``, inside the accumulator bound."""
    sums = spec.kernel.astype(np.int64).sum(axis=-1)
    return ((128 + spec.input_zero_point) * sums).reshape(-1)


def requant_tables(spec: QSpec) -> tuple[list[int], list[int]]:
    """Per output channel, the two constants of the requantization: int8 ``(multiplier,
    shift)``; 16x8 ``(reduced 16-bit multiplier, total right shift 15 - shift)``."""
    mult = [int(m) for m in spec.multiplier]
    shift = [int(s) for s in spec.shift]
    if not spec.sixteen:
        return mult, shift
    reduced = [(m + (1 << 15)) >> 16 if m < 0x7FFF0000 else 0x7FFF for m in mult]
    return reduced, [15 - s for s in shift]


def header_source(spec: QSpec) -> str:
    p, u, g = spec.name, spec.macro, spec.geometry
    t = spec.ctype
    dims = []
    for kind, shape in (("IN", spec.in_item), ("OUT", spec.out_item)):
        dims.append(f"#define {u}_{kind}_SHAPE {{{', '.join(map(str, shape))}}}")
        dims += [f"#define {u}_{kind}_DIM{a} {v}" for a, v in enumerate(shape)]
        dims.append(f"#define {u}_{kind}_COUNT {math.prod(shape)} /* values per batch item */")
    nl = "\n"
    taps = g.axes[0].kernel * g.axes[1].kernel * g.out_channels
    offset_decl = (
        "" if spec.sixteen else f"\nextern const int32_t {p}_offset[{taps}]; /* [ky][kx][f] */"
    )
    return f"""\
/* {p}: quantized transposed convolution ({"16x8" if spec.sixteen else "int8"}) exported by tconv,
 * bit-exact with TFLite's reference TRANSPOSE_CONV.  See README.md. */
#ifndef {u}_H
#define {u}_H

#include <stdint.h>

{nl.join(dims)}
#define {u}_KERNEL_COUNT {spec.kernel.size}
#define {u}_MACS {g.macs(1)} /* multiply-adds per batch item */
#define {u}_ERR_BATCH (-1)
#define {u}_ERR_NULL (-2)

#ifdef __cplusplus
extern "C" {{
#endif

/* Runs the layer on `batch` items: input is batch x {u}_IN_COUNT {t} (H, W, C) per item,
 * output batch x {u}_OUT_COUNT {t} (Ho, Wo, F).  Returns 0, or {u}_ERR_BATCH for
 * batch < 0, {u}_ERR_NULL for a NULL pointer.  Integer arithmetic only. */
int {p}(const {t} *input, {t} *output, int batch);

/* The constants of {p}_weights.c. */
extern const int8_t {p}_kernel[{u}_KERNEL_COUNT]; /* [ky][kx][f][c] */{offset_decl}
extern const {spec.acc_type} {p}_bias[{g.out_channels}];
extern const int32_t {p}_multiplier[{g.out_channels}];
extern const int32_t {p}_shift[{g.out_channels}];

#ifdef __cplusplus
}}
#endif
#endif
"""


def weights_source(spec: QSpec) -> str:
    p, g = spec.name, spec.geometry
    mult, shift = requant_tables(spec)
    bias = [0] * g.out_channels if spec.bias is None else [int(b) for b in spec.bias]
    what = (
        "16-bit multiplier (multiplier + 2**15) >> 16 and total right shift 15 - shift"
        if spec.sixteen
        else "Q31 multiplier and shift (negative: right)"
    )
    bias_text = _rows([_c_int(b, spec.sixteen) for b in bias])
    bias_kind = "none: zeros" if spec.bias is None else spec.acc_type
    offsets = ""
    if not spec.sixteen:
        table = offset_table(spec)
        rows = _rows([int(v) for v in table], 12)
        offsets = (
            f"\n/* (128 + zp_in) * sum over c of the kernel, [ky][kx][f] */\n"
            f"const int32_t {p}_offset[{table.size}] = {{\n    {rows}\n}};"
        )
    return f"""\
/* Constants of {p}: the int8 kernel [ky][kx][f][c], the bias ({bias_kind}),
 * and per output channel the {what}, as TFLite derives them from
 * input_scale * filter_scale[f] / output_scale. */
#include "{p}.h"

const int8_t {p}_kernel[{spec.macro}_KERNEL_COUNT] = {{
    {_rows([int(v) for v in packed_kernel(spec)], 24)}
}};{offsets}
const {spec.acc_type} {p}_bias[{g.out_channels}] = {{
    {bias_text}
}};
const int32_t {p}_multiplier[{g.out_channels}] = {{
    {_rows(mult, 8)}
}};
const int32_t {p}_shift[{g.out_channels}] = {{
    {_rows(shift)}
}};
"""


def _requant_source(spec: QSpec) -> str:
    p = spec.name
    if spec.sixteen:
        return f"""\
/* TFLite's int64 MultiplyByQuantizedMultiplier (16x8): (acc * reduced + 2**(total-1)) >> total,
 * then to int32 (|acc| < 2**47 and reduced < 2**15, so nothing overflows). */
static int64_t {p}_requantize(int64_t acc, int32_t reduced, int32_t total)
{{
    const int64_t rounded = acc * (int64_t)reduced + ((int64_t)1 << (total - 1));
    return (int64_t)(int32_t)(rounded >> total);
}}
"""
    return f"""\
/* gemmlowp's SaturatingRoundingDoublingHighMul: round(a*b / 2**31), halves away from zero. */
static int32_t {p}_high_mul(int32_t a, int32_t b)
{{
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : 1 - ((int64_t)1 << 30);
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31)); /* C99 division truncates */
}}

/* gemmlowp's RoundingDivideByPOT: x / 2**e to nearest, halves away from zero. */
static int32_t {p}_divide_pot(int32_t x, int32_t e)
{{
    const int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
    const int32_t remainder = (int32_t)((uint32_t)x & (uint32_t)mask);
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (remainder > threshold ? 1 : 0);
}}

/* TFLite's MultiplyByQuantizedMultiplier: left shift (wrapping like TFLite's int32), high
 * multiply, rounding right shift. */
static int64_t {p}_requantize(int32_t acc, int32_t multiplier, int32_t shift)
{{
    const int32_t left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    const int32_t shifted = (int32_t)((uint32_t)acc << left);
    return {p}_divide_pot({p}_high_mul(shifted, multiplier), right);
}}
"""


PIXELS = 8
"""Output pixels of one stride phase computed together (each weight row read once for them)."""
_MACROS = [
    "IH",
    "IW",
    "CIN",
    "COUT",
    "KH",
    "KW",
    "SY",
    "SX",
    "CROP_Y",
    "CROP_X",
    "OH",
    "OW",
    "ZP_IN",
    "ZP_OUT",
    "ACT_MIN",
    "ACT_MAX",
    "P",
]


def library_source(spec: QSpec) -> str:
    p, u, g = spec.name, spec.macro, spec.geometry
    (ay, ax) = g.axes
    t, acc = spec.ctype, spec.acc_type
    f, c = g.out_channels, g.in_channels
    # int8: (x - zp)·w = (x + 128)·w - (128 + zp)·w, x + 128 as unsigned (x ^ 0x80): an
    # unsigned-by-signed int8 dot product that compilers map to dot-product instructions
    # (gcc: vpdpbusd with AVX-VNNI), with {p}_offset holding the second term.  16x8: zp = 0,
    # |x| * 127 < 2**23 fits int32, the sums int64.
    if spec.sixteen:
        term = "(int64_t)((int32_t)xp[{at}] * {w})"
        minus_off, off_ptr = "", "NULL"
        void_off = "\n    (void)off; /* 16x8: the zero points are 0, no offset */"
    else:
        term = "(int32_t)(uint8_t)((uint8_t)xp[{at}] ^ 0x80u) * {w}"
        minus_off, off_ptr = " - off[f]", f"{p}_offset + tap * {u}_COUT"
        void_off = ""
    term1 = term.format(at="c", w="(int32_t)w[c]")
    sums = ", ".join(f"s{k} = 0" for k in range(PIXELS))
    terms = "\n".join(
        f"            s{k} += {term.format(at=f'{k} * {u}_CIN + c', w='wc')};"
        for k in range(PIXELS)
    )
    stores = "\n".join(
        f"        acc[{k}][f] += s{k}{minus_off.replace('off[f]', 'off[f]')};"
        for k in range(PIXELS)
    )
    zp_in, zp_out, lo, hi = (
        spec.input_zero_point,
        spec.output_zero_point,
        spec.act_min,
        spec.act_max,
    )
    undefs = "\n".join(f"#undef {u}_{n}" for n in _MACROS)
    axes = "\n".join(
        f" *   axis {n}: kernel {a.kernel}, stride {a.stride}, crop {a.crop_start} at the start, "
        f"{a.crop_end} at the end"
        for n, a in zip("yx", g.axes, strict=True)
    )
    return f"""\
/* {p}: quantized transposed convolution, integer-only C99 generated by tconv.
 *   input  (N, {ay.size}, {ax.size}, {c}) {t}, zero point {zp_in}
 *   output (N, {ay.out}, {ax.out}, {f}) {t}, zero point {zp_out}, clamp [{lo}, {hi}]
{axes}
 * y[n, oy, ox, f] = clamp(requantize(bias[f] + sum over the taps of the stride phase and c of
 *                   (x[n, iy, ix, c] - zp_in) * w[ky, kx, c, f], f) + zp_out)
 * with iy = (oy + crop_y - ky) / stride_y, ix = (ox + crop_x - kx) / stride_x. */
#include <stddef.h>
#include <stdint.h>
#include "{p}.h"

#define {u}_IH {ay.size}
#define {u}_IW {ax.size}
#define {u}_CIN {c}
#define {u}_COUT {f}
#define {u}_KH {ay.kernel}
#define {u}_KW {ax.kernel}
#define {u}_SY {ay.stride}
#define {u}_SX {ax.stride}
#define {u}_CROP_Y {ay.crop_start}
#define {u}_CROP_X {ax.crop_start}
#define {u}_OH {ay.out}
#define {u}_OW {ax.out}
#define {u}_ZP_IN {spec.input_zero_point}
#define {u}_ZP_OUT {spec.output_zero_point}
#define {u}_ACT_MIN {spec.act_min}
#define {u}_ACT_MAX {spec.act_max}
#define {u}_P {PIXELS}

{_requant_source(spec)}
/* One tap for one pixel: acc[f] += sum over c of (x[c] - zp_in) * w[f][c]. */
static void {p}_dot1(const {t} *restrict xp, const int8_t *restrict wt,
                     const int32_t *restrict off, {acc} *restrict acc)
{{
    int f, c;{void_off}
    for (f = 0; f < {u}_COUT; ++f) {{
        const int8_t *restrict w = wt + (ptrdiff_t)f * {u}_CIN;
        {acc} s = 0;
        for (c = 0; c < {u}_CIN; ++c) s += {term1};
        acc[f] += s{minus_off};
    }}
}}

/* One tap for {u}_P pixels whose inputs are consecutive (xp, xp + C, ...): each weight row is
 * read once for the {u}_P pixels, {u}_P dot products at a time. */
static void {p}_dotP(const {t} *restrict xp, const int8_t *restrict wt,
                     const int32_t *restrict off, {acc} (*restrict acc)[{u}_COUT])
{{
    int f, c;{void_off}
    for (f = 0; f < {u}_COUT; ++f) {{
        const int8_t *restrict w = wt + (ptrdiff_t)f * {u}_CIN;
        {acc} {sums};
        for (c = 0; c < {u}_CIN; ++c) {{
            const int32_t wc = w[c];
{terms}
        }}
{stores}
    }}
}}

/* {u}_P (or fewer at the row's end) output pixels of row oy in one stride phase: ox0,
 * ox0 + SX, ...  They share the taps of their phase, and their inputs for a tap are
 * consecutive pixels ix0, ix0 + 1, ... */
static void {p}_block(const {t} *x, int oy, int ox0, int count, {acc} (*acc)[{u}_COUT])
{{
    const int py = oy + {u}_CROP_Y, px0 = ox0 + {u}_CROP_X;
    int ky, kx, k, f;
    for (k = 0; k < count; ++k)
        for (f = 0; f < {u}_COUT; ++f) acc[k][f] = {p}_bias[f];
    for (ky = py % {u}_SY; ky < {u}_KH && ky <= py; ky += {u}_SY) {{
        const int iy = (py - ky) / {u}_SY;
        if (iy >= {u}_IH) continue;
        for (kx = px0 % {u}_SX; kx < {u}_KW; kx += {u}_SX) {{
            const int ix0 = (px0 - kx) / {u}_SX; /* exact: px0 - kx is a multiple of SX */
            const ptrdiff_t tap = (ptrdiff_t)ky * {u}_KW + kx;
            const {t} *row = x + (ptrdiff_t)iy * {u}_IW * {u}_CIN;
            const int8_t *wt = {p}_kernel + tap * {u}_COUT * {u}_CIN;
            const int32_t *off = {off_ptr};
            if (count == {u}_P && ix0 >= 0 && ix0 + {u}_P <= {u}_IW) {{
                {p}_dotP(row + (ptrdiff_t)ix0 * {u}_CIN, wt, off, acc);
                continue;
            }}
            for (k = 0; k < count; ++k)
                if (ix0 + k >= 0 && ix0 + k < {u}_IW)
                    {p}_dot1(row + (ptrdiff_t)(ix0 + k) * {u}_CIN, wt, off, acc[k]);
        }}
    }}
}}

int {p}(const {t} *input, {t} *output, int batch)
{{
    int n, oy, phase, ox0, k, f;
    if (batch < 0) return {u}_ERR_BATCH;
    if (batch > 0 && (input == NULL || output == NULL)) return {u}_ERR_NULL;
    for (n = 0; n < batch; ++n) {{
        const {t} *x = input + (ptrdiff_t)n * {u}_IN_COUNT;
        {t} *y = output + (ptrdiff_t)n * {u}_OUT_COUNT;
        for (oy = 0; oy < {u}_OH; ++oy) {{
            for (phase = 0; phase < {u}_SX && phase < {u}_OW; ++phase) {{
                for (ox0 = phase; ox0 < {u}_OW; ox0 += {u}_P * {u}_SX) {{
                    {acc} acc[{u}_P][{u}_COUT];
                    const int left = ({u}_OW - 1 - ox0) / {u}_SX + 1;
                    const int count = left < {u}_P ? left : {u}_P;
                    {p}_block(x, oy, ox0, count, acc);
                    for (k = 0; k < count; ++k) {{
                        {t} *out = y + ((ptrdiff_t)oy * {u}_OW + ox0 + k * {u}_SX) * {u}_COUT;
                        for (f = 0; f < {u}_COUT; ++f) {{
                            int64_t v = {p}_requantize(acc[k][f], {p}_multiplier[f], {p}_shift[f]);
                            v += {u}_ZP_OUT;
                            v = v < {u}_ACT_MIN ? {u}_ACT_MIN : v > {u}_ACT_MAX ? {u}_ACT_MAX : v;
                            out[f] = ({t})v;
                        }}
                    }}
                }}
            }}
        }}
    }}
    return 0;
}}

{undefs}
"""
