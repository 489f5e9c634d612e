"""PyTorch's transposed convolution, in NumPy: ``torch.nn.functional.conv_transpose1d/2d/3d`` and
``torch.nn.ConvTranspose1d/2d/3d``.

Layouts are PyTorch's: input ``(N, C_in, *spatial)`` (or unbatched ``(C_in, *spatial)``), weight
``(C_in, C_out // groups, *kernel_size)``, bias ``(C_out,)``, output ``(N, C_out, *out)``.

PyTorch's rule per spatial axis, with ``span = dilation*(kernel-1) + 1``::

    out = (in-1)*stride - 2*padding + span + output_padding
    crop_start = padding,  crop_end = padding - output_padding

``padding`` crops the output (it is the padding of the forward convolution this op is the
gradient of), ``output_padding`` adds rows at the end and must be smaller than the stride or the
dilation.  ``ConvTranspose*d.forward(input, output_size=...)`` picks ``output_padding`` so that
the output has the requested size (the module classes here do the same; :func:`op` takes
``output_size`` too).  Everything PyTorch rejects raises ``ValueError`` (``TypeError`` for wrong
types) with PyTorch's wording.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .checks import is_int
from .layer import CropRule, Crops, TransposedConv, channels_first_op, per_axis_rule

IntOrTuple = int | Sequence[int]


def crops(
    size: int, kernel: int, stride: int, dilation: int, padding: int, output_padding: int
) -> tuple[int, int]:
    """PyTorch's ``(crop_start, crop_end)`` for one axis: ``(padding, padding - output_padding)``.

    ``size``, ``kernel``, ``stride`` and ``dilation`` do not change the crops; they are kept so
    that every convention's rule has the same signature.
    """
    return padding, padding - output_padding


def spatial_output_size(output_size: Sequence[int], rank: int, batched: bool = True) -> list[int]:
    """PyTorch's reading of ``output_size``: the spatial sizes, or the whole output shape (``rank
    + 2`` items for batched input, ``rank + 1`` unbatched) whose leading items are dropped."""
    try:
        sizes: list[Any] = list(output_size)
    except TypeError:
        sizes = [None]
    if not all(is_int(v) for v in sizes):
        raise TypeError(f"output_size must be a sequence of ints, got {output_size!r}")
    non_spatial = 2 if batched else 1
    if len(sizes) == rank + non_spatial:
        sizes = sizes[non_spatial:]
    if len(sizes) != rank:
        raise ValueError(
            f"ConvTranspose{rank}D: for {rank + non_spatial}D input, output_size must have "
            f"{rank} or {rank + non_spatial} elements (got {len(output_size)})"
        )
    return sizes


def output_padding_for(
    output_size: Sequence[int],
    spatial: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
) -> tuple[int, ...]:
    """The ``output_padding`` that ``ConvTranspose*d.forward(input, output_size)`` uses.

    ``output_size`` holds the spatial sizes (see :func:`spatial_output_size`).  Raises
    ``ValueError`` with PyTorch's message when a size lies outside ``[min, min + stride - 1]``.
    """
    sizes = spatial_output_size(output_size, len(spatial))
    min_sizes = [
        (n - 1) * s + d * (k - 1) + 1 - 2 * p  # PyTorch's minimum size
        for n, k, s, p, d in zip(spatial, kernel_size, stride, padding, dilation, strict=True)
    ]
    max_sizes = [m + s - 1 for m, s in zip(min_sizes, stride, strict=True)]
    if any(not lo <= v <= hi for v, lo, hi in zip(sizes, min_sizes, max_sizes, strict=True)):
        raise ValueError(
            f"requested an output size of {sizes}, but valid sizes range from {min_sizes} to "
            f"{max_sizes} (for an input of {list(spatial)})"
        )
    return tuple(v - m for v, m in zip(sizes, min_sizes, strict=True))


def crop_rule(
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    output_padding: Sequence[int],
    dilation: Sequence[int],
    output_size: Sequence[int] | None = None,
) -> CropRule:
    """The :data:`tconv.layer.CropRule` of a PyTorch op: spatial shape -> crops.

    With ``output_size``, ``output_padding`` is chosen per input shape as PyTorch's modules do.
    """

    if output_size is None:
        return per_axis_rule(crops, kernel_size, stride, dilation, padding, output_padding)

    def rule(spatial: Sequence[int]) -> Crops:
        ops = output_padding_for(output_size, spatial, kernel_size, stride, padding, dilation)
        return per_axis_rule(crops, kernel_size, stride, dilation, padding, ops)(spatial)

    return rule


# --- validation, phrased as PyTorch phrases it ----------------------------------------------


def _ints(value: Any, rank: int, name: str) -> tuple[int, ...]:
    """An int or ``rank`` ints -> a tuple of ``rank`` ints (PyTorch's ``_ntuple`` + its check)."""
    if isinstance(value, str):
        raise TypeError(
            f"conv_transpose{rank}d(): argument {name!r} must be tuple of ints, not str"
        )
    if is_int(value):
        return (int(value),) * rank
    try:
        values = tuple(value)
    except TypeError:
        raise TypeError(
            f"conv_transpose{rank}d(): argument {name!r} must be tuple of ints, "
            f"not {type(value).__name__}"
        ) from None
    if not all(is_int(v) for v in values):
        raise TypeError(
            f"conv_transpose{rank}d(): argument {name!r} must be tuple of ints, got {value!r}"
        )
    if len(values) == 1:
        values = values * rank
    if len(values) != rank:
        raise ValueError(
            f"expected {name} to be a single integer value or a list of {rank} values to match "
            f"the convolution dimensions, but got {name}={list(values)}"
        )
    return tuple(int(v) for v in values)


def _check_output_padding(
    output_padding: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> None:
    if any(op < 0 for op in output_padding):
        raise ValueError(
            f"negative output_padding is not supported, got output_padding={tuple(output_padding)}"
        )
    if any(op >= s and op >= d for op, s, d in zip(output_padding, stride, dilation, strict=True)):
        raise ValueError(
            "output padding must be smaller than either stride or dilation, but got "
            f"output_padding={tuple(output_padding)}, stride={tuple(stride)}, "
            f"dilation={tuple(dilation)}"
        )


def op(
    weight: Any,
    bias: Any = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    rank: int | None = None,
    output_size: Sequence[int] | None = None,
) -> TransposedConv:
    """The canonical op of ``conv_transpose{rank}d`` with these arguments.

    ``weight`` is ``(C_in, C_out // groups, *kernel_size)``; ``rank`` (1, 2 or 3) defaults to
    ``weight.ndim - 2``.  ``output_size`` (spatial sizes, or the full output shape) makes the op
    choose ``output_padding`` per input as ``ConvTranspose*d.forward(input, output_size)`` does.
    The op has ``framework="torch"``, the TORCH kernel layout and ``channels_first`` data.
    """
    w = np.asarray(weight)
    rank = w.ndim - 2 if rank is None else rank
    if rank not in (1, 2, 3):
        raise ValueError(f"rank must be 1, 2 or 3, got rank={rank}")
    if w.ndim != rank + 2:
        raise ValueError(
            f"conv_transpose{rank}d: weight must be {rank + 2}-dimensional "
            "(in_channels, out_channels // groups, *kernel_size), got weight of size "
            f"{list(w.shape)}"
        )
    stride_t = _ints(stride, rank, "stride")
    padding_t = _ints(padding, rank, "padding")
    output_padding_t = _ints(output_padding, rank, "output_padding")
    dilation_t = _ints(dilation, rank, "dilation")
    if not is_int(groups):
        raise TypeError(f"conv_transpose{rank}d(): argument 'groups' must be int, got {groups!r}")
    kernel_size = tuple(w.shape[2:])
    if any(k <= 0 for k in kernel_size):
        raise ValueError(
            f"kernel size should be greater than zero, but got kernel_size={kernel_size}"
        )
    if any(s <= 0 for s in stride_t):
        raise ValueError(f"non-positive stride is not supported, got stride={stride_t}")
    if any(d <= 0 for d in dilation_t):
        raise ValueError(f"dilation should be greater than zero, but got dilation={dilation_t}")
    if any(p < 0 for p in padding_t):
        raise ValueError(f"negative padding is not supported, got padding={padding_t}")
    _check_output_padding(output_padding_t, stride_t, dilation_t)
    if groups <= 0:
        raise ValueError(f"non-positive groups is not supported, got groups={groups}")
    if w.shape[0] % groups or w.shape[1] == 0 or w.shape[0] == 0:
        raise ValueError(
            f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0 "
            f"and non-empty, but got weight of size {list(w.shape)} instead"
        )
    out_channels = w.shape[1] * groups
    b = None if bias is None else np.asarray(bias)
    if b is not None and b.shape != (out_channels,):
        raise ValueError(
            f"Given transposed=1, weight of size {list(w.shape)}, expected bias to be "
            f"1-dimensional with {out_channels} elements, but got bias of size {list(b.shape)} "
            "instead"
        )
    rule = crop_rule(kernel_size, stride_t, padding_t, output_padding_t, dilation_t, output_size)
    return channels_first_op(w, b, stride_t, dilation_t, rule, int(groups), "torch")


def check_input(conv: TransposedConv, shape: Sequence[int]) -> tuple[int, ...]:
    """Check an input shape as PyTorch does for ``conv`` (batched ``(N, C, *spatial)`` or
    unbatched ``(C, *spatial)``) and return the output shape (same batching).

    Raises ``ValueError`` with PyTorch's message where PyTorch refuses the input.
    """
    rank, shape = conv.rank, tuple(int(v) for v in shape)
    if len(shape) not in (rank + 1, rank + 2):
        raise ValueError(
            f"Expected {rank + 1}D (unbatched) or {rank + 2}D (batched) input to "
            f"conv_transpose{rank}d, but got input of size: {list(shape)}"
        )
    batched = len(shape) == rank + 2
    full = shape if batched else (1, *shape)
    if full[1] != conv.in_channels:
        raise ValueError(
            f"Given transposed=1, weight of size {list(conv.framework_kernel.shape)}, expected "
            f"input{list(full)} to have {conv.in_channels} channels, but got {full[1]} "
            "channels instead"
        )
    spatial = full[2:]
    # PyTorch skips its size checks for an empty batch, down to a zero-length output.
    empty_batch = full[0] == 0
    if 0 in spatial and not empty_batch:
        raise ValueError(
            "Only zero batch or zero channel inputs are supported, but got input shape: "
            f"{list(full)}"
        )
    outs = tuple(
        (n - 1) * s + d * (k - 1) + 1 - b - e  # PyTorch's output length
        for n, k, s, d, (b, e) in zip(
            spatial, conv.kernel_size, conv.strides, conv.dilation, conv.crops(spatial), strict=True
        )
    )
    if min(outs) < (0 if empty_batch else 1):
        raise ValueError(
            f"Given input size per channel: {tuple(spatial)}. Calculated output size per "
            f"channel: {outs}. Output size is too small"
        )
    out = (full[0], conv.filters, *outs)
    return out if batched else out[1:]


def _run(conv: TransposedConv, input: Any, method: str) -> np.ndarray:
    """Check ``input`` as PyTorch does (batched or unbatched), then run ``conv`` on it."""
    x = np.asarray(input)
    batched = x.ndim == conv.rank + 2
    check_input(conv, x.shape)
    if x.dtype != conv.kernel.dtype:
        raise TypeError(
            f"conv_transpose{conv.rank}d: input and weight must have the same dtype (PyTorch "
            f"raises 'expected scalar type ... but found ...'), got input {x.dtype} and weight "
            f"{conv.kernel.dtype}; cast one of them with .astype()"
        )
    y = conv.forward(x if batched else x[None], method)
    return y if batched else y[0]


def _functional(rank: int, layouts: str) -> Callable[..., np.ndarray]:
    """``torch.nn.functional.conv_transpose{rank}d``, with tconv's ``method`` keyword."""

    def conv_transpose(
        input: Any,
        weight: Any,
        bias: Any = None,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        output_padding: IntOrTuple = 0,
        groups: int = 1,
        dilation: IntOrTuple = 1,
        *,
        method: str = "auto",
    ) -> np.ndarray:
        conv = op(weight, bias, stride, padding, output_padding, groups, dilation, rank=rank)
        return _run(conv, input, method)

    conv_transpose.__name__ = conv_transpose.__qualname__ = f"conv_transpose{rank}d"
    conv_transpose.__doc__ = (
        f"``torch.nn.functional.conv_transpose{rank}d(input, weight, bias=None, stride=1, "
        f"padding=0, output_padding=0, groups=1, dilation=1)``: {layouts}.\n\n"
        "``weight`` is ``(C_in, C_out // groups, *kernel_size)``; ``method`` is a method of "
        ':mod:`tconv.ops` (default ``"auto"``).  Unbatched input ``(C_in, *spatial)`` gives an '
        "unbatched output."
    )
    return conv_transpose


conv_transpose1d = _functional(1, "``(N, C_in, L)`` -> ``(N, C_out, L_out)``")
conv_transpose2d = _functional(2, "``(N, C_in, H, W)`` -> ``(N, C_out, H_out, W_out)``")
conv_transpose3d = _functional(3, "``(N, C_in, D, H, W)`` -> ``(N, C_out, D_out, H_out, W_out)``")


class _ConvTransposeNd:
    """``torch.nn.ConvTranspose{rank}d`` with NumPy weights.

    ``weight`` ``(in_channels, out_channels // groups, *kernel_size)`` and ``bias``
    ``(out_channels,)`` (or ``None``) start as PyTorch initializes them (uniform in
    ``±1/sqrt(fan_in)``, ``fan_in = out_channels // groups * prod(kernel_size)``; NumPy's generator,
    so not the same numbers); assign them, or use :meth:`load_state_dict` or :meth:`from_torch`.
    """

    rank = 0

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        output_padding: IntOrTuple = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: IntOrTuple = 1,
        padding_mode: str = "zeros",
    ) -> None:
        name = type(self).__name__
        for arg, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("groups", groups),
        ):
            if not is_int(value):
                raise TypeError(
                    f"{name}(): argument {arg!r} must be int, not {type(value).__name__}"
                )
        if groups <= 0:
            raise ValueError("groups must be a positive integer")
        if in_channels % groups:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups:
            raise ValueError("out_channels must be divisible by groups")
        if padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for {name}')
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _ints(kernel_size, self.rank, "kernel_size")
        self.stride = _ints(stride, self.rank, "stride")
        self.padding = _ints(padding, self.rank, "padding")
        self.output_padding = _ints(output_padding, self.rank, "output_padding")
        self.dilation = _ints(dilation, self.rank, "dilation")
        self.padding_mode = padding_mode
        fan_in = out_channels // groups * int(np.prod(self.kernel_size))
        bound = 1 / np.sqrt(fan_in) if fan_in else 0.0
        rng = np.random.default_rng()
        shape = (in_channels, out_channels // groups, *self.kernel_size)
        if min(shape) < 0:
            raise ValueError(
                f"Trying to create tensor with negative dimension {min(shape)}: {list(shape)} "
                "(in_channels, out_channels // groups, *kernel_size)"
            )
        self.weight: np.ndarray = rng.uniform(-bound, bound, shape).astype(np.float32)
        self.bias: np.ndarray | None = (
            rng.uniform(-bound, bound, out_channels).astype(np.float32) if bias else None
        )
        self.op()  # validate the arguments now, as PyTorch's constructor and first call would

    @classmethod
    def from_torch(cls, module: Any) -> _ConvTransposeNd:
        """A copy of a ``torch.nn.ConvTranspose*d`` (read through its attributes; torch is not
        imported)."""
        weight = np.asarray(module.weight.detach().cpu().numpy())
        layer = cls(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            module.stride,
            module.padding,
            module.output_padding,
            module.groups,
            module.bias is not None,
            module.dilation,
            module.padding_mode,
        )
        bias = None if module.bias is None else module.bias.detach().cpu().numpy()
        layer.load_state_dict({"weight": weight, "bias": bias})
        return layer

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Set ``weight`` (and ``bias``) from a ``state_dict()``-like mapping of arrays."""
        weight = np.asarray(state["weight"])
        if weight.shape != self.weight.shape:
            raise ValueError(
                f"size mismatch for weight: copying a param with shape {tuple(weight.shape)}, "
                f"the shape in current model is {tuple(self.weight.shape)}"
            )
        bias = state.get("bias")
        if (bias is None) != (self.bias is None):
            raise ValueError(
                f"bias given: {bias is not None}, module has bias: {self.bias is not None}"
            )
        self.weight = weight
        self.bias = None if bias is None else np.asarray(bias)

    def op(self, output_size: Sequence[int] | None = None) -> TransposedConv:
        """The canonical op of this module (for explanation and C export)."""
        return op(
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.output_padding,
            self.groups,
            self.dilation,
            rank=self.rank,
            output_size=output_size,
        )

    def forward(
        self, input: Any, output_size: Sequence[int] | None = None, *, method: str = "auto"
    ) -> np.ndarray:
        """As ``ConvTranspose*d.forward``: ``(N, C_in, *spatial)`` -> ``(N, C_out, *out)``."""
        if output_size is not None:
            batched = np.ndim(input) == self.rank + 2
            output_size = spatial_output_size(output_size, self.rank, batched)
        return _run(self.op(output_size), input, method)

    def __call__(
        self, input: Any, output_size: Sequence[int] | None = None, *, method: str = "auto"
    ) -> np.ndarray:
        return self.forward(input, output_size, method=method)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"output_padding={self.output_padding}, groups={self.groups}, "
            f"dilation={self.dilation}, bias={self.bias is not None})"
        )


class ConvTranspose1d(_ConvTransposeNd):
    """``torch.nn.ConvTranspose1d``: ``(N, C_in, L)`` -> ``(N, C_out, L_out)``."""

    rank = 1


class ConvTranspose2d(_ConvTransposeNd):
    """``torch.nn.ConvTranspose2d``: ``(N, C_in, H, W)`` -> ``(N, C_out, H_out, W_out)``."""

    rank = 2


class ConvTranspose3d(_ConvTransposeNd):
    """``torch.nn.ConvTranspose3d``: ``(N, C_in, D, H, W)`` -> ``(N, C_out, D', H', W')``."""

    rank = 3
