"""tconv.tflite against TensorFlow's TFLite: converter-written files, the reference interpreter.

Every expected tensor is the one TFLite's reference kernel (``BUILTIN_REF``) writes for the
TRANSPOSE_CONV op, read with ``experimental_preserve_all_tensors=True``; the comparison is
``np.array_equal`` with dtype and shape.  A seeded grid (SAME/VALID, strides 1-3, kernels 1-5 so
smaller, equal and larger than the stride, per-tensor and per-channel, bias or not, fused RELU /
RELU6 / RELU_N1_TO_1, separate activation ops, dynamic batch, output_padding) and a seeded random
sweep of 300 models, int8 and 16x8.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close, peer
from tflite_models import Spec, convert, keras_model, run_ops

import tconv
from tconv import quant
from tconv.tflite import load_layers, read_model, transpose_conv
from tconv.tflite.flatbuffer import Table

SWEEP = 300


def _check_file(path: Path, rng: np.random.Generator, batch: int | None = None) -> int:
    """Every TRANSPOSE_CONV of ``path``: tconv's result equals the reference kernel's; returns
    how many ops were compared."""
    expected = run_ops(path, rng, batch=batch)
    layers = {
        k: v
        for k, v in load_layers(path).items()
        if 0 not in v.output_shape((1, *v.input_shape))  # type: ignore[misc]
    }
    assert list(layers) == list(expected)  # graph order, named by the op's output tensor
    for name, (x, y) in expected.items():
        got = layers[name](x)
        assert got.dtype == y.dtype and got.shape == y.shape, name
        diff = int(np.count_nonzero(got != y))
        assert diff == 0, f"{path.name} {layers[name]}: {diff} of {y.size} elements differ"
    return len(expected)


def _grid() -> list[tuple[str, list[Spec], dict]]:
    """(kind, branches, options) of the grid models."""
    models = []
    for kind in ("int8", "16x8"):
        for padding in ("same", "valid"):
            branches = []
            for s in (1, 2, 3):
                for k in (1, 2, 3, 4, 5):
                    act = (None, "relu", "relu6")[(s + k) % 3]
                    branches.append(
                        Spec(4, 5, 3, 4, (k, k), (s, s), padding, (s + k) % 2 == 0, act)
                    )
            models.append((kind, branches, {}))
        mixed = [
            Spec(3, 4, 2, 3, (3, 2), (2, 3), "same", True, "relu"),
            Spec(3, 4, 2, 3, (2, 5), (3, 1), "valid", False, None),
            Spec(3, 4, 2, 3, (1, 4), (4, 2), "valid", True, "relu6"),
        ]
        models.append((kind, mixed, {"per_channel": False}))
        separate = [
            Spec(4, 4, 2, 3, (3, 3), (2, 2), "same", False, "relu"),  # no bias: a RELU op after
            Spec(4, 4, 2, 3, (3, 3), (2, 2), "same", True, "sep_relu6"),
            Spec(4, 4, 2, 3, (4, 4), (2, 2), "valid", True, "sep_relu"),
        ]
        if kind == "int8":  # 16x8 has no RELU_N1_TO_1 op
            separate.append(Spec(4, 4, 2, 3, (3, 3), (2, 2), "same", True, "clip"))
        models.append((kind, separate, {}))
        padded = [
            Spec(3, 3, 2, 2, (3, 3), (2, 2), "same", True, None, (1, 1)),
            Spec(3, 3, 2, 2, (2, 2), (3, 3), "valid", True, None, (2, 1)),
            Spec(3, 3, 2, 2, (5, 5), (2, 2), "same", True, None, (0, 1)),
        ]
        models.append((kind, padded, {}))
        models.append((kind, padded, {"batch": None}))  # output_shape computed at run time
    return models


@pytest.mark.parametrize("index", range(len(_grid())))
def test_grid_bit_exact(index: int, tmp_path: Path) -> None:
    kind, specs, options = _grid()[index]
    rng = np.random.default_rng(100 + index)
    batch = options.get("batch", 1)
    model = keras_model(specs, rng, batch=batch)
    converted = convert(model, rng, kind, tmp_path / "m.tflite", options.get("per_channel", True))
    layers = load_layers(converted.path)
    assert len(layers) == len(specs)
    for layer in layers.values():
        assert isinstance(layer, quant.QuantizedTransposeConv)
        assert layer.sixteen == (kind == "16x8")
        assert layer.per_channel == (
            options.get("per_channel", True) and layer.geometry.out_channels > 1
        )
        assert layer.padding in ("SAME", "VALID") and len(layer.strides) == 2
    assert _check_file(converted.path, rng, batch=None if batch else 2) == len(specs)


def _random_spec(rng: np.random.Generator, sixteen: bool) -> Spec:
    def pair(low: int, high: int) -> tuple[int, int]:
        return int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1))

    strides = pair(1, 4)
    acts = [None, "relu", "relu6", "sep_relu", "sep_relu6", *([] if sixteen else ["clip"])]
    output_padding = None
    if rng.random() < 0.2:
        output_padding = tuple(int(rng.integers(0, s)) for s in strides)
    return Spec(
        *pair(1, 6),
        *pair(1, 5),
        pair(1, 5),
        strides,
        "same" if rng.random() < 0.5 else "valid",
        rng.random() < 0.7,
        acts[int(rng.integers(len(acts)))],
        output_padding,  # type: ignore[arg-type]
    )


def test_random_sweep_bit_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(2026)
    kinds = {"int8": 0, "16x8": 0}
    vanished = (
        0  # Keras output length 0 (same, output_padding 0, kernel > input): no op in the file
    )
    while sum(kinds.values()) < SWEEP:
        kind = "16x8" if rng.random() < 0.35 else "int8"
        spec = _random_spec(rng, kind == "16x8")
        batch = None if rng.random() < 0.25 else 1
        model = keras_model([spec], rng, batch=batch)
        if 0 in model.outputs[0].shape:  # the converter drops the op or leaves it float
            vanished += 1
            continue
        path = tmp_path / "sweep.tflite"
        convert(model, rng, kind, path, per_channel=rng.random() < 0.75)
        run_batch = int(rng.integers(1, 4)) if batch is None else None
        assert _check_file(path, rng, run_batch) == 1, spec
        if sum(kinds.values()) % 25 == 0:  # the definition agrees with the fast path
            layer = next(iter(load_layers(path).values()))
            assert isinstance(layer, quant.QuantizedTransposeConv)
            x = layer.quantize(rng.normal(0, 1, (2, *layer.input_shape)))
            assert np.array_equal(layer(x, "reference"), layer(x))
        kinds[kind] += 1
    assert min(kinds.values()) > 50 and vanished < 20, (kinds, vanished)


def _patched(content: bytes, activation: int) -> bytes:
    """``content`` with the first TRANSPOSE_CONV's fused activation byte set to ``activation``
    (the field must be present in the file)."""
    model = read_model_bytes(content)
    op = next(o for o in model.subgraphs[0].operators if o.code == 67)
    assert op.options is not None
    at = op.options._field(3, 1)
    assert at, "the file has no fused activation field to patch"
    data = bytearray(content)
    data[at] = activation
    return bytes(data)


def read_model_bytes(content: bytes):  # noqa: ANN201
    from tconv.tflite.model import parse_model

    return parse_model(content, "<test>")


@pytest.mark.parametrize("activation", [2, 3, 1])  # RELU_N1_TO_1, RELU6, RELU
def test_every_fused_activation_the_kernel_has(activation: int, tmp_path: Path) -> None:
    # The converter fuses RELU and RELU6 but never RELU_N1_TO_1 into TRANSPOSE_CONV: the same file
    # with the option byte rewritten, run by the real interpreter, is the expected output.  A
    # 16x8 output (zero point 0) is where the activation range bites.
    rng = np.random.default_rng(activation)
    for kind in ("int8", "16x8"):
        spec = Spec(4, 4, 3, 5, (3, 3), (2, 2), "same", True, "relu")
        converted = convert(keras_model([spec], rng), rng, kind, tmp_path / "m.tflite")
        path = tmp_path / f"act{activation}_{kind}.tflite"
        path.write_bytes(_patched(converted.content, activation))
        layer = next(iter(load_layers(path).values()))
        assert isinstance(layer, quant.QuantizedTransposeConv)
        assert layer.activation == {1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}[activation]
        assert _check_file(path, rng) == 1


def test_functional_transpose_conv_and_quantize_dequantize(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    spec = Spec(4, 3, 3, 4, (3, 2), (2, 2), "same", True, "relu6")
    model = keras_model([spec], rng)
    tf = peer("tensorflow")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [rng.normal(0, 1, (1, 4, 3, 3)).astype(np.float32)] for _ in range(3)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    path = tmp_path / "float_io.tflite"  # float in and out: QUANTIZE and DEQUANTIZE ops around
    path.write_bytes(converter.convert())
    it = tf.lite.Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=True,
    )
    it.allocate_tensors()
    x_float = (rng.normal(0, 2, (1, 4, 3, 3)) * rng.choice([1, 100], (1, 4, 3, 3))).astype(
        np.float32
    )
    # Halves, and values far outside the range (saturated).  Beyond int32 (|x / s| >= 2**31)
    # TFLite's float -> int32 cast is undefined behaviour (x86 gives -2**31, then + zero point
    # may wrap), so the comparison stays inside it.
    x_float.flat[:4] = [0.5, -0.5, 1e6, -1e6]
    it.set_tensor(it.get_input_details()[0]["index"], x_float)
    it.invoke()
    model_file = read_model(path)
    op = next(o for o in model_file.subgraphs[0].operators if o.code == 67)
    x_q, y_q = it.get_tensor(op.inputs[2]), it.get_tensor(op.outputs[0])
    layer = next(iter(load_layers(path).values()))
    assert isinstance(layer, quant.QuantizedTransposeConv)
    assert np.array_equal(layer.quantize(x_float), x_q)
    assert np.array_equal(layer(x_q), y_q)
    y_float = it.get_tensor(it.get_output_details()[0]["index"])
    assert layer.dequantize(y_q).dtype == np.float32
    assert np.array_equal(layer.dequantize(y_q), y_float)
    got = transpose_conv(
        x_q,
        layer.filter,
        (1, *layer.geometry.out_shape, layer.geometry.out_channels),
        strides=(2, 2),
        padding="SAME",
        bias=layer.bias,
        input_scale=layer.input_scale,
        input_zero_point=layer.input_zero_point,
        filter_scale=layer.filter_scale,
        output_scale=layer.output_scale,
        output_zero_point=layer.output_zero_point,
        activation="RELU6",
    )
    assert np.array_equal(got, y_q)
    # What the integers stand for: within one output step wherever it is representable.
    real = layer.real_output(x_q)
    low, high = layer.dequantize(np.array([layer.act_min, layer.act_max], np.int8))
    inside = (real >= low) & (real <= high)
    assert inside.mean() > 0.3
    assert np.abs(layer.dequantize(y_q) - real)[inside].max() <= layer.output_scale


def test_float_model_runs_on_the_float_engine(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    specs = [
        Spec(4, 5, 3, 4, (3, 3), (2, 2), "same", True, "relu"),
        Spec(4, 5, 3, 2, (2, 5), (3, 1), "valid", True, "relu6"),
        Spec(4, 5, 3, 3, (1, 4), (4, 2), "valid", False, None),
        Spec(4, 5, 3, 2, (4, 4), (2, 2), "same", True, None, (1, 0)),
    ]
    path = tmp_path / "float.tflite"
    convert(keras_model(specs, rng), rng, "float32", path)
    expected = run_ops(path, rng)
    layers = load_layers(path)
    assert list(layers) == list(expected)
    for name, (x, y) in expected.items():
        layer = layers[name]
        assert layer.framework == "tflite" and layer.input_shape == x.shape[1:]
        got = layer(x)
        assert got.dtype == np.float32
        assert_close(got, y, terms=int(np.prod(layer.kernel.shape[:-2])) * layer.in_channels)
        assert_close(layer(x, method="reference"), y, terms=100)
        at = (0, *(n // 2 for n in y.shape[1:]))  # the float explanation, in TFLite's layout
        e = tconv.explain(layer, x, at)
        assert "kernel[" in e.to_text() and abs(float(e.value) - float(y[at])) <= 1e-5


def test_requantization_vectorised_equals_the_definition() -> None:
    rng = np.random.default_rng(5)
    n = 4000
    acc = rng.integers(-(2**31), 2**31, n, dtype=np.int64)
    acc[:8] = [0, 1, -1, 2**31 - 1, -(2**31), 2**30, -(2**30), 12345]
    reals = np.exp(rng.uniform(math.log(2.0**-40), math.log(2.0**7), n))
    pairs = [quant.quantize_multiplier(float(r)) for r in reals]
    mult = np.array([m for m, _ in pairs], np.int64)
    shift = np.array([s for _, s in pairs], np.int64)
    assert shift.min() >= -31 and shift.max() <= 7 and (shift > 0).any()
    got = quant.requantize(acc, mult, shift, sixteen=False)
    want = [
        quant.multiply_by_quantized_multiplier(int(a), int(m), int(s))
        for a, m, s in zip(acc, mult, shift, strict=True)
    ]
    assert got.tolist() == want
    acc16 = rng.integers(-(2**47), 2**47, n, dtype=np.int64)
    got16 = quant.requantize(acc16, mult, shift, sixteen=True)
    want16 = [
        quant.multiply_by_quantized_multiplier_16x8(int(a), int(m), int(s))
        for a, m, s in zip(acc16, mult, shift, strict=True)
    ]
    assert got16.tolist() == want16
    # frexp and Q31 rounding: exact powers of two, the carry to 2**31, flush to zero.
    assert quant.quantize_multiplier(0.5) == (2**30, 0)
    assert quant.quantize_multiplier(1.0) == (2**30, 1)
    assert quant.quantize_multiplier(math.nextafter(1.0, 0)) == (2**30, 1)  # rounds to 2**31
    assert quant.quantize_multiplier(2.0**-40) == (0, 0)
    assert quant.saturating_rounding_doubling_high_mul(-(2**31), -(2**31)) == 2**31 - 1
    assert quant.rounding_divide_by_pot(-3, 1) == -2 and quant.rounding_divide_by_pot(3, 1) == 2


def test_bad_arguments_name_the_parameter() -> None:
    w = np.ones((2, 3, 3, 1), np.int8)
    args = dict(
        input_scale=0.1, input_zero_point=0, filter_scale=0.1, output_scale=0.1, output_zero_point=0
    )
    x = np.zeros((1, 2, 2, 1), np.int8)
    with pytest.raises(TypeError, match="int8 or int16"):
        transpose_conv(x.astype(np.float32), w, (1, 4, 4, 2), **args)
    with pytest.raises(ValueError, match="output_shape"):
        transpose_conv(x, w, (2, 4, 4, 2), **args)
    with pytest.raises(ValueError, match="padding"):
        transpose_conv(x, w, (1, 4, 4, 2), padding="FULL", **args)
    with pytest.raises(ValueError, match="input_scale"):
        transpose_conv(x, w, (1, 4, 4, 2), **{**args, "input_scale": -1.0})
    with pytest.raises(ValueError, match="output_zero_point"):
        transpose_conv(x, w, (1, 4, 4, 2), **{**args, "output_zero_point": 300})
    with pytest.raises(ValueError, match="input_zero_point must be 0 for int16"):
        transpose_conv(x.astype(np.int16), w, (1, 4, 4, 2), **{**args, "input_zero_point": 3})
    with pytest.raises(ValueError, match="filter_scale"):
        transpose_conv(x, w, (1, 4, 4, 2), **{**args, "filter_scale": [0.1, 0.2, 0.3]})
    with pytest.raises(ValueError, match="activation"):
        transpose_conv(x, w, (1, 4, 4, 2), activation="TANH", **args)
    with pytest.raises(ValueError, match="bias"):
        transpose_conv(x, w, (1, 4, 4, 2), bias=np.zeros(2, np.int64), **args)
    with pytest.raises(ValueError, match="input channels"):
        transpose_conv(np.zeros((1, 2, 2, 3), np.int8), w, (1, 4, 4, 2), **args)
    layer_args = {k: v for k, v in args.items() if k != "filter_scale"}
    from tconv.tflite import geometry

    layer = quant.QuantizedTransposeConv(
        w,
        None,
        geometry((2, 2), (3, 3), (2, 2), (4, 4), "SAME", 1, 2),
        filter_scale=[0.1],
        **layer_args,
    )
    with pytest.raises(TypeError, match="must be int8"):
        layer(x.astype(np.int16))
    with pytest.raises(ValueError, match=r"must be \(N, 2, 2, 1\)"):
        layer(np.zeros((1, 3, 2, 1), np.int8))
    with pytest.raises(ValueError, match="finite"):
        layer.quantize(np.array([np.nan]))


def _mutations(content: bytes, rng: np.random.Generator, count: int) -> list[bytes]:
    out = []
    n = len(content)
    for k in range(count):
        data = bytearray(content)
        how = k % 4
        if how == 0:  # truncation
            data = data[: int(rng.integers(0, n))]
        elif how == 1:  # bit flips
            for _ in range(int(rng.integers(1, 4))):
                at = int(rng.integers(0, n))
                data[at] ^= 1 << int(rng.integers(0, 8))
        elif how == 2:  # a zeroed or 0xFF block
            at, size = int(rng.integers(0, n)), int(rng.integers(1, 64))
            data[at : at + size] = bytes([0 if rng.random() < 0.5 else 0xFF]) * len(
                data[at : at + size]
            )
        else:  # inserted bytes
            at = int(rng.integers(0, n))
            data[at:at] = rng.integers(0, 256, int(rng.integers(1, 16))).astype(np.uint8).tobytes()
        out.append(bytes(data))
    return out


def test_malformed_files_are_value_errors_naming_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(99)
    specs = [Spec(3, 3, 2, 3, (3, 3), (2, 2), "same", True, "relu")]
    good = convert(keras_model(specs, rng), rng, "int8", tmp_path / "good.tflite").content
    path = tmp_path / "broken.tflite"
    outcomes = {"loaded": 0, "ValueError": 0}
    for data in _mutations(good, rng, 400):
        path.write_bytes(data)
        try:
            layers = load_layers(path)
        except ValueError as err:
            assert str(path) in str(err), err
            outcomes["ValueError"] += 1
        else:
            for layer in layers.values():  # what loads also runs (a flipped bit in a claimed
                # input shape can ask for gigabytes: only shapes of a sane size are run)
                if math.prod(layer.input_shape) <= 10**6:
                    layer(np.zeros((1, *layer.input_shape), getattr(layer, "dtype", np.float32)))
            outcomes["loaded"] += 1
    assert outcomes["ValueError"] > 200, outcomes
    for data, what in [
        (b"", "too short"),
        (good[:4] + b"XXXX" + good[8:], "file identifier"),
        (struct.pack("<I", len(good) + 8) + good[4:], "outside the file"),
    ]:
        path.write_bytes(data)
        with pytest.raises(ValueError, match=what) as info:
            load_layers(path)
        assert str(path) in str(info.value)


def test_reader_offsets_are_checked() -> None:
    from tconv.tflite.flatbuffer import Reader

    reader = Reader(struct.pack("<iHH", 0, 4, 4) + b"\0" * 4, "x.tflite")
    with pytest.raises(ValueError, match="x.tflite: not a valid .tflite file"):
        Table(reader, 100, "Model")
    with pytest.raises(ValueError, match="vtable"):
        Table(reader, 0, "Model")  # soffset 0: the vtable would be the table itself, size 0


@pytest.mark.parametrize("kind", ["int8", "16x8"])
def test_explain_every_element_equals_the_interpreter(kind: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(21)
    # kernel 2 < stride 3 on y: rows no tap reaches (bias only); RELU6 clamps.
    spec = Spec(3, 3, 3, 2, (2, 3), (3, 2), "valid", True, "relu6")
    path = tmp_path / "m.tflite"
    convert(keras_model([spec], rng), rng, kind, path)
    ((x, y),) = run_ops(path, rng).values()
    (layer,) = load_layers(path).values()
    assert isinstance(layer, quant.QuantizedTransposeConv)
    empty = saturated = 0
    for at in np.ndindex(*y.shape):
        e = tconv.explain(layer, x, at)
        assert isinstance(e, tconv.explanation.QuantizedExplanation)
        assert e.value == y[at]
        assert len(e.terms) == len(e.tap_sums) * layer.geometry.in_channels
        assert e.accumulator == sum(t["product"] for t in e.terms)
        assert e.acc == e.accumulator + e.bias
        m = e.scale["multiplier"] * 2.0 ** (e.scale["shift"] - 31)
        assert abs(m - e.scale["effective_scale"]) <= 2**-30 * e.scale["effective_scale"]
        assert abs(e.real - float(layer.dequantize(y[at]))) == 0
        empty += not e.tap_sums
        saturated += e.value != e.with_zero_point
    assert empty > 0 and saturated > 0
    text = e.to_text()
    assert "Requantization" in text and "multiplier" in text and "clamp" in text
    assert json.loads(e.to_json())["value"] == int(y[at])
    # A float input is quantized by the layer's input quantization first.
    x_float = rng.normal(0, 1, x.shape)
    e = tconv.explain(layer, x_float, (0, 1, 1, 1))
    assert e.value == layer(layer.quantize(x_float))[0, 1, 1, 1]
    assert "the float input" in e.to_text()
