"""``tconv demo``: the seed layer end to end (what ``make demo`` runs).

Keras ``Conv2DTranspose(512, 3, strides=2, padding="same")`` on a ``1×8×8×1024`` input: shapes,
kernel layout, parameters, multiply-adds, crops, both engine methods, one output element taken
apart, the overlap map, the four views against the forward, pictures and the interactive page.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np

from ..explanation.views import phase_table
from .explain import explain_at, load

SEED_SHAPE = "8,8,1024"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the seed layer (8x8x1024 -> 16x16x512, 512 filters, stride 2, same) end to end",
        description="Run the layer from the original question (Keras Conv2DTranspose, input "
        "1x8x8x1024, 512 filters, stride 2, padding same) through tconv: shapes, kernel layout, "
        "parameters, multiply-adds, crops, the fast and reference methods, how one output "
        "element is computed and what the filters are, the overlap map, the four equivalent "
        "views checked against the forward; writes pictures, animations and an interactive "
        "page to --out.",
    )
    parser.add_argument("--kernel-size", default="3", help="kernel size (default 3)")
    parser.add_argument(
        "--input-shape",
        help=f"one input item (default {SEED_SHAPE}, or the shape of --input)",
    )
    parser.add_argument("--filters", type=int, default=512, help="filters (default 512)")
    parser.add_argument("--seed", type=int, default=0, help="random weights/input seed")
    parser.add_argument("--model", help="take the layer from this .keras/.h5 file instead")
    parser.add_argument("--layer", help="the layer's name in --model")
    parser.add_argument("--input", help=".npy input (default: seeded random)")
    parser.add_argument("--at", help="output element to explain (default: a central one)")
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out/)")
    parser.add_argument(
        "--no-pictures", action="store_true", help="write only the HTML page (no matplotlib)"
    )
    parser.set_defaults(func=main)


def _seed_args(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(
        input_shape=args.input_shape or (None if args.input else SEED_SHAPE),
        filters=args.filters,
        kernel_size=args.kernel_size,
        strides="2",
        padding="same",
        output_padding=None,
        dilation_rate="1",
        data_format=None,
        activation=None,
        use_bias=True,
        seed=args.seed,
        weights=None,
        layer=args.layer,
        input=args.input,
    )


def _timed(fn: Any, repeat: int) -> tuple[Any, float]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return result, best


def main(args: argparse.Namespace) -> int:
    from ..explanation import (
        agreement,
        gradient_check,
        matrix,
        overlap,
        page,
        single_channel,
    )

    start = time.perf_counter()
    layer, x = load(_seed_args(args), args.model)
    e0 = explain_at(layer, x, args.at)
    g = e0.geometry
    shape_out = layer.output_shape(x.shape)
    k = layer.framework_kernel
    params = k.size + (0 if layer.bias is None else layer.bias.size)
    macs = g.macs(x.shape[0])
    name = getattr(layer, "name", type(layer).__name__)
    print(f"tconv demo: {type(layer).__name__} {name!r}, {layer.framework} conventions")
    print(f"  input  {tuple(x.shape)} ({layer.data_format}) -> output {shape_out}")
    print(
        f"  kernel {tuple(k.shape)} = {layer.kernel_layout.axes}; {k.size:,} weights + "
        f"{0 if layer.bias is None else layer.bias.size} biases = {params:,} parameters"
    )
    print(
        f"  multiply-adds {macs:,} (each of {int(np.prod(g.in_shape))} input pixels × "
        f"{int(np.prod(layer.kernel_size))} taps × {g.in_per_group} channels × "
        f"{g.out_channels} filters)"
    )
    for step in e0.steps:
        print(f"  axis {step.name}: {step.lines()[0].split(': ', 1)[1]}")
    y, t_fast = _timed(lambda: layer(x), 3)
    y_ref, t_ref = _timed(lambda: layer(x, method="reference"), 1)
    diff = float(np.max(np.abs(y.astype(np.float64) - y_ref.astype(np.float64))))
    print(
        f"  engine: fast {t_fast * 1e3:.1f} ms, reference {t_ref * 1e3:.1f} ms, "
        f"max |fast - reference| = {diff:.2e} ({y.dtype})"
    )
    print()
    print("How one output element is computed")
    print("  " + e0.to_text(shown=1).replace("\n", "\n  "))
    print()
    ov = overlap(layer, g.in_shape)
    print(ov.to_text(max_side=8))
    print()
    diffs = agreement(layer, x)
    c0 = e0.channels[0]
    xs = np.asarray(x)[:1]
    xs = xs[:, c0 : c0 + 1] if layer.channels_first else xs[..., c0 : c0 + 1]
    small = single_channel(layer, e0.f, c0)
    m_small = matrix(small, xs)
    assert m_small.output is not None
    small_diff = float(np.max(np.abs(m_small.output - small(xs)), initial=0.0))
    fd, adjoint = gradient_check(layer, x, samples=4)
    m_full = matrix(layer, x)
    print("Four equivalent views, max |view - forward|:")
    for key in ("scatter", "gather", "zero insertion", "phases", "matrix"):
        if key in diffs:
            print(f"  {key:<15} {diffs[key]:.2e}")
    if "matrix" not in diffs:
        print(
            f"  matrix          {small_diff:.2e} on filter {e0.f} × channel {c0} "
            f"(Cᵀ {m_small.shape[0]}×{m_small.shape[1]}); the full {m_full.description}"
        )
    print(
        f"  gradient: tconv(x) = d<x, conv(y)>/dy, finite differences max error {fd:.1e}, "
        f"adjoint identity relative error {adjoint:.1e}"
    )
    print()
    os.makedirs(args.out, exist_ok=True)
    written = [page.write(os.path.join(args.out, "report.html"), layer, x, e0.at)]
    try:
        from ..explanation import plots

        if not args.no_pictures:
            plots._mpl()
            written += _pictures(plots, e0, ov, layer, x, diffs, args.out)
    except RuntimeError as err:
        print(f"pictures skipped: {err}")
    print(answer(e0))
    print()
    print(f"Wrote to {args.out}/: " + ", ".join(os.path.basename(p) for p in written))
    print(f"  open {os.path.join(args.out, 'report.html')} in a browser and click output cells")
    print(f"(demo took {time.perf_counter() - start:.1f} s)")
    return 0


def answer(e: Any) -> str:
    """The original question's answer, in the numbers of this layer."""
    g = e.geometry
    kernel = "×".join(map(str, e.layer.kernel_size))
    strides = "×".join(map(str, e.layer.strides))
    crops = ", ".join(f"({a.crop_start}, {a.crop_end})" for a in g.axes)
    table = {ph.residue: len(ph.taps) for ph in phase_table(g)}
    per_phase = sorted(set(table.values()), reverse=True)
    border = any(
        len(list(g.taps(o))) < table[tuple(v % a.stride for v, a in zip(o, g.axes, strict=True))]
        for o in np.ndindex(*g.out_shape)
    )
    taps = (
        f"here {per_phase[0]} tap{'' if per_phase[0] == 1 else 's'} in every stride phase"
        if len(per_phase) == 1
        else f"here {'/'.join(map(str, per_phase))} taps, by the stride-{strides} phase of o"
    ) + ("; fewer at the border" if border else "")
    return (
        "In short: every output element y[n, o, f] is bias[f] plus, for each kernel tap that "
        f"lands on it ({taps}), "
        f"the dot product of one {g.in_per_group}-deep input column x[n, i, :] with the "
        f"matching {g.in_per_group}-vector W[tap, f, :] of filter f, where i*stride + "
        f"tap*dilation = o + crop_start (crops per axis {crops}; the full result is cropped to the "
        f"output).  The {g.out_channels} filters are {g.out_channels} separate "
        f"{kernel}×{g.in_per_group} blocks W[..., f, :]: filter f alone makes output channel f, "
        f"and it always reads all {g.in_per_group} input channels"
        + (f" of its group ({g.groups} groups)" if g.groups > 1 else "")
        + "."
    )


def _pictures(
    plots: Any, e: Any, ov: Any, layer: Any, x: np.ndarray, diffs: dict[str, float], out: str
) -> list[str]:
    import matplotlib.pyplot as plt

    paths = [os.path.join(out, name) for name in ("element.png", "element.svg")]
    figure = plots.element_figure(e, paths[0])
    figure.savefig(paths[1], bbox_inches="tight")
    plt.close(figure)
    for name, draw in (
        ("overlap.png", lambda p: plots.overlap_figure(ov, p)),
        ("views.png", lambda p: plots.views_figure(layer, x, e.at, p, diffs)),
    ):
        path = os.path.join(out, name)
        plt.close(draw(path))
        paths.append(path)
    paths.append(plots.scatter_gif(e, os.path.join(out, "scatter.gif")))
    paths.append(plots.gather_gif(e, os.path.join(out, "gather.gif")))
    return paths
