"""The runtime C library (tconv.h/tconv.c): the export grid and random sweep through ctypes, the
edge-case vectors in a C program under the sanitizers with gcc and clang, and the error codes."""

from __future__ import annotations

import ctypes
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close
from test_export_c import SANITIZE, STRICT, grid_layers, random_layers, tool

from tconv import cexport, cli
from tconv.cexport import runtime
from tconv.cexport.project import expected_output
from tconv.cexport.spec import from_layer
from tconv.layer import TransposedConv


class Params(ctypes.Structure):
    _fields_ = [
        ("rank", ctypes.c_int),
        *[(f, ctypes.c_int * 3) for f in ("size", "kernel", "stride", "dilation")],
        ("crop_start", ctypes.c_int * 3),
        ("crop_end", ctypes.c_int * 3),
        ("in_channels", ctypes.c_int),
        ("out_channels", ctypes.c_int),
        ("groups", ctypes.c_int),
        ("data_format", ctypes.c_int),
        ("activation", ctypes.c_int),
    ]


def params(layer: TransposedConv, shape: tuple[int, ...]) -> Params:
    g = layer.geometry(layer.spatial_shape((1, *shape)))
    p = Params()
    p.rank = g.rank
    for a, axis in enumerate(g.axes):
        for field in ("size", "kernel", "stride", "dilation", "crop_start", "crop_end"):
            getattr(p, field)[a] = getattr(axis, field)
    p.in_channels, p.out_channels, p.groups = g.in_channels, g.out_channels, g.groups
    p.data_format = int(layer.channels_first)
    p.activation = runtime.activation_ids()[layer.activation]
    return p


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    out = tmp_path_factory.mktemp("runtime")
    assert cli.main(["export-c", "--runtime", str(out)]) == 0
    cexport.compile_c(["tconv.c"], "libtconv.so", cflags=["-O2", *STRICT], shared=True, cwd=out)
    dll = ctypes.CDLL(str(out / "libtconv.so"))
    fp = ctypes.POINTER(ctypes.c_float)
    dll.tconv_forward.argtypes = [ctypes.POINTER(Params), fp, fp, fp, fp, ctypes.c_int]
    dll.tconv_strerror.restype = ctypes.c_char_p
    dll.tconv_output_count.restype = ctypes.c_long
    dll.tconv_input_count.restype = ctypes.c_long
    return dll


def forward(lib: ctypes.CDLL, layer: TransposedConv, x: np.ndarray) -> tuple[int, np.ndarray]:
    p = params(layer, x.shape[1:])
    kernel = np.ascontiguousarray(layer.kernel, np.float32)  # canonical = Keras layout
    bias = None if layer.bias is None else np.ascontiguousarray(layer.bias, np.float32)
    y = np.full((x.shape[0], *layer.output_shape(x.shape)[1:]), np.nan, np.float32)
    fp = ctypes.POINTER(ctypes.c_float)
    rc = lib.tconv_forward(
        ctypes.byref(p),
        kernel.ctypes.data_as(fp),
        None if bias is None else bias.ctypes.data_as(fp),
        np.ascontiguousarray(x, np.float32).ctypes.data_as(fp),
        y.ctypes.data_as(fp),
        x.shape[0],
    )
    return rc, y


def test_grid_and_sweep_through_ctypes(lib: ctypes.CDLL) -> None:
    for n, (layer, shape) in enumerate(grid_layers() + random_layers(30, seed=4)):
        x = np.random.default_rng(n).uniform(-1, 1, (2, *shape)).astype(np.float32)
        rc, y = forward(lib, layer, x)
        assert rc == 0, lib.tconv_strerror(rc)
        terms = from_layer(layer, shape, "t").max_terms
        assert_close(y, expected_output(layer, x), terms=terms)
        p = params(layer, shape)
        assert lib.tconv_output_count(ctypes.byref(p)) == int(np.prod(y.shape[1:]))
        assert lib.tconv_input_count(ctypes.byref(p)) == int(np.prod(shape))


def test_error_codes(lib: ctypes.CDLL) -> None:
    layer, shape = grid_layers()[6]  # groups=2
    x = np.zeros((1, *shape), np.float32)
    assert forward(lib, layer, x)[0] == 0
    base = params(layer, shape)
    fp = ctypes.POINTER(ctypes.c_float)
    buf = np.zeros(10**5, np.float32).ctypes.data_as(fp)

    def code(**changes: object) -> int:
        p = Params.from_buffer_copy(base)
        for field, value in changes.items():
            if isinstance(value, tuple):
                getattr(p, field)[value[0]] = value[1]
            else:
                setattr(p, field, value)
        return lib.tconv_forward(ctypes.byref(p), buf, None, buf, buf, 1)

    expected = {
        "TCONV_ERR_RANK": code(rank=4),
        "TCONV_ERR_SIZE": code(size=(0, 0)),
        "TCONV_ERR_KERNEL": code(kernel=(1, 0)),
        "TCONV_ERR_STRIDE": code(stride=(0, -1)),
        "TCONV_ERR_DILATION": code(dilation=(1, 0)),
        "TCONV_ERR_OUTPUT": code(crop_start=(0, 100)),
        "TCONV_ERR_CHANNELS": code(in_channels=0),
        "TCONV_ERR_GROUPS": code(groups=3),
        "TCONV_ERR_FORMAT": code(data_format=2),
        "TCONV_ERR_ACTIVATION": code(activation=99),
    }
    header = runtime.runtime_sources()["tconv.h"]
    for macro, rc in expected.items():
        assert f"#define {macro} ({rc})" in header, (macro, rc)
        assert rc < 0 and lib.tconv_strerror(rc) != b"unknown error"
    assert lib.tconv_forward(ctypes.byref(base), buf, None, buf, buf, -1) == -12
    assert lib.tconv_forward(ctypes.byref(base), None, None, buf, buf, 1) == -1
    assert lib.tconv_forward(None, buf, None, buf, buf, 1) == -1
    assert b"groups" in lib.tconv_strerror(-8)


def test_edge_vectors_in_c_under_sanitizers(tmp_path: Path) -> None:
    """A C program runs every case of `tconv vectors --suite edge` through tconv_forward."""
    vec, rt = tmp_path / "vectors", tmp_path / "rt"
    assert cli.main(["vectors", "--suite", "edge", "--out", str(vec)]) == 0
    cexport.write_runtime(rt)
    manifest = json.loads((vec / "manifest.json").read_text())
    ids = runtime.activation_ids()
    biggest = max(int(np.prod(c["shapes"]["expected"])) for c in manifest["cases"])
    lines = [
        "#define TCONV_VECTORS_IMPLEMENTATION",
        f'#include "{vec / "tconv_vectors.h"}"',
        f'#include "{rt / "tconv.h"}"',
        "#include <float.h>\n#include <math.h>\n#include <stdio.h>\n#include <string.h>",
        f"static float out[{biggest}];",
        """static int check(const char *name, const tconv_params *p, const float *k,
                 const float *b, const float *x, const float *e, long n, int batch, int terms)
{
    double err = 0.0, scale = 1.0;
    long i;
    int rc = tconv_forward(p, k, b, x, out, batch);
    if (rc != TCONV_OK) { printf("%s: %s: FAIL\\n", name, tconv_strerror(rc)); return 1; }
    for (i = 0; i < n; ++i) {
        if (fabs(e[i]) > scale) scale = fabs(e[i]);
        if (fabs((double)out[i] - e[i]) > err) err = fabs((double)out[i] - e[i]);
    }
    rc = err <= 1e-5 * scale + terms * (double)FLT_EPSILON * scale;
    printf("%s: max abs error %.3g: %s\\n", name, err, rc ? "PASS" : "FAIL");
    return !rc;
}""",
        "int main(void)\n{\n    int bad = 0;\n    tconv_params p;",
    ]
    for case in manifest["cases"]:
        if not case["in_c_header"]:
            continue
        n, u = case["name"], case["name"].upper()
        kernel = f"{n}_kernel_canonical" if "kernel_canonical" in case["files"] else f"{n}_kernel"
        bias = f"{n}_bias" if "bias" in case["files"] else "NULL"
        lines.append("    memset(&p, 0, sizeof p);")
        lines.append(f"    p.rank = {u}_RANK;")
        for a in range(len(case["geometry"]["axes"])):
            for field in ("size", "kernel", "stride", "dilation", "crop_start", "crop_end"):
                lines.append(f"    p.{field}[{a}] = {u}_{field.upper()}{a};")
        lines.append(
            f"    p.in_channels = {u}_IN_CHANNELS; p.out_channels = {u}_OUT_CHANNELS; "
            f"p.groups = {u}_GROUPS;"
        )
        lines.append(f"    p.data_format = {u}_CHANNELS_FIRST;")
        lines.append(f"    p.activation = {ids[case['activation']]};")
        lines.append(
            f'    bad += check("{n}", &p, {kernel}, {bias}, {n}_input, {n}_expected, '
            f"{u}_EXPECTED_COUNT, {u}_BATCH, {case['max_terms']});"
        )
    lines.append("    return bad != 0;\n}\n")
    (tmp_path / "main.c").write_text("\n".join(lines))
    count = sum(c["in_c_header"] for c in manifest["cases"])
    assert count == len(manifest["cases"])
    for cc in ("gcc", "clang"):
        tool(cc)
        exe = tmp_path / f"main_{cc}"
        cexport.compile_c(
            [tmp_path / "main.c", rt / "tconv.c"], exe, cc=cc, cflags=[*STRICT, *SANITIZE]
        )
        done = subprocess.run([exe], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.count(": PASS") == count, done.stdout


def test_runtime_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("")
    with pytest.raises(ValueError, match="not empty"):
        cexport.write_runtime(tmp_path)
    assert len(cexport.write_runtime(tmp_path, force=True)) == 2
