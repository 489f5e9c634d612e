"""The canonical geometry: the two descriptions of one axis (per-output taps and per-tap ranges)
must agree with the scatter definition, and bad parameters must be refused with a clear error."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tconv.geometry import Axis, Geometry


def scatter_pairs(axis: Axis) -> set[tuple[int, int, int]]:
    """(o, i, j) triples straight from the definition full[i*s + j*d] += x[i]*w[j]."""
    return {
        (i * axis.stride + j * axis.dilation - axis.crop_start, i, j)
        for i in range(axis.size)
        for j in range(axis.kernel)
        if 0 <= i * axis.stride + j * axis.dilation - axis.crop_start < axis.out
    }


axes = st.builds(
    lambda n, k, s, d, b, e: (n, k, s, d, b, e),
    st.integers(0, 7),
    st.integers(1, 6),
    st.integers(1, 5),
    st.integers(1, 3),
    st.integers(-4, 6),
    st.integers(-4, 6),
)


@settings(max_examples=400, deadline=None)
@given(axes)
def test_taps_and_tap_range_match_the_definition(params: tuple[int, ...]) -> None:
    n, k, s, d, b, e = params
    if (n - 1) * s + d * (k - 1) + 1 - b - e < 0:
        with pytest.raises(ValueError, match="output length"):
            Axis(n, k, s, d, b, e)
        return
    axis = Axis(n, k, s, d, b, e)
    expected = scatter_pairs(axis)
    from_taps = {(o, i, j) for o in range(axis.out) for i, j in axis.taps(o)}
    assert from_taps == expected
    from_ranges = set()
    for j in range(k):
        i0, count, o0 = axis.tap_range(j)
        from_ranges |= {(o0 + t * s, i0 + t, j) for t in range(count)}
    assert from_ranges == expected


def test_lengths() -> None:
    axis = Axis(8, 3, 2, 1, 0, 1)  # the seed layer: Keras same, kernel 3, stride 2
    assert (axis.span, axis.full, axis.out) == (3, 17, 16)
    assert Axis(4, 3, 1, 2, 0, 0).span == 5
    assert Axis(3, 2, 3, 1, 0, -1).out == 9  # full is 8; a negative crop adds a row


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kernel": 0}, "kernel must be a positive integer, got 0"),
        ({"stride": -1}, "stride must be a positive integer, got -1"),
        ({"dilation": 0}, "dilation must be a positive integer, got 0"),
        ({"size": -2}, "input length must be >= 0, got size=-2"),
        ({"crop_start": 10}, "output length"),
    ],
)
def test_axis_rejects(kwargs: dict[str, int], message: str) -> None:
    params = {"size": 4, "kernel": 3, "stride": 2} | kwargs
    with pytest.raises(ValueError, match=message):
        Axis(**params)


def test_axis_rejects_non_int() -> None:
    with pytest.raises(TypeError, match="Axis.stride must be an int"):
        Axis(4, 3, 2.0)  # type: ignore[arg-type]


def test_geometry_channels_and_groups() -> None:
    g = Geometry((Axis(5, 3, 2), Axis(4, 2, 1)), in_channels=6, out_channels=9, groups=3)
    assert g.kernel_shape == (3, 2, 9, 2)
    assert (g.in_per_group, g.out_per_group, g.group_of(4)) == (2, 3, 1)
    assert g.macs(batch=2) == 2 * 5 * 4 * 3 * 2 * 2 * 9
    with pytest.raises(ValueError, match="in_channels=6 must be divisible by groups=4"):
        Geometry((Axis(5, 3),), 6, 8, groups=4)
    with pytest.raises(ValueError, match="1 to 3 spatial axes"):
        Geometry((Axis(2, 1),) * 4, 1, 1)


def test_geometry_taps_is_the_product_of_axes() -> None:
    g = Geometry((Axis(3, 3, 2, 1, 1, 0), Axis(2, 2, 1)), 1, 1)
    for o in itertools.product(range(g.axes[0].out), range(g.axes[1].out)):
        got = sorted(g.taps(o))
        want = sorted(
            ((i0, i1), (j0, j1))
            for (i0, j0), (i1, j1) in itertools.product(g.axes[0].taps(o[0]), g.axes[1].taps(o[1]))
        )
        assert got == want
    assert np.prod(g.out_shape) == g.axes[0].out * g.axes[1].out
