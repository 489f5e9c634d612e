"""A small, bounds-checked reader of the FlatBuffers binary format (read only, little-endian).

Why our own reader and not the ``flatbuffers`` package or TensorFlow's generated schema: a
``.tflite`` file is untrusted input, and the generated readers trust every offset in it (a
truncated or corrupted file gives an ``IndexError``/``struct.error`` from deep inside, or reads
garbage).  Here every offset, vtable and vector length is checked against the buffer before it is
used, and nothing is allocated by a length the file claims before that length has been checked
against the bytes there are; any violation is a ``ValueError`` naming the file and what was
wrong.  It also keeps tconv free of a dependency: it needs only ``struct`` and NumPy.

The format, as far as it is used here: the buffer starts with a ``uoffset`` (u32) to the root
table.  A table at ``pos`` starts with an ``soffset`` (i32): its vtable is at ``pos - soffset``.
A vtable is ``u16 vtable_size, u16 table_size, u16 field_offset[...]``; field ``id`` lives at
``pos + field_offset[id]`` (0 or missing: the field is absent, its default applies).  Scalar
fields hold their value; table, vector and string fields hold a ``uoffset`` relative to their
own position.  A vector is ``u32 count`` followed by its elements; a string is a byte vector
(UTF-8, followed by a NUL).  A vector of tables holds one ``uoffset`` per element.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

_SCALARS = {
    "b": 1,
    "B": 1,
    "?": 1,
    "h": 2,
    "H": 2,
    "i": 4,
    "I": 4,
    "q": 8,
    "Q": 8,
    "f": 4,
    "d": 8,
}


class Reader:
    """A buffer of bytes and the name of the file it came from (for messages)."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.name = name

    def fail(self, what: str) -> ValueError:
        """The error for a malformed buffer: names the file and what was wrong."""
        return ValueError(f"{self.name}: not a valid .tflite file: {what}")

    def check(self, pos: int, size: int, what: str) -> None:
        """Raise unless ``size`` bytes at ``pos`` lie inside the buffer."""
        if pos < 0 or size < 0 or pos + size > len(self.data):
            raise self.fail(
                f"{what} at byte {pos} (+{size} bytes) lies outside the file's {len(self.data)} "
                f"bytes"
            )

    def scalar(self, pos: int, fmt: str, what: str) -> Any:
        """The little-endian scalar of struct format ``fmt`` at ``pos``."""
        self.check(pos, _SCALARS[fmt], what)
        return struct.unpack_from("<" + fmt, self.data, pos)[0]

    def root(self, kind: str) -> Table:
        """The root table (its ``uoffset`` is the buffer's first 4 bytes)."""
        return Table(self, self.scalar(0, "I", "the root offset"), kind)


class Table:
    """One table of kind ``kind`` (a schema name, for messages) at byte ``pos``."""

    def __init__(self, reader: Reader, pos: int, kind: str) -> None:
        self.reader, self.pos, self.kind = reader, pos, kind
        r = reader
        vtable = pos - r.scalar(pos, "i", f"the {kind} table")
        self._vt_size = r.scalar(vtable, "H", f"the vtable of the {kind} table")
        self._size = r.scalar(vtable + 2, "H", f"the vtable of the {kind} table")
        if self._vt_size < 4 or self._vt_size % 2:
            raise r.fail(f"the vtable of the {kind} table has an invalid size {self._vt_size}")
        r.check(vtable, self._vt_size, f"the vtable of the {kind} table")
        r.check(pos, max(self._size, 4), f"the {kind} table")
        self._vtable = vtable

    def _field(self, field: int, size: int) -> int:
        """Byte position of ``field`` (``size`` bytes), or 0 when the field is absent."""
        slot = 4 + 2 * field
        if slot + 2 > self._vt_size:
            return 0
        offset = self.reader.scalar(self._vtable + slot, "H", f"the vtable of the {self.kind}")
        if offset == 0:
            return 0
        if offset + size > self._size:
            raise self.reader.fail(
                f"field {field} of the {self.kind} table (offset {offset}, {size} bytes) lies "
                f"outside the table's {self._size} bytes"
            )
        return self.pos + offset

    def _what(self, field: int) -> str:
        return f"field {field} of the {self.kind} table"

    def scalar(self, field: int, fmt: str, default: Any) -> Any:
        """A scalar field of struct format ``fmt`` (``default`` when absent)."""
        at = self._field(field, _SCALARS[fmt])
        return default if at == 0 else self.reader.scalar(at, fmt, self._what(field))

    def _indirect(self, field: int) -> int:
        """Where the ``uoffset`` of ``field`` points, or 0 when the field is absent."""
        at = self._field(field, 4)
        if at == 0:
            return 0
        target = at + self.reader.scalar(at, "I", self._what(field))
        self.reader.check(target, 4, self._what(field))
        return target

    def table(self, field: int, kind: str) -> Table | None:
        """A sub-table field, or None when absent."""
        at = self._indirect(field)
        return None if at == 0 else Table(self.reader, at, kind)

    def _vector(self, field: int, item: int) -> tuple[int, int]:
        """``(first element's position, count)`` of a vector field; ``(0, 0)`` when absent."""
        at = self._indirect(field)
        if at == 0:
            return 0, 0
        count = self.reader.scalar(at, "I", self._what(field))
        self.reader.check(
            at + 4, count * item, f"the {count}-element vector in " + self._what(field)
        )
        return at + 4, count

    def has(self, field: int) -> bool:
        """Whether the field is present."""
        return self._field(field, 1) != 0

    def array(self, field: int, dtype: str) -> np.ndarray | None:
        """A vector of scalars as a NumPy array (a copy) in ``dtype`` (a little-endian NumPy
        dtype string such as ``"<i4"``), or None when absent."""
        item = np.dtype(dtype).itemsize
        start, count = self._vector(field, item)
        if start == 0:
            return None
        return np.frombuffer(self.reader.data, dtype, count, start).copy()

    def blob(self, field: int) -> memoryview | None:
        """A byte vector (no copy), or None when absent."""
        start, count = self._vector(field, 1)
        return None if start == 0 else memoryview(self.reader.data)[start : start + count]

    def string(self, field: int) -> str | None:
        """A string field, or None when absent."""
        raw = self.blob(field)
        if raw is None:
            return None
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError as err:
            raise self.reader.fail(f"{self._what(field)} is not UTF-8 ({err.reason})") from None

    def tables(self, field: int, kind: str) -> list[Table]:
        """A vector of tables (empty when absent)."""
        start, count = self._vector(field, 4)
        out = []
        for k in range(count):
            at = start + 4 * k
            target = at + self.reader.scalar(at, "I", self._what(field))
            out.append(Table(self.reader, target, kind))
        return out
