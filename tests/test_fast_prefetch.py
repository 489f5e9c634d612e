"""The fast style's output prefetch (issue 12): GCC and Clang ask for a register block's output
lines before its products (``__builtin_prefetch`` behind ``#if defined(__GNUC__)``); every other
compiler gets the same C without it.

Both sides are checked: the prefetches are in the optimised GNU build, channels last (one per
line of a row of filters) and channels first (per filter); and the C built as a compiler
without the GNU extensions sees it (``-U__GNUC__``, and ``-U__clang__`` for Clang) passes the
test vectors of layers with edges, groups, dilation, channels first, odd sizes, both block
widths and every stride-phase shape, under -Werror, with gcc and clang.  (The GNU builds of
every branch run the same vectors in test_portability and, under ASan/UBSan, in
test_export_c.)
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from test_export_c import STRICT, export_all, item_shape, make_layer, run_driver, tool
from test_portability import wide_layers

from tconv import cexport
from tconv.kernels import emit

# Suite-like channel counts on small images: every phase has edge blocks and whole blocks.
LAYERS = [
    ((3, 3), 32, 64, dict(strides=(2, 2), crops=[(0, 1), (0, 1)]), (9, 7)),
    ((16,), 24, 32, dict(strides=(8,), crops=[(4, 4)]), (13,)),
    (
        (3, 3, 3),
        16,
        32,
        dict(strides=(2, 2, 2), crops=[(0, 1)] * 3, channels_first=True),
        (3, 4, 3),
    ),
    ((5,), 6, 40, dict(strides=(3,), dilation=(2,), groups=2, crops=[(2, 1)]), (11,)),
]


def _layers() -> list:
    out = []
    for n, (kernel, cin, cout, opts, spatial) in enumerate(LAYERS):
        layer = make_layer(kernel, cin, cout, seed=300 + n, **opts)
        out.append((layer, item_shape(layer, spatial)))
    return out + wide_layers()


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    return export_all(_layers(), tmp_path_factory.mktemp("prefetch"), ("fast",), "pf", batch=2)


@pytest.mark.parametrize(
    ("cc", "undefine"),
    [("gcc", ["-U__GNUC__"]), ("clang", ["-U__GNUC__", "-U__clang__"])],
    ids=["gcc", "clang"],
)
def test_without_gnu_extensions_passes_the_vectors(
    cc: str, undefine: list[str], exports: list, tmp_path: Path
) -> None:
    """The layers compiled on their own as a non-GNU compiler (the C library's headers need
    __GNUC__, the layer files only <stddef.h>); the harnesses and weights as usual."""
    tool(cc)
    objects = []
    for folder, name in exports:
        cmd = [cc, *undefine, "-E", "-P", str(folder / f"{name}.c")]
        text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        assert "__builtin_prefetch" not in text and "_mm" not in text  # the fallback C
        obj = tmp_path / f"{name}.o"
        cmd = [cc, *STRICT, "-O2", *undefine, "-c", "-o", str(obj), str(folder / f"{name}.c")]
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0 and not done.stderr.strip(), done.stderr[-3000:]
        objects.append(obj)
    lines = ["#define _POSIX_C_SOURCE 199309L", "#define TCONV_NO_MAIN"]
    for folder, name in exports:
        lines += [f'#include "{folder / f"{name}_weights.c"}"']
        lines += [f'#include "{folder / f"test_{name}.c"}"']
    lines.append("int main(void)\n{\n    int bad = 0;")
    lines += [f'    bad += {name}_check("{folder}", 0);' for folder, name in exports]
    lines.append("    return bad != 0;\n}\n")
    driver = tmp_path / "driver.c"
    driver.write_text("\n".join(lines))
    exe = tmp_path / "driver"
    cexport.compile_c([driver, *objects], exe, cc=cc, cflags=[*STRICT, "-O2"])
    run_driver(exe, exports)


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_gnu_build_prefetches_the_outputs(cc: str, tmp_path: Path) -> None:
    tool(cc)
    found = {}
    for n, (layer, shape) in enumerate(_layers()[:3]):
        spec = cexport.spec.from_layer(layer, shape, f"p{n}")
        (tmp_path / f"p{n}.h").write_text(emit.header_source(spec, 1))
        (tmp_path / f"p{n}.c").write_text(emit.library_source(spec, "fast"))
        cmd = [cc, "-O2", "-mavx2", "-mfma", "-mprfchw", "-S", "-o", "-", f"p{n}.c"]
        asm = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=True).stdout
        found[spec.channels_first] = re.findall(r"\bprefetchw\b", asm)
    assert found[False] and found[True], found


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_avx2_first_reader_prefetches_the_weights(cc: str, tmp_path: Path) -> None:
    """The AVX2 block (two column passes of a 32-filter row) has a streaming loop that asks for
    the weights ahead (``prefetcht0``), for the call that reads them first; the AVX-512 block
    reads whole rows in one pass and has none.  (-mprfchw: the output prefetches are then
    ``prefetchw``, not counted.)"""
    tool(cc)
    layer, shape = _layers()[0]
    spec = cexport.spec.from_layer(layer, shape, "w0")
    assert emit.block_sizes(spec)[1] == 32
    (tmp_path / "w0.h").write_text(emit.header_source(spec, 1))
    (tmp_path / "w0.c").write_text(emit.library_source(spec, "fast"))
    counts = {}
    for isa, flags in {"avx2": ["-mavx2", "-mfma"], "avx512": ["-mavx512f", "-mfma"]}.items():
        cmd = [cc, "-O2", *flags, "-mprfchw", "-S", "-o", "-", "w0.c"]
        asm = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=True).stdout
        counts[isa] = len(re.findall(r"\bprefetcht0\b", asm))
    assert counts["avx2"] >= 2 and counts["avx512"] == 0, counts
