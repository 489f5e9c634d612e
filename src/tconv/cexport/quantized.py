"""``export_c`` for a quantized layer: an integer-only C99 project (see :mod:`tconv.kernels.qemit`).

The same file set as a float export: ``NAME.h``, ``NAME.c``, ``NAME_weights.c``,
``test_NAME.c``, ``Makefile``, ``CMakeLists.txt``, ``README.md`` and the test vectors
``NAME_input.bin``/``NAME_expected.bin`` (raw int8, or int16 little-endian for 16x8; the
expected output is tconv's, which equals TFLite's reference kernel).  The harness compares every
element exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels import qemit
from ..kernels.spec import check_name
from ..quant import QuantizedTransposeConv
from .harness import cmake_lists, harness_helpers, harness_main, makefile


def qspec(layer: QuantizedTransposeConv, name: str) -> qemit.QSpec:
    """The C generator's view of ``layer`` (checked: see :func:`tconv.kernels.qemit.check`)."""
    spec = qemit.QSpec(
        check_name(name),
        layer.geometry,
        layer.kernel,
        layer.bias,
        layer.sixteen,
        layer.input_zero_point,
        layer.output_zero_point,
        layer.multiplier,
        layer.shift,
        layer.act_min,
        layer.act_max,
    )
    qemit.check(spec)
    return spec


def worst_case_inputs(layer: QuantizedTransposeConv, batch: int, seed: int) -> np.ndarray:
    """Test inputs: all minimum, all maximum, alternating minimum/maximum, then ``batch``
    random items."""
    info = np.iinfo(layer.dtype)
    shape = layer.input_shape
    alternating = np.where(np.indices(shape).sum(axis=0) % 2 == 0, info.min, info.max)
    items = [np.full(shape, info.min), np.full(shape, info.max), alternating]
    rng = np.random.default_rng(seed)
    items += [rng.integers(info.min, int(info.max) + 1, shape) for _ in range(batch)]
    return np.stack(items).astype(layer.dtype)


def _harness(spec: qemit.QSpec) -> str:
    p, u, t = spec.name, spec.macro, spec.ctype
    size = 2 if spec.sixteen else 1
    decode = (
        "(int16_t)(uint16_t)((unsigned)b[2 * i] | (unsigned)b[2 * i + 1] << 8)"
        if spec.sixteen
        else "(int8_t)b[i]"
    )
    reader = f"""\
static {t} *{p}_read(const char *path, long *count)
{{
    FILE *fh = fopen(path, "rb");
    unsigned char *b;
    {t} *data = NULL;
    long bytes, i;
    if (fh == NULL) return NULL;
    if (fseek(fh, 0, SEEK_END) != 0 || (bytes = ftell(fh)) < 0 || bytes % {size} != 0) {{
        fclose(fh);
        return NULL;
    }}
    rewind(fh);
    b = (unsigned char *)malloc(bytes > 0 ? (size_t)bytes : 1);
    if (b != NULL && (long)fread(b, 1, (size_t)bytes, fh) == bytes) {{
        *count = bytes / {size};
        data = ({t} *)malloc(sizeof({t}) * (size_t)(*count > 0 ? *count : 1));
        for (i = 0; data != NULL && i < *count; ++i) data[i] = {decode};
    }}
    free(b);
    fclose(fh);
    return data;
}}

"""
    return f"""\
/* Test harness for {p}: runs it on {p}_input.bin and compares every element with
 * {p}_expected.bin (both written by tconv: raw {t}{", little-endian" if spec.sixteen else ""};
 * the batch follows from the size).  Prints the number of differing elements and PASS/FAIL,
 * exits 0/1.  `--bench R` prints the median time of R runs; `--dir D` reads the files from D. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 199309L
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "{p}.h"

{harness_helpers(p, reader)}static int {p}_check(const char *dir, int bench)
{{
    char path[4096];
    long n_in = 0, n_exp = 0, i, bad = 0, worst = 0;
    {t} *input, *expected, *output;
    int batch, rc;
    if (strlen(dir) > 4000) return {p}_fail("--dir is too long");
    sprintf(path, "%s/{p}_input.bin", dir);
    input = {p}_read(path, &n_in);
    if (input == NULL) return {p}_fail("cannot read {p}_input.bin");
    sprintf(path, "%s/{p}_expected.bin", dir);
    expected = {p}_read(path, &n_exp);
    if (expected == NULL) return {p}_fail("cannot read {p}_expected.bin");
    batch = (int)(n_in / {u}_IN_COUNT);
    if (n_in % {u}_IN_COUNT != 0 || n_exp != (long)batch * {u}_OUT_COUNT)
        return {p}_fail("input and expected sizes do not match the layer");
    output = ({t} *)malloc(sizeof({t}) * (size_t)(n_exp > 0 ? n_exp : 1));
    if (output == NULL) return {p}_fail("out of memory");
    rc = {p}(input, output, batch);
    if (rc != 0) {{
        fprintf(stderr, "{p}: returned %d\\n", rc);
        return 1;
    }}
    for (i = 0; i < n_exp; ++i) {{
        const long d = labs((long)output[i] - (long)expected[i]);
        bad += d != 0;
        if (d > worst) worst = d;
    }}
    printf("{p}: batch %d, %ld outputs, %ld differ (max %ld LSB): %s\\n", batch, n_exp, bad,
           worst, bad == 0 ? "PASS" : "FAIL");
    rc = bad == 0 ? 0 : 1;
    if (bench > 0 && rc == 0) {{
        double *times = (double *)malloc(sizeof(double) * (size_t)bench), median;
        int r;
        if (times == NULL) return {p}_fail("out of memory");
        (void){p}(input, output, batch); /* warm-up */
        for (r = 0; r < bench; ++r) {{
            const double t0 = {p}_now();
            (void){p}(input, output, batch);
            times[r] = {p}_now() - t0;
        }}
        qsort(times, (size_t)bench, sizeof(double), {p}_cmp);
        median = times[bench / 2];
        printf("{p}: median %.4f ms over %d runs, %.2f GMAC/s\\n", 1e3 * median, bench,
               (double){u}_MACS * batch / median * 1e-9);
        free(times);
    }}
    free(input);
    free(expected);
    free(output);
    return rc;
}}

{harness_main(p)}"""


def _readme(spec: qemit.QSpec, layer: QuantizedTransposeConv) -> str:
    p, g, t = spec.name, spec.geometry, spec.ctype
    (ay, ax) = g.axes
    kind = "16x8 (int16 activations, int8 weights, int64 bias)" if spec.sixteen else "int8"
    mult, shift = qemit.requant_tables(spec)
    req = (
        "`(acc * reduced[f] + 2^(total[f]-1)) >> total[f]` (TFLite's 16x8 "
        "MultiplyByQuantizedMultiplier; `reduced = (multiplier + 2^15) >> 16`, "
        "`total = 15 - shift`)"
        if spec.sixteen
        else "gemmlowp's `RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc << "
        "max(shift, 0), multiplier), max(-shift, 0))` (TFLite's MultiplyByQuantizedMultiplier)"
    )
    return f"""\
# {p}

Quantized transposed convolution `{layer.name}` ({kind}), exported by tconv as integer-only
C99: no float at run time, no malloc, no global mutable state.  Bit-exact with TFLite's
reference `TRANSPOSE_CONV` kernel.

```c
#include "{p}.h"
int {p}(const {t} *input, {t} *output, int batch);
```

- input `(N, {ay.size}, {ax.size}, {g.in_channels})` {t}, scale {layer.input_scale!r}, zero point
  {layer.input_zero_point}
- output `(N, {ay.out}, {ax.out}, {g.out_channels})` {t}, scale {layer.output_scale!r}, zero
  point {layer.output_zero_point}; fused activation {layer.activation}: clamp to
  [{spec.act_min}, {spec.act_max}]
- kernel {ay.kernel}x{ax.kernel}, strides ({ay.stride}, {ax.stride}); crops (start, end): y
  ({ay.crop_start}, {ay.crop_end}), x ({ax.crop_start}, {ax.crop_end})

Per output element: `acc = bias[f] + sum over taps and c of (x - zp_in) * w` in
{spec.acc_type}, then {req}, `+ zp_out`, clamp.  The multipliers and shifts were computed at
export from `input_scale * filter_scale[f] / output_scale` (frexp, Q31 rounding half away from
zero); channel 0: {mult[0]}, {shift[0]}.

`make` builds and runs `test_{p}`: it compares the output for `{p}_input.bin` with
`{p}_expected.bin` element by element (the vectors hold all-minimum, all-maximum and alternating
items, then random ones).  `make bench` times it.
"""


def project_files(
    layer: QuantizedTransposeConv,
    *,
    name: str = "tconv_layer",
    style: str = "fast",
    weights: str = "inline",
    batch: int = 2,
    seed: int = 0,
    test_input: Any = None,
    input_shape: Any = None,
) -> dict[str, str | bytes]:
    """The files of the integer C project of ``layer``: file name -> text or bytes.

    The test vectors hold the three worst cases (all minimum, all maximum, alternating) and
    ``batch`` random items, or ``test_input`` ``(N, *layer.input_shape)`` in the layer's dtype
    (a float ``test_input`` is quantized by the layer's input quantization).
    One style (``"fast"``) and inline constants only; ``input_shape``, if given, must be the
    layer's (one item, ``(H, W, C)``): the op's shapes are fixed.
    """
    if input_shape is not None and tuple(input_shape) != layer.input_shape:
        raise ValueError(
            f"input_shape {tuple(input_shape)} differs from the quantized op's fixed input "
            f"{layer.input_shape}"
        )
    if style != "fast":
        raise ValueError(f"a quantized layer has one C style, 'fast'; got style={style!r}")
    if weights != "inline":
        raise ValueError(f"a quantized layer's constants are inline C; got weights={weights!r}")
    spec = qspec(layer, name)
    if test_input is None:
        if not isinstance(batch, int) or batch < 0:
            raise ValueError(f"batch must be a non-negative int, got batch={batch!r}")
        x = worst_case_inputs(layer, batch, seed)
    else:
        x = quantized_input(layer, test_input)
    p = spec.name
    little = "<i2" if spec.sixteen else "i1"
    return {
        f"{p}.h": qemit.header_source(spec),
        f"{p}.c": qemit.library_source(spec),
        f"{p}_weights.c": qemit.weights_source(spec),
        f"test_{p}.c": _harness(spec),
        "Makefile": makefile(
            p, fastest="-O3 -march=native", libm=False, note=" (integer only, no libm)"
        ),
        "CMakeLists.txt": cmake_lists(p, libm_openmp=False),
        "README.md": _readme(spec, layer),
        f"{p}_input.bin": np.ascontiguousarray(x, dtype=little).tobytes(),
        f"{p}_expected.bin": np.ascontiguousarray(layer(x), dtype=little).tobytes(),
    }


def quantized_input(layer: QuantizedTransposeConv, x: Any) -> np.ndarray:
    x = np.asarray(x)
    return layer.check_input(layer.quantize(x) if x.dtype.kind == "f" else x)
