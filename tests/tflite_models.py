"""Helpers of the TFLite tests: Keras models with Conv2DTranspose layers, converted by TensorFlow's
own ``TFLiteConverter`` (seeded weights and representative data), run by its interpreter.

Everything expected comes from TensorFlow: the converter writes the file, the interpreter (the
reference kernels, ``BUILTIN_REF``, with every tensor preserved) computes each TRANSPOSE_CONV's
own input and output, read by tensor index from the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from conftest import peer

from tconv.tflite import read_model

TRANSPOSE_CONV = 67


@dataclass(frozen=True)
class Spec:
    """One Conv2DTranspose branch: input ``(h, w, c)``, ``f`` filters, kernel, strides, padding,
    bias, activation (``None``, ``"relu"``, ``"relu6"`` fused by Keras; ``"sep_relu"``,
    ``"sep_relu6"`` a ReLU layer after; ``"clip"`` a ``clip(-1, 1)`` after) and output_padding."""

    h: int
    w: int
    c: int
    f: int
    kernel: tuple[int, int]
    strides: tuple[int, int]
    padding: str = "same"
    bias: bool = True
    activation: str | None = None
    output_padding: tuple[int, int] | None = None


@dataclass
class Converted:
    """A converted model: its bytes, where it was written, and its kind."""

    content: bytes
    path: Path
    kind: str
    specs: list[Spec] = field(default_factory=list)


def keras_model(specs: list[Spec], rng: np.random.Generator, batch: int | None = 1) -> Any:
    """A Keras model of one input per distinct input shape, one Conv2DTranspose branch per spec
    (seeded weights, random bias), one output per branch."""
    keras = peer("keras")
    inputs: dict[tuple[int, int, int], Any] = {}
    outputs = []
    for k, s in enumerate(specs):
        shape = (s.h, s.w, s.c)
        if shape not in inputs:
            inputs[shape] = keras.Input(shape, batch_size=batch)
        fused = s.activation if s.activation in ("relu", "relu6") else None
        layer = keras.layers.Conv2DTranspose(
            s.f,
            s.kernel,
            strides=s.strides,
            padding=s.padding,
            use_bias=s.bias,
            activation=fused,
            output_padding=s.output_padding,
            name=f"tconv_{k}",
        )
        y = layer(inputs[shape])
        weights = [rng.normal(0, 0.5, w.shape).astype(np.float32) for w in layer.get_weights()]
        layer.set_weights(weights)
        if s.activation == "sep_relu":
            y = keras.layers.ReLU()(y)
        elif s.activation == "sep_relu6":
            y = keras.layers.ReLU(6.0)(y)
        elif s.activation == "clip":
            y = keras.layers.Lambda(lambda t: keras.ops.clip(t, -1.0, 1.0))(y)
        outputs.append(y)
    return keras.Model(list(inputs.values()), outputs)


def convert(
    model: Any,
    rng: np.random.Generator,
    kind: str,
    path: Path,
    per_channel: bool = True,
    samples: int = 3,
) -> Converted:
    """Convert with TensorFlow's TFLiteConverter: ``kind`` ``"float32"``, ``"int8"`` (full
    integer) or ``"16x8"``, with a seeded representative dataset."""
    tf = peer("tensorflow")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if kind != "float32":
        shapes = [tuple(int(d or 1) for d in i.shape) for i in model.inputs]

        def representative() -> Any:
            for _ in range(samples):
                yield [rng.normal(0, 1, shape).astype(np.float32) for shape in shapes]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        ops = tf.lite.OpsSet
        sixteen = kind == "16x8"
        converter.target_spec.supported_ops = [
            ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            if sixteen
            else ops.TFLITE_BUILTINS_INT8
        ]
        converter.inference_input_type = tf.int16 if sixteen else tf.int8
        converter.inference_output_type = tf.int16 if sixteen else tf.int8
        if not per_channel:
            converter._experimental_disable_per_channel = True
    content = converter.convert()
    path.write_bytes(content)
    return Converted(content, path, kind)


def interpreter(path: Path, resolver: str = "BUILTIN_REF", batch: int | None = None) -> Any:
    """TensorFlow's interpreter on ``path`` with the kernels of ``resolver`` (an
    ``OpResolverType`` name: ``BUILTIN_REF`` the reference kernels, ``AUTO`` the default ones
    with XNNPACK, ``BUILTIN_WITHOUT_DEFAULT_DELEGATES``), every tensor preserved."""
    tf = peer("tensorflow")
    it = tf.lite.Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=getattr(tf.lite.experimental.OpResolverType, resolver),
        experimental_preserve_all_tensors=True,
    )
    if batch is not None:
        for d in it.get_input_details():
            it.resize_tensor_input(d["index"], [batch, *d["shape"][1:]])
    it.allocate_tensors()
    return it


def run_ops(
    path: Path, rng: np.random.Generator, resolver: str = "BUILTIN_REF", batch: int | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Run the interpreter on random inputs (the whole integer range for quantized inputs);
    returns, per TRANSPOSE_CONV (by its output tensor's name), the op's own input and output
    (not for an empty output, which the interpreter cannot return)."""
    it = interpreter(path, resolver, batch)
    for d in it.get_input_details():
        shape, dtype = tuple(d["shape"]), np.dtype(d["dtype"])
        if dtype.kind == "i":
            info = np.iinfo(dtype)
            x = rng.integers(info.min, int(info.max) + 1, shape).astype(dtype)
        else:
            x = rng.normal(0, 1, shape).astype(dtype)
        it.set_tensor(d["index"], x)
    it.invoke()
    model = read_model(path)
    tensors = model.subgraphs[0].tensors
    found = {}
    for op in model.subgraphs[0].operators:
        if op.code == TRANSPOSE_CONV and 0 not in tensors[op.outputs[0]].shape:
            name = tensors[op.outputs[0]].name
            found[name] = (it.get_tensor(op.inputs[2]), it.get_tensor(op.outputs[0]))
    return found


def run_op_on(path: Path, items: np.ndarray) -> np.ndarray:
    """The first TRANSPOSE_CONV's output, by the reference interpreter, for each item of
    ``items`` fed as the model's (single) input, which must be the op's own input."""
    model = read_model(path)
    op = next(o for o in model.subgraphs[0].operators if o.code == TRANSPOSE_CONV)
    it = interpreter(path)
    (d,) = it.get_input_details()
    assert d["index"] == op.inputs[2], "the op's input is not the model's input"
    out = []
    for item in items:
        it.set_tensor(d["index"], item[None])
        it.invoke()
        out.append(it.get_tensor(op.outputs[0])[0])
    return np.stack(out)


def run_ops_item(item: dict[str, Any]) -> list[str]:
    """:func:`run_ops` for :func:`tconv.isolated.run_each` (a kernel that crashes takes down a
    child, not the caller): ``item`` has ``path``, ``seed`` (of the input), ``resolver`` and
    ``out``, where each op's input and output are saved (``.npz``, ``NAME/x``, ``NAME/y``)."""
    found = run_ops(Path(item["path"]), np.random.default_rng(item["seed"]), item["resolver"])
    arrays = {
        f"{name}/{key}": v for name, xy in found.items() for key, v in zip("xy", xy, strict=True)
    }
    np.savez(item["out"], **arrays)
    return list(found)
