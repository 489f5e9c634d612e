"""The canonical geometry of a transposed convolution.

Every framework's parameters reduce to one :class:`Axis` per spatial dimension.  For one axis
with input length ``size``, kernel size ``k``, stride ``s`` and dilation ``d`` the definition is::

    full[i*s + j*d] += x[i] * w[j]        0 <= i < size, 0 <= j < k
    y[o] = full[o + crop_start]           (zero where o + crop_start falls outside ``full``)

``len(full) = (size - 1)*s + d*(k - 1) + 1`` and the output keeps
``len(full) - crop_start - crop_end`` elements.  A negative crop adds zero rows (bias only) on
that side: that is how ``output_padding`` and Keras' ``valid`` with ``stride > kernel`` grow the
output.  Channels and groups are described by :class:`Geometry`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Axis:
    """One spatial axis: ``size`` inputs, ``kernel`` taps, ``stride``, ``dilation`` and crops."""

    size: int
    kernel: int
    stride: int = 1
    dilation: int = 1
    crop_start: int = 0
    crop_end: int = 0

    def __post_init__(self) -> None:
        for name in ("size", "kernel", "stride", "dilation", "crop_start", "crop_end"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"Axis.{name} must be an int, got {value!r}")
        if self.size < 0:
            raise ValueError(f"input length must be >= 0, got size={self.size}")
        for name in ("kernel", "stride", "dilation"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.out < 0:
            raise ValueError(
                f"the output length (size-1)*stride + dilation*(kernel-1) + 1 - crop_start - "
                f"crop_end = {self.out} is negative for {self}"
            )

    @property
    def span(self) -> int:
        """Length covered by the dilated kernel: ``dilation*(kernel-1) + 1``."""
        return self.dilation * (self.kernel - 1) + 1

    @property
    def full(self) -> int:
        """Length of the uncropped scatter result: ``(size-1)*stride + span``."""
        return (self.size - 1) * self.stride + self.span

    @property
    def out(self) -> int:
        """Output length: ``full - crop_start - crop_end``."""
        return self.full - self.crop_start - self.crop_end

    def taps(self, o: int) -> list[tuple[int, int]]:
        """The ``(i, j)`` pairs (input position, kernel tap) that reach output position ``o``.

        They are the solutions of ``i*stride + j*dilation == o + crop_start`` inside the input and
        the kernel, in increasing ``j``.
        """
        p = o + self.crop_start
        pairs = []
        for j in range(self.kernel):
            q = p - j * self.dilation
            if q % self.stride == 0 and 0 <= q // self.stride < self.size:
                pairs.append((q // self.stride, j))
        return pairs

    def tap_range(self, j: int) -> tuple[int, int, int]:
        """Where tap ``j`` lands: ``(i_first, count, o_first)``.

        Inputs ``i_first .. i_first+count-1`` reach outputs ``o_first, o_first+stride, ...``
        through tap ``j``; ``count`` is 0 when the tap reaches no output.
        """
        shift = j * self.dilation - self.crop_start  # o = i*stride + shift
        i_first = max(0, _ceil_div(-shift, self.stride))
        i_last = min(self.size - 1, (self.out - 1 - shift) // self.stride)
        count = max(0, i_last - i_first + 1)
        return i_first, count, i_first * self.stride + shift


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


@dataclass(frozen=True)
class Geometry:
    """Spatial axes plus channels: ``in_channels -> out_channels`` in ``groups`` groups.

    Canonical layouts: input ``(N, *sizes, in_channels)``, kernel
    ``(*kernels, out_channels, in_channels // groups)``, output ``(N, *outs, out_channels)``.
    Output channel ``f`` belongs to group ``g = f // (out_channels // groups)`` and reads input
    channels ``g*in_channels//groups ... (g+1)*in_channels//groups - 1``.
    """

    axes: tuple[Axis, ...]
    in_channels: int
    out_channels: int
    groups: int = 1

    def __post_init__(self) -> None:
        if not 1 <= len(self.axes) <= 3:
            raise ValueError(f"1 to 3 spatial axes are supported, got {len(self.axes)}")
        for name in ("in_channels", "out_channels", "groups"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("in_channels", "out_channels"):
            if getattr(self, name) % self.groups:
                raise ValueError(
                    f"{name}={getattr(self, name)} must be divisible by groups={self.groups}"
                )

    @property
    def rank(self) -> int:
        return len(self.axes)

    @property
    def in_shape(self) -> tuple[int, ...]:
        """Spatial input shape."""
        return tuple(a.size for a in self.axes)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Spatial output shape."""
        return tuple(a.out for a in self.axes)

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        """Canonical kernel shape ``(*kernels, out_channels, in_channels // groups)``."""
        k = tuple(a.kernel for a in self.axes)
        return (*k, self.out_channels, self.in_channels // self.groups)

    @property
    def in_per_group(self) -> int:
        return self.in_channels // self.groups

    @property
    def out_per_group(self) -> int:
        return self.out_channels // self.groups

    def group_of(self, f: int) -> int:
        """The group that output channel ``f`` belongs to."""
        return f // self.out_per_group

    def taps(self, o: Sequence[int]) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
        """All ``(input position, kernel tap)`` pairs that reach spatial output position ``o``."""
        per_axis = [axis.taps(p) for axis, p in zip(self.axes, o, strict=True)]
        for combo in itertools.product(*per_axis):
            yield tuple(i for i, _ in combo), tuple(j for _, j in combo)

    def record(self) -> dict[str, Any]:
        """The geometry as JSON-ready data (the test-vector manifests): per axis ``size``,
        ``kernel``, ``stride``, ``dilation``, ``crop_start``, ``crop_end``, ``out``; then
        ``in_channels``, ``out_channels``, ``groups``."""
        fields = ("size", "kernel", "stride", "dilation", "crop_start", "crop_end", "out")
        return {
            "axes": [{f: getattr(a, f) for f in fields} for a in self.axes],
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "groups": self.groups,
        }

    def macs(self, batch: int = 1) -> int:
        """Useful multiply-adds: every (input pixel, tap, in-channel, out-channel-of-group)."""
        n = batch * self.in_per_group * self.out_channels
        for a in self.axes:
            n *= a.size * a.kernel
        return n
