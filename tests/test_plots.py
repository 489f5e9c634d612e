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


def test_gif_panel_titles_do_not_overlap():
    """The scatter GIF's stamp title used to run into the full-output title (3x3 kernel)."""
    layer, x = keras_op((4, 4), 3, 2, 3, 2)
    e = explain(layer, x, (0, 3, 4, 1))
    stamp = f"stamp sum_c x[i, c]*W[.., {e.f}, c]"
    panels = [(240, "input pixel (0, 0)"), (90, stamp), (270, "full output, long title " * 3)]
    lefts, width = plots._columns(panels)
    font = plots._font(11)
    for (grid, title), left, right in zip(panels, lefts, [*lefts[1:], width], strict=True):
        assert left + max(grid, font.getlength(title)) < right


def test_3d_picture_says_which_taps_are_off_the_plane():
    """A 3D element with taps in two input planes: the picture draws one plane and now says
    where the other taps are (the title's tap count used to disagree with the red boxes)."""
    layer, x = keras_op((3, 4, 4), 2, 2, 3, 2, fmt="channels_first")
    e = explain(layer, x, (0, 1, 2, 3, 4))
    assert len({t.input_position[0] for t in e.taps}) == 2
    fig = plots.element_figure(e)
    label = fig.axes[0].get_xlabel()
    shown = sum(t.input_position[0] == e.taps[0].input_position[0] for t in e.taps)
    assert f"{shown} of the {len(e.taps)} taps are in this plane; the others are at iz = " in label
    peer("matplotlib.pyplot").close(fig)


def test_gather_caption_stays_one_short_line():
    """27 taps (3D, stride 1) used to make a caption far wider than the GIF frame."""
    layer, x = keras_op((3, 3, 3), 2, 2, 3, 1)
    e = explain(layer, x, (0, 1, 1, 1, 0))
    assert len(e.taps) == 27
    text = plots.gather_caption(e)
    assert "... 21 more ..." in text and "(27 taps x 2 channels)" in text
    assert plots._font(11).getlength(text) < 700
    one = explain(*keras_op((3,), 1, 1, 1, 2, "valid"), (0, 0, 0))
    assert plots.gather_caption(one).endswith("(1 tap x 1 channel)")


@pytest.mark.parametrize("missing", ["matplotlib", "PIL"])
def test_missing_plot_extra_is_a_clear_error(missing, tmp_path, monkeypatch, capsys):
    """Without the optional 'plot' extra, pictures say what to install, in Python and CLI."""
    import sys

    from tconv.cli import main

    layer, x = keras_op((4, 4), 3, 2, 3, 2)
    e = explain(layer, x, (0, 3, 4, 1))
    for name in [m for m in sys.modules if m == missing or m.startswith(missing + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, missing, None)  # import fails as if not installed
    with pytest.raises(RuntimeError, match=r"optional extra 'plot'.*pip install 'tconv\[plot\]'"):
        plots.element_figure(e, str(tmp_path / "e.png"))
    args = ["explain", "--input-shape", "4,4,2", "--filters", "3", "--png", str(tmp_path / "c.png")]
    assert main(args) == 2
    assert "pip install 'tconv[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "e.png").exists() and not (tmp_path / "c.png").exists()
