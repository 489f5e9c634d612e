"""``tconv shape``: shapes, crops and equivalents, checked against the real frameworks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_close, peer
from test_onnx import _ort_run

import tconv.keras as tconv_keras
import tconv.layouts as tl
import tconv.torch as tt
from tconv import cli
from tconv.layer import TransposedConv


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


def _framework_run(convention, params, x, kernel, groups, strides, dilation):
    """Run the real framework with ``params`` on canonical data ``x`` ``(N, *spatial, C)`` and
    canonical kernel; returns the canonical output (TensorFlow's CPU kernels refuse dilation > 1,
    so tconv's Keras adapter stands in there)."""
    torch, jax = peer("torch"), peer("jax")
    params = {key: value for key, value in params.items() if value is not None}
    rank = x.ndim - 2
    x_cf = np.ascontiguousarray(np.moveaxis(x, -1, 1))
    weight = tl.kernel_layout("torch", rank).from_canonical(kernel, groups)
    if convention == "torch":
        fn = getattr(torch.nn.functional, f"conv_transpose{rank}d")
        size = params.pop("output_size", None)
        if size is not None:  # what ConvTranspose*d.forward(x, output_size) does
            params["output_padding"] = tt.output_padding_for(
                size, x.shape[1:-1], kernel.shape[:-2], strides, params["padding"], dilation
            )
        y = fn(
            torch.from_numpy(x_cf),
            torch.from_numpy(weight),
            stride=strides,
            dilation=dilation,
            groups=groups,
            **params,
        ).numpy()
        return np.moveaxis(y, 1, -1)
    if convention == "onnx":
        y = _ort_run(x_cf, weight, strides=strides, dilations=dilation, group=groups, **params)
        return np.moveaxis(y, 1, -1)
    dense = tl.dense(kernel, groups)
    if convention == "jax":
        pairs = params["padding"]
        params["padding"] = pairs if isinstance(pairs, str) else [tuple(p) for p in pairs]
        rhs = tl.convert_kernel(dense, "keras", "jax")
        return np.asarray(jax.lax.conv_transpose(x, rhs, strides, rhs_dilation=dilation, **params))
    ops = peer("keras").ops if max(dilation) == 1 else tconv_keras
    return np.asarray(ops.conv_transpose(x, dense, strides, dilation_rate=dilation, **params))


CASES += [  # the user's layer in Keras, and PyTorch's usual port of it (shifted by one row)
    ["--convention", "keras", "--padding", "same", *SEED],
    ["--convention", "torch", "--padding", "1", "--output-padding", "1", *SEED],
]


@pytest.mark.parametrize("args", CASES)
def test_every_equivalent_gives_the_same_result_in_its_framework(capsys, args):
    """The printed crops are the framework's, and each equivalent gives the same numbers (not
    just the same shape) in its own framework, with random weights."""
    info = _shape(capsys, *args)
    rng = np.random.default_rng(len(args))
    axes = info["axes"]
    spatial = [a["input"] for a in axes]
    k, s, d = ([a[key] for a in axes] for key in ("kernel", "stride", "dilation"))
    crops = [(a["crop_start"], a["crop_end"]) for a in axes]
    groups, cin, filters = info["groups"], info["in_channels"], info["filters"]
    x = rng.standard_normal((info["input_shape"][0], *spatial, cin)).astype(np.float32)
    kernel = rng.standard_normal((*k, filters, cin // groups)).astype(np.float32)
    expected = TransposedConv(kernel, None, s, d, lambda _: crops, groups=groups).forward(x)
    terms = cin * int(np.prod(k))
    source = info["convention"]
    got = _framework_run(source, info["parameters"], x, kernel, groups, s, d)
    assert_close(got, expected, terms)
    for target, entry in info["equivalents"].items():
        if "error" not in entry:
            got = _framework_run(target, entry["parameters"], x, kernel, groups, s, d)
            assert_close(got, expected, terms)


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
        # options of another convention used to be ignored silently
        (["--convention", "keras", "--pads", "1,1,1,1", *SEED], "--pads applies to onnx only"),
        (["--convention", "onnx", "--padding", "1", *SEED], "--padding applies to keras, torch"),
        (["--convention", "jax", "--output-size", "16,16", *SEED], "--output-size applies"),
        # zero channels used to be reported as "--filters must be positive"
        (["--convention", "keras", "--input-shape", "1,4,0", "--kernel-size", "3"], "channel"),
        (["--convention", "keras", "--input-shape", "1,4,2", "--kernel-size", "3,3"], "1 value"),
        (["--convention", "torch", "--groups", "0", *SEED], "--groups must be positive"),
    ],
)
def test_errors_are_clear(capsys, args, message):
    assert cli.main(["shape", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tconv shape: error:") and message in err


def test_notes_for_keras_dilation_and_groups(capsys):
    """Both notes are kept (the dilation note used to replace the groups note), and a Keras
    source with strides > 1 and dilation > 1 says that Keras layers refuse it."""
    torch_args = ["--input-shape", "1,4,5,5", "--kernel-size", "3", "--strides", "2"]
    info = _shape(capsys, "--convention", "torch", *torch_args, "--dilation", "2", "--groups", "2")
    note = info["equivalents"]["keras"]["note"]
    assert "groups=2" in note and "dilation_rate > 1" in note
    info = _shape(capsys, "--convention", "keras", *SEED, "--dilation", "2")
    assert "Keras layers refuse" in info["note"]
