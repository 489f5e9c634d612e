"""``tconv shape``: shapes, crops and equivalents, checked against the real frameworks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import peer
from test_onnx import _ort_run

import tconv.keras as tconv_keras
from tconv import cli


def _shape(capsys, *args: str) -> dict:
    assert cli.main(["shape", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


SEED = ["--input-shape", "1,8,8,16", "--kernel-size", "3", "--strides", "2", "--filters", "4"]


def test_seed_layer_keras(capsys):
    info = _shape(capsys, "--convention", "keras", "--padding", "same", *SEED)
    assert info["output_shape"] == [1, 16, 16, 4]
    assert [(a["crop_start"], a["crop_end"]) for a in info["axes"]] == [(0, 1), (0, 1)]
    eq = info["equivalents"]
    assert eq["onnx"]["parameters"] == {"auto_pad": "SAME_UPPER"}
    assert eq["jax"]["parameters"] == {"padding": "SAME"}
    assert "drop the last 1 row" in eq["torch"]["error"]
    keras = peer("keras")
    x = np.zeros((1, 8, 8, 16), np.float32)
    layer = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same")
    assert list(layer(x).shape) == info["output_shape"]
    y = _ort_run(
        np.zeros((1, 16, 8, 8), np.float32),
        np.zeros((16, 4, 3, 3), np.float32),
        strides=[2, 2],
        **eq["onnx"]["parameters"],
    )
    assert list(y.shape) == eq["onnx"]["output_shape"]


CASES = [
    [
        "--convention",
        "torch",
        "--input-shape",
        "2,4,5,3",
        "--kernel-size",
        "3,2",
        "--strides",
        "2,3",
        "--padding",
        "1,0",
        "--output-padding",
        "1,2",
        "--groups",
        "2",
        "--filters",
        "6",
    ],
    [
        "--convention",
        "torch",
        "--input-shape",
        "1,2,5",
        "--kernel-size",
        "4",
        "--strides",
        "3",
        "--padding",
        "2",
        "--output-size",
        "12",
    ],
    [
        "--convention",
        "onnx",
        "--input-shape",
        "1,2,5,4",
        "--kernel-size",
        "3",
        "--strides",
        "2",
        "--output-shape",
        "10,8",
        "--auto-pad",
        "SAME_UPPER",
    ],
    [
        "--convention",
        "onnx",
        "--input-shape",
        "1,2,5",
        "--kernel-size",
        "3",
        "--strides",
        "2",
        "--pads",
        "2,-1",
        "--output-padding",
        "1",
    ],
    [
        "--convention",
        "jax",
        "--input-shape",
        "1,5,4,2",
        "--kernel-size",
        "3",
        "--strides",
        "2",
        "--padding",
        "0:1,2:2",
    ],
    [
        "--convention",
        "jax",
        "--input-shape",
        "1,5,2",
        "--kernel-size",
        "3",
        "--strides",
        "2",
        "--padding",
        "SAME",
        "--dilation",
        "2",
    ],
    [
        "--convention",
        "keras",
        "--input-shape",
        "1,2,5,5",
        "--kernel-size",
        "4",
        "--strides",
        "3",
        "--padding",
        "valid",
        "--data-format",
        "channels_first",
    ],
]


@pytest.mark.parametrize("args", CASES)
def test_every_equivalent_gives_the_same_shape_in_its_framework(capsys, args):
    """The printed output shape is the framework's, and so is each equivalent's."""
    torch, jax = peer("torch"), peer("jax")
    info = _shape(capsys, *args)
    n, rank = info["input_shape"][0], len(info["axes"])
    k = [a["kernel"] for a in info["axes"]]
    s = [a["stride"] for a in info["axes"]]
    d = [a["dilation"] for a in info["axes"]]
    spatial = [a["input"] for a in info["axes"]]
    cin, filters = info["in_channels"], info["filters"]
    x_cf = np.zeros((n, cin, *spatial), np.float32)
    x_cl = np.moveaxis(x_cf, 1, -1)
    fn = getattr(torch.nn.functional, f"conv_transpose{rank}d")
    for target, entry in info["equivalents"].items():
        if "error" in entry:
            continue
        p = entry["parameters"]
        if target == "torch":
            y = fn(torch.from_numpy(x_cf), torch.zeros(cin, filters, *k), stride=s, dilation=d, **p)
        elif target == "onnx":
            y = _ort_run(
                x_cf, np.zeros((cin, filters, *k), np.float32), strides=s, dilations=d, **p
            )
        elif target == "jax":
            y = jax.lax.conv_transpose(
                x_cl, np.zeros((*k, cin, filters), np.float32), s, rhs_dilation=d, **p
            )
        else:
            # TensorFlow's CPU kernels refuse dilation > 1: then tconv's Keras adapter stands in.
            ops = peer("keras").ops if max(d) == 1 else tconv_keras
            y = ops.conv_transpose(
                x_cl, np.zeros((*k, filters, cin), np.float32), s, dilation_rate=d, **p
            )
        assert list(np.shape(y)) == entry["output_shape"], target


def test_text_output_and_help(capsys):
    assert cli.main(["shape", "--convention", "keras", "--padding", "same", *SEED]) == 0
    out = capsys.readouterr().out
    assert "output shape: (1, 16, 16, 4)" in out and "auto_pad='SAME_UPPER'" in out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["shape", "--help"])
    assert exit_info.value.code == 0
    assert "--convention" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,message",
    [
        (["--convention", "keras", "--padding", "middle", *SEED], "padding"),
        (["--convention", "torch", "--output-padding", "2", *SEED], "output padding"),
        (["--convention", "jax", "--groups", "2", *SEED], "--groups"),
        (["--convention", "onnx", "--input-shape", "1,2", "--kernel-size", "3"], "input-shape"),
        (["--convention", "torch", "--input-shape", "1,x,3", "--kernel-size", "3"], "input-shape"),
    ],
)
def test_errors_are_clear(capsys, args, message):
    assert cli.main(["shape", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tconv shape: error:") and message in err
