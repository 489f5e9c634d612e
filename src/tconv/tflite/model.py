"""The parts of the TFLite schema (``tensorflow/lite/schema/schema.fbs``) that tconv reads.

Field ids, as the schema numbers them: ``Model`` (1 operator_codes, 2 subgraphs, 4 buffers),
``SubGraph`` (0 tensors, 3 operators), ``Tensor`` (0 shape, 1 type, 2 buffer, 3 name,
4 quantization, 7 shape_signature), ``Buffer`` (0 data, 1 offset, 2 size), ``Operator``
(0 opcode_index, 1 inputs, 2 outputs, 3 builtin_options_type, 4 builtin_options),
``OperatorCode`` (0 deprecated_builtin_code, 3 builtin_code), ``QuantizationParameters``
(2 scale, 3 zero_point, 6 quantized_dimension) and ``TransposeConvOptions`` (0 padding,
1 stride_w, 2 stride_h, 3 fused_activation_function, 4 quantized_bias_type).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from .flatbuffer import Reader, Table

TRANSPOSE_CONV = 67
"""``BuiltinOperator.TRANSPOSE_CONV``."""
TRANSPOSE_CONV_OPTIONS = 49
"""``BuiltinOptions.TransposeConvOptions``."""

TENSOR_TYPES = {
    0: "float32",
    1: "float16",
    2: "int32",
    3: "uint8",
    4: "int64",
    6: "bool",
    7: "int16",
    9: "int8",
    10: "float64",
    12: "uint64",
    15: "uint32",
    16: "uint16",
}
"""``TensorType`` values with a NumPy dtype (others, such as STRING or INT4, have none here)."""
TYPE_NAMES = {
    **{k: v.upper() for k, v in TENSOR_TYPES.items()},
    5: "STRING",
    8: "COMPLEX64",
    11: "COMPLEX128",
    13: "RESOURCE",
    14: "VARIANT",
    17: "INT4",
    18: "BFLOAT16",
    19: "INT2",
    20: "UINT4",
}
PADDINGS = {0: "SAME", 1: "VALID"}
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}


@dataclass(frozen=True)
class Quantization:
    """A tensor's affine quantization: ``real = scale * (q - zero_point)``.

    ``scale`` (float32) and ``zero_point`` (int64) have one entry per tensor or one per index of
    axis ``dimension``.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    dimension: int


@dataclass(frozen=True)
class Tensor:
    """One tensor of a subgraph: ``shape`` (the static shape; -1 in ``signature`` marks a
    dynamic axis), ``type`` (the ``TensorType`` value), and its constant ``data`` in its dtype
    and shape, or None when it is computed at run time."""

    index: int
    name: str
    type: int
    shape: tuple[int, ...]
    signature: tuple[int, ...]
    quantization: Quantization | None
    data: np.ndarray | None

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type, f"type {self.type}")


@dataclass(frozen=True)
class Operator:
    """One operator: its builtin code, tensor indices (-1 for an omitted optional input) and its
    builtin options table (None when absent)."""

    index: int
    code: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options_type: int
    options: Table | None


@dataclass(frozen=True)
class Subgraph:
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]


@dataclass(frozen=True)
class Model:
    """A parsed ``.tflite`` file: its subgraphs, in file order."""

    path: str
    reader: Reader
    subgraphs: tuple[Subgraph, ...]

    def fail(self, what: str) -> ValueError:
        return self.reader.fail(what)


def read_model(path: str | os.PathLike[str]) -> Model:
    """Parse the ``.tflite`` file at ``path``.

    Raises ``ValueError`` naming the file for anything that is not a well-formed TFLite
    flatbuffer as far as tconv reads it (offsets, lengths, tensor and buffer indices, data
    sizes), and ``FileNotFoundError`` for a missing file.
    """
    name = os.fspath(path)
    with open(name, "rb") as f:
        data = f.read()
    return parse_model(data, name)


def parse_model(data: bytes, name: str = "<bytes>") -> Model:
    """Parse ``.tflite`` bytes; ``name`` is used in messages (see :func:`read_model`)."""
    reader = Reader(data, name)
    if len(data) < 8:
        raise reader.fail(f"{len(data)} bytes is too short for a flatbuffer")
    if data[4:8] != b"TFL3":
        raise reader.fail(f"the file identifier is {bytes(data[4:8])!r}, expected b'TFL3'")
    root = reader.root("Model")
    codes = [_builtin_code(t) for t in root.tables(1, "OperatorCode")]
    buffers = root.tables(4, "Buffer")
    subgraphs = tuple(_subgraph(reader, g, codes, buffers) for g in root.tables(2, "SubGraph"))
    return Model(name, reader, subgraphs)


def _builtin_code(table: Table) -> int:
    # As TFLite reads it (schema_utils.cc GetBuiltinCode): the larger of the deprecated int8 code
    # and the int32 one (old files fill only the former, new ones both or only the latter).
    return max(int(table.scalar(0, "b", 0)), int(table.scalar(3, "i", 0)))


def _subgraph(reader: Reader, table: Table, codes: list[int], buffers: list[Table]) -> Subgraph:
    tensors = tuple(_tensor(reader, k, t, buffers) for k, t in enumerate(table.tables(0, "Tensor")))
    operators = []
    for k, op in enumerate(table.tables(3, "Operator")):
        index = int(op.scalar(0, "I", 0))
        if index >= len(codes):
            raise reader.fail(
                f"operator {k} has opcode_index {index} but the model has {len(codes)} operator "
                f"codes"
            )
        inputs, outputs = (_indices(reader, op, f, len(tensors), k) for f in (1, 2))
        options_type = int(op.scalar(3, "B", 0))
        operators.append(
            Operator(k, codes[index], inputs, outputs, options_type, op.table(4, "options"))
        )
    return Subgraph(tensors, tuple(operators))


def _indices(reader: Reader, op: Table, field: int, count: int, k: int) -> tuple[int, ...]:
    values = op.array(field, "<i4")
    found = () if values is None else tuple(int(v) for v in values)
    for v in found:
        if not -1 <= v < count:
            kind = "input" if field == 1 else "output"
            raise reader.fail(
                f"operator {k} has {kind} tensor index {v} but the subgraph has {count} tensors"
            )
    return found


def _tensor(reader: Reader, k: int, table: Table, buffers: list[Table]) -> Tensor:
    shape_array = table.array(0, "<i4")
    shape = () if shape_array is None else tuple(int(v) for v in shape_array)
    signature_array = table.array(7, "<i4")
    signature = shape if signature_array is None else tuple(int(v) for v in signature_array)
    type_ = int(table.scalar(1, "b", 0))
    name = table.string(3) or f"tensor_{k}"
    if any(d < 0 for d in shape):
        raise reader.fail(f"tensor {k} ({name!r}) has a negative dimension in shape {shape}")
    quant = table.table(4, "QuantizationParameters")
    quantization = None if quant is None else _quantization(reader, quant, k, name, len(shape))
    buffer = int(table.scalar(2, "I", 0))
    if buffer >= len(buffers):
        raise reader.fail(
            f"tensor {k} ({name!r}) uses buffer {buffer} but the model has {len(buffers)} buffers"
        )
    data = _data(reader, buffers[buffer], k, name, type_, shape) if buffer else None
    return Tensor(k, name, type_, shape, signature, quantization, data)


def _quantization(
    reader: Reader, table: Table, k: int, name: str, rank: int
) -> Quantization | None:
    scale = table.array(2, "<f4")
    zero_point = table.array(3, "<i8")
    if scale is None or scale.size == 0:
        return None  # min/max only, or nothing: not quantized
    zero_point = np.zeros(scale.shape, np.int64) if zero_point is None else zero_point
    dimension = int(table.scalar(6, "i", 0))
    if zero_point.size != scale.size:
        raise reader.fail(
            f"tensor {k} ({name!r}) has {scale.size} quantization scales but {zero_point.size} "
            f"zero points"
        )
    if scale.size > 1 and not 0 <= dimension < rank:
        raise reader.fail(
            f"tensor {k} ({name!r}) is quantized along dimension {dimension} of a rank-{rank} "
            f"tensor"
        )
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise reader.fail(
            f"tensor {k} ({name!r}) has a quantization scale that is not a positive finite "
            f"number: {scale.tolist()[:8]}"
        )
    return Quantization(scale, zero_point, dimension)


def _data(
    reader: Reader, buffer: Table, k: int, name: str, type_: int, shape: tuple[int, ...]
) -> np.ndarray | None:
    raw = buffer.blob(0)
    offset, size = int(buffer.scalar(1, "Q", 0)), int(buffer.scalar(2, "Q", 0))
    if (raw is None or len(raw) == 0) and offset > 1:
        # Large models keep buffers after the flatbuffer, at an offset from the file's start.
        reader.check(offset, size, f"the data of tensor {k} ({name!r})")
        raw = memoryview(reader.data)[offset : offset + size]
    if raw is None or len(raw) == 0:
        return None
    if type_ not in TENSOR_TYPES:
        return None  # a constant tconv does not read (strings, int4, ...)
    dtype = np.dtype(TENSOR_TYPES[type_]).newbyteorder("<")
    count = math.prod(shape)  # Python ints: no overflow for an absurd claimed shape
    if len(raw) != count * dtype.itemsize:
        raise reader.fail(
            f"tensor {k} ({name!r}) of shape {shape} and type {TYPE_NAMES[type_]} needs "
            f"{count * dtype.itemsize} bytes of data, its buffer has {len(raw)}"
        )
    return np.frombuffer(raw, dtype).astype(dtype.newbyteorder("="), copy=True).reshape(shape)
