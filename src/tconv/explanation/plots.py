"""Pictures (PNG/SVG) and GIF animations of a transposed convolution (extra ``tconv[plot]``).

Everything is drawn on a 2D plane: the last one or two spatial axes (1D: one row; 3D: the plane
of the explained element's leading index), and at most :data:`MAX_CELLS` cells per side around
the explained element.  The slice drawn is written on every picture.  Figures are returned, so
notebooks show them inline; ``path`` saves them (the suffix picks PNG, SVG or GIF).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..layer import TransposedConv
from .core import Explanation, axis_names, explain, ix
from .overlap import Overlap
from .views import agreement, matrix, scatter, single_channel, zero_insertion

MAX_CELLS = 8
"""Input pixels per side animated / drawn around the explained element."""
VALUES_UP_TO = 12
"""Cells per side up to which the numbers are written in the cells."""


def _mpl() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from PIL import Image  # noqa: F401  (GIF frames)
    except ImportError as err:  # without the extra (tests/test_plots.py fakes that)
        raise RuntimeError(
            "pictures need the optional extra 'plot' (matplotlib, Pillow): "
            "pip install 'tconv[plot]'"
        ) from err
    return plt


@dataclass(frozen=True)
class Plane:
    """The 2D slice drawn: plane axes, the fixed leading output index (3D), windows."""

    axes: tuple[int, ...]  # spatial axes drawn (1 or 2)
    fixed: tuple[int, ...]  # spatial axes held fixed (3D: the first)
    in_window: tuple[range, ...]  # input positions drawn, per plane axis
    text: str


def plane_of(e: Explanation, side: int = MAX_CELLS) -> Plane:
    """The slice around ``e``'s element: input windows of ``side`` pixels per plane axis."""
    g = e.geometry
    rank = g.rank
    axes = tuple(range(max(0, rank - 2), rank))
    fixed = tuple(a for a in range(rank) if a not in axes)
    wins = []
    for a in axes:
        size = g.axes[a].size
        reach = [t.input_position[a] for t in e.taps]
        center = reach[0] if reach else min(e.o[a] // g.axes[a].stride, max(size - 1, 0))
        n = min(side, size)
        start = min(max(center - n // 2, 0), size - n)
        wins.append(range(start, start + n))
    names = axis_names(rank)
    parts = [f"o{names[a]}={e.o[a]}" for a in fixed]
    parts += [
        f"i{names[a]} {w.start}..{w.stop - 1} of {g.axes[a].size}"
        for a, w in zip(axes, wins, strict=True)
    ]
    text = f"slice: batch {e.n}, {', '.join(parts)}, filter {e.f} of {g.out_channels}"
    return Plane(axes, fixed, tuple(wins), text)


def _as2d(a: np.ndarray) -> np.ndarray:
    return a[None, :] if a.ndim == 1 else a


# -- scatter and gather, frame by frame (data; drawn by the GIF functions) -------------------


@dataclass(frozen=True)
class ScatterFrame:
    """Input pixel ``input_position`` (all spatial axes) stamps ``stamp`` (kernel plane: tap
    sums over channels into filter ``f``) at ``corner`` of the full plane; ``full`` is the
    plane accumulated so far (uncropped, before bias)."""

    input_position: tuple[int, ...]
    corner: tuple[int, ...]
    stamp: np.ndarray
    full: np.ndarray


def scatter_frames(e: Explanation, plane: Plane | None = None) -> list[ScatterFrame]:
    """Scatter onto the full plane of filter ``e.f``, one frame per input pixel of the slice.

    For a 3D layer the plane is the full-output plane ``p = o + crop_start`` of the fixed axis;
    an input pixel stamps into it through the leading tap ``j`` with ``i*s + j*d = p``.
    """
    plane = plane or plane_of(e)
    layer, g = e.layer, e.geometry
    xc = layer.to_canonical(np.asarray(e.x))[e.n].astype(np.float64)
    w = layer.kernel[..., e.f, :].astype(np.float64)  # (*k, cin_g)
    c0, c1 = e.channels
    full = np.zeros([g.axes[a].full for a in plane.axes])
    frames = []
    fixed_ranges = [range(g.axes[a].size) for a in plane.fixed]
    for lead in np.ndindex(*(len(r) for r in fixed_ranges)):
        lead_j = []
        for a, i in zip(plane.fixed, lead, strict=True):
            ax = g.axes[a]
            q = e.o[a] + ax.crop_start - i * ax.stride
            lead_j.append(q // ax.dilation if q % ax.dilation == 0 and 0 <= q < ax.span else -1)
        if any(j < 0 for j in lead_j):
            continue
        for pos in np.ndindex(*(len(r) for r in plane.in_window)):
            ip = tuple(r[p] for r, p in zip(plane.in_window, pos, strict=True))
            column = xc[ix(*lead, *ip, slice(c0, c1))]
            stamp = np.tensordot(w[tuple(lead_j)], column, axes=([-1], [0]))
            corner = tuple(v * g.axes[a].stride for v, a in zip(ip, plane.axes, strict=True))
            dst = tuple(
                slice(cv, cv + g.axes[a].span, g.axes[a].dilation)
                for cv, a in zip(corner, plane.axes, strict=True)
            )
            full[dst] += stamp
            frames.append(ScatterFrame((*lead, *ip), corner, stamp, full.copy()))
    return frames


def _crop_box(e: Explanation, plane: Plane) -> tuple[int, ...]:
    """(start, stop) of the kept output per plane axis, in full-plane coordinates."""
    out = []
    for a in plane.axes:
        ax = e.geometry.axes[a]
        out += [ax.crop_start, ax.crop_start + ax.out]
    return tuple(out)


def _rect(ax: Any, r0: float, c0: float, h: float, w: float, **kw: Any) -> None:
    import matplotlib.patches as mpatches

    ax.add_patch(mpatches.Rectangle((c0 - 0.5, r0 - 0.5), w, h, fill=False, **kw))


def _grid(
    ax: Any,
    data: np.ndarray,
    title: str,
    values: bool,
    cmap: str = "RdBu_r",
    positions: Sequence[range] | None = None,
) -> Any:
    """Draw ``data`` (1D: one row); ``positions`` are the real indices of its rows/columns
    (default from 0); long axes get every n-th tick so the labels stay readable."""
    data = _as2d(data)
    lim = float(np.max(np.abs(data))) or 1.0
    if cmap == "RdBu_r":
        im = ax.imshow(data, cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest")
    else:  # magnitudes: a light scale from the smallest to the largest, numbers stay readable
        low = float(data.min())
        im = ax.imshow(
            data, cmap=cmap, vmin=low - (lim - low), vmax=lim + 0.3 * (lim - low), alpha=0.7
        )
    ax.set_title(title, fontsize=9)
    if positions is None:
        rows, cols = range(data.shape[0]), range(data.shape[1])
    else:
        rows, cols = _labels(positions)
        rows = rows or range(1)
    for set_ticks, labels in ((ax.set_yticks, rows), (ax.set_xticks, cols)):
        step = -(-len(labels) // 16)
        set_ticks(range(0, len(labels), step), [str(v) for v in labels[::step]])
    ax.tick_params(labelsize=6, length=0)
    texts = []
    if values and max(data.shape) <= VALUES_UP_TO:
        for (r, c), v in np.ndenumerate(data):
            texts.append(ax.text(c, r, f"{v:.2g}", ha="center", va="center", fontsize=6))
    return im, texts


def _save(fig: Any, path: str | None) -> Any:
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def element_figure(e: Explanation, path: str | None = None) -> Any:
    """Input plane with the contributing pixels, the kernel taps used, the output position and
    the channel diagram of one output element."""
    plt = _mpl()
    plane = plane_of(e)
    g, layer = e.geometry, e.layer
    fig, axs = plt.subplots(1, 4, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1, 1, 1, 1.4]})
    names = axis_names(g.rank)
    xc = layer.to_canonical(np.asarray(e.x))[e.n].astype(np.float64)
    # 3D: the input and kernel planes of the first tap's leading index.
    first = e.taps[0] if e.taps else None
    lead = tuple(first.input_position[a] if first else 0 for a in plane.fixed)
    klead = tuple(first.kernel_position[a] if first else 0 for a in plane.fixed)
    shown = [
        t
        for t in e.taps
        if all(t.input_position[a] == v for a, v in zip(plane.fixed, lead, strict=True))
    ]
    window = np.ix_(*plane.in_window) if len(plane.axes) == 2 else plane.in_window[0]
    norms = np.sqrt((xc[lead] ** 2).sum(axis=-1))[window]
    where = "".join(f", i{names[a]}={v}" for a, v in zip(plane.fixed, lead, strict=True))
    _grid(
        axs[0],
        norms,
        f"input ‖x[{e.n}, …, :]‖ over {g.in_channels} channels{where}",
        True,
        "Blues",
        plane.in_window,
    )
    for t in shown:
        rc = [
            t.input_position[a] - w.start for a, w in zip(plane.axes, plane.in_window, strict=True)
        ]
        r, c = (0, rc[0]) if len(rc) == 1 else rc
        _rect(axs[0], r, c, 1, 1, edgecolor="#d62728", lw=2.5)
    label = f"i{names[-1]}; red: reach {e.at_text}"
    if len(shown) < len(e.taps):
        others = sorted({tuple(t.input_position[a] for a in plane.fixed) for t in e.taps} - {lead})
        fixed_names = ",".join(f"i{names[a]}" for a in plane.fixed)
        label += (
            f"\n{len(shown)} of the {len(e.taps)} taps are in this plane; the others are at "
            f"{fixed_names} = {', '.join(','.join(map(str, o)) for o in others)}"
        )
    axs[0].set_xlabel(label, fontsize=8)
    kn = np.sqrt((layer.kernel[..., e.f, :].astype(np.float64) ** 2).sum(axis=-1))[klead]
    kwhere = "".join(f", k{names[a]}={v}" for a, v in zip(plane.fixed, klead, strict=True))
    _grid(axs[1], kn, f"filter {e.f}: ‖W[tap, {e.f}, :]‖ per tap{kwhere}", True, "Blues")
    for t in shown:
        kp = [t.kernel_position[a] for a in plane.axes]
        r, c = (0, kp[0]) if len(kp) == 1 else kp
        _rect(axs[1], r, c, 1, 1, edgecolor="#d62728", lw=2.5)
        axs[1].text(c, r + 0.32, f"Σ={t.sum:.3g}", ha="center", fontsize=6, color="#d62728")
    y = layer.to_canonical(layer(e.x))[e.n][..., e.f]
    oplane = y[tuple(e.o[a] for a in plane.fixed)]
    _grid(axs[2], oplane, f"output, filter {e.f} ({g.out_channels} filters)", False)
    op = [e.o[a] for a in plane.axes]
    r, c = (0, op[0]) if len(op) == 1 else op
    _rect(axs[2], r, c, 1, 1, edgecolor="#1f77b4", lw=2.5)
    axs[2].set_xlabel(f"{e.at_text} = {float(e.value):.4g}", fontsize=8)
    _channel_diagram(axs[3], e)
    fig.suptitle(
        f"{layer.framework} transposed convolution {tuple(e.x.shape)} → {e.output_shape}: "
        f"{e.at_text} = {e.activation}({e.bias:.3g} + {len(e.taps)} taps × "
        f"{g.in_per_group} channels)   [{plane.text}]",
        fontsize=9,
    )
    fig.tight_layout()
    return _save(fig, path)


def _stack(
    ax: Any,
    count: int,
    origin: tuple[float, float],
    step: tuple[float, float],
    size: tuple[float, float],
    color: str,
    lw: float,
) -> None:
    """``count`` outlined rectangles of ``size``, each ``step`` beyond the last (a 3D stack)."""
    import matplotlib.patches as mpatches

    for d in range(count):
        xy = (origin[0] + step[0] * d, origin[1] + step[1] * d)
        ax.add_patch(mpatches.Rectangle(xy, *size, color=color, ec="k", lw=lw))


def _channel_diagram(ax: Any, e: Explanation) -> None:
    """C_in-deep input column · filter f's block → one number; filters blocks → output depth."""
    import matplotlib.patches as mpatches

    g = e.geometry
    k = "×".join(map(str, e.layer.kernel_size))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    ax.axis("off")
    ax.add_patch(mpatches.Rectangle((0.3, 2), 0.8, 6, color="#9ecae1"))
    ax.text(0.7, 8.3, f"x[{e.n}, i, :]\n{g.in_per_group} deep", ha="center", fontsize=7)
    ax.text(1.6, 5, "·", fontsize=20, va="center")
    _stack(ax, 3, (2.3, 2), (0.25, 0.25), (2, 6), "#fdae6b", 0.5)
    ax.text(
        3.5,
        8.8,
        f"filter {e.f}: kernel{e.block}\n{k}×{g.in_per_group} block",
        ha="center",
        fontsize=7,
    )
    ax.annotate("", xy=(6.6, 5), xytext=(5.2, 5), arrowprops={"arrowstyle": "->"})
    ax.add_patch(mpatches.Rectangle((6.8, 4.6), 0.8, 0.8, color="#1f77b4"))
    ax.text(7.2, 3.6, f"{e.at_text}\none number", ha="center", fontsize=7)
    _stack(ax, 5, (8.4, 2), (0.12, 0.6), (0.6, 0.5), "#c7e9c0", 0.3)
    ax.text(
        5,
        0.6,
        f"{g.out_channels} such blocks (filters) → output depth {g.out_channels}"
        + (f"; {g.groups} groups" if g.groups > 1 else ""),
        ha="center",
        fontsize=7,
    )
    ax.set_title("channels: every tap sums over the input depth", fontsize=9)


def overlap_figure(ov: Overlap, path: str | None = None) -> Any:
    """The overlap heatmap (pairs per output position), and per phase the kernel energy and the
    response to an all-ones input."""
    plt = _mpl()
    fig, axs = plt.subplots(1, 2, figsize=(10, 4.2))
    counts = ov.counts if ov.counts.ndim < 3 else ov.counts[0]
    counts = _as2d(counts)[:24, :24]
    im = axs[0].imshow(counts, cmap="viridis", interpolation="nearest")
    if max(counts.shape) <= 16:
        for (r, c), v in np.ndenumerate(counts):
            axs[0].text(c, r, str(int(v)), ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(im, ax=axs[0], shrink=0.8)
    sliced = " (3D: first plane)" if ov.counts.ndim == 3 else ""
    axs[0].set_title(
        f"(input, tap) pairs per output position{sliced}: "
        + ("UNEVEN (checkerboard)" if ov.uneven else "even"),
        fontsize=9,
    )
    labels = [str(ph.residue) for ph in ov.phases]
    x = np.arange(len(labels))
    energy = ov.energy.mean(axis=1)
    axs[1].bar(x - 0.2, energy / (energy.max() or 1), 0.4, label="kernel energy ΣW² (rel.)")
    resp = np.nan_to_num(ov.constant_response)
    axs[1].bar(x + 0.2, resp / (np.abs(resp).max() or 1), 0.4, label="response to ones (rel.)")
    axs[1].set_xticks(x, labels, fontsize=7, rotation=45 if len(labels) > 4 else 0)
    axs[1].axhline(0, color="k", lw=0.5)
    axs[1].legend(fontsize=7)
    axs[1].set_title(f"per stride phase; contrast {ov.contrast:.3g}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def views_figure(
    layer: TransposedConv,
    x: np.ndarray,
    at: Sequence[int],
    path: str | None = None,
    diffs: dict[str, float] | None = None,
) -> Any:
    """The four views side by side on the slice of filter ``f``, each with its max difference
    from the forward (``diffs`` from :func:`~tconv.explanation.views.agreement`, computed when
    not given)."""
    plt = _mpl()
    e = explain(layer, x, at)
    plane = plane_of(e)
    g = e.geometry
    diffs = agreement(layer, x) if diffs is None else diffs
    fig, axs = plt.subplots(1, 4, figsize=(17, 4.4))
    lead = tuple(e.o[a] for a in plane.fixed)
    s = scatter(layer, x)
    full = layer.to_canonical(s.full)[e.n][..., e.f]
    full = full[tuple(e.o[a] + g.axes[a].crop_start for a in plane.fixed)]
    _grid(
        axs[0],
        full,
        f"scatter: full output (crops {s.crops})\nmax diff {diffs['scatter']:.1e}",
        False,
    )
    box = _crop_box(e, plane)
    if len(plane.axes) == 2:
        _rect(
            axs[0], box[0], box[2], box[1] - box[0], box[3] - box[2], edgecolor="k", lw=1.5, ls="--"
        )
    else:
        _rect(axs[0], 0, box[0], 1, box[1] - box[0], edgecolor="k", lw=1.5, ls="--")
    y = layer.to_canonical(layer(x))[e.n][..., e.f][lead]
    _grid(axs[1], y, f"gather: Σ over taps per element\nmax diff {diffs['gather']:.1e}", False)
    z = zero_insertion(layer, x)
    c0 = e.channels[0]
    padded = layer.to_canonical(z.padded)[e.n][..., c0]
    plane_at = tuple(e.o[a] + g.axes[a].span // 2 for a in plane.fixed)  # 3D: mid-window plane
    where = "".join(f", plane {v}" for v in plane_at)
    _grid(
        axs[2],
        padded[plane_at],
        f"zero insertion: padded input, channel {c0}{where}\npads {z.pads}; "
        f"max diff {diffs['zero insertion']:.1e}",
        False,
    )
    xs = np.asarray(x)[e.n : e.n + 1]
    xs = xs[:, c0 : c0 + 1] if layer.channels_first else xs[..., c0 : c0 + 1]
    m = matrix(single_channel(layer, e.f, c0), xs)
    if m.transposed is not None:
        axs[3].spy(m.transposed, markersize=1.5 if m.shape[0] > 64 else 3, aspect="auto")
        title = f"matrix: Cᵀ for filter {e.f} × channel {e.channels[0]}: {m.shape[0]}×{m.shape[1]}"
    else:
        axs[3].axis("off")
        title = f"matrix: Cᵀ {m.shape[0]}×{m.shape[1]} (too large to draw)"
    if m.output is not None:
        md = float(np.max(np.abs(m.output - single_channel(layer, e.f, c0)(xs)), initial=0.0))
        title += f"\nmax diff {md:.1e} on this slice"
    axs[3].set_title(title, fontsize=9)
    fig.suptitle(
        f"Four equivalent views of {layer.framework} transposed convolution   [{plane.text}]",
        fontsize=9,
    )
    fig.tight_layout()
    return _save(fig, path)


# -- GIF animations (drawn with Pillow directly: a frame costs milliseconds) ----------------

CELL = 30
RED, BLUE, GREEN = (214, 39, 40), (31, 119, 180), (44, 160, 44)


def _font(size: int = 10) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _color(v: float, lim: float) -> tuple[int, int, int]:
    if not np.isfinite(v):
        return (235, 235, 235)
    t = min(1.0, abs(v) / lim) if lim else 0.0
    c = int(255 - 190 * t)
    return (255, c, c) if v >= 0 else (c, c, 255)


def _draw_grid(
    draw: Any,
    origin: tuple[int, int],
    data: np.ndarray,
    title: str,
    lim: float,
    marks: dict[tuple[int, int], tuple[int, int, int]] | None = None,
    labels: tuple[range, range] | None = None,
    cell: int = CELL,
) -> None:
    """One grid at ``origin`` (x, y): cells coloured by value, numbers on small grids, marked
    cells outlined, the row/column positions of ``labels`` on the sides."""
    data = _as2d(data)
    x0, y0 = origin
    small, font = max(data.shape) <= VALUES_UP_TO, _font(9)
    draw.text((x0, y0 - 28), title, fill=(0, 0, 0), font=_font(11))
    for (r, c), v in np.ndenumerate(data):
        box = (x0 + c * cell, y0 + r * cell, x0 + (c + 1) * cell, y0 + (r + 1) * cell)
        draw.rectangle(box, fill=_color(float(v), lim), outline=(200, 200, 200))
        if small and np.isfinite(v) and v != 0:
            draw.text(
                (box[0] + cell / 2, box[1] + cell / 2),
                f"{v:.2g}",
                fill=(0, 0, 0),
                font=font,
                anchor="mm",
            )
    for (r, c), color in (marks or {}).items():
        draw.rectangle(
            (x0 + c * cell, y0 + r * cell, x0 + (c + 1) * cell, y0 + (r + 1) * cell),
            outline=color,
            width=3,
        )
    if labels:
        rows, cols = labels
        for r, v in enumerate(rows):
            draw.text(
                (x0 - 4, y0 + r * cell + cell / 2),
                str(v),
                fill=(120, 120, 120),
                font=font,
                anchor="rm",
            )
        for c, v in enumerate(cols):
            draw.text(
                (x0 + c * cell + cell / 2, y0 - 4),
                str(v),
                fill=(120, 120, 120),
                font=font,
                anchor="mb",
            )


def _canvas(width: int, height: int, title: str) -> tuple[Any, Any]:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 8), title, fill=(0, 0, 0), font=_font(12))
    return image, draw


def _labels(windows: Sequence[range]) -> tuple[range, range]:
    return (windows[0], windows[1]) if len(windows) == 2 else (range(0, 0), windows[0])


def _columns(panels: Sequence[tuple[int, str]], gap: int = 40) -> tuple[list[int], int]:
    """Left edges of side-by-side panels ``(grid width, title)`` and the canvas width: each
    panel is as wide as its grid or its title, whichever is wider, so titles never overlap."""
    lefts, x = [], gap
    for grid_width, title in panels:
        lefts.append(x)
        x += max(grid_width, int(_font(11).getlength(title))) + gap
    return lefts, x


def _save_gif(images: list[Any], path: str, ms: int) -> str:
    from PIL import Image

    fast = Image.Quantize.FASTOCTREE
    frames = [im.quantize(colors=64, method=fast, dither=Image.Dither.NONE) for im in images]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=ms, loop=0)
    return path


def scatter_gif(e: Explanation, path: str, ms: int = 450) -> str:
    """GIF: the slice's input pixels stamp ``Σ_c x[i, c] · W[:, f, c]`` in turn onto the full
    output plane, which accumulates; the black box is what the crop keeps."""
    _mpl()
    plane = plane_of(e)
    frames = scatter_frames(e, plane)
    g = e.geometry
    box = _crop_box(e, plane)
    in_shape = [len(w) for w in plane.in_window]
    final = _as2d(frames[-1].full) if frames else np.zeros((1, 1))
    lim = float(np.max(np.abs(final))) or 1.0
    slim = max((float(np.max(np.abs(f.stamp))) for f in frames), default=1.0) or 1.0
    cell_full = CELL if max(final.shape) <= 20 else max(8, 600 // max(final.shape))
    kshape = _as2d(frames[0].stamp).shape if frames else (1, 1)
    in2 = _as2d(np.zeros(in_shape)).shape
    stamp_title = f"stamp sum_c x[i, c]*W[.., {e.f}, c]"
    full_title = "full output (before crop and bias); black box: what the crop keeps"
    (_, xk, xf), width = _columns(
        [
            (in2[1] * CELL, "input pixel (0, 0, 0)"),
            (kshape[1] * CELL, stamp_title),
            (final.shape[1] * cell_full, full_title),
        ]
    )
    height = 80 + max(in2[0] * CELL, final.shape[0] * cell_full) + 40
    images = []
    for fr in frames:
        image, draw = _canvas(width, height, f"scatter, filter {e.f}   [{plane.text}]")
        rc = tuple(
            fr.input_position[a] - w.start for a, w in zip(plane.axes, plane.in_window, strict=True)
        )
        mark = {(0, rc[0]) if len(rc) == 1 else (rc[0], rc[1]): RED}
        xin = _as2d(np.zeros(in_shape))
        _draw_grid(
            draw,
            (40, 80),
            xin,
            f"input pixel {fr.input_position}",
            1.0,
            mark,
            _labels(plane.in_window),
        )
        _draw_grid(draw, (xk, 80), fr.stamp, stamp_title, slim)
        full = _as2d(fr.full)
        _draw_grid(
            draw,
            (xf, 80),
            full,
            full_title,
            lim,
            cell=cell_full,
        )
        if len(plane.axes) == 2:
            r0, r1, c0, c1 = box
            spans = [g.axes[a].span for a in plane.axes]
            kr, kc = fr.corner
        else:
            r0, r1, (c0, c1) = 0, 1, box
            spans, (kr, kc) = [1, g.axes[plane.axes[0]].span], (0, fr.corner[0])
        draw.rectangle(
            (xf + c0 * cell_full, 80 + r0 * cell_full, xf + c1 * cell_full, 80 + r1 * cell_full),
            outline=(0, 0, 0),
            width=2,
        )
        draw.rectangle(
            (
                xf + kc * cell_full,
                80 + kr * cell_full,
                xf + (kc + spans[1]) * cell_full,
                80 + (kr + spans[0]) * cell_full,
            ),
            outline=RED,
            width=2,
        )
        images.append(image)
    return _save_gif(images, path, ms)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def gather_caption(e: Explanation, shown: int = 3) -> str:
    """One line under a gather frame: bias + the tap sums (at most ``2*shown``, the rest
    counted), the value, and the number of taps and channels."""
    sums = [f"{t.sum:.3g}" for t in e.taps]
    if len(sums) > 2 * shown:
        sums = [*sums[:shown], f"... {len(sums) - 2 * shown} more ...", *sums[-shown:]]
    taps = _count(len(e.taps), "tap")
    return (
        f"y{tuple(e.at)} = {e.activation}({' + '.join([f'{e.bias:.3g}', *sums])}) = "
        f"{float(e.value):.4g}   ({taps} x {_count(e.geometry.in_per_group, 'channel')})"
    )


def gather_gif(e: Explanation, path: str, ms: int = 450) -> str:
    """GIF: the slice's output elements filled in turn, each with the input pixels and kernel
    taps it gathers (values from :func:`explain`)."""
    _mpl()
    plane = plane_of(e)
    g, layer = e.geometry, e.layer
    windows = []
    for a in plane.axes:
        n = min(MAX_CELLS, g.axes[a].out)
        start = min(max(e.o[a] - n // 2, 0), g.axes[a].out - n)
        windows.append(range(start, start + n))
    y = np.full([len(w) for w in windows], np.nan)
    ref = layer.to_canonical(layer(e.x))[e.n][..., e.f][tuple(e.o[a] for a in plane.fixed)]
    lim = float(np.max(np.abs(ref), initial=0.0)) or 1.0
    kshape = [g.axes[a].kernel for a in plane.axes]
    in2, k2, y2 = (
        _as2d(np.zeros(s)).shape for s in ([len(w) for w in plane.in_window], kshape, y.shape)
    )
    (_, xk, xo), width = _columns(
        [
            (in2[1] * CELL, "inputs it gathers"),
            (k2[1] * CELL, "kernel taps"),
            (y2[1] * CELL, f"output y{tuple(e.at)}"),
        ]
    )
    height = 80 + max(in2[0], y2[0]) * CELL + 60
    images = []
    for pos in np.ndindex(*y.shape):
        o = list(e.o)
        for a, w, p in zip(plane.axes, windows, pos, strict=True):
            o[a] = w[p]
        cell = explain(layer, e.x, (e.n, e.f, *o) if layer.channels_first else (e.n, *o, e.f))
        y[pos] = float(cell.value)
        image, draw = _canvas(width, height, f"gather, filter {e.f}   [{plane.text}]")
        imarks, kmarks = {}, {}
        for t in cell.taps:
            rc = [
                t.input_position[a] - w.start
                for a, w in zip(plane.axes, plane.in_window, strict=True)
            ]
            kp = [t.kernel_position[a] for a in plane.axes]
            imarks[(0, rc[0]) if len(rc) == 1 else (rc[0], rc[1])] = RED
            kmarks[(0, kp[0]) if len(kp) == 1 else (kp[0], kp[1])] = RED
        imarks = {k: v for k, v in imarks.items() if 0 <= k[0] < in2[0] and 0 <= k[1] < in2[1]}
        _draw_grid(
            draw,
            (40, 80),
            np.zeros(in2),
            "inputs it gathers",
            1.0,
            imarks,
            _labels(plane.in_window),
        )
        _draw_grid(draw, (xk, 80), np.zeros(k2), "kernel taps", 1.0, kmarks)
        here = (0, pos[0]) if len(pos) == 1 else pos
        _draw_grid(
            draw, (xo, 80), y, f"output y{tuple(cell.at)}", lim, {here: BLUE}, _labels(windows)
        )
        draw.text(
            (40, height - 30),
            gather_caption(cell),
            fill=(0, 0, 0),
            font=_font(11),
        )
        images.append(image)
    return _save_gif(images, path, ms)
