"""Exported C: every style against the engine over a grid and a random sweep, compiled with gcc
and clang under -std=c99 -Wall -Wextra -Wpedantic -Werror and AddressSanitizer +
UndefinedBehaviorSanitizer; a few under valgrind; the shared library through ctypes.

To keep compile counts low, many exports are compiled as one program: a driver that includes
each export's library and harness (built with -DTCONV_NO_MAIN) and runs every harness.  Each
harness checks |c - e| <= 1e-5*s + TERMS*eps32*s, s = max(1, max|e|) against the engine's
float64 result for the float32 weights (TERMS = the most products summed into one output).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from conftest import REQUIRE_PEERS, assert_close, peer

from tconv import activations, cexport
from tconv.cexport import project
from tconv.kernels import build, emit
from tconv.layer import KERAS, TORCH, TransposedConv

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]
SANITIZE = ["-O0", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
SANITIZE += ["-fno-omit-frame-pointer"]
ACTIVATIONS = sorted(activations.ACTIVATIONS)
THREADED = (*build.FAST_FLAGS, "-DTCONV_PARALLEL_MACS=0")  # small layers on every thread too


def tool(name: str) -> str:
    """A system tool the tests drive: skip without it, fail under TCONV_REQUIRE_PEERS=1."""
    path = shutil.which(name)
    if path is None:
        if REQUIRE_PEERS:
            pytest.fail(f"{name} is required (TCONV_REQUIRE_PEERS=1) but not installed")
        pytest.skip(f"{name} not installed")
    return name


def make_layer(
    kernel: tuple[int, ...],
    cin: int,
    cout: int,
    *,
    strides: tuple[int, ...] | None = None,
    dilation: tuple[int, ...] | None = None,
    crops: list[tuple[int, int]] | None = None,
    groups: int = 1,
    activation: str | None = None,
    bias: bool = True,
    channels_first: bool = False,
    torch_layout: bool = False,
    seed: int = 0,
) -> TransposedConv:
    """A layer with explicit canonical crops (any geometry the engine supports)."""
    rank = len(kernel)
    rng = np.random.default_rng(seed)
    w = rng.uniform(-1, 1, (*kernel, cout, cin // groups)).astype(np.float32)
    b = rng.uniform(-1, 1, cout).astype(np.float32) if bias else None
    fixed = crops or [(0, 0)] * rank
    return TransposedConv(
        w,
        b,
        strides or (1,) * rank,
        dilation or (1,) * rank,
        lambda spatial: fixed,
        groups=groups,
        activation=activation,
        data_format="channels_first" if channels_first else "channels_last",
        kernel_layout=TORCH if torch_layout else KERAS,
        framework="torch" if torch_layout else "keras",
    )


def item_shape(layer: TransposedConv, spatial: tuple[int, ...]) -> tuple[int, ...]:
    c = layer.in_channels
    return (c, *spatial) if layer.channels_first else (*spatial, c)


# (kernel, cin, cout, options, spatial input): the grid of geometries.
GRID: list[tuple[tuple[int, ...], int, int, dict, tuple[int, ...]]] = [
    ((3, 3), 4, 6, dict(strides=(2, 2), crops=[(1, 0), (1, 0)]), (5, 4)),  # Keras same
    ((4, 4), 3, 5, dict(strides=(2, 2), crops=[(1, 1), (1, 1)]), (3, 4)),  # even, same
    ((2, 3), 2, 3, dict(strides=(3, 4), crops=[(0, -1), (0, -1)]), (3, 2)),  # stride > kernel
    ((3,), 4, 4, dict(strides=(2,), crops=[(1, -1)]), (6,)),  # output_padding (neg. crop)
    ((3, 2), 3, 4, dict(dilation=(2, 3), crops=[(1, 2), (0, 1)]), (4, 3)),  # dilation
    ((3, 3), 4, 6, dict(strides=(2, 2), dilation=(2, 2)), (3, 3)),  # dilation with stride
    ((3, 3), 4, 6, dict(strides=(2, 2), groups=2, crops=[(1, 0), (1, 0)]), (3, 4)),
    ((2, 2, 2), 2, 3, dict(strides=(2, 2, 2)), (2, 3, 2)),  # 3D, kernel == stride
    ((3, 3, 3), 4, 4, dict(strides=(2, 1, 2), groups=4, crops=[(1, 1), (0, 2), (2, 0)]), (2, 3, 3)),
    ((1, 1), 5, 3, {}, (3, 3)),  # 1x1
    ((3, 3), 1, 1, dict(strides=(2, 2), crops=[(1, 0), (1, 0)]), (1, 1)),  # 1 pixel, 1 channel
    ((5,), 3, 2, dict(strides=(3,), crops=[(-2, -3)]), (1,)),  # zero rows on both sides
    ((3, 3), 4, 40, dict(strides=(2, 2), crops=[(1, 0), (1, 0)]), (9, 10)),  # channel blocks
    ((3, 3), 3, 6, dict(strides=(2, 2), crops=[(1, 0), (1, 0)], channels_first=True), (4, 5)),
    ((2, 3, 2), 4, 2, dict(strides=(1, 2, 3), groups=2, channels_first=True), (2, 2, 3)),
    ((4,), 6, 9, dict(strides=(2,), groups=3, bias=False, torch_layout=True), (5,)),
    ((3, 3), 2, 3, dict(strides=(2, 2), crops=[(5, 5), (0, 0)]), (6, 2)),  # crops > span
    ((16,), 4, 3, dict(strides=(8,), crops=[(4, 4)]), (5,)),  # audio-like k16 s8
]


def grid_layers() -> list[tuple[TransposedConv, tuple[int, ...]]]:
    out = []
    for n, (kernel, cin, cout, opts, spatial) in enumerate(GRID):
        act = ACTIVATIONS[n % len(ACTIVATIONS)]
        layer = make_layer(kernel, cin, cout, activation=act, seed=n, **opts)
        out.append((layer, item_shape(layer, spatial)))
    # every activation once, on a small layer with values around the interesting ranges
    for n, act in enumerate(ACTIVATIONS):
        layer = make_layer(
            (3, 2), 3, 4, strides=(2, 1), crops=[(1, 0), (0, 1)], activation=act, seed=n
        )
        layer.kernel = layer.kernel * 3
        out.append((layer, item_shape(layer, (3, 3))))
    return out


def random_layers(count: int, seed: int) -> list[tuple[TransposedConv, tuple[int, ...]]]:
    """A seeded random sweep over the canonical geometry."""
    rng = np.random.default_rng(seed)
    out: list[tuple[TransposedConv, tuple[int, ...]]] = []
    while len(out) < count:
        rank = int(rng.integers(1, 4))
        kernel = tuple(int(v) for v in rng.integers(1, 6, rank))
        strides = tuple(int(v) for v in rng.integers(1, 5, rank))
        dilation = tuple(int(v) for v in rng.integers(1, 4, rank))
        sizes = tuple(int(v) for v in rng.integers(1, 6, rank))
        crops = []
        for k, s, d, n in zip(kernel, strides, dilation, sizes, strict=True):
            full = (n - 1) * s + d * (k - 1) + 1
            b = int(rng.integers(-2, full))
            e = int(rng.integers(-2, max(-1, full - b - 1) + 1))
            crops.append((b, min(e, full - b - 1)))
        groups = int(rng.choice([1, 1, 2, 3]))
        cin = groups * int(rng.integers(1, 4))
        cout = groups * int(rng.integers(1, 5))
        layer = make_layer(
            kernel,
            cin,
            cout,
            strides=strides,
            dilation=dilation,
            crops=crops,
            groups=groups,
            activation=str(rng.choice(ACTIVATIONS)),
            bias=bool(rng.integers(0, 2)),
            channels_first=bool(rng.integers(0, 2)),
            seed=len(out),
        )
        out.append((layer, item_shape(layer, sizes)))
    return out


def export_all(
    layers: list[tuple[TransposedConv, tuple[int, ...]]],
    root: Path,
    styles: tuple[str, ...],
    prefix: str,
    weights: str = "inline",
    batch: int = 2,
) -> list[tuple[Path, str]]:
    exports = []
    for n, (layer, shape) in enumerate(layers):
        for style in styles:
            name = f"{prefix}{n}_{style}"
            out = root / name
            cexport.export_c(
                layer,
                out,
                name=name,
                style=style,
                input_shape=shape,
                weights=weights,
                batch=batch,
                seed=n,
            )
            exports.append((out, name))
    return exports


def build_driver(exports: list[tuple[Path, str]], root: Path, cc: str, flags: list[str]) -> Path:
    """One program running the harness of every export; returns the executable."""
    lines = ["#define _POSIX_C_SOURCE 199309L", "#define TCONV_NO_MAIN"]
    for folder, name in exports:
        for f in (f"{name}.c", f"{name}_weights.c", f"test_{name}.c"):
            lines.append(f'#include "{folder / f}"')
    lines.append("int main(void)\n{\n    int bad = 0;")
    lines += [f'    bad += {name}_check("{folder}", 0);' for folder, name in exports]
    lines.append("    return bad != 0;\n}\n")
    driver = root / "driver.c"
    driver.write_text("\n".join(lines))
    exe = root / f"driver_{Path(cc).name}"
    cexport.compile_c([driver], exe, cc=cc, cflags=flags)
    return exe


def run_driver(exe: Path, exports: list[tuple[Path, str]], prefix: Sequence[str] = ()) -> None:
    done = subprocess.run([*prefix, str(exe)], capture_output=True, text=True, timeout=600)
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(lines) == len(exports), done.stdout
    assert all(ln.endswith(": PASS") for ln in lines), done.stdout
    assert not done.stderr.strip(), done.stderr[-3000:]


@pytest.fixture(scope="module")
def grid_exports(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    root = tmp_path_factory.mktemp("grid")
    layers = grid_layers()
    exports = export_all(layers, root, ("fast", "reference", "scatter"), "g")
    exports += export_all(random_layers(30, seed=4), root, ("fast", "reference"), "r", batch=3)
    return exports


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_grid_and_sweep_under_sanitizers(
    cc: str, grid_exports: list[tuple[Path, str]], tmp_path: Path
) -> None:
    tool(cc)
    exe = build_driver(grid_exports, tmp_path, cc, [*STRICT, *SANITIZE])
    run_driver(exe, grid_exports)


def test_valgrind_memcheck(tmp_path: Path) -> None:
    tool("valgrind")
    layers = grid_layers()[:4]
    exports = export_all(layers, tmp_path, ("fast", "reference"), "v")
    exports += export_all(layers[:2], tmp_path / "f", ("fast",), "vf", weights="file")
    exe = build_driver(exports, tmp_path, "gcc", ["-O1", "-g", *STRICT])
    run_driver(exe, exports, ["valgrind", "-q", "--error-exitcode=3", "--leak-check=full"])


def test_optimised_openmp_build_matches(tmp_path: Path) -> None:
    """-O3 -march=native -fopenmp, two threads: identical to the sequential build."""
    layer, shape = grid_layers()[12]
    seq = cexport.build_shared(layer, shape, cache_dir=tmp_path)
    par = cexport.build_shared(layer, shape, cflags=THREADED, openmp=True, cache_dir=tmp_path)
    assert par.set_threads(2) == 2
    x = np.random.default_rng(0).uniform(-1, 1, (3, *shape)).astype(np.float32)
    np.testing.assert_array_equal(seq(x), par(x))
    assert_close(par(x), project.expected_output(layer, x), terms=9 * 4)
    cexport.export_c(layer, tmp_path / "e", name="omp", input_shape=shape)
    for cc in ("gcc", "clang"):  # the pragma compiles warning-free under the strict flags
        tool(cc)
        cmd = [cc, *STRICT, "-O2", "-fopenmp", "-c", "omp.c"]
        done = subprocess.run(cmd, cwd=tmp_path / "e", capture_output=True, text=True)
        assert done.returncode == 0 and not done.stderr, done.stderr
    # and clang links it with its own OpenMP runtime (libomp): same numbers on 2 threads
    clang = cexport.build_shared(
        layer, shape, cflags=THREADED, openmp=True, cc="clang", cache_dir=tmp_path
    )
    assert clang.set_threads(2) == 2
    assert_close(clang(x), project.expected_output(layer, x), terms=9 * 4)


@pytest.mark.parametrize(
    ("kernel", "strides", "crops", "spatial", "groups"),
    [
        ((3, 3), (2, 2), [(0, 1), (0, 1)], (19, 23), 1),  # phases of unequal size and taps
        ((4,), (3,), [(2, 1)], (301,), 2),
        ((3, 2, 2), (2, 1, 2), [(1, 0), (0, 0), (1, 1)], (5, 6, 7), 1),
    ],
)
def test_openmp_parts_of_phases(kernel, strides, crops, spatial, groups, tmp_path: Path) -> None:  # noqa: ANN001
    """Phases cut into parts (PARTS > 1, block counts not divisible by it) cover every output
    once, threaded or not; outputs are 64-byte aligned (threads share no cache line there)."""
    layer = make_layer(kernel, 4, 6, strides=strides, crops=crops, groups=groups, seed=5)
    shape = item_shape(layer, spatial)
    spec = cexport.spec.from_layer(layer, shape, "parts")
    assert int(re.search(r"#define PARTS\s+(\d+)", emit.library_source(spec, "fast"))[1]) > 1
    seq = cexport.build_shared(layer, shape, cache_dir=tmp_path)
    par = cexport.build_shared(layer, shape, cflags=THREADED, openmp=True, cache_dir=tmp_path)
    assert par.set_threads(2) == 2
    x = np.random.default_rng(0).uniform(-1, 1, (2, *shape)).astype(np.float32)
    y = par(x)
    assert y.ctypes.data % 64 == 0
    np.testing.assert_array_equal(seq(x), y)
    assert_close(y, project.expected_output(layer, x), terms=int(np.prod(kernel)) * 4)


def test_aligned_empty() -> None:
    for shape in [(0,), (3, 5), (1, 7, 9, 2)]:
        a = build.aligned_empty(shape)
        assert a.shape == shape and a.dtype == np.float32 and a.flags.c_contiguous
        assert a.flags.writeable and (a.size == 0 or a.ctypes.data % 64 == 0)


@pytest.mark.parametrize("style", emit.STYLES)
def test_shared_library_through_ctypes(style: str, tmp_path: Path) -> None:
    layer, shape = grid_layers()[13]  # channels_first
    lib = cexport.build_shared(layer, shape, style=style, cache_dir=tmp_path)
    assert lib._weights.ctypes.data % 64 == 0  # a copy on a cache line (see CompiledLayer)
    for batch in (0, 1, 4):
        x = np.random.default_rng(batch).uniform(-1, 1, (batch, *shape)).astype(np.float32)
        assert_close(lib(x), project.expected_output(layer, x), terms=9 * 3)
    with pytest.raises(ValueError, match="does not match"):
        lib(np.zeros((1, 2, 2, 2), np.float32))


def test_both_task_orders_give_the_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast style numbers a call's tasks with the filter block or the item varying fastest
    (weights up to emit.SMALL_WEIGHTS bytes or more): either order gives the engine's output,
    bit for bit the same, on a layer with groups, 3 filter blocks a group and a batch of 16
    (past PARALLEL_MACS), in one call and shared by threads."""
    layer = make_layer((3, 3), 8, 80, strides=(2, 2), crops=[(1, 0), (0, 1)], groups=2, seed=4)
    x = np.random.default_rng(5).uniform(-1, 1, (16, 5, 6, 8)).astype(np.float32)
    outputs = []
    for limit in (1 << 40, 0):
        monkeypatch.setattr(emit, "SMALL_WEIGHTS", limit)
        source = emit.library_source(cexport.spec.from_layer(layer, (5, 6, 8), "t"), "fast")
        varies = "filter block" if limit else "item"
        assert f"/* the {varies} varies fastest:" in source
        lib = cexport.build_shared(layer, (5, 6, 8), cache_dir=tmp_path / str(limit))
        outputs.append((lib(x), lib.shared(x, 2)))
    assert_close(outputs[0][0], project.expected_output(layer, x), terms=9 * 4)
    for whole, shared in outputs:
        assert np.array_equal(whole, outputs[0][0]) and np.array_equal(shared, whole)


def test_inline_export_as_shared_library(tmp_path: Path) -> None:
    """The library part of an export (every .c but test_*.c) builds with -O3 -march=native
    -fPIC -shared and is callable through ctypes; error codes for bad arguments."""
    import ctypes

    layer, shape = grid_layers()[0]
    out = tmp_path / "e"
    cexport.export_c(layer, out, name="lay", input_shape=shape)
    sources = sorted(p.name for p in out.glob("*.c") if not p.name.startswith("test_"))
    assert sources == ["lay.c", "lay_weights.c"]
    cexport.compile_c(sources, "liblay.so", cflags=["-O3", "-march=native"], shared=True, cwd=out)
    lib = ctypes.CDLL(str(out / "liblay.so"))
    fp = ctypes.POINTER(ctypes.c_float)
    lib.lay.argtypes = [fp, fp, ctypes.c_int]
    x = np.fromfile(out / "lay_input.bin", "<f4").reshape(-1, *shape)
    y = np.empty((x.shape[0], *layer.output_shape((1, *shape))[1:]), np.float32)
    assert lib.lay(x.ctypes.data_as(fp), y.ctypes.data_as(fp), x.shape[0]) == 0
    assert_close(y, np.fromfile(out / "lay_expected.bin", "<f4").reshape(y.shape), terms=36)
    assert lib.lay(x.ctypes.data_as(fp), y.ctypes.data_as(fp), -1) == -1  # LAY_ERR_BATCH
    assert lib.lay(None, y.ctypes.data_as(fp), 1) == -2  # LAY_ERR_NULL


@pytest.mark.parametrize("kernel", [3, 4])
def test_seed_layer_gcc_and_clang(kernel: int, tmp_path: Path) -> None:
    """The seed layer (8x8x1024 -> 16x16x512, stride 2, Keras same) in both styles, built
    warning-free by gcc and clang, matches the engine."""
    crop = (kernel - 2) // 2
    layer = make_layer(
        (kernel, kernel),
        1024,
        512,
        strides=(2, 2),
        crops=[(crop, kernel - 2 - crop)] * 2,
        activation="relu",
    )
    for style in ("fast", "reference"):
        out = tmp_path / style
        cexport.export_c(
            layer, out, name="seed", style=style, input_shape=(8, 8, 1024), weights="file", batch=1
        )
        for cc in ("gcc", "clang"):
            tool(cc)
            ok, text = cexport.verify(out, "seed", cc=cc)
            assert ok and "PASS" in text, text


def test_fast_style_vectorizes(tmp_path: Path) -> None:
    """-O3 -march=native turns the register block into vector FMAs, with gcc and clang (x86
    with AVX2 and FMA)."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if " fma " not in flags or " avx2 " not in flags:
        pytest.skip("the vector FMA check needs an x86 CPU with AVX2 and FMA")
    layer = make_layer((3, 3), 256, 128, strides=(2, 2), crops=[(1, 0), (1, 0)])
    cexport.export_c(layer, tmp_path, name="v", input_shape=(8, 8, 256), weights="file", batch=0)
    for cc in ("gcc", "clang"):
        tool(cc)
        asm = subprocess.run(
            [cc, "-O3", "-march=native", "-S", "-o", "-", "v.c"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        fmas = re.findall(r"vfmadd\w*ps\s+[^\n]*%[yz]mm", asm)
        assert len(fmas) >= 8, f"{cc}: no vector FMAs in the fast style's inner loop"


def test_hex_literals_keep_every_bit(tmp_path: Path) -> None:
    layer = make_layer((3,), 2, 3, strides=(2,))
    kernel = layer.kernel.copy()  # a layer's weights are read-only: assign new ones
    kernel.flat[:4] = [np.float32(1e-45), np.float32(-0.0), np.float32(3.4e38), 0.1]
    layer.kernel = kernel
    cexport.export_c(layer, tmp_path, name="hx", style="reference", input_shape=(4, 2))
    text = (tmp_path / "hx_weights.c").read_text()
    body = text[text.index("= {") + 3 : text.rindex("}")]
    values = [float.fromhex(v.strip().rstrip("f")) for v in body.split(",") if v.strip()]
    blob = emit.weight_blob(cexport.spec.from_layer(layer, (4, 2), "hx"), "reference")
    np.testing.assert_array_equal(
        np.array(values, np.float32).view(np.uint32), blob.view(np.uint32)
    )


def test_make_and_cmake(tmp_path: Path) -> None:
    layer, shape = grid_layers()[1]
    cexport.export_c(layer, tmp_path / "m", name="mk", input_shape=shape, weights="file")
    for cc in ("gcc", "clang"):
        tool(cc)
        done = subprocess.run(
            ["make", "-s", f"CC={cc}", "CFLAGS=-O2 -std=c99 -Wall -Wextra -Wpedantic -Werror"],
            cwd=tmp_path / "m",
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0 and "PASS" in done.stdout, done.stdout + done.stderr
        subprocess.run(["make", "-s", "clean"], cwd=tmp_path / "m", check=True)
    tool("cmake")
    build = tmp_path / "build"
    steps = [
        ["cmake", "-S", str(tmp_path / "m"), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"],
        ["cmake", "--build", str(build)],
        ["ctest", "--test-dir", str(build), "--output-on-failure"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_bench_flag_prints_median(tmp_path: Path) -> None:
    layer, shape = grid_layers()[0]
    cexport.export_c(layer, tmp_path, name="b", input_shape=shape)
    cexport.compile_c(["test_b.c", "b.c", "b_weights.c"], "test_b", cwd=tmp_path)
    done = subprocess.run(
        ["./test_b", "--bench", "5"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"median [0-9.]+ ms over 5 runs, [0-9.]+ GFLOP/s", done.stdout)


def test_weights_file_loader_reports_errors(tmp_path: Path) -> None:
    layer, shape = grid_layers()[0]
    cexport.export_c(layer, tmp_path, name="wf", input_shape=shape, weights="file")
    cexport.compile_c(["test_wf.c", "wf.c", "wf_weights.c"], "test_wf", cwd=tmp_path)
    good = (tmp_path / "wf_weights.bin").read_bytes()

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(["./test_wf"], cwd=tmp_path, capture_output=True, text=True)

    assert run().returncode == 0
    cases = {
        good[:-4]: "shorter than its header",
        good + b"\0\0\0\0": "different number of weights",
        good[:8] + struct.pack("<I", len(good) // 4) + good[12:]: "different number of weights",
        b"NOTTCONV" + good[8:]: "bad magic",
        good[:10]: "bad magic",
    }
    for data, message in cases.items():
        (tmp_path / "wf_weights.bin").write_bytes(data)
        done = run()
        assert done.returncode == 1 and message in done.stderr, done.stderr
    (tmp_path / "wf_weights.bin").unlink()
    assert "cannot open" in run().stderr


def test_errors(tmp_path: Path) -> None:
    layer, shape = grid_layers()[0]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ValueError, match="not empty; refusing to overwrite"):
        cexport.export_c(layer, tmp_path / "full", input_shape=shape)
    cexport.export_c(layer, tmp_path / "full", input_shape=shape, force=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a folder"):
        cexport.export_c(layer, tmp_path / "file", input_shape=shape)
    if os.geteuid() != 0:
        (tmp_path / "ro").mkdir(mode=0o500)
        with pytest.raises(ValueError, match="not writable"):
            cexport.export_c(layer, tmp_path / "ro", input_shape=shape)
    for name, rule in [
        ("2d", "not a C identifier"),
        ("a-b", "not a C identifier"),
        ("int", "C keyword"),
        ("__x", "reserved"),
    ]:
        with pytest.raises(ValueError, match=rule):
            cexport.export_c(layer, tmp_path / "n", name=name, input_shape=shape)
    with pytest.raises(ValueError, match="style must be one of"):
        cexport.export_c(layer, tmp_path / "s", style="turbo", input_shape=shape)
    with pytest.raises(ValueError, match="weights must be one of"):
        cexport.export_c(layer, tmp_path / "s", weights="csv", input_shape=shape)
    with pytest.raises(ValueError, match="input_shape is required"):
        cexport.export_c(layer, tmp_path / "s")
    layer.input_shape = (None, None, 4)
    with pytest.raises(ValueError, match="unknown dimensions"):
        cexport.export_c(layer, tmp_path / "s")
    layer.input_shape = None
    with pytest.raises(ValueError, match="channels"):
        cexport.export_c(layer, tmp_path / "s", input_shape=(5, 4, 3))
    with pytest.raises(TypeError, match="TransposedConv"):
        cexport.export_c(object(), tmp_path / "s", input_shape=shape)  # type: ignore[arg-type]
    assert not (tmp_path / "s").exists()


def test_missing_compiler_names_what_was_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "no-such-cc")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuntimeError, match=r"tried \$CC \(no-such-cc\), cc, gcc, clang"):
        cexport.find_compiler()
    with pytest.raises(RuntimeError, match="tried my-cc"):
        cexport.find_compiler("my-cc")


def test_layer_from_a_real_keras_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A Conv2DTranspose saved by real Keras, loaded with tconv.keras.load_layers, exported
    and verified by the command line (gcc; against the engine and against Keras), then built
    with clang too."""
    keras = peer("keras")
    from tconv import cli
    from tconv.keras import load_layers

    model = keras.Sequential(
        [
            keras.Input((6, 5, 16)),
            keras.layers.Conv2DTranspose(
                24, 3, strides=2, padding="same", activation="relu", name="up"
            ),
            keras.layers.Conv2DTranspose(3, 4, strides=2, padding="same", name="rgb"),
        ]
    )
    for w in model.weights:
        w.assign(np.random.default_rng(0).uniform(-1, 1, w.shape).astype(np.float32))
    path = tmp_path / "model.keras"
    model.save(path)
    for name, style in (("up", "fast"), ("rgb", "reference")):
        out = tmp_path / name
        argv = ["export-c", str(path), "--layer", name, "--out", str(out), "--style", style]
        assert cli.main([*argv, "--name", name, "--verify", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)["verify"]
        assert report["passed"] and "PASS" in report["harness"]
        assert report["keras"] == "compared" and report["max_abs_error_vs_keras"] < 1e-4
        tool("clang")
        ok, text = cexport.verify(out, name, cc="clang")
        assert ok, text
    layer = load_layers(path)["rgb"]
    assert layer.input_shape == (12, 10, 24)


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tconv import cli

    base = [
        "export-c",
        "--input-shape",
        "4,3,5",
        "--filters",
        "6",
        "--kernel-size",
        "3",
        "--strides",
        "2",
        "--padding",
        "same",
        "--output-padding",
        "1",
        "--activation",
        "gelu",
        "--style",
        "reference",
    ]
    out = tmp_path / "c"
    assert cli.main([*base, "--out", str(out), "--verify", "--json", "--cc", "gcc"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verify"]["passed"] and report["verify"]["max_abs_error_vs_engine"] < 1e-5
    assert cli.main([*base, "--out", str(out)]) == 2
    assert "not empty; refusing to overwrite (use force=True, or --force" in capsys.readouterr().err
    assert cli.main([*base, "--out", str(out), "--force", "--name", "for"]) == 2
    assert "name='for' is a C keyword" in capsys.readouterr().err
    assert cli.main([*base]) == 2
    assert "give --out DIR" in capsys.readouterr().err
    assert cli.main([*base, "--out", str(tmp_path / "d"), "--verify", "--cc", "no-cc"]) == 2
    assert "no C compiler found (tried no-cc)" in capsys.readouterr().err
    assert cli.main(["export-c", "--runtime", str(tmp_path / "rt")]) == 0
    assert sorted(p.name for p in (tmp_path / "rt").iterdir()) == ["tconv.c", "tconv.h"]


def test_build_shared_caches_and_reports_compiler_errors(tmp_path: Path) -> None:
    layer, shape = grid_layers()[0]
    first = cexport.build_shared(layer, shape, cache_dir=tmp_path / "cache", cflags=["-O1"])
    again = cexport.build_shared(layer, shape, cache_dir=tmp_path / "cache", cflags=["-O1"])
    assert first.path == again.path and first.path.exists()
    with pytest.raises(RuntimeError, match="compiling failed"):
        cexport.build_shared(layer, shape, cache_dir=tmp_path / "cache", cflags=["-no-such-flag"])
    assert len(list((tmp_path / "cache").iterdir())) == 1  # the failed build left nothing


def test_verify_survives_keras_dying(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--verify runs Keras in a child process (tconv.peers): where TensorFlow aborts (its
    oneDNN kernels do on some CPUs) the C is still verified and the Keras comparison is
    reported as skipped, with the reason."""
    peer("keras")
    from tconv import cli, peers

    def died(target, items, timeout=300.0):  # noqa: ANN001, ANN202
        return [{"status": "died", "returncode": -6, "stderr": "Fatal Python error: Aborted"}]

    monkeypatch.setattr(peers, "run_each", died)
    argv = ["export-c", "--input-shape", "4,3,2", "--filters", "3", "--kernel-size", "3"]
    assert cli.main([*argv, "--strides", "2", "--out", str(tmp_path / "c"), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out
    assert "Keras comparison skipped: keras could not run the layer: Keras took its process " in out
    assert "(signal 6; TensorFlow's oneDNN kernels do so) Fatal Python error: Aborted" in out


def test_seed_layer_exports_inline_and_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The layer of the original question (4.7 M weights) exports with const weights in
    NAME_weights.c by default, and its harness compiles and passes (issue 9)."""
    from tconv import cli

    out = tmp_path / "seed"
    argv = ["export-c", "--input-shape", "8,8,1024", "--filters", "512", "--kernel-size", "3"]
    argv += ["--strides", "2", "--padding", "same", "--name", "seed", "--out", str(out)]
    assert cli.main([*argv, "--verify", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["verify"]
    assert report["passed"] and report["max_abs_error_vs_engine"] < 1e-4
    peer("keras")
    assert report["keras"] == "compared" and report["max_abs_error_vs_keras"] < 1e-4
    source = (out / "seed_weights.c").read_text()
    assert "const float seed_weights[SEED_WEIGHT_COUNT] = {" in source
    assert "#define SEED_WEIGHT_COUNT 4719104 " in (out / "seed.h").read_text()
    assert not (out / "seed_weights.bin").exists()


def test_an_item_too_big_for_int_indexes_is_refused(tmp_path: Path) -> None:
    """The C indexes one item with int: an output item of 4.1e9 floats is a clear error."""
    from tconv.keras import Conv2DTranspose

    layer = Conv2DTranspose(64, 3, strides=1000, padding="same")
    layer.build((1, 8, 8, 16))
    with pytest.raises(ValueError, match=r"holds 4096000000 floats \(8000x8000x64\).*int"):
        cexport.export_c(layer, tmp_path, input_shape=(8, 8, 16), batch=0)
