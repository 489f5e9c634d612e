"""tconv.onnx against onnxruntime, with ConvTranspose models built in memory by onnx.helper."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, peer

import tconv.onnx as to


def _ort_run(x, w, b=None, **attrs):
    """Run one ConvTranspose node in onnxruntime; returns Y or raises the runtime's error.

    onnxruntime's CPU ConvTranspose is float32 only: float64 data is run in float32 (and compared
    with the float32 bound).
    """
    onnx, ort = peer("onnx"), peer("onnxruntime")
    helper, tp = onnx.helper, onnx.TensorProto
    elem = tp.FLOAT
    names, feeds = ["X", "W"], {"X": x.astype(np.float32), "W": w.astype(np.float32)}
    if b is not None:
        names.append("B")
        feeds["B"] = b.astype(np.float32)
    inputs = [helper.make_tensor_value_info(n, elem, None) for n in names]
    attrs = {k: v for k, v in attrs.items() if v is not None}
    node = helper.make_node("ConvTranspose", names, ["Y"], **attrs)
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("Y", elem, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, feeds)[0]


def _ort_errors():
    ort = peer("onnxruntime")
    capi = ort.capi.onnxruntime_pybind11_state
    return (capi.Fail, capi.InvalidArgument, capi.RuntimeException)


def _compare(x, w, b, methods=("fast", "reference"), **attrs):
    """Both sides run or both refuse; returns the worst |diff| (0 when both refuse) or None."""
    try:
        expected = _ort_run(x, w, b, **attrs)
    except _ort_errors() as err:
        with pytest.raises(ValueError):
            to.conv_transpose(x, w, b, **attrs)
        return str(err)
    terms = w.shape[0] * int(np.prod(w.shape[2:]))
    worst = 0.0
    for method in methods:
        got = to.conv_transpose(x, w, b, method=method, **attrs)
        assert got.dtype == x.dtype
        assert_close(got, expected, terms)
        if got.size:
            worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - expected))))
    return worst


def _data(rng, shape_x, shape_w, groups, dtype=np.float32, bias=True):
    x = rng.standard_normal(shape_x).astype(dtype)
    w = rng.standard_normal(shape_w).astype(dtype)
    b = rng.standard_normal(shape_w[1] * groups).astype(dtype) if bias else None
    return x, w, b


AUTO = ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]
GRID = [
    (rank, size, k, s, auto_pad, op, d)
    for rank in (1, 2, 3)
    for size, k, s in [(1, 3, 2), (4, 2, 3), (3, 3, 3), (3, 4, 2), (2, 1, 1)]
    for auto_pad in AUTO
    for op in sorted({0, s - 1})
    for d in (1, 2)
]


@pytest.mark.parametrize("rank,size,k,s,auto_pad,op,d", GRID)
def test_grid_auto_pad_against_onnxruntime(rank, size, k, s, auto_pad, op, d):
    rng = np.random.default_rng(size * 100 + k * 10 + s)
    for dtype, n, groups in [(np.float32, 3, 1), (np.float32, 1, 2), (np.float64, 0, 1)]:
        x, w, b = _data(
            rng, (n, 2 * groups, *(size,) * rank), (2 * groups, 2, *(k,) * rank), groups
        )
        x, w, b = x.astype(dtype), w.astype(dtype), b.astype(dtype)
        attrs = dict(
            auto_pad=auto_pad,
            strides=[s] * rank,
            dilations=[d] * rank,
            output_padding=[op] * rank,
            group=groups,
        )
        _compare(x, w, b, **attrs)


PADS_GRID = [
    (pads, op, output_shape)
    for pads in ([0, 0], [1, 0], [0, 2], [2, 2], [-1, 1], [3, -2])
    for op in (0, 1)
    for output_shape in (None, 9, 10, 11, 12, 13)
    if output_shape is None or pads == [0, 0]
]


@pytest.mark.parametrize("pads,op,output_shape", PADS_GRID)
def test_pads_and_output_shape_against_onnxruntime(pads, op, output_shape):
    rng = np.random.default_rng(3)
    x, w, b = _data(rng, (2, 2, 5), (2, 3, 3), 1)
    for auto_pad in AUTO if output_shape is not None else ["NOTSET"]:
        attrs = dict(
            strides=[2],
            output_padding=[op],
            auto_pad=auto_pad,
            pads=pads if output_shape is None else None,
            output_shape=None if output_shape is None else [output_shape],
        )
        _compare(x, w, b, **attrs)


def test_output_shape_odd_total_crop_goes_to_start():
    """ONNX output_shape puts the odd row of crop at the start (TF/Keras 'same' at the end)."""
    x = np.arange(1, 6, dtype=np.float32).reshape(1, 1, 5)
    w = np.ones((1, 1, 3), np.float32)
    full = to.conv_transpose(x, w, strides=[2])
    y = to.conv_transpose(x, w, strides=[2], output_shape=[10])
    np.testing.assert_array_equal(y[..., :], full[..., 1:])
    np.testing.assert_array_equal(_ort_run(x, w, strides=[2], output_shape=[10]), y)
    upper = to.conv_transpose(x, w, strides=[2], output_shape=[10], auto_pad="SAME_UPPER")
    np.testing.assert_array_equal(upper, full[..., :-1])


def test_output_shape_full_shape_and_2d_per_axis():
    rng = np.random.default_rng(4)
    x, w, b = _data(rng, (1, 4, 3, 4), (4, 2, 3, 2), 2)
    attrs = dict(strides=[3, 2], pads=[1, 0, 0, 1], output_padding=[2, 1], group=2)
    _compare(x, w, b, **attrs)
    _compare(x, w, b, strides=[3, 2], output_shape=[1, 4, 8, 9], group=2)


def test_seed_layer_as_onnx():
    """The user's layer exported to ONNX: SAME_UPPER with stride 2, kernel 3 -> 16x16."""
    conv = to.op(np.zeros((1024, 512, 3, 3), np.float32), auto_pad="SAME_UPPER", strides=[2, 2])
    assert conv.output_shape((1, 1024, 8, 8)) == (1, 512, 16, 16)
    assert conv.geometry((8, 8)).axes[0].crop_start == 0
    assert conv.framework == "onnx" and conv.kernel_layout.name == "torch"


REJECT = [
    # (case, a word tconv's message must contain; None: onnxruntime accepts it too)
    (dict(strides=[2], output_padding=[2]), "output_padding"),
    (dict(strides=[1], dilations=[2], output_padding=[1]), "output_padding"),
    (dict(strides=[1], output_padding=[1]), "output_padding"),
    (dict(output_padding=[-1]), "output_padding"),
    (dict(pads=[3, 4]), "output dimension"),
    (dict(pads=[1, 1], auto_pad="VALID"), "auto_pad"),
    (dict(strides=[0]), "stride"),
    (dict(dilations=[0]), "dilation"),
    (dict(kernel_shape=[2]), "kernel_shape"),
    (dict(auto_pad="FOO"), "auto_pad"),
    (dict(strides=[1, 1]), "strides"),
    (dict(pads=[1]), "pads"),
    (dict(strides=[2], output_shape=[13]), "output_shape"),
    (dict(strides=[2], output_shape=[0]), "output size"),
    (dict(strides=[2], output_shape=[1, 10]), "output_shape"),
    (dict(strides=[1], output_shape=[8]), "output_shape"),
    (dict(group=3), "group"),
    (dict(group=2, w=(2, 3, 3)), "channel"),
    (dict(x=(1, 5)), "3 dimensions"),
    (dict(x=(1, 2, 5, 5)), "num_dims"),
    (dict(w=(2, 1, 0)), "kernel size"),
    (dict(b=3), "bias"),
    (dict(x=(1, 4, 0), strides=[3]), "output dimension"),
    (dict(x=(1, 4, 0), strides=[2], output_padding=[1]), "inconsistent"),
    (dict(x=(1, 4, 0), strides=[2], output_shape=[1]), "input spatial"),
    (dict(x=(1, 4, 0), strides=[2], auto_pad="SAME_UPPER"), "output dimension"),
    (dict(x=(1, 4, 0), strides=[2]), None),
    (dict(x=(1, 4, 0), strides=[1]), None),
    (dict(strides=[2], output_shape=[-1]), None),
]


@pytest.mark.parametrize("case,word", REJECT)
def test_rejections_match_onnxruntime(case, word):
    case = dict(case)
    x = np.ones(case.pop("x", (1, 4, 5)), np.float32)
    w = np.ones(case.pop("w", (4, 2, 3)), np.float32)
    b = np.ones(case.pop("b"), np.float32) if "b" in case else None
    result = _compare(x, w, b, **case)
    assert isinstance(result, str) == (word is not None)
    if word is not None:
        with pytest.raises(ValueError) as ours:
            to.conv_transpose(x, w, b, **case)
        assert word in str(ours.value).lower(), str(ours.value)


def test_onnx_reference_disagrees_with_onnxruntime_on_same_with_large_stride():
    """Spec/reference: SAME gives in*stride; onnxruntime (followed by tconv) clamps the crop."""
    reference = peer("onnx.reference")
    onnx = peer("onnx")
    helper, tp = onnx.helper, onnx.TensorProto
    x = np.ones((1, 1, 5), np.float32)
    w = np.ones((1, 1, 2), np.float32)
    node = helper.make_node("ConvTranspose", ["X", "W"], ["Y"], strides=[3], auto_pad="SAME_UPPER")
    vi = [helper.make_tensor_value_info(n, tp.FLOAT, None) for n in "XW"]
    graph = helper.make_graph([node], "g", vi, [helper.make_tensor_value_info("Y", tp.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    spec = reference.ReferenceEvaluator(model).run(None, {"X": x, "W": w})[0]
    ours = to.conv_transpose(x, w, strides=[3], auto_pad="SAME_UPPER")
    assert spec.shape[-1] == 15 and ours.shape[-1] == 14
    np.testing.assert_array_equal(ours, _ort_run(x, w, strides=[3], auto_pad="SAME_UPPER"))


def test_random_sweep_1000(capsys):
    rng = np.random.default_rng(777)
    worst = {np.float32: 0.0, np.float64: 0.0}
    checked = rejected = 0
    for case in range(1000):
        rank = int(rng.integers(1, 4))
        groups = int(rng.integers(1, 3))
        k = [int(v) for v in rng.integers(1, 5, rank)]
        s = [int(v) for v in rng.integers(1, 4, rank)]
        d = [int(v) for v in rng.integers(1, 3, rank)]
        op = [int(rng.integers(0, max(a, b))) for a, b in zip(s, d, strict=True)]
        size = [int(v) for v in rng.integers(1, 5 if rank < 3 else 4, rank)]
        n = int(rng.integers(0, 3))
        dtype = np.float32 if case % 2 else np.float64
        x, w, b = _data(
            rng, (n, 2 * groups, *size), (2 * groups, int(rng.integers(1, 3)), *k), groups, dtype
        )
        attrs = dict(strides=s, dilations=d, output_padding=op, group=groups)
        mode = case % 4
        if mode == 0:
            attrs["pads"] = [int(v) for v in rng.integers(-1, 3, 2 * rank)]
        elif mode == 1:
            attrs["auto_pad"] = AUTO[int(rng.integers(1, 4))]
        else:
            full = [(a - 1) * b + c * (e - 1) + 1 for a, b, c, e in zip(size, s, d, k, strict=True)]
            attrs["output_shape"] = [f + int(rng.integers(-2, 3)) for f in full]
            attrs["auto_pad"] = AUTO[int(rng.integers(0, 4))]
        methods = ("fast", "reference") if case % 10 == 0 else ("fast",)
        result = _compare(x, w, None if case % 3 == 0 else b, methods, **attrs)
        if isinstance(result, str):
            rejected += 1
        else:
            worst[dtype] = max(worst[dtype], result)
            checked += 1
    with capsys.disabled():
        print(
            f"\nonnx sweep: {checked} geometries agree with onnxruntime, {rejected} rejected by "
            f"both; worst |diff| float32 {worst[np.float32]:.3e}, float64 {worst[np.float64]:.3e}"
        )
    assert checked > 600


def test_mixed_dtypes_and_group_type():
    """ONNX binds X, W and B to one type T (onnxruntime refuses the model otherwise); tconv used
    to compute mixed dtypes, and a float group failed with the wrong error type."""
    x, w = np.ones((1, 2, 3), np.float64), np.ones((2, 1, 3), np.float32)
    with pytest.raises(TypeError, match=r"\(X: float64, W: float32\)"):
        to.conv_transpose(x, w)
    with pytest.raises(TypeError, match="B: float64"):
        to.conv_transpose(x.astype(np.float32), w, np.ones(1))
    with pytest.raises(TypeError, match="group must be an int, got 2.0"):
        to.conv_transpose(x, w, group=2.0)
