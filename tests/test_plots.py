"""Pictures and animations (extra 'plot'): files are written, and the animated data is exact."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, peer
from test_explain import keras_op, torch_op

from tconv.explanation import explain, overlap, plots


@pytest.fixture(autouse=True)
def _extra_plot():
    """The 'plot' extra is a test dependency: missing, it skips (fails under CI)."""
    peer("matplotlib")
    peer("PIL.Image")


@pytest.mark.parametrize(
    "make,at",
    [
        (lambda: keras_op((4, 4), 3, 2, 3, 2), (0, 3, 4, 1)),
        (lambda: keras_op((5,), 2, 2, 4, 3, "valid", op=2), (1, 9, 0)),
        (lambda: torch_op((2, 3, 3), 4, 2, 2, 2, p=1, op=1, groups=2), (0, 1, 1, 2, 3)),
    ],
)
def test_scatter_frames_accumulate_to_the_forward(make, at):
    layer, x = make()
    e = explain(layer, x, at)
    plane = plots.plane_of(e)
    frames = plots.scatter_frames(e, plane)
    full = frames[-1].full
    g = e.geometry
    # Crop the accumulated full plane and compare with the layer (no bias) on that plane.
    lin = type(layer)(
        layer.kernel,
        None,
        layer.strides,
        layer.dilation,
        layer.crops,
        groups=layer.groups,
        data_format=layer.data_format,
        kernel_layout=layer.kernel_layout,
    )
    y = lin.to_canonical(lin(x))[e.n][..., e.f][tuple(e.o[a] for a in plane.fixed)]
    box = tuple(
        slice(g.axes[a].crop_start, g.axes[a].crop_start + g.axes[a].out) for a in plane.axes
    )
    pad = [(max(0, -g.axes[a].crop_start), max(0, -g.axes[a].crop_end)) for a in plane.axes]
    full = np.pad(full, pad)
    box = tuple(slice(s.start + p[0], s.stop + p[0]) for s, p in zip(box, pad, strict=True))
    assert_close(full[box], y.astype(np.float64), 64)
    # Each frame adds exactly its stamp.
    for a, b in zip(frames, frames[1:], strict=False):
        assert np.isclose((b.full - a.full).sum(), b.stamp.sum())


def test_pictures_and_gifs_are_written(tmp_path):
    layer, x = keras_op((4, 4), 3, 2, 3, 2)
    e = explain(layer, x, (0, 3, 4, 1))
    for name in ("e.png", "e.svg"):
        plots.element_figure(e, str(tmp_path / name))
    plots.overlap_figure(overlap(layer, (4, 4)), str(tmp_path / "o.png"))
    plots.views_figure(layer, x, e.at, str(tmp_path / "v.png"))
    assert (tmp_path / "e.svg").read_text().lstrip().startswith("<?xml")
    for name in ("e.png", "o.png", "v.png"):
        with peer("PIL.Image").open(tmp_path / name) as im:
            assert im.format == "PNG" and im.size[0] > 500
    plots.scatter_gif(e, str(tmp_path / "s.gif"))
    plots.gather_gif(e, str(tmp_path / "g.gif"))
    with peer("PIL.Image").open(tmp_path / "s.gif") as im:
        assert im.format == "GIF" and im.n_frames == 16  # one per input pixel
    with peer("PIL.Image").open(tmp_path / "g.gif") as im:
        assert im.n_frames == 64  # one per output element of the 8x8 slice


def test_large_layers_are_sliced_and_say_so():
    layer, x = keras_op((20, 20), 2, 2, 3, 2)
    e = explain(layer, x, (0, 30, 31, 1))
    plane = plots.plane_of(e)
    assert [len(w) for w in plane.in_window] == [8, 8]
    assert "iy 11..18 of 20" in plane.text and "filter 1 of 2" in plane.text
