"""`tconv inspect` and `tconv explain` on .onnx models built with onnx.helper, checked with
onnxruntime."""

from __future__ import annotations

import json

import numpy as np
from conftest import assert_close, peer
from test_onnx_models import _ort_outputs, _save

from tconv.cli import main


def _model(tmp_path, rng):
    """Two ConvTranspose nodes: "up" (pads, output_padding, dilations, bias) feeding an unnamed
    SAME_UPPER node with group 2; the graph outputs both."""
    onnx = peer("onnx")
    helper, tp = onnx.helper, onnx.TensorProto
    w1 = rng.standard_normal((3, 4, 3, 2)).astype(np.float32)
    b1 = rng.standard_normal(4).astype(np.float32)
    w2 = rng.standard_normal((4, 1, 2, 2)).astype(np.float32)  # group 2: 2 outputs
    up = {"strides": [2, 3], "pads": [1, 0, 2, 1], "output_padding": [1, 2], "dilations": [1, 2]}
    nodes = [
        helper.make_node("ConvTranspose", ["X", "W1", "B1"], ["H"], name="up", **up),
        helper.make_node(
            "ConvTranspose", ["H", "W2"], ["Y"], strides=[2, 2], auto_pad="SAME_UPPER", group=2
        ),
    ]
    inputs = [helper.make_tensor_value_info("X", tp.FLOAT, ["N", 3, 4, 5])]
    weights = {"W1": w1, "B1": b1, "W2": w2}
    path = _save(tmp_path, nodes, inputs, weights, outputs=("H", "Y"))
    return path, w1, w2


def test_inspect_onnx(tmp_path, capsys):
    rng = np.random.default_rng(5)
    path, w1, w2 = _model(tmp_path, rng)
    h, y = _ort_outputs(path, rng.standard_normal((1, 3, 4, 5)).astype(np.float32))
    assert main(["inspect", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    up, second = data["layers"]
    assert up["name"] == "up" and second["name"] == "ConvTranspose_1"
    assert up["input_shape"] == [3, 4, 5] and up["output_shape"] == list(h.shape[1:])
    assert (up["filters"], up["in_channels"], up["kernel_size"]) == (4, 3, [3, 2])
    assert up["strides"] == [2, 3] and up["dilations"] == [1, 2] and up["group"] == 1
    assert up["auto_pad"] == "NOTSET" and up["pads"] == [1, 0, 2, 1]
    assert up["output_padding"] == [1, 2] and up["params"] == w1.size + 4
    # Canonical crops: the rows cut from full = (in-1)*stride + dilation*(k-1) + 1 per axis.
    fulls = [(4 - 1) * 2 + 1 * (3 - 1) + 1, (5 - 1) * 3 + 2 * (2 - 1) + 1]
    assert [f - a - b for f, (a, b) in zip(fulls, up["crops"], strict=True)] == up["output_shape"][
        1:
    ]
    assert up["crops"] == [[1, 2 - 1], [0, 1 - 2]]  # (pad_begin, pad_end - output_padding)
    # The second node's input shape is inferred by ONNX shape inference (after "up").
    assert second["input_shape"] == list(h.shape[1:])
    assert second["output_shape"] == list(y.shape[1:])
    assert second["auto_pad"] == "SAME_UPPER" and second["group"] == 2
    assert (second["filters"], second["in_channels"]) == (2, 4)
    assert second["params"] == w2.size and second["output_shape_attribute"] is None
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == [
        "name",
        "input",
        "output",
        "filters",
        "kernel",
        "strides",
        "auto_pad",
        "pads",
        "crops",
        "out_pad",
        "dilation",
        "group",
        "params",
    ]
    assert "(1,1)x(0,-1)" in out and "2 ConvTranspose node(s)" in out
    assert f"{w1.size + 4 + w2.size:,} parameters" in out


def test_explain_onnx_layer(tmp_path, capsys):
    rng = np.random.default_rng(6)
    path, _, _ = _model(tmp_path, rng)
    x = rng.standard_normal((1, 3, 4, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    h, _ = _ort_outputs(path, x)
    for at in [(0, 2, 0, 0), (0, 3, h.shape[2] - 1, h.shape[3] - 1), (0, 0, 4, 7)]:
        argv = ["explain", str(path), "--layer", "up", "--input", str(tmp_path / "x.npy")]
        assert main([*argv, "--at", ",".join(map(str, at)), "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["at"] == list(at)
        assert_close(np.float32(data["value"]), h[at], 3 * 3 * 2)
    # Without --input the model's recorded shape gives a random input; text output works.
    assert main(["explain", str(path), "--layer", "ConvTranspose_1"]) == 0
    assert "ConvTranspose_1" not in capsys.readouterr().err
    # Several nodes and no --layer: the error lists them.
    assert main(["explain", str(path)]) == 2
    err = capsys.readouterr().err
    assert "tconv explain: error:" in err and "up, ConvTranspose_1" in err
