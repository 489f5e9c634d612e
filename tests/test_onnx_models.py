"""tconv.onnx.load_layers: ConvTranspose nodes read from .onnx files, checked with onnxruntime
on the whole model (models built with onnx.helper, and one exported by torch.onnx.export)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import assert_close, peer

import tconv.onnx as to


def _save(tmp_path, nodes, inputs, initializers, name="m.onnx", outputs=("Y",)):
    onnx = peer("onnx")
    helper, tp = onnx.helper, onnx.TensorProto
    graph = helper.make_graph(
        nodes,
        "g",
        inputs,
        [helper.make_tensor_value_info(out, tp.FLOAT, None) for out in outputs],
        initializer=[onnx.numpy_helper.from_array(a, n) for n, a in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _ort_outputs(path, x):
    """Every output of the model at ``path`` on input ``x``, computed by onnxruntime."""
    ort = peer("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def _ort(path, x):
    return _ort_outputs(path, x)[0]


def test_helper_model_matches_onnxruntime(tmp_path):
    onnx = peer("onnx")
    helper, tp = onnx.helper, onnx.TensorProto
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)  # group 2: 6 outputs
    b1 = rng.standard_normal(6).astype(np.float32)
    w2 = rng.standard_normal((6, 2, 2, 3)).astype(np.float32)
    nodes = [
        helper.make_node(
            "ConvTranspose",
            ["X", "W1", "B1"],
            ["H"],
            name="up",
            strides=[2, 2],
            auto_pad="SAME_LOWER",
            output_padding=[1, 0],
            group=2,
        ),
        helper.make_node("Relu", ["H"], ["R"]),
        # unnamed, no bias, output_shape with the odd crop at the start
        helper.make_node(
            "ConvTranspose", ["R", "W2"], ["Y"], strides=[1, 3], output_shape=[11, 31]
        ),
    ]
    x_info = helper.make_tensor_value_info("X", tp.FLOAT, ["N", 4, 5, 5])
    path = _save(tmp_path, nodes, [x_info], {"W1": w1, "B1": b1, "W2": w2})
    layers = to.load_layers(path)
    assert list(layers) == ["up", "ConvTranspose_1"]
    up, second = layers.values()
    assert up.framework == "onnx" and up.groups == 2 and second.bias is None
    assert up.input_shape == (4, 5, 5)
    assert not (up.kernel.flags.writeable or up.bias.flags.writeable)  # kept: read-only copies
    # ONNX shape inference says (6, 11, 10) for H (SAME_LOWER + output_padding), onnxruntime
    # computes (6, 10, 10): the inferred shapes after that node are not used.
    assert second.input_shape is None
    onnx_inferred = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph.value_info
    assert [d.dim_value for d in onnx_inferred[0].type.tensor_type.shape.dim[1:]] == [6, 11, 10]
    assert up.output_shape((3, *up.input_shape)) == (3, 6, 10, 10)
    np.testing.assert_array_equal(up.framework_kernel, w1)
    x = rng.standard_normal((3, 4, 5, 5)).astype(np.float32)
    expected = _ort(path, x)
    for method in ("fast", "reference"):
        got = second.forward(np.maximum(up.forward(x, method), 0), method)
        assert_close(got, expected, 6 * 3 * 3 * 3)


def test_torch_exported_model_matches_onnxruntime_and_torch(tmp_path):
    torch = peer("torch")
    peer("onnx")
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.ConvTranspose2d(4, 6, 3, 2, padding=1, output_padding=1),
        torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(6, 2, (2, 3), (1, 2), padding=(0, 1), groups=2),
    ).eval()
    x = torch.randn(1, 4, 5, 5)
    path = tmp_path / "torch.onnx"
    try:
        torch.onnx.export(model, (x,), str(path), dynamo=False)
    except Exception as err:  # the exporter itself, not tconv: report rather than hide
        pytest.fail(f"torch.onnx.export failed: {type(err).__name__}: {err}")
    layers = to.load_layers(path)
    assert len(layers) == 2
    first, second = layers.values()
    assert first.input_shape == (4, 5, 5) and second.input_shape == (6, 10, 10)
    np.testing.assert_array_equal(first.framework_kernel, model[0].weight.detach().numpy())
    data = x.numpy()
    got = second(np.maximum(first(data), 0))
    with torch.no_grad():
        assert_close(got, model(x).numpy(), 6 * 3 * 3)
    assert_close(got, _ort(path, data), 6 * 3 * 3)


def test_errors_name_the_file(tmp_path):
    onnx = peer("onnx")
    helper, tp = onnx.helper, onnx.TensorProto
    with pytest.raises(ValueError, match=r"missing\.onnx: no such file"):
        to.load_layers(tmp_path / "missing.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x00\xffnot a model" * 10)
    with pytest.raises(ValueError, match=r"corrupt\.onnx: not a readable ONNX model"):
        to.load_layers(corrupt)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.onnx: not an ONNX model \(no graph\)"):
        to.load_layers(empty)
    x = helper.make_tensor_value_info("X", tp.FLOAT, [1, 2, 3])
    relu = _save(tmp_path, [helper.make_node("Relu", ["X"], ["Y"])], [x], {}, "relu.onnx")
    with pytest.raises(ValueError, match=r"relu\.onnx: no ConvTranspose node .*\['Relu'\]"):
        to.load_layers(relu)
    w = helper.make_tensor_value_info("W", tp.FLOAT, [2, 1, 3])
    node = helper.make_node("ConvTranspose", ["X", "W"], ["Y"], name="ct")
    fed = _save(tmp_path, [node], [x, w], {}, "fed.onnx")
    with pytest.raises(ValueError, match=r"fed\.onnx: ConvTranspose node 'ct': its W input 'W' is"):
        to.load_layers(fed)
    weights = {"W": np.zeros((2, 1, 3), np.float32)}
    node = helper.make_node("ConvTranspose", ["X", "W"], ["Y"], name="ct", strides=[0])
    bad = _save(tmp_path, [node], [x], weights, "bad.onnx")
    with pytest.raises(ValueError, match=r"bad\.onnx: ConvTranspose node 'ct': All stride"):
        to.load_layers(bad)


def test_missing_onnx_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'tconv\[onnx\]'"):
        to.load_layers(tmp_path / "m.onnx")


def test_constant_node_weights(tmp_path):
    """Weights in Constant nodes (as some exporters write them) are stored weights too."""
    onnx = peer("onnx")
    helper, tp = onnx.helper, onnx.TensorProto
    rng = np.random.default_rng(1)
    w = rng.standard_normal((2, 3, 3)).astype(np.float32)
    const = helper.make_node("Constant", [], ["W"], value=onnx.numpy_helper.from_array(w, "W"))
    node = helper.make_node("ConvTranspose", ["X", "W"], ["Y"], strides=[2], pads=[1, 0])
    x_info = helper.make_tensor_value_info("X", tp.FLOAT, [1, 2, 4])
    path = _save(tmp_path, [const, node], [x_info], {})
    (conv,) = to.load_layers(path).values()
    x = rng.standard_normal((1, 2, 4)).astype(np.float32)
    assert conv.input_shape == (2, 4)
    assert_close(conv(x), _ort(path, x), 6)
