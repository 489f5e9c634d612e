"""The four views, the phase view and the overlap map: each against the forward and each other."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, peer
from test_explain import CASES, keras_op

from tconv import torch as tt
from tconv.explanation import (
    agreement,
    gather,
    gradient_check,
    matrix,
    overlap,
    phases,
    scatter,
    zero_insertion,
)


@pytest.mark.parametrize("name", sorted(CASES))
def test_views_equal_forward_and_each_other(name):
    layer, x = CASES[name]()
    y = layer(x)
    terms = int(np.prod(layer.kernel_size)) * layer.in_channels
    s, z = scatter(layer, x), zero_insertion(layer, x)
    views = {
        "scatter": s.output,
        "gather": gather(layer, x),
        "zero insertion": z.output,
        "phases": phases(layer, x).output,
        "matrix": matrix(layer, x).output,
    }
    for view in views.values():
        assert_close(view, y, terms)
        assert_close(view, views["scatter"], terms)
    g = layer.geometry(layer.spatial_shape(x.shape))
    assert s.crops == tuple((a.crop_start, a.crop_end) for a in g.axes)

    def spatial(a):
        return a.shape[2:] if layer.channels_first else a.shape[1:-1]

    assert spatial(s.full) == tuple(a.full for a in g.axes)
    padded = spatial(z.padded)
    assert padded == tuple(
        (a.size - 1) * a.stride + 1 + b + e for a, (b, e) in zip(g.axes, z.pads, strict=True)
    )
    assert set(agreement(layer, x)) == {"reference", *views}
    assert max(agreement(layer, x).values()) < 1e-9


@pytest.mark.parametrize("name", ["seedlike-2d-same", "torch-2d-groups", "1d-same", "3d-same"])
def test_transposed_conv_is_gradient_of_conv(name):
    layer, x = CASES[name]()
    fd, adjoint = gradient_check(layer, x, samples=8)
    assert fd < 1e-9 and adjoint < 1e-12


def test_zero_insertion_shows_the_padded_input():
    layer, x = keras_op((3, 3), 1, 1, 3, 2)  # same: crop (0, 1) -> pad (2, 1)
    z = zero_insertion(layer, x)
    assert z.pads == ((2, 1), (2, 1))
    plane = z.padded[0, :, :, 0]
    assert plane.shape == (8, 8)
    np.testing.assert_array_equal(plane[2:7:2, 2:7:2], x[0, :, :, 0])
    assert np.count_nonzero(plane) == 9
    # The correlation kernel is the flipped, in/out-swapped kernel (Keras Conv layout).
    np.testing.assert_array_equal(z.kernel[:, :, 0, 0], layer.kernel[::-1, ::-1, 0, 0])


def test_matrix_is_transposed_conv_matrix_and_large_is_described():
    layer, x = keras_op((3,), 2, 2, 3, 2)
    m = matrix(layer, x)
    assert m.shape == (6 * 2, 3 * 2) and m.transposed is not None
    # Column of input (i=1, c=0) is the stamp of one input pixel: kernel taps at 2*1 + j.
    stamp = m.transposed[:, 1 * 2 + 0].reshape(6, 2)
    np.testing.assert_array_equal(stamp[2:5], layer.kernel[:, :, 0])
    big = matrix(layer, x, limit=10)
    assert big.transposed is None and big.output is None
    assert "non-zero" in big.description and big.blocks == m.blocks


def test_phases_list_sub_kernels():
    layer, x = keras_op((4, 4), 2, 3, 3, 2)
    table = {ph.residue: ph.taps for ph in phases(layer, x).phases}
    assert table[(0, 0)] == ((0, 0), (0, 2), (2, 0), (2, 2))
    assert table[(0, 1)] == ((0, 1), (2, 1))
    assert table[(1, 1)] == ((1, 1),)


@pytest.mark.parametrize(
    ("k", "s", "uneven", "counts"), [(3, 2, True, {1, 2, 4}), (4, 2, False, {1, 2, 4})]
)
def test_overlap_map(k, s, uneven, counts):
    layer, x = keras_op((6, 6), 2, 3, k, s)
    ov = overlap(layer, (6, 6))
    g = layer.geometry((6, 6))
    for o in np.ndindex(*g.out_shape):
        assert ov.counts[o] == sum(1 for _ in g.taps(o))
    assert ov.uneven is uneven and set(np.unique(ov.counts)) == counts
    assert ov.energy.shape == (s * s, 3)
    total = (layer.kernel**2).sum(axis=(-1,))  # (*k, filters)
    assert_close(ov.energy.sum(axis=0), total.sum(axis=(0, 1)))
    text = ov.to_text()
    assert ("UNEVEN" in text) is uneven and "phase (0, 0)" in text
    # The constant response: per-phase interior mean of layer(ones).
    y = layer(np.ones((1, 6, 6, 2)))
    assert ov.constant_response[0] == pytest.approx(float(y[0, 2:-2:2, 2:-2:2].mean()))


@pytest.mark.parametrize(
    ("k", "s", "d", "even", "rule"),
    [
        (4, 2, 2, False, "taps at j*2 for j < 4 fall 4/0 on the 2 positions mod stride 2"),
        (3, 2, 3, False, "taps at j*3 for j < 3 fall 2/1"),
        (2, 2, 3, True, "taps at j*3 for j < 2 fall 1/1"),
        (2, 3, 1, False, "kernel 2 is not divisible by stride 3"),
    ],
)
def test_overlap_rule_matches_torch_counts(k, s, d, even, rule):
    """The overlap counts are what PyTorch computes for ones; the stated reason fits dilation
    (kernel 4, stride 2, dilation 2 is divisible and still uneven: every tap lands on even
    positions) and holes (kernel < stride) are said to be bias only."""
    torch = peer("torch")
    layer = tt.op(np.ones((1, 1, k, k)), None, stride=s, dilation=d)
    ov = overlap(layer, (4, 4))
    ones = torch.nn.functional.conv_transpose2d(
        torch.ones(1, 1, 4, 4, dtype=torch.float64),
        torch.ones(1, 1, k, k, dtype=torch.float64),
        stride=s,
        dilation=d,
    )
    assert np.array_equal(ov.counts, ones.numpy()[0, 0].astype(np.int64))
    text = ov.to_text()
    first = text.splitlines()[0]
    assert rule in first and ("UNEVEN" in first) is not even
    holes = int((ov.counts == 0).sum())
    assert (f"{holes} of {ov.counts.size} output positions" in text) is (holes > 0)
