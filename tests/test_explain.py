"""tconv.explain: every element's value, terms and taps against the engine's forward (1D/2D/3D)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_close, peer

import tconv
from tconv import jax as tj
from tconv import keras as tk
from tconv import torch as tt
from tconv.explanation import explain
from tconv.layer import KERAS, TORCH, TransposedConv


def keras_op(
    in_shape, cin, filters, k, s, padding="same", op=None, d=1, fmt="channels_last", act=None
):
    """A TransposedConv with Keras' crop rule and layouts, random weights and input."""
    rank = len(in_shape)
    k, s, d = (k,) * rank, (s,) * rank, (d,) * rank
    op = None if op is None else (op,) * rank
    rng = np.random.default_rng(hash((in_shape, cin, filters, k, s, padding)) % 2**32)
    kernel = rng.standard_normal((*k, filters, cin))
    layer = TransposedConv(
        kernel,
        rng.standard_normal(filters),
        s,
        d,
        tk.crop_rule(k, s, d, padding, op),
        activation=act,
        data_format=fmt,
        kernel_layout=KERAS,
    )
    shape = (2, cin, *in_shape) if fmt == "channels_first" else (2, *in_shape, cin)
    return layer, rng.standard_normal(shape)


def torch_op(in_shape, cin, cout, k, s, p=0, op=0, d=1, groups=1):
    rank = len(in_shape)
    rng = np.random.default_rng(7)
    w = rng.standard_normal((cin, cout // groups, *(k,) * rank))
    layer = tt.op(w, rng.standard_normal(cout), s, p, op, groups, d, rank=rank)
    return layer, rng.standard_normal((1, cin, *in_shape))


CASES = {
    "seedlike-2d-same": lambda: keras_op((4, 4), 6, 5, 3, 2),
    "2d-valid-k1-s3": lambda: keras_op((3, 2), 2, 3, 1, 3, "valid"),
    "2d-same-even-k": lambda: keras_op((3, 3), 3, 2, 4, 2, act="relu"),
    "2d-same-op1": lambda: keras_op((3, 3), 2, 2, 3, 2, "same", op=1, act="tanh"),
    "2d-valid-op2": lambda: keras_op((2, 3), 2, 2, 2, 3, "valid", op=2),
    "2d-dilated": lambda: keras_op((4, 3), 2, 3, 3, 1, "same", d=2),
    "2d-channels-first": lambda: keras_op((3, 4), 3, 4, 3, 2, fmt="channels_first"),
    "1d-same": lambda: keras_op((5,), 3, 2, 5, 3, act="sigmoid"),
    "3d-same": lambda: keras_op((2, 3, 2), 2, 3, 3, 2),
    "3d-valid-channels-first": lambda: keras_op(
        (2, 2, 2), 2, 2, 2, 2, "valid", fmt="channels_first"
    ),
    "torch-2d-groups": lambda: torch_op((3, 3), 4, 6, 3, 2, p=1, op=1, groups=2),
    "torch-1d-big-crop": lambda: torch_op((4,), 2, 2, 3, 2, p=2, op=1, d=2),
    "torch-2d-crop-beyond-span": lambda: torch_op((4, 4), 2, 2, 3, 2, p=3),
    "torch-3d-groups": lambda: torch_op((2, 2, 3), 6, 3, 2, 2, p=0, op=1, groups=3),
}


def _positions(layer, x):
    """Corners, centre and every border element of every spatial axis (a bounded sample)."""
    shape = layer.output_shape(x.shape)
    rng = np.random.default_rng(0)
    picks = {tuple(0 for _ in shape), tuple(n - 1 for n in shape)}
    picks |= {tuple(n // 2 for n in shape)}
    for _ in range(12):
        picks.add(tuple(int(v) for v in rng.integers(0, shape)))
    return sorted(picks)


@pytest.mark.parametrize("name", sorted(CASES))
def test_value_terms_and_taps_match_forward(name):
    layer, x = CASES[name]()
    fast, ref = layer(x), layer(x, method="reference")
    fk = layer.framework_kernel
    for at in _positions(layer, x):
        e = explain(layer, x, at)
        assert_close(np.float64(e.value), np.float64(fast[at]), max(1, e.products))
        assert_close(np.float64(e.value), np.float64(ref[at]), max(1, e.products))
        # Every term points at the real input and the real framework kernel element.
        for row in e.terms:
            assert x[tuple(row["input_index"])] == row["x"]
            assert fk[tuple(row["kernel_index"])] == row["w"]
            assert row["product"] == row["x"] * row["w"]
        assert len(e.terms) == sum(1 for _ in e.geometry.taps(e.o)) * e.geometry.in_per_group
        assert_close(
            np.float64(sum(t.sum for t in e.taps) + e.bias),
            np.float64(e.preactivation),
            max(1, e.products),
        )
        assert e.bias == (0.0 if layer.bias is None else layer.bias[e.f])


def test_bias_only_elements_and_border():
    # valid with stride 3 > kernel 1: two of every three rows are bias only (Keras pads them).
    layer, x = keras_op((3, 2), 2, 3, 1, 3, "valid")
    e = explain(layer, x, (0, 1, 0, 2))
    assert e.taps == () and len(e.terms) == 0
    assert e.value == pytest.approx(layer.bias[2])
    assert "bias alone" in e.to_text()
    assert "not an integer" in e.to_text()
    # The reason is stated per axis (it used to be "crop rule added or no input reaches").
    assert "on axis y, p = 1 falls in a gap between the stamps" in e.to_text()
    assert "axis x" not in e.to_text().split("bias alone")[1].split(")")[0]
    # output_padding adds a zero row at the end: the last row reaches only partly.
    layer, x = keras_op((3,), 1, 1, 2, 2, "valid", op=1)
    e = explain(layer, x, (0, 6, 0))
    assert e.taps == () and "add 1 zero row at the end" in e.to_text()
    assert "on axis x, p = 6 is outside the full length 0..5: a zero row" in e.to_text()
    assert e.value == pytest.approx(layer(x)[0, 6, 0])


def test_filter_role_names_block_and_group():
    layer, x = keras_op((4, 4), 6, 5, 3, 2)
    text = explain(layer, x, (0, 3, 3, 4)).filter_role()
    assert "kernel[:, :, 4, :]" in text and "3×3×6 block" in text and "output depth 5" in text
    layer, x = torch_op((3, 3), 4, 6, 3, 2, p=1, op=1, groups=2)
    e = explain(layer, x, (0, 4, 2, 2))  # (n, f, oy, ox): filter 4 is in group 1
    assert e.channels == (2, 4)
    assert "kernel[2:4, 1, :, :]" in e.filter_role() and "group 1 of 2" in e.filter_role()
    assert all(t.input_index.startswith("x[0, 2:4,") for t in e.taps)


def test_seed_layer_element():
    layer = tk.Conv2DTranspose(16, 3, strides=2, padding="same")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 8, 8, 32)).astype(np.float32)
    layer.set_weights([rng.standard_normal((3, 3, 16, 32)), rng.standard_normal(16)])
    y = layer(x)
    counts = {(4, 4): 4, (4, 5): 2, (5, 4): 2, (5, 5): 1}
    for (oy, ox), taps in counts.items():
        e = tconv.explain(layer, x, (0, oy, ox, 7))
        assert len(e.taps) == taps and e.products == 32 * taps
        assert e.value.dtype == np.float32
        assert_close(np.float32(e.value), y[0, oy, ox, 7], e.products)
    # The full 17-row scatter result is cropped by 0 at the start and 1 at the end.
    assert "crop 0 at the start, crop 1 at the end -> 16" in e.to_text()
    e = tconv.explain(layer, x, (0, -1, -1, -1))
    assert e.at == (0, 15, 15, 15) and len(e.taps) == 1


def test_text_and_json():
    layer, x = keras_op((4, 4), 8, 3, 3, 2)
    e = explain(layer, x, (1, 2, 2, 1))
    short, full = e.to_text(), e.to_text(all=True)
    assert "more channels" in short and "more channels" not in full
    assert full.count(" · W[") == e.products
    d = json.loads(e.to_json())
    assert d["value"] == pytest.approx(float(e.value))
    assert len(d["terms"]["product"]) == e.products
    assert d["taps"][0]["kernel_index"] == e.taps[0].kernel_index
    assert "Explanation(y[1, 2, 2, 1]" in repr(e)


@pytest.mark.parametrize(
    ("at", "err", "msg"),
    [
        ((0, 8, 0, 0), IndexError, "index 8 is out of bounds for axis 1 with size 8"),
        ((0, 0, 0, 5), IndexError, "axis 3 with size 3"),
        ((0, 0, 0), ValueError, "has 3 indices"),
        (("a", 0, 0, 0), TypeError, "sequence of ints"),
    ],
)
def test_bad_index(at, err, msg):
    layer, x = keras_op((4, 4), 2, 3, 3, 2)
    with pytest.raises(err, match=msg):
        explain(layer, x, at)


def test_wrong_input_shape():
    layer, x = keras_op((4, 4), 2, 3, 3, 2)
    with pytest.raises(ValueError, match="input has 3 channels but the kernel expects 2"):
        explain(layer, np.zeros((1, 4, 4, 3)), (0, 0, 0, 0))


def test_torch_layout_indices():
    layer, x = torch_op((3, 3), 4, 6, 3, 2, p=1, op=1, groups=2)
    assert layer.kernel_layout is TORCH
    e = explain(layer, x, (0, 5, 1, 1))
    w = layer.framework_kernel
    for row in e.terms:
        assert w[tuple(row["kernel_index"])] == row["w"]
        assert row["input_index"][1] in (2, 3)  # channels of group 1 in NCHW


def _check_against_forward(layer, x, ats):
    y, fk = layer(x), layer.framework_kernel
    for at in ats:
        e = explain(layer, x, at)
        assert_close(np.float64(e.value), np.float64(y[at]), max(1, e.products))
        for row in e.terms:
            assert fk[tuple(row["kernel_index"])] == row["w"]
            assert x[tuple(row["input_index"])] == row["x"]


def test_onnx_and_jax_ops_explain_in_their_layouts():
    from tconv import jax as tj
    from tconv import onnx as to

    rng = np.random.default_rng(11)
    w = rng.standard_normal((4, 3, 3, 2))  # ONNX (C, M/group, kh, kw), group 2 -> M = 6
    layer = to.op(w, rng.standard_normal(6), auto_pad="SAME_LOWER", group=2, strides=[2, 2])
    x = rng.standard_normal((1, 4, 3, 3))
    _check_against_forward(layer, x, [(0, 0, 0, 0), (0, 5, 5, 3), (0, 3, 2, 1)])
    # JAX without transpose_kernel: the kernel is not flipped; HWIO with NHWC data.
    rhs = rng.standard_normal((3, 2, 4, 5))
    layer = tj.op(rhs, (2, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    x = rng.standard_normal((2, 3, 4, 4))
    jax = peer("jax")
    expected = np.asarray(
        jax.lax.conv_transpose(
            x,
            rhs,
            (2, 1),
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=jax.lax.Precision.HIGHEST,
        )
    )
    for at in [(1, 0, 0, 4), (0, 5, 3, 0), (1, 2, 1, 2)]:
        e = explain(layer, x, at)
        assert_close(np.float32(e.value), expected[at].astype(np.float32), e.products)
    _check_against_forward(layer, x, [(1, 0, 0, 4), (0, 5, 3, 0)])
    # transpose_kernel=True: JAX flips the kernel and swaps its I/O axes; indices follow.
    layer = tj.op(
        rhs, (2, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), transpose_kernel=True
    )
    x = rng.standard_normal((1, 3, 4, 5))
    _check_against_forward(layer, x, [(0, 0, 0, 1), (0, 5, 3, 3), (0, 2, 2, 0)])


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_softmax_element_value_and_views(fmt):
    """softmax mixes a whole output axis: the element's value is the forward's (it used to be
    softmax of the single preactivation, i.e. 1.0), and every view agrees with the forward."""
    from tconv.explanation import agreement

    layer = tk.Conv2DTranspose(  # float64 policy: a Keras layer computes in its policy's dtype
        3, 3, strides=2, padding="same", data_format=fmt, activation="softmax", dtype="float64"
    )
    shape = (1, 2, 3, 4) if fmt == "channels_first" else (1, 3, 4, 2)
    x = np.random.default_rng(1).standard_normal(shape)
    layer.build(x.shape, seed=0)
    y = layer(x)
    at = (0, 1, 2, 5) if fmt == "channels_first" else (0, 2, 5, 1)
    e = explain(layer, x, at)
    assert e.value == pytest.approx(y[at], rel=1e-12) and e.value != pytest.approx(1.0)
    axis = "the last spatial axis, y[0, 1, 2, :]" if fmt == "channels_first" else "the 3 output"
    assert f"(softmax normalises a whole output axis: {axis}" in e.to_text()
    assert max(agreement(layer, x).values()) < 1e-12


def test_formula_header_speaks_the_framework_kernel_layout():
    """The header's kernel index follows the framework layout (it used to be the canonical
    W[ky, kx, f, c] for every framework, wrong for PyTorch, groups and JAX's flip)."""
    rng = np.random.default_rng(0)
    op = tt.op(rng.standard_normal((4, 1, 3, 3)), None, stride=2, padding=1, groups=2)
    e = explain(op, rng.standard_normal((1, 4, 3, 3)), (0, 1, 2, 3))
    head = e.formula().splitlines()[0]
    assert "Σ_c (c = 2..3) x[0, c, iy, ix]·kernel[c, 0, ky, kx])" in head
    assert "no other output channel reads them" in e.filter_role()
    w = rng.standard_normal((3, 2, 4, 5))
    op = tj.op(w, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    e = explain(op, rng.standard_normal((1, 3, 3, 4)), (0, 2, 3, 1))
    assert "x[0, iy, ix, c]·kernel[2-ky, 1-kx, c, 1])" in e.formula()
    # Every term's kernel index is the pattern with its own tap and channel filled in.
    for row in e.terms:
        (ky, kx), c = e.taps[0].kernel_position, row["input_index"][-1]
        if tuple(row["kernel_index"][:2]) == (2 - ky, 1 - kx):
            assert tuple(row["kernel_index"][2:]) == (c, 1)
