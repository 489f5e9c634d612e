"""The exported C on every target: each branch of the fast style's micro-kernel (AVX-512,
AVX2 + FMA, portable C99 on x86; NEON on aarch64 under qemu) passes the test vectors of the
grid, with gcc and clang, under -Werror; and every style compiles warning-free for a Cortex-M4F
and a Cortex-M7 (arm-none-eabi-gcc).

The exports are compiled as one program per target (see ``build_driver`` in test_export_c):
each harness checks the C's output against the engine's float64 result for the float32
weights, so a branch that computes anything else fails here.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from test_export_c import (
    SANITIZE,
    STRICT,
    build_driver,
    export_all,
    grid_layers,
    item_shape,
    make_layer,
    run_driver,
    tool,
)

from tconv import cexport
from tconv.kernels import build, emit, microkernel
from tconv.layer import TransposedConv

# Wider layers than the grid's: blocks of 32 and 16 filters (every vector branch), groups of 32,
# channels first, phases of 40 and 63 outputs (MR 8, 12, ...), a 1D kernel 16, stride 8, and
# channels passed in chunks (microkernel.CHANNEL_BLOCKS).
WIDE: list[tuple[tuple[int, ...], int, int, dict, tuple[int, ...]]] = [
    ((3, 3), 8, 64, dict(strides=(2, 2), crops=[(1, 0), (1, 0)]), (7, 9)),
    ((3,), 5, 32, dict(strides=(2,), crops=[(1, 0)]), (40,)),
    ((3, 3, 3), 4, 48, dict(strides=(2, 2, 2), crops=[(1, 0)] * 3), (3, 3, 2)),
    ((2, 2), 6, 32, dict(strides=(2, 2), channels_first=True), (4, 5)),
    ((4, 4), 4, 64, dict(strides=(2, 2), groups=2, crops=[(1, 1), (1, 1)]), (5, 3)),
    ((16,), 6, 32, dict(strides=(8,), crops=[(4, 4)]), (9,)),
    ((3, 3), 7, 20, dict(strides=(1, 2), dilation=(2, 1), activation="relu"), (4, 6)),
    # 600 channels: the AVX2 branch runs them 256 at a time (256, 256, 88) over groups of
    # register blocks (15 blocks a phase: a group of 12 and one of 3)
    ((3, 3), 600, 40, dict(strides=(2, 2), crops=[(1, 0), (1, 0)]), (9, 10)),
]


def wide_layers() -> list[tuple[TransposedConv, tuple[int, ...]]]:
    out = []
    for n, (kernel, cin, cout, opts, spatial) in enumerate(WIDE):
        layer = make_layer(kernel, cin, cout, seed=100 + n, **opts)
        out.append((layer, item_shape(layer, spatial)))
    return out


def test_wide_layers_cover_every_block() -> None:
    """The layers below reach every vector branch and several block heights."""
    nrs, mrs = set(), set()
    for layer, shape in wide_layers():
        mr, nr = emit.block_sizes(cexport.spec.from_layer(layer, shape, "w"))
        nrs.add(nr)
        mrs.add(mr["avx512"] if "avx512" in mr else mr["portable"])
    assert {16, 32} <= nrs and len(mrs) >= 3, (nrs, mrs)
    chunked = [layer for layer, _ in wide_layers() if layer.kernel.shape[-1] > 384]
    kc, gb = microkernel.channel_blocks(chunked[0].kernel.shape[-1])["avx2"]
    assert kc < chunked[0].kernel.shape[-1] and gb > 1


@pytest.fixture(scope="module")
def fast_exports(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    root = tmp_path_factory.mktemp("isa")
    layers = grid_layers() + wide_layers()
    return export_all(layers, root, ("fast",), "p", batch=2)


@pytest.fixture(scope="module")
def all_exports(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    """Every style, inline weights and a weights file."""
    root = tmp_path_factory.mktemp("styles")
    layers = grid_layers()[:12] + wide_layers()
    exports = export_all(layers, root, emit.STYLES, "s", batch=2)
    exports += export_all(layers[:3], root / "file", emit.STYLES, "sf", weights="file")
    return exports


def _cpu_has(flag: str) -> bool:
    info = Path("/proc/cpuinfo")
    return info.exists() and f" {flag}" in info.read_text()


X86 = [
    ("avx512", ["-O2", "-mavx512f"], "avx512f"),
    ("avx2", ["-O2", "-mavx2", "-mfma"], "avx2"),
    ("portable", ["-O2"], ""),
]


X86_BUILDS = [
    (cc, *x) for x in X86 for cc in ("gcc", "clang") if (cc, x[0]) != ("clang", "portable")
]


@pytest.mark.parametrize(
    ("cc", "isa", "flags", "cpu"), X86_BUILDS, ids=[f"{b[1]}-{b[0]}" for b in X86_BUILDS]
)
def test_x86_branches_pass_their_vectors(
    cc: str, isa: str, flags: list[str], cpu: str, fast_exports: list, tmp_path: Path
) -> None:
    """(The portable branch is also what the sanitizer grid of test_export_c runs, at -O0,
    with gcc and clang.)"""
    tool(cc)
    if not Path("/proc/cpuinfo").exists() or not _cpu_has("sse2"):
        pytest.skip("an x86-64 host runs these builds")
    assert build.target_isa(flags, cc) == isa
    exe = build_driver(fast_exports, tmp_path, cc, [*STRICT, *flags])
    if cpu and not _cpu_has(cpu):
        pytest.skip(f"built; this CPU has no {cpu} to run it")
    run_driver(exe, fast_exports)


@pytest.mark.parametrize(("isa", "flags", "cpu"), X86[:2], ids=[x[0] for x in X86[:2]])
def test_vector_branches_under_sanitizers(
    isa: str, flags: list[str], cpu: str, fast_exports: list, tmp_path: Path
) -> None:
    """AddressSanitizer + UBSan on the intrinsics: no load or store outside the blocks."""
    tool("gcc")
    if not _cpu_has(cpu):
        pytest.skip(f"this CPU has no {cpu}")
    exe = build_driver(fast_exports, tmp_path, "gcc", [*STRICT, *SANITIZE, *flags[1:]])
    run_driver(exe, fast_exports)


def test_aarch64_neon_under_qemu(all_exports: list, tmp_path: Path) -> None:
    """Every style cross-compiled for aarch64 (the fast one takes the NEON branch) passes its
    test vectors under qemu-aarch64."""
    cc = tool("aarch64-linux-gnu-gcc")
    qemu = tool("qemu-aarch64")
    assert build.target_isa(["-O2"], cc) == "neon"
    exe = build_driver(all_exports, tmp_path, cc, [*STRICT, "-O2"])
    run_driver(exe, all_exports, [qemu, "-L", "/usr/aarch64-linux-gnu"])


CORTEX_M = {
    "m4f": ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"],
    "m7": ["-mcpu=cortex-m7", "-mthumb", "-mfpu=fpv5-d16", "-mfloat-abi=hard"],
}


@pytest.mark.parametrize("target", sorted(CORTEX_M))
def test_cortex_m_compiles_warning_free(target: str, all_exports: list, tmp_path: Path) -> None:
    """The layer and weights files of every style, both weight modes, for a microcontroller:
    no warning under -std=c99 -Wall -Wextra -Wpedantic -Werror (portable branch)."""
    cc = tool("arm-none-eabi-gcc")
    flags = [*CORTEX_M[target], "-O2", *STRICT]
    assert build.target_isa(flags, cc) == "portable"
    unit = tmp_path / "all.c"
    lines = []
    for folder, name in all_exports:
        lines += [
            f'#include "{folder / f"{name}.c"}"',
            f'#include "{folder / f"{name}_weights.c"}"',
        ]
    unit.write_text("\n".join(lines) + "\n")
    cmd = [cc, *flags, "-c", "-o", str(tmp_path / "all.o"), str(unit)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr[-3000:]


# Layers shaped like the benchmark's suite (channels and strides; small spatial sizes, so that
# the block heights match: 64 or more outputs per phase).
SUITE_LIKE = [
    ((3, 3), 1024, 512, dict(strides=(2, 2), crops=[(0, 1), (0, 1)]), (8, 8)),
    ((3, 3), 128, 64, dict(strides=(2, 2), crops=[(0, 1), (0, 1)]), (16, 16)),
    ((16,), 256, 128, dict(strides=(8,), crops=[(4, 4)]), (256,)),
    ((3, 3, 3), 64, 32, dict(strides=(2, 2, 2), crops=[(0, 1)] * 3), (8, 8, 8)),
]


@pytest.mark.parametrize("cc", ["gcc", "clang"])
@pytest.mark.parametrize("flags", [["-mavx512f"], ["-mavx2", "-mfma"]], ids=["avx512", "avx2"])
def test_register_blocks_stay_in_registers(cc: str, flags: list[str], tmp_path: Path) -> None:
    """-O3: the micro-kernel's multiply-adds are vector FMAs on registers, none reading a
    spilled weight vector back from the stack (GCC 12 did with AVX-512 blocks of 10)."""
    tool(cc)
    for n, (kernel, cin, cout, opts, spatial) in enumerate(SUITE_LIKE):
        layer = make_layer(kernel, cin, cout, seed=n, **opts)
        spec = cexport.spec.from_layer(layer, item_shape(layer, spatial), f"s{n}")
        (tmp_path / f"s{n}.h").write_text(emit.header_source(spec, 1))
        (tmp_path / f"s{n}.c").write_text(emit.library_source(spec, "fast"))
        cmd = [cc, "-O3", *flags, "-ffp-contract=fast", "-S", "-o", "-", f"s{n}.c"]
        asm = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=True).stdout
        fmas = re.findall(r"vfmadd\w+ps\s+([^\n]*)", asm)
        width = "%zmm" if "-mavx512f" in flags else "%ymm"
        assert sum(width in f for f in fmas) >= 8, f"{cc} {flags}: no {width} FMAs"
        spilled = [f for f in fmas if "(%rsp)" in f or "(%rbp)" in f]
        assert not spilled, f"{cc} {flags} layer {n}: FMAs read the stack: {spilled[:4]}"


def test_tasks_shared_by_threads_are_the_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast style's task entry points: any split of a call's tasks, run by Python threads
    (CompiledLayer.shared) or in pieces, gives the call's output bit for bit; bad arguments
    give the error codes."""
    import ctypes

    import numpy as np

    layer, shape = wide_layers()[0]  # 2 blocks of 32 filters, 4 phases
    lib = cexport.build_shared(layer, shape, cache_dir=tmp_path)
    x = np.random.default_rng(1).uniform(-1, 1, (3, *shape)).astype(np.float32)
    expected = lib(x)
    count, run = lib._tasks
    total = count(3)
    assert total > 8 and count(-1) == 0
    fp = ctypes.POINTER(ctypes.c_float)
    out = np.full_like(expected, np.nan)
    args = (lib._weights.ctypes.data_as(fp), x.ctypes.data_as(fp), out.ctypes.data_as(fp), 3)
    for a, b in [(5, total + 9), (-4, 2), (2, 5)]:  # out of range is clamped
        assert run(*args, a, b) == 0
    np.testing.assert_array_equal(out, expected)
    assert run(*args[:3], -1, 0, 1) == -1 and run(None, *args[1:], 0, 1) == -2
    np.testing.assert_array_equal(lib.shared(x, 2), expected)  # small: one plain call
    monkeypatch.setattr(emit, "PARALLEL_MACS", 0)  # now shared by the threads
    for threads in (2, 3, 8):
        got = lib.shared(x, threads, out=np.full_like(expected, np.nan))
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="input shape"):
        lib.shared(x[:, :1], 2)
