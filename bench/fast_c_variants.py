"""What limits a suite case's fast C: the generated C and variants of it that each remove one
cost, timed interleaved with the same-FLOP 1-thread OpenBLAS matmul in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/fast_c_variants.py unet_k3
    env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE=Haswell python bench/fast_c_variants.py \\
        vol3d_k3 --flags "-O3 -mavx2 -mfma -ffp-contract=fast"

Variants (text edits of the generated C; wrong results on purpose, except ``as_is``):

- ``hot_y``: outputs stored into a 16 Ki-float window that stays in cache;
- ``hot_x``: every register block reads the same input rows (in L1);
- ``hot_w``: every register block reads the same weights (the layer's first taps);
- ``no_block``: the micro-kernel call removed (the per-block set-up, zeroing and stores);
- ``item_fastest`` / ``block_fastest``: a call's tasks numbered the other way than the layer's
  weights chose (``tconv.kernels.emit._task_order``; the same results).

``--weights-offset B`` starts the weights B bytes past a 64-byte line (16: where NumPy starts
large arrays; the AVX2 build's loads then straddle lines).

Prints GFLOP/s and the ratio to the bound: best of ``--rounds`` x ``--calls``, and the median
over rounds of the ratio of each round's bests. The method of
the "Closing the 1-thread gaps" table in docs/targets.md.
"""

from __future__ import annotations

import argparse
import ctypes
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from tconv import benchmark
from tconv.cexport.spec import from_layer
from tconv.kernels import emit
from tconv.kernels.build import aligned_empty

NAME = "tconv_layer"
BLOCK = rf"{NAME}_block\(taps\[g\], kc, xc, XS_CH, wc, &acc\[g\]\[0\]\[0\], kb == 0, stream\);"
_BLOCK_FASTEST = emit._task_order(0)
_ITEM_FASTEST = emit._task_order(emit.SMALL_WEIGHTS + 1)
VARIANTS: dict[str, list[tuple[str, str | Callable[[re.Match[str]], str]]]] = {
    "as_is": [],
    "hot_y": [(r"float \*yo = yn \+ yoff\[g\]\[m\];", "float *yo = yn + (yoff[g][m] & 16383);")],
    "hot_x": [
        (r"xt\[m\] = inside \? [^;]*;", f"xt[m] = inside ? xg + (ptrdiff_t)m * XS2 : {NAME}_zeros;")
    ],
    "hot_w": [
        (
            re.escape("wp[ng][taps[ng]++] = wb + (ptrdiff_t)((a * K1 + b) * K2 + c) * CIN_G * NR;"),
            "wp[ng][taps[ng]] = w + (ptrdiff_t)taps[ng] * CIN_G * NR; ++taps[ng];",
        )
    ],
    "no_block": [(BLOCK, "(void)xc; (void)wc;")],
    "item_fastest": [(re.escape(_BLOCK_FASTEST), lambda _: _ITEM_FASTEST)],
    "block_fastest": [(re.escape(_ITEM_FASTEST), lambda _: _BLOCK_FASTEST)],
    **{
        f"kc{kc}_gb{gb}": [(r"#define KC \w+\n#define GB \d+", f"#define KC {kc}\n#define GB {gb}")]
        for kc, gb in [(128, 12), (256, 1), (256, 12), (512, 12), (4096, 1)]
    },
}


def variant(source: str, name: str) -> str:
    """``source`` with the edits (regular expressions) of variant ``name``; ValueError if the
    C no longer matches."""
    for pattern, new in VARIANTS[name]:
        edit = new if callable(new) else lambda _, new=new: new
        source, count = re.subn(pattern, edit, source)
        if count == 0:
            raise ValueError(f"variant {name}: the generated C has no {pattern!r} any more")
    return source


def best(call: Callable[[], object], calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", choices=[c.name for c in benchmark.SUITE])
    parser.add_argument("--flags", default="-O3 -march=native -ffp-contract=fast")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--weights-offset", type=int, default=0, choices=range(0, 64, 4))
    args = parser.parse_args()
    case = next(c for c in benchmark.SUITE if c.name == args.case)
    rng = np.random.default_rng(0)
    layer = case.layer(rng)
    x = case.input(rng)
    spec = from_layer(layer, x.shape[1:], NAME)
    packed = emit.weight_blob(spec, "fast")
    skip = args.weights_offset // 4  # floats past the line (0: as CompiledLayer holds them)
    blob = aligned_empty((packed.size + skip,))[skip:]
    blob[:] = packed
    expected = layer(x, "reference")
    folder = Path(tempfile.mkdtemp(prefix="tconv-variants-"))
    (folder / f"{NAME}.h").write_text(emit.header_source(spec, blob.size))
    source = emit.library_source(spec, "fast")
    fp = ctypes.POINTER(ctypes.c_float)
    runs = []
    for name in args.variants.split(","):
        (folder / f"{name}.c").write_text(variant(source, name))
        lib = folder / f"{name}.so"
        cmd = ["gcc", *args.flags.split(), "-std=c99", "-fPIC", "-shared", "-o", str(lib)]
        subprocess.run([*cmd, str(folder / f"{name}.c"), "-lm"], check=True)
        fn = getattr(ctypes.CDLL(str(lib)), f"{NAME}_with_weights")
        y = np.empty_like(expected)
        call_args = (blob.ctypes.data_as(fp), x.ctypes.data_as(fp), y.ctypes.data_as(fp), len(x))
        fn(*call_args)
        runs.append((name, fn, call_args, float(np.max(np.abs(y - expected)))))
    taps = int(np.prod(case.kernel))
    rows = case.batch * int(np.prod(case.spatial))
    a = rng.standard_normal((rows, case.in_channels), dtype=np.float32)
    b = rng.standard_normal((case.in_channels, taps * case.filters), dtype=np.float32)
    flops = 2 * rows * taps * case.in_channels * case.filters  # the bench's bound FLOPs
    bounds: list[float] = []
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(args.rounds):
        with threadpool_limits(1):
            bounds.append(best(lambda: a @ b, args.calls))
        for i, (_, fn, call_args, _) in enumerate(runs):
            times[i].append(best(lambda: fn(*call_args), args.calls))  # noqa: B023
    print(
        f"{case.name} [{args.flags}]: bound {flops / min(bounds) / 1e9:.1f} GFLOP/s (1 thread; "
        f"ratios: best of all rounds, and median over rounds of the round's best)"
    )
    for (name, _, _, error), t in zip(runs, times, strict=True):
        ratio = statistics.median(b / v for b, v in zip(bounds, t, strict=True))
        print(
            f"  {name:11s} {flops / min(t) / 1e9:7.1f} GFLOP/s  x bound {min(bounds) / min(t):.3f}"
            f"  median {ratio:.3f}  err {error:.1e}"
        )


if __name__ == "__main__":
    main()
