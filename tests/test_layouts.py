"""tconv.layouts: kernel and padding conversions, checked by running both sides in the real
frameworks (Keras on TensorFlow, PyTorch, onnxruntime, jax.lax) and comparing outputs."""

from __future__ import annotations

import ast
import itertools
import re

import numpy as np
import pytest
from conftest import assert_close, peer
from test_onnx import _ort_run

import tconv.keras as tconv_keras
import tconv.layouts as tl
import tconv.torch as tt
from tconv.layer import TransposedConv

RANKS = {1: "1d", 2: "2d", 3: "3d"}


def _keras(x, kernel, strides, padding, output_padding, dilation=1):
    keras = peer("keras")
    y = keras.ops.conv_transpose(
        x, kernel, strides, padding, output_padding=output_padding, dilation_rate=dilation
    )
    return np.asarray(y)


def _torch(x_cf, weight, groups=1, **kw):
    torch = peer("torch")
    fn = getattr(torch.nn.functional, f"conv_transpose{RANKS[weight.ndim - 2]}")
    return fn(torch.from_numpy(x_cf), torch.from_numpy(weight), groups=groups, **kw).numpy()


def _jax(x, rhs, strides, padding, **kw):
    jax = peer("jax")
    return np.asarray(jax.lax.conv_transpose(x, rhs, strides, padding, **kw))


def _cf(x):
    return np.ascontiguousarray(np.moveaxis(x, -1, 1))


def _cl(y):
    return np.moveaxis(y, 1, -1)


def test_kernel_roundtrips_and_index_maps():
    rng = np.random.default_rng(0)
    for rank in (1, 2, 3):
        k = rng.standard_normal((*range(2, 2 + rank), 5, 3))
        for name in tl.KERNEL_LAYOUTS:
            np.testing.assert_array_equal(
                tl.convert_kernel(tl.convert_kernel(k, "keras", name), name, "keras"), k
            )
    k = rng.standard_normal((2, 3, 5, 4))
    t = tl.keras_to_tflite(k)
    for h, w, o, i in itertools.product(range(2), range(3), range(5), range(4)):
        assert t[o, h, w, i] == k[h, w, o, i]
    np.testing.assert_array_equal(tl.tflite_to_keras(t), k)
    np.testing.assert_array_equal(tl.keras_to_torch(k), k.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(tl.keras_to_jax(k), k[::-1, ::-1].transpose(0, 1, 3, 2))
    np.testing.assert_array_equal(tl.keras_to_jax(k, transpose_kernel=True), k)
    np.testing.assert_array_equal(
        tl.jax_to_torch(tl.torch_to_jax(tl.keras_to_torch(k))), tl.keras_to_torch(k)
    )
    np.testing.assert_array_equal(tl.jax_to_keras(tl.keras_to_jax(k)), k)
    np.testing.assert_array_equal(tl.jax_to_keras(k, transpose_kernel=True), k)
    np.testing.assert_array_equal(tl.torch_to_tflite(tl.keras_to_torch(k)), t)
    # A grouped PyTorch kernel becomes the dense kernel with zero off-group blocks.
    grouped = rng.standard_normal((4, 3, 2, 2))  # in=4, filters=6, groups=2
    dense = tl.torch_to_keras(grouped, groups=2)
    assert dense.shape == (2, 2, 6, 4)
    assert not dense[:, :, :3, 2:].any() and not dense[:, :, 3:, :2].any()
    np.testing.assert_array_equal(dense[:, :, 3:, 2:], grouped[2:].transpose(2, 3, 1, 0))
    with pytest.raises(ValueError, match="unknown kernel layout"):
        tl.convert_kernel(k, "keras", "caffe")
    with pytest.raises(ValueError, match="groups=2 applies"):
        tl.convert_kernel(k, "keras", "torch", groups=2)


KERAS_CASES = [
    (rank, k, s, padding, op)
    for rank in (1, 2)
    for k, s in [(3, 2), (4, 2), (2, 3), (3, 1), (5, 3)]
    for padding in ("same", "valid")
    for op in (None, 0, s - 1)
    # Keras on TensorFlow aborts on same + even kernel + output_padding=0 (a TF limitation).
    if not (padding == "same" and op == 0 and k % 2 == 0)
]


@pytest.mark.parametrize("rank,k,s,padding,op", KERAS_CASES)
def test_keras_layer_in_torch_onnx_and_jax(rank, k, s, padding, op):
    """Keras' result == the other framework's, with converted kernel and padding, or a clear
    NoEquivalentError whose advice (crop or pad the result) reproduces Keras' output."""
    rng = np.random.default_rng(k * 10 + s)
    x = rng.standard_normal((2, *(4,) * rank, 3)).astype(np.float32)
    kernel = rng.standard_normal((*(k,) * rank, 5, 3)).astype(np.float32)
    expected = _keras(x, kernel, s, padding, op)
    crops = tl.crops("keras", (4,) * rank, (k,) * rank, s, padding=padding, output_padding=op)
    terms = 3 * k**rank
    # JAX: always expressible.
    jp = tl.padding_for("jax", crops, (k,) * rank, s)
    assert_close(_jax(x, tl.keras_to_jax(kernel), (s,) * rank, **jp), expected, terms)
    # ONNX: always expressible (pads may be negative).
    op_attrs = tl.padding_for("onnx", crops, (k,) * rank, s)
    y = _ort_run(_cf(x), tl.keras_to_torch(kernel), strides=[s] * rank, **op_attrs)
    assert_close(_cl(y), expected, terms)
    # PyTorch: only when crop_start >= 0 and 0 <= start - end < stride.
    try:
        tp = tl.padding_for("torch", crops, (k,) * rank, s)
    except tl.NoEquivalentError as err:
        b, e = crops[0]
        assert "drop the last" in str(err) or "bias-only" in str(err)
        full = _torch(_cf(x), tl.keras_to_torch(kernel), stride=s, padding=max(b, 0))
        assert b >= 0 and e > b
        assert_close(_cl(full)[(slice(None), *(slice(0, b - e),) * rank)], expected, terms)
        return
    y = _torch(_cf(x), tl.keras_to_torch(kernel), stride=s, **tp)
    assert_close(_cl(y), expected, terms)


TORCH_CASES = [
    (k, s, p, op, d)
    for k, s in [(3, 2), (4, 2), (1, 3), (3, 1)]
    for p in (0, 1, 2)
    for op in range(s)
    for d in (1, 2)
]


@pytest.mark.parametrize("k,s,p,op,d", TORCH_CASES)
def test_torch_layer_in_keras_onnx_and_jax(k, s, p, op, d):
    rng = np.random.default_rng(k + 10 * s + 100 * p)
    groups = 2
    x = rng.standard_normal((2, 4, 5, 4)).astype(np.float32)
    w = rng.standard_normal((4, 3, k, k)).astype(np.float32)
    try:
        expected = _torch(x, w, groups=groups, stride=s, padding=p, output_padding=op, dilation=d)
    except RuntimeError:
        return
    crops = tl.crops("torch", (5, 4), (k, k), s, d, padding=p, output_padding=op)
    terms = 4 * k * k
    jp = tl.padding_for("jax", crops, (k, k), s, d)
    y = _jax(_cl(x), tl.torch_to_jax(w, groups), (s, s), rhs_dilation=(d, d), **jp)
    assert_close(_cf(y), expected, terms)
    attrs = tl.padding_for("onnx", crops, (k, k), s, d)
    y = _ort_run(x, w, group=groups, strides=[s, s], dilations=[d, d], **attrs)
    assert_close(y, expected, terms)
    kernel = tl.torch_to_keras(w, groups)

    def keras_run(**kp):
        if d == 1:
            return _keras(_cl(x), kernel, s, **kp)
        # TensorFlow's CPU kernels refuse dilation > 1: use tconv's Keras adapter
        return tconv_keras.conv_transpose(_cl(x), kernel, s, dilation_rate=d, **kp)

    try:
        kp = tl.padding_for("keras", crops, (k, k), s, d)
    except tl.NoEquivalentError as err:
        # Follow the advice: the full result, then Keras' Cropping2D, then zero rows (no bias).
        y = keras_run(padding="valid", output_padding=0)
        cropping = re.search(r"Cropping2D\(cropping=(.*?)\)(?: and|$)", str(err))
        if cropping:
            layer = peer("keras").layers.Cropping2D(ast.literal_eval(cropping.group(1)))
            y = np.asarray(layer(y))
        grow = re.search(r"\(start, end\) (\[.*?\])", str(err))
        if grow:
            y = np.pad(y, [(0, 0), *ast.literal_eval(grow.group(1)), (0, 0)])
        assert cropping or grow
        assert_close(_cf(y), expected, terms)
        return
    assert_close(_cf(keras_run(**kp)), expected, terms)


def test_seed_layer_conversions():
    """The user's layer: Keras same, kernel 3, stride 2 -> the other conventions."""
    kw = dict(input_shape=(8, 8), kernel_size=(3, 3), strides=2, padding="same")
    assert tl.convert_padding("keras", "onnx", **kw) == {"auto_pad": "SAME_UPPER"}
    assert tl.convert_padding("keras", "jax", **kw) == {"padding": "SAME"}
    with pytest.raises(tl.NoEquivalentError, match="drop the last 1 row"):
        tl.convert_padding("keras", "torch", **kw)
    assert issubclass(tl.NoEquivalentError, ValueError)
    # PyTorch's usual port (padding=1, output_padding=1) crops at the start instead: no Keras.
    with pytest.raises(tl.NoEquivalentError, match="Cropping"):
        tl.convert_padding("torch", "keras", (8, 8), (3, 3), 2, padding=1, output_padding=1)


def test_onnx_output_shape_and_jax_pairs_convert():
    c = tl.crops("onnx", (5,), (3,), 2, output_shape=[10])
    assert c == [(1, 0)]
    assert tl.padding_for("torch", c, (3,), 2) == {"padding": (1,), "output_padding": (1,)}
    assert tl.padding_for("jax", [(1, 1)], (3,), 2) == {"padding": [(1, 1)]}
    assert tl.crops("jax", (4,), (3,), 1, padding=[(2, 2)]) == [(0, 0)]
    with pytest.raises(tl.NoEquivalentError, match=r"prepend 1 row\(s\) of activation\(bias\)"):
        tl.padding_for("torch", [(-1, 0)], (3,), 2)
    with pytest.raises(ValueError, match="convention must be one of"):
        tl.crops("caffe", (4,), (3,))


def _follow_advice(y, advice):
    """``y`` ``(N, L, C)`` after the advice's "drop the first/last", "prepend"/"append" rows
    on axis 0 (the 1D layers here)."""
    count = {
        w: sum(int(v) for v in re.findall(rf"axis 0: {w} (\d+)", advice))
        for w in ("drop the first", "drop the last", "prepend", "append")
    }
    y = y[:, count["drop the first"] : y.shape[1] - count["drop the last"]]
    return np.pad(y, [(0, 0), (count["prepend"], count["append"]), (0, 0)])


@pytest.mark.parametrize(
    "crops,s,d",
    [((0, 1), 2, 1), ((-1, 0), 2, 1), ((-2, -3), 2, 1), ((2, 0), 2, 1), ((3, 0), 1, 2)],
)
def test_torch_no_equivalent_advice_reproduces_the_crops(crops, s, d):
    """Doing what a PyTorch NoEquivalentError says (padding, output_padding, then drop, prepend
    or append rows) gives the canonical result of these crops, in real PyTorch."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)  # (N, L, C)
    kernel = rng.standard_normal((3, 4, 3)).astype(np.float32)  # Keras (k, filters, in)
    expected = TransposedConv(kernel, None, (s,), (d,), lambda _: [crops]).forward(x, "reference")
    with pytest.raises(tl.NoEquivalentError) as info:
        tl.padding_for("torch", [crops], (3,), s, d)
    advice = str(info.value)
    p, op = (
        ast.literal_eval(m)
        for m in re.search(r"padding=(\(.*?\)), output_padding=(\(.*?\))", advice).groups()
    )
    y = _torch(
        _cf(x), tl.keras_to_torch(kernel), stride=s, dilation=d, padding=p, output_padding=op
    )
    y = _cl(y)
    y = _follow_advice(y, advice)
    assert_close(y, expected, 9)


@pytest.mark.parametrize(
    "call,error,message",
    [
        # these used to return a wrong array, or fail inside NumPy or zip()
        (lambda: tl.convert_kernel(np.zeros((3, 3)), "keras", "torch"), ValueError, "3 to 5"),
        (lambda: tl.torch_to_keras(np.zeros((6, 3, 3)), groups=4), ValueError, "must divide"),
        (lambda: tl.torch_to_keras(np.zeros((6, 3, 3)), groups=0), ValueError, "positive int"),
        (lambda: tl.crops("keras", (8,), (3,), (2, 2)), ValueError, "strides must be an int or 1"),
        (lambda: tl.crops("keras", (8, 8), (3,)), ValueError, "input_shape must hold the 1"),
        (lambda: tl.crops("keras", (8,), (-3,)), ValueError, "kernel_size must be"),
        # these used to give crops for parameters the framework refuses, or ignore a typo
        (lambda: tl.crops("keras", (8,), (3,), 0), ValueError, "strides must be positive"),
        (lambda: tl.crops("keras", (8,), (3,), padding="full"), ValueError, "`padding`"),
        (lambda: tl.crops("keras", (8,), (3,), paddin="same"), TypeError, "'paddin'"),
        (lambda: tl.crops("torch", (8,), (3,), padding=-1), ValueError, "negative padding"),
        (lambda: tl.crops("torch", (8,), (3,), 2, output_padding=2), ValueError, "output pad"),
        (lambda: tl.crops("onnx", (8,), (3,), auto_pad="SAME"), ValueError, "AutoPadType"),
        (lambda: tl.crops("onnx", (8,), (3,), pads=[1]), ValueError, "pads size (1)"),
        (lambda: tl.crops("jax", (8,), (3,), padding=[(1, 1)] * 2), TypeError, "explicit pads"),
        (lambda: tl.padding_for("torch", [(1, 0)], (3, 3)), ValueError, "crops must be 2"),
        (lambda: tl.padding_for("torch", [(1, 0)], (3,), 0), ValueError, "strides must be pos"),
    ],
)
def test_bad_arguments_are_named(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


def test_op_builds_each_convention():
    conv = tl.op("torch", (3, 3), 2, in_channels=4, filters=6, groups=2, padding=1)
    assert (conv.framework, conv.in_channels, conv.filters, conv.groups) == ("torch", 4, 6, 2)
    assert tl.op("keras", (3,), 2, padding="SAME").crops((5,)) == [(0, 1)]
    with pytest.raises(ValueError, match="groups=2 applies to torch and onnx"):
        tl.op("jax", (3,), groups=2)


def test_padding_for_round_trips_through_crops():
    """For 1,000 random geometries and crops, every equivalent found gives back the same crops
    through that convention's own rule and validation (no framework needed)."""
    rng = np.random.default_rng(0)
    found = 0
    for _ in range(1000):
        rank = int(rng.integers(1, 4))
        k, s, d, size = (tuple(int(v) for v in rng.integers(1, hi, rank)) for hi in (6, 4, 3, 6))
        crops = [tuple(int(v) for v in rng.integers(-3, 4, 2)) for _ in range(rank)]
        axes = zip(size, k, s, d, crops, strict=True)
        if any((n - 1) * ss + dd * (kk - 1) + 1 - b - e < 1 for n, kk, ss, dd, (b, e) in axes):
            continue  # no output row left
        for convention in tl.CONVENTIONS:
            try:
                params = tl.padding_for(convention, crops, k, s, d)
            except tl.NoEquivalentError:
                continue
            found += 1
            params = {key: value for key, value in params.items() if value is not None}
            assert tl.crops(convention, size, k, s, d, **params) == crops, (convention, params)
    assert found > 1000


def test_torch_advice_for_random_crops():
    """The PyTorch advice, followed with tconv.torch (checked against PyTorch elsewhere), gives
    the canonical result for 300 random crops that PyTorch cannot express directly."""
    rng = np.random.default_rng(3)
    advised = 0
    for _ in range(300):
        k, s, d, n = (int(v) for v in rng.integers(1, (5, 4, 3, 5)))
        crops = [tuple(int(v) for v in rng.integers(-3, 5, 2))]
        full = (n - 1) * s + d * (k - 1) + 1
        if full - sum(crops[0]) < 1 or max(crops[0]) >= full:
            continue  # no output, or an output that misses the full result (bias rows only)
        try:
            tl.padding_for("torch", crops, (k,), s, d)
        except tl.NoEquivalentError as err:
            advice = str(err)
        else:
            continue
        advised += 1
        x = rng.standard_normal((1, n, 2))
        kernel = rng.standard_normal((k, 3, 2))
        expected = TransposedConv(kernel, None, (s,), (d,), lambda _, c=crops: c).forward(x)
        found = re.search(r"padding=(\(.*?\)), output_padding=(\(.*?\))", advice)
        p, op = (ast.literal_eval(m) for m in found.groups())
        y = tt.conv_transpose1d(_cf(x), tl.keras_to_torch(kernel), None, s, p, op, 1, d)
        y = _cl(y)
        y = _follow_advice(y, advice)
        assert_close(y, expected, 2 * k)
    assert advised > 100
