"""The canonical op object: a transposed convolution with its weights, in a framework's layouts.

Every adapter (Keras, PyTorch, ONNX, JAX) produces a :class:`TransposedConv`.  It stores the
kernel in the canonical layout ``(*kernel_size, out_channels, in_channels // groups)`` and knows
how the framework lays out its data (``data_format``) and its kernel (``kernel_layout``), so that
results, explanations and exported C speak the framework's own indices.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import activations, ops
from .checks import is_frozen
from .geometry import Axis, Geometry

Crops = list[tuple[int, int]]
CropRule = Callable[[Sequence[int]], Crops]
"""Maps the spatial input shape to ``(crop_start, crop_end)`` per axis."""


def per_axis_rule(axis_crops: Callable[..., tuple[int, int]], *per_axis: Sequence[Any]) -> CropRule:
    """The :data:`CropRule` that calls ``axis_crops(size, *values)`` on every spatial axis,
    ``values`` being that axis' item of each sequence in ``per_axis`` (one item per axis)."""

    def rule(spatial: Sequence[int]) -> Crops:
        return [axis_crops(n, *values) for n, *values in zip(spatial, *per_axis, strict=True)]

    return rule


@dataclass(frozen=True)
class KernelLayout:
    """How a framework stores the kernel, as a pair of array maps to and from canonical.

    ``to_canonical(w, groups)`` and ``from_canonical(wc, groups)`` only permute, reshape and flip,
    so :meth:`index` can follow one element through them.
    """

    name: str
    to_canonical: Callable[[np.ndarray, int], np.ndarray]
    from_canonical: Callable[[np.ndarray, int], np.ndarray]
    axes: str
    """What each axis of the framework's kernel holds, e.g. ``"(kh, kw, filters, in_channels)"``."""

    def framework_shape(self, canonical_shape: Sequence[int], groups: int) -> tuple[int, ...]:
        """Shape of the framework's kernel for a canonical kernel of ``canonical_shape``."""
        stand_in = np.broadcast_to(np.zeros((), np.int8), tuple(canonical_shape))  # no copy
        return tuple(self.from_canonical(stand_in, groups).shape)

    def flat_index(self, canonical_shape: Sequence[int], groups: int) -> np.ndarray:
        """For each canonical kernel position, the flat (C order) position of the same weight
        in the framework's kernel: an int array of shape ``canonical_shape`` (int32 where it
        fits, one int per weight).  Cached and read-only: explaining many elements of one layer
        builds it once."""
        return _flat_index(self, tuple(canonical_shape), groups)

    def index(self, canonical_shape: Sequence[int], groups: int) -> np.ndarray:
        """For each canonical kernel position, its index tuple in the framework's kernel.

        Returns an int array of shape ``(*canonical_shape, rank + 2)``; for a large kernel
        prefer :meth:`flat_index` and unravel only the positions needed.
        """
        framework_shape = self.framework_shape(canonical_shape, groups)
        where = self.flat_index(canonical_shape, groups)
        return np.stack(np.unravel_index(where, framework_shape), axis=-1)


@functools.lru_cache(maxsize=8)
def _flat_index(layout: KernelLayout, canonical_shape: tuple[int, ...], groups: int) -> np.ndarray:
    framework_shape = layout.framework_shape(canonical_shape, groups)
    size = int(np.prod(framework_shape))
    flat = np.arange(size, dtype=np.int32 if size < 2**31 else np.int64)
    where = layout.to_canonical(flat.reshape(framework_shape), groups)
    where.flags.writeable = False
    return where


def _keras_to(w: np.ndarray, groups: int) -> np.ndarray:
    return w


KERAS = KernelLayout("keras", _keras_to, _keras_to, "(*kernel_size, filters, in_channels)")


def _torch_to_canonical(w: np.ndarray, groups: int) -> np.ndarray:
    cin, cout_g, *k = w.shape
    w = w.reshape(groups, cin // groups, cout_g, *k)
    w = np.moveaxis(w, (0, 1, 2), (-3, -1, -2))  # (*k, G, cout_g, cin_g)
    return w.reshape(*k, groups * cout_g, cin // groups)


def _torch_from_canonical(wc: np.ndarray, groups: int) -> np.ndarray:
    *k, cout, cin_g = wc.shape
    w = wc.reshape(*k, groups, cout // groups, cin_g)
    w = np.moveaxis(w, (-3, -1, -2), (0, 1, 2))  # (G, cin_g, cout_g, *k)
    return w.reshape(groups * cin_g, cout // groups, *k)


TORCH = KernelLayout(
    "torch",
    _torch_to_canonical,
    _torch_from_canonical,
    "(in_channels, out_channels // groups, *kernel_size)",
)


def frozen(array: Any, dtype: Any = None) -> np.ndarray:
    """A read-only copy of ``array`` (in ``dtype`` if given) that owns its data.

    Layers keep their weights frozen: nobody can change them behind the layer's back, so
    ``method="native"`` (weights compiled in) needs no per-call comparison to stay correct.
    """
    if is_frozen(array) and (dtype is None or array.dtype == np.dtype(dtype)):
        return array  # already nobody's to change: share it
    out = np.array(array, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out


class TransposedConv:
    """A transposed convolution with weights, in one framework's layouts.

    Args:
        kernel: canonical kernel ``(*kernel_size, out_channels, in_channels // groups)``.
        bias: ``(out_channels,)`` or ``None``.
        strides, dilation: one int per spatial axis.
        crops: the framework's rule that maps the spatial input shape to the per-axis
            ``(crop_start, crop_end)`` (see :class:`tconv.geometry.Axis`).
        groups: channel groups.
        activation: a Keras activation name or ``None``.
        data_format: ``"channels_last"`` (``(N, *spatial, C)``) or ``"channels_first"``.
        kernel_layout: how the framework stores the kernel.
        framework: the convention's name, for messages and explanations.
        copy: keep read-only copies of ``kernel`` and ``bias`` (the default; see
            :func:`frozen`); False keeps the given arrays, for an op made for one call (the
            functional APIs), which then costs no copy of the weights.
    """

    _kernel: Any  # None only in a Keras layer that is not built yet
    _bias: np.ndarray | None

    def __init__(
        self,
        kernel: np.ndarray,
        bias: np.ndarray | None,
        strides: Sequence[int],
        dilation: Sequence[int],
        crops: CropRule,
        *,
        groups: int = 1,
        activation: str | None = None,
        data_format: str = "channels_last",
        kernel_layout: KernelLayout = KERAS,
        framework: str = "keras",
        copy: bool = True,
    ) -> None:
        if copy:  # read-only copies (see the kernel property)
            self.kernel, self.bias = kernel, bias
        else:  # the caller's arrays as they are: an op made for one call
            self._kernel = np.asarray(kernel)
            self._bias = None if bias is None else np.asarray(bias)
        self.strides = tuple(strides)
        self.dilation = tuple(dilation)
        self.crops = crops
        self.groups = groups
        self.activation = activations.canonical_name(activation)
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(
                f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}"
            )
        self.data_format = data_format
        self.kernel_layout = kernel_layout
        self.framework = framework
        self.input_shape: tuple[int, ...] | None = None
        """One input item's shape (no batch axis) in this layer's layout, when known."""

    @property
    def kernel(self) -> np.ndarray:
        """The canonical kernel: a read-only copy (assign a new array to change it)."""
        return self._kernel

    @kernel.setter
    def kernel(self, value: np.ndarray) -> None:
        self._kernel = frozen(value)

    @property
    def bias(self) -> np.ndarray | None:
        """``(out_channels,)`` or None: a read-only copy (assign a new array to change it)."""
        return self._bias

    @bias.setter
    def bias(self, value: np.ndarray | None) -> None:
        self._bias = None if value is None else frozen(value)

    @property
    def rank(self) -> int:
        """Number of spatial axes."""
        return self.kernel.ndim - 2

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return tuple(self.kernel.shape[:-2])

    @property
    def filters(self) -> int:
        """Output channels."""
        return int(self.kernel.shape[-2])

    @property
    def in_channels(self) -> int:
        return int(self.kernel.shape[-1]) * self.groups

    @property
    def framework_kernel(self) -> np.ndarray:
        """The kernel in the framework's own layout."""
        return self.kernel_layout.from_canonical(self.kernel, self.groups)

    @property
    def channels_first(self) -> bool:
        return self.data_format == "channels_first"

    def spatial_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """The spatial part of an input shape ``(N, ...)`` in this layer's data format."""
        shape = tuple(input_shape)
        if len(shape) != self.rank + 2:
            raise ValueError(
                f"expected an input of rank {self.rank + 2} (batch, {self.rank} spatial axes, "
                f"channels), got shape {shape}"
            )
        channels = shape[1] if self.channels_first else shape[-1]
        if channels != self.in_channels:
            raise ValueError(
                f"input has {channels} channels but the kernel expects {self.in_channels} "
                f"(input shape {shape}, data_format={self.data_format!r})"
            )
        return shape[2:] if self.channels_first else shape[1:-1]

    def geometry(self, spatial: Sequence[int]) -> Geometry:
        """The canonical geometry for a spatial input shape."""
        crops = self.crops(tuple(spatial))
        axes = tuple(
            Axis(int(n), int(k), int(s), int(d), int(b), int(e))
            for n, k, s, d, (b, e) in zip(
                spatial, self.kernel_size, self.strides, self.dilation, crops, strict=True
            )
        )
        return Geometry(axes, self.in_channels, self.filters, self.groups)

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Output shape (batch axis included) for an input shape, in this layer's layout."""
        out = self.geometry(self.spatial_shape(input_shape)).out_shape
        n = input_shape[0]
        return (n, self.filters, *out) if self.channels_first else (n, *out, self.filters)

    def to_canonical(self, x: np.ndarray) -> np.ndarray:
        """Data in this layer's layout -> canonical ``(N, *spatial, C)``."""
        return np.moveaxis(x, 1, -1) if self.channels_first else x

    def from_canonical(self, y: np.ndarray) -> np.ndarray:
        """Canonical ``(N, *spatial, C)`` -> this layer's layout."""
        return np.moveaxis(y, -1, 1) if self.channels_first else y

    def activate(self, y: np.ndarray) -> np.ndarray:
        """Apply the activation to a canonical ``(N, *spatial, C)`` preactivation and return the
        result in this layer's layout.

        Element-wise activations ignore the layout.  ``softmax`` and ``log_softmax`` normalise
        the last axis of the layer's own layout, as Keras applies them to the layer's output:
        the channels for channels_last, the last spatial axis for channels_first.
        """
        if self.activation in activations.LAST_AXIS:
            return activations.apply(self.activation, self.from_canonical(y))
        return self.from_canonical(activations.apply(self.activation, y))

    def computing(self, x: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``x``, the kernel and the bias as the framework computes with them.

        Here unchanged (computed in ``x``'s dtype); a Keras layer casts all three to its dtype
        policy's compute dtype.  :meth:`forward` and :func:`tconv.explain` both start here.
        """
        return np.asarray(x), self.kernel, self.bias

    def forward(self, x: np.ndarray, method: str = "auto") -> np.ndarray:
        """Apply the layer to ``x`` (this layer's layout); ``method`` is ``"auto"``
        (the default: :func:`tconv.ops.auto`), ``"fast"``, ``"reference"`` or ``"native"``."""
        x, kernel, bias = self.computing(x)
        geometry = self.geometry(self.spatial_shape(x.shape))
        y = ops.run(self.to_canonical(x), kernel, geometry, bias, None, method)
        return np.ascontiguousarray(self.activate(y))

    def __call__(self, x: np.ndarray, method: str = "auto") -> np.ndarray:
        return self.forward(x, method)

    def __repr__(self) -> str:
        return (
            f"TransposedConv({self.framework}, kernel_size={self.kernel_size}, "
            f"in_channels={self.in_channels}, filters={self.filters}, strides={self.strides}, "
            f"dilation={self.dilation}, groups={self.groups}, activation={self.activation!r}, "
            f"data_format={self.data_format!r})"
        )


def channels_first_op(
    weight: np.ndarray,
    bias: np.ndarray | None,
    strides: Sequence[int],
    dilation: Sequence[int],
    crops: CropRule,
    groups: int,
    framework: str,
) -> TransposedConv:
    """The op of a PyTorch-layout convention (PyTorch, ONNX): data ``(N, C, *spatial)``, weight
    ``(C_in, C_out // groups, *kernel)``; it holds the caller's arrays (an op per call)."""
    return TransposedConv(
        TORCH.to_canonical(weight, groups),
        bias,
        strides,
        dilation,
        crops,
        groups=groups,
        data_format="channels_first",
        kernel_layout=TORCH,
        framework=framework,
        copy=False,
    )
