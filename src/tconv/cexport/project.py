"""``export_c``: write a layer as a small C project (library, weights, harness, build files)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import ops
from ..kernels import emit
from ..kernels.spec import Spec
from ..layer import TransposedConv
from ..quant import QuantizedTransposeConv
from . import quantized
from .harness import cmake_lists, harness_helpers, harness_main, makefile
from .spec import from_layer

WEIGHTS_MODES = ("inline", "file")
WEIGHTS_MAGIC = b"TCONVW1\0"


def prepare_dir(out_dir: str | Path, force: bool) -> Path:
    """Create ``out_dir`` or check it is an empty, writable folder (any folder with ``force``)."""
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"out_dir={str(path)!r} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise ValueError(
            f"out_dir={str(path)!r} is not empty; refusing to overwrite (use force=True, or "
            "--force on the command line)"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".tconv-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"out_dir={str(path)!r} is not writable: {err.strerror}") from err
    return path


def write_weights_file(path: Path, blob: np.ndarray) -> None:
    """The binary weights file: magic, uint32 count, then float32 values, little-endian."""
    with open(path, "wb") as fh:
        fh.write(WEIGHTS_MAGIC + struct.pack("<I", blob.size))
        fh.write(blob.astype("<f4").tobytes())


def _loader_source(spec: Spec) -> str:
    p, u = spec.name, spec.macro
    return f"""\
/* Loads the weights of {p} from the binary file written by tconv:
 * 8 bytes "TCONVW1\\0", uint32 count (little-endian), then count float32 (little-endian). */
#include <stdio.h>
#include <string.h>
#include "{p}.h"

static unsigned long {p}_u32le(const unsigned char *b)
{{
    return (unsigned long)b[0] | (unsigned long)b[1] << 8 | (unsigned long)b[2] << 16
        | (unsigned long)b[3] << 24;
}}

int {p}_load_weights(const char *path, float *weights)
{{
    unsigned char head[12], word[4];
    long i;
    FILE *fh;
    if (path == NULL || weights == NULL) return {u}_ERR_NULL;
    fh = fopen(path, "rb");
    if (fh == NULL) return {u}_ERR_OPEN;
    if (fread(head, 1, sizeof head, fh) != sizeof head) {{
        fclose(fh);
        return {u}_ERR_FORMAT;
    }}
    if (memcmp(head, "TCONVW1", 8) != 0) {{
        fclose(fh);
        return {u}_ERR_FORMAT;
    }}
    if ({p}_u32le(head + 8) != (unsigned long){u}_WEIGHT_COUNT) {{
        fclose(fh);
        return {u}_ERR_SIZE;
    }}
    for (i = 0; i < {u}_WEIGHT_COUNT; ++i) {{
        unsigned long bits;
        float value;
        if (fread(word, 1, 4, fh) != 4) {{
            fclose(fh);
            return {u}_ERR_READ;
        }}
        bits = {p}_u32le(word);
        {{
            /* the float with these IEEE-754 bits, whatever the host's byte order */
            const unsigned int u32 = (unsigned int)bits;
            memcpy(&value, &u32, sizeof value);
        }}
        weights[i] = value;
    }}
    if (fgetc(fh) != EOF) {{
        fclose(fh);
        return {u}_ERR_SIZE;
    }}
    fclose(fh);
    return 0;
}}

const char *{p}_strerror(int code)
{{
    switch (code) {{
    case 0: return "ok";
    case {u}_ERR_BATCH: return "batch must be >= 0";
    case {u}_ERR_NULL: return "a pointer argument is NULL";
    case {u}_ERR_OPEN: return "cannot open the weights file";
    case {u}_ERR_READ: return "the weights file is shorter than its header says";
    case {u}_ERR_FORMAT: return "not a tconv weights file (bad magic)";
    case {u}_ERR_SIZE: return "the weights file holds a different number of weights than "
                              "{p} needs ({u}_WEIGHT_COUNT)";
    default: return "unknown error";
    }}
}}
"""


def _harness(spec: Spec, weights: str) -> str:
    p, u = spec.name, spec.macro
    if weights == "file":
        load = f"""\
    weights = (float *)malloc(sizeof(float) * {u}_WEIGHT_COUNT);
    if (weights == NULL) return {p}_fail("out of memory");
    sprintf(path, "%s/{p}_weights.bin", dir);
    rc = {p}_load_weights(path, weights);
    if (rc != 0) {{
        fprintf(stderr, "{p}: %s: %s\\n", path, {p}_strerror(rc));
        free(weights);
        return 1;
    }}
"""
        call = f"{p}_with_weights(weights, input, output, batch)"
    else:
        load = ""
        call = f"{p}(input, output, batch)"
    free_w = "    free(weights);\n" if weights == "file" else ""
    decl_w = "    float *weights = NULL;\n" if weights == "file" else ""
    return f"""\
/* Test harness for {p}: runs it on {p}_input.bin and compares with {p}_expected.bin (both
 * written by tconv's Python engine; raw float32, the batch follows from the size).
 * Prints the max abs error and PASS/FAIL, exits 0/1.  `--bench R` prints the median time of
 * R runs; `--dir D` reads the files from folder D.
 * Bound: |c - e| <= 1e-5 * s + TERMS * FLT_EPSILON * s, s = max(1, max |e|), TERMS = the most
 * products summed into one output. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 199309L
#endif
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "{p}.h"

#define {u}_TERMS {spec.max_terms}

{harness_helpers(p)}static int {p}_check(const char *dir, int bench)
{{
    char path[4096];
    long n_in = 0, n_exp = 0, i;
    float *input, *expected, *output;
{decl_w}    double err = 0.0, scale = 1.0, bound;
    int batch, rc, bad_nan = 0;
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
    output = (float *)malloc(sizeof(float) * (size_t)(n_exp > 0 ? n_exp : 1));
    if (output == NULL) return {p}_fail("out of memory");
{load}    rc = {call};
    if (rc != 0) {{
        fprintf(stderr, "{p}: returned %d\\n", rc);
        return 1;
    }}
    for (i = 0; i < n_exp; ++i) {{
        const double e = expected[i], c = output[i];
        if (isnan(e) || isnan(c)) {{
            bad_nan |= isnan(e) != isnan(c);
            continue;
        }}
        if (fabs(e) > scale) scale = fabs(e);
        if (fabs(c - e) > err || c != c) err = fabs(c - e);
    }}
    bound = 1e-5 * scale + {u}_TERMS * (double)FLT_EPSILON * scale;
    printf("{p}: batch %d, %ld outputs, max abs error %.3g (bound %.3g): %s\\n", batch, n_exp,
           err, bound, err <= bound && !bad_nan ? "PASS" : "FAIL");
    rc = err <= bound && !bad_nan ? 0 : 1;
    if (bench > 0 && rc == 0) {{
        double *times = (double *)malloc(sizeof(double) * (size_t)bench), median;
        int r;
        if (times == NULL) return {p}_fail("out of memory");
        (void){call}; /* warm-up */
        for (r = 0; r < bench; ++r) {{
            const double t0 = {p}_now();
            (void){call};
            times[r] = {p}_now() - t0;
        }}
        qsort(times, (size_t)bench, sizeof(double), {p}_cmp);
        median = times[bench / 2];
        printf("{p}: median %.4f ms over %d runs, %.2f GFLOP/s\\n", 1e3 * median, bench,
               2.0 * {u}_MACS * batch / median * 1e-9);
        free(times);
    }}
    free(input);
    free(expected);
    free(output);
{free_w}    return rc;
}}

{harness_main(p)}"""


def _readme(spec: Spec, style: str, weights: str) -> str:
    p, u = spec.name, spec.macro
    g = spec.geometry
    names = {1: ["w"], 2: ["h", "w"], 3: ["d", "h", "w"]}[spec.rank]
    rows = "\n".join(
        f"| {n} | {a.size} | {a.kernel} | {a.stride} | {a.dilation} | {a.crop_start} | "
        f"{a.crop_end} | {a.full} | {a.out} |"
        for n, a in zip(names, spec.axes, strict=True)
    )
    cf = spec.channels_first
    in_layout = "(C, " + ", ".join(names) + ")" if cf else "(" + ", ".join(names) + ", C)"
    call = (
        f"int rc = {p}(input, output, batch);"
        if weights == "inline"
        else f"static float w[{u}_WEIGHT_COUNT];\n"
        f'int rc = {p}_load_weights("{p}_weights.bin", w);\n'
        f"if (rc == 0) rc = {p}_with_weights(w, input, output, batch);"
    )
    kernel_order = {
        "fast": "packed `[group][filter block][taps in phase order][in_channels/groups][NR]`",
        "reference": "the Keras layout `[*kernel_size][filters][in_channels/groups]`",
        "scatter": "`[*kernel_size][groups][in_channels/groups][filters/groups]`",
    }[style]
    if style == "fast":
        loops = f"""\
`{p}.c` (style "fast") uses the stride-phase decomposition.  Per axis, output `o` has phase
`r = (o + crop_start) mod stride` and `q = (o + crop_start) div stride`.  Exactly the taps `j`
with `j*dilation mod stride == r` reach it, each from input `i = q - m_j`,
`m_j = (j*dilation - r) / stride` (tables `{p}_tap*`, `{p}_m*`).  So the sum of the formula

    y[n, o, f] = act(bias[f] + sum over taps (i, j) of sum over c of x[n, i, c] * kernel[j, f, c])

is computed without touching the zeros a zero-insertion implementation multiplies.  The
register block holds MR consecutive outputs of one phase (across rows) times NR filters (inputs
outside the image read a zero row); the `k` loop
runs over the input channels of the group (the `c` of the formula), and the store adds the bias
and applies the activation.  The kernel is packed by tconv at export time as
`[group][filter block][taps in phase order][CIN_G][NR]` (zero-padded to whole blocks).
Compile with `-fopenmp` to split the work over cores (disjoint outputs; identical results)."""
    elif style == "reference":
        loops = f"""\
`{p}.c` (style "reference") is the definition, written as gather loops: for every output
element `y[n, o, f]`, every tap `j` whose input `i = (o + crop_start - j*dilation) / stride` is
an integer inside the input, and every input channel `c` of the filter's group:

    y[n, o, f] = act(bias[f] + sum over taps (i, j) of sum over c of x[n, i, c] * kernel[j, f, c])

This is the per-element formula `tconv explain` prints, loop for loop."""
    else:
        loops = f"""\
`{p}.c` (style "scatter") is the plain port: zero the output, add every input element times
every tap at `o = i*stride + j*dilation - crop_start` (skipping outputs outside the range), then
add the bias and apply the activation.  It is the baseline of `tconv bench`."""
    return f"""\
# {p}

Transposed convolution exported by tconv (style "{style}", weights "{weights}").

## Geometry

Input {spec.in_item} -> output {spec.out_item} per batch item ({spec.data_format_name}),
{g.in_channels} -> {g.out_channels} channels in {g.groups} group(s), activation
`{spec.activation}`, bias: {"yes" if spec.bias is not None else "no"}.
{g.macs(1)} multiply-adds per item.

Per axis the definition is `full[i*stride + j*dilation] += x[i] * w[j]`, then
`y[o] = full[o + crop_start]` (zero outside `full`; a negative crop adds zero rows):

| axis | in | kernel | stride | dilation | crop start | crop end | full | out |
|---|---|---|---|---|---|---|---|---|
{rows}

## Layouts

- input: `batch x {in_layout}`, float32, `{u}_IN_COUNT` floats per item;
- output: the same layout with {g.out_channels} channels, `{u}_OUT_COUNT` floats per item;
- weights: `{u}_WEIGHT_COUNT` floats, the kernel as this style reads it ({kernel_order}),
  then the bias.  tconv derives it from the canonical (= Keras) kernel
  `(*kernel_size, filters, in_channels/groups)` of the {spec.framework} layer (stored in its
  {spec.kernel_layout} layout).  A PyTorch weight `w` `(in_channels, out_channels/groups,
  *kernel_size)` is canonical after `w.reshape(G, Cin/G, Cout/G, *k)`, moving the axes to
  `(*k, G, Cout/G, Cin/G)` and reshaping to `(*k, Cout, Cin/G)`; tconv does this itself when
  it exports a torch layer.

## Calling it

```c
#include "{p}.h"
/* input: batch * {u}_IN_COUNT floats, output: batch * {u}_OUT_COUNT floats */
{call}   /* 0 on success */
```

Files: `{p}.h`, `{p}.c`, `{p}_weights.c` (the library), `test_{p}.c` with
`{p}_input.bin`/`{p}_expected.bin` (from tconv's Python engine), `Makefile`, `CMakeLists.txt`.
`make` builds and runs the test (`make CC=clang` works too); `./test_{p} --bench 20` prints the
median time.  Fastest build: `make CFLAGS="-O3 -march=native -ffp-contract=fast -fopenmp"`.
Shared library: `make shared` (`cc -O3 -fPIC -shared {p}.c {p}_weights.c -lm`).

## How the loops map to the formula

{loops}

Accuracy: the harness passes when `|c - e| <= 1e-5*s + TERMS*FLT_EPSILON*s` with
`s = max(1, max|e|)` and TERMS = {spec.max_terms} (the most products summed into one output).
"""


def project_files(spec: Spec, style: str, weights: str, blob: np.ndarray) -> dict[str, str]:
    """The text files of an export: file name -> contents."""
    p = spec.name
    files: dict[str, str] = {
        f"{p}.h": emit.header_source(spec, weights, blob.size),
        f"{p}.c": emit.library_source(spec, style, weights),
        f"test_{p}.c": _harness(spec, weights),
        "Makefile": makefile(p, fastest="-O3 -march=native -ffp-contract=fast -fopenmp"),
        "CMakeLists.txt": cmake_lists(p),
        "README.md": _readme(spec, style, weights),
    }
    if weights == "inline":
        files[f"{p}_weights.c"] = emit.weights_source(spec, blob)
    else:
        files[f"{p}_weights.c"] = _loader_source(spec)
    return files


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
    spec = from_layer(layer, input_shape, name)
    emit.check_style(style)
    if weights not in WEIGHTS_MODES:
        raise ValueError(f"weights must be one of {WEIGHTS_MODES}, got weights={weights!r}")
    blob = emit.weight_blob(spec, style)
    if not isinstance(batch, int) or batch < 0:
        raise ValueError(f"batch must be a non-negative int, got batch={batch!r}")
    if test_input is None:
        rng = np.random.default_rng(seed)
        x = rng.uniform(-1, 1, (batch, *spec.in_item)).astype(np.float32)
    else:
        x = np.asarray(test_input, dtype=np.float32)
        if x.shape[1:] != spec.in_item:
            raise ValueError(
                f"test_input shape {x.shape} must be (N, {', '.join(map(str, spec.in_item))})"
            )
    out = prepare_dir(out_dir, force)
    p = spec.name
    written = []
    for fname, text in project_files(spec, style, weights, blob).items():
        (out / fname).write_text(text)
        written.append(out / fname)
    if weights == "file":
        write_weights_file(out / f"{p}_weights.bin", blob)
        written.append(out / f"{p}_weights.bin")
    y = expected_output(layer, x)
    for suffix, data in (("input", x), ("expected", y)):
        path = out / f"{p}_{suffix}.bin"
        path.write_bytes(np.ascontiguousarray(data, dtype="<f4").tobytes())
        written.append(path)
    return written
