"""The Keras convention: ``keras.ops.conv_transpose`` and the ``Conv1D/2D/3DTranspose`` layers.

Keras 3 and tf.keras 2.x compute the same thing.  Per spatial axis with input length ``n``,
kernel ``k``, stride ``s``, dilation ``d`` and dilated kernel span ``K = d*(k-1) + 1``:

============ ================= ============================== ===============================
padding      output_padding    output length                  crop (start, end)
============ ================= ============================== ===============================
``valid``    ``None``          ``(n-1)*s + max(K, s)``        ``(0, -(max(K, s) - K))``
``valid``    ``op``            ``(n-1)*s + K + op``           ``(0, -op)``
``same``     ``None``          ``n*s``                        ``T = K - s``
``same``     ``op``            ``(n-1)*s + K % 2 + op``       ``T = K - K % 2 - op``
============ ================= ============================== ===============================

For ``same`` the total crop ``T`` splits as ``crop_start = max(T, 0) // 2`` and
``crop_end = T - crop_start``: the odd row is cropped at the end, and a negative ``T`` adds
zero rows (bias only) at the end.  :func:`crops` is that table; everything else here reads it.

Layouts: data ``(N, *spatial, C)`` (``channels_last``) or ``(N, C, *spatial)``
(``channels_first``); kernel ``(*kernel_size, filters, in_channels)`` whatever the data format
(the canonical layout of :mod:`tconv.layer`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from .. import activations
from ..checks import is_int
from ..layer import KERAS, CropRule, TransposedConv, frozen, per_axis_rule

__all__ = [
    "BaseConvTranspose",
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
    "conv_transpose",
    "crop_rule",
    "crops",
    "check_output_padding",
    "output_length",
    "standardize_data_format",
    "standardize_output_padding",
    "standardize_padding",
    "standardize_tuple",
]

PADDINGS = ("valid", "same")
IntOrTuple = int | Sequence[int]


def crops(
    size: int,
    kernel: int,
    stride: int,
    dilation: int,
    padding: str,
    output_padding: int | None,
) -> tuple[int, int]:
    """Keras' ``(crop_start, crop_end)`` for one axis (see the module's table).

    ``padding`` is ``"valid"`` or ``"same"`` (lower case); ``output_padding`` ``None`` lets Keras
    infer the length.  A negative crop adds zero rows.  ``size`` does not change the crops but is
    kept so that every convention's rule has the same signature.
    """
    span = dilation * (kernel - 1) + 1
    if padding == "valid":
        extra = max(span, stride) - span if output_padding is None else output_padding
        return 0, -extra
    total = span - stride if output_padding is None else span - span % 2 - output_padding
    start = max(total, 0) // 2
    return start, total - start


def output_length(
    size: int,
    kernel: int,
    stride: int,
    dilation: int,
    padding: str,
    output_padding: int | None,
) -> int:
    """Keras' output length for one axis: ``(size-1)*stride + span - crop_start - crop_end``."""
    start, end = crops(size, kernel, stride, dilation, padding, output_padding)
    return (size - 1) * stride + dilation * (kernel - 1) + 1 - start - end


def crop_rule(
    kernel_size: Sequence[int],
    strides: Sequence[int],
    dilation_rate: Sequence[int],
    padding: str,
    output_padding: Sequence[int] | None,
) -> CropRule:
    """The :data:`tconv.layer.CropRule` of a Keras layer or op: spatial shape -> crops."""
    rank = len(kernel_size)
    ops = output_padding if output_padding is not None else (None,) * rank
    return per_axis_rule(crops, kernel_size, strides, dilation_rate, (padding,) * rank, ops)


# --- argument validation, phrased as Keras phrases it -------------------------------------


def standardize_tuple(value: Any, n: int, name: str, allow_zero: bool = False) -> tuple[int, ...]:
    """An int or ``n`` ints -> a tuple of ``n`` ints ``> 0`` (``>= 0`` with ``allow_zero``).

    Raises ``ValueError`` with Keras' message, naming the argument ``name``, otherwise.
    """
    message = f"The `{name}` argument must be a tuple of {n} integers. Received {name}={value}"
    if is_int(value):
        values = (int(value),) * n
    else:
        try:
            values = tuple(value)
        except TypeError:
            raise ValueError(message) from None
        if len(values) != n or not all(is_int(v) for v in values):
            raise ValueError(message)
        values = tuple(int(v) for v in values)
    bad = {v for v in values if (v < 0 if allow_zero else v <= 0)}
    if bad:
        rule = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{message}, including values {bad} that do not satisfy `value {rule}`")
    return values


def standardize_padding(padding: Any) -> str:
    """``"valid"`` or ``"same"`` in any case -> lower case; ``ValueError`` (Keras' message)
    for anything else."""
    if not isinstance(padding, str) or padding.lower() not in PADDINGS:
        raise ValueError(
            f"The `padding` argument must be one of 'valid', 'same'. Received: padding={padding}"
        )
    return padding.lower()


def standardize_data_format(data_format: Any) -> str:
    """``"channels_last"`` or ``"channels_first"`` in any case -> lower case; ``None`` is Keras'
    default ``image_data_format()``: ``"channels_last"``.  ``ValueError`` (Keras' message) for
    anything else."""
    if data_format is None:
        return "channels_last"
    value = str(data_format).lower()
    if value not in ("channels_first", "channels_last"):
        raise ValueError(
            "The `data_format` argument must be one of {'channels_first', 'channels_last'}. "
            f"Received: data_format={value}"
        )
    return value


def check_output_padding(output_padding: tuple[int, ...] | None, strides: tuple[int, ...]) -> None:
    """Keras' rule ``output_padding < strides`` on every axis (``None``: nothing to check);
    raises ``ValueError`` with Keras' message naming the first axis that breaks it."""
    if output_padding is None:
        return
    for i, (op, s) in enumerate(zip(output_padding, strides, strict=True)):
        if op >= s:
            raise ValueError(
                "`output_padding` must be strictly less than `strides` for all dimensions. "
                f"At dimension {i}, `output_padding` is {op} but `strides` is {s}. "
                f"Received: output_padding={output_padding}, strides={strides}"
            )


def standardize_output_padding(
    output_padding: Any, strides: tuple[int, ...]
) -> tuple[int, ...] | None:
    """``output_padding`` (``None``, an int or one int per axis) -> ``None`` or a tuple of ints
    ``>= 0``, each ``< strides`` on its axis (:func:`standardize_tuple` then
    :func:`check_output_padding`, Keras' messages)."""
    if output_padding is None:
        return None
    values = standardize_tuple(output_padding, len(strides), "output_padding", allow_zero=True)
    check_output_padding(values, strides)
    return values


def conv_transpose(
    inputs: Any,
    kernel: Any,
    strides: IntOrTuple = 1,
    padding: str = "valid",
    output_padding: IntOrTuple | None = None,
    data_format: str | None = None,
    dilation_rate: IntOrTuple = 1,
    *,
    method: str = "auto",
) -> np.ndarray:
    """``keras.ops.conv_transpose`` in NumPy.

    Args:
        inputs: ``(N, *spatial, C)`` (``channels_last``) or ``(N, C, *spatial)``, 1 to 3
            spatial axes; float16/bfloat16/float32/float64 (result in the same dtype).
        kernel: ``(*kernel_size, filters, C)``.
        strides, dilation_rate: an int or one int per spatial axis.
        padding: ``"valid"`` or ``"same"`` (any case).
        output_padding: ``None`` (Keras infers the length), an int or one int per axis, each
            ``< stride``.
        data_format: ``"channels_last"`` (``None`` means this, Keras' default) or
            ``"channels_first"``.
        method: ``"auto"`` (the default), ``"fast"``, ``"reference"`` or ``"native"`` (see
            :mod:`tconv.ops`).

    Returns:
        ``(N, *out, filters)`` or ``(N, filters, *out)``, ``out`` from :func:`output_length`.
    """
    data_format = standardize_data_format(data_format)
    padding = standardize_padding(padding)
    x, w = np.asarray(inputs), np.asarray(kernel)
    if x.ndim not in (3, 4, 5):
        raise ValueError(f"Input rank not supported: {x.ndim}. Expected values are [3, 4, 5]")
    if w.ndim != x.ndim:
        raise ValueError(
            f"The `kernel` must have rank {x.ndim} (kernel_size..., filters, in_channels) for an "
            f"input of rank {x.ndim}. Received: kernel.shape={w.shape}, inputs.shape={x.shape}"
        )
    rank = x.ndim - 2
    channels = x.shape[1] if data_format == "channels_first" else x.shape[-1]
    if channels != w.shape[-1]:
        raise ValueError(
            "The number of input channels must match the kernel's input channels. Received: "
            f"input channels={channels}, kernel input channels={w.shape[-1]}, "
            f"data_format='{data_format}'."
        )
    kernel_size = standardize_tuple(w.shape[:-2], rank, "kernel_size")
    if w.shape[-2] <= 0:
        raise ValueError(
            f"The kernel must have at least one filter. Received: kernel.shape={w.shape}"
        )
    strides_t = standardize_tuple(strides, rank, "strides")
    dilation = standardize_tuple(dilation_rate, rank, "dilation_rate")
    op = standardize_output_padding(output_padding, strides_t)
    rule = crop_rule(kernel_size, strides_t, dilation, padding, op)
    layer = TransposedConv(w, None, strides_t, dilation, rule, data_format=data_format, copy=False)
    return layer.forward(x, method)


# --- layers ---------------------------------------------------------------------------------

_DTYPE_POLICY = {
    "module": "keras",
    "class_name": "DTypePolicy",
    "config": {"name": "float32"},
    "registered_name": None,
}
_INITIALIZER_CLASSES = {"glorot_uniform": "GlorotUniform", "zeros": "Zeros", "ones": "Ones"}
_DEFAULT_INITIALIZERS = {
    "kernel_initializer": {
        "module": "keras.initializers",
        "class_name": "GlorotUniform",
        "config": {"seed": None, "input_axes": None, "output_axes": None},
        "registered_name": None,
    },
    "bias_initializer": {
        "module": "keras.initializers",
        "class_name": "Zeros",
        "config": {},
        "registered_name": None,
    },
}
_OPTIONAL_CONFIG = (
    "kernel_regularizer",
    "bias_regularizer",
    "activity_regularizer",
    "kernel_constraint",
    "bias_constraint",
)
# Keys that tf.keras 2.x and older Keras write into a layer's config: ``batch_input_shape``,
# ``batch_shape`` and ``input_shape`` give :attr:`TransposedConv.input_shape`; ``groups`` must be 1.
_LEGACY_KEYS = ("batch_input_shape", "batch_shape", "input_shape", "groups")
_NAME_COUNTS: dict[str, int] = {}


def _activation_name(activation: Any) -> str:
    """A Keras activation as ``get_config()`` stores it (a name, ``None`` or a serialized dict)."""
    if isinstance(activation, dict):
        config = activation.get("config")
        name = config if isinstance(config, str) else activation.get("class_name")
        if activation.get("class_name") not in ("function", name) or not isinstance(name, str):
            raise ValueError(
                f"Unknown activation: activation={activation!r}. tconv reads Keras' built-in "
                "activations by name (a custom or layer activation cannot be run)"
            )
        activation = name
    if activation is not None and not isinstance(activation, str):
        raise ValueError(
            f"Unknown activation: activation={activation!r}. Pass a Keras activation name"
        )
    return activations.canonical_name(activation)


def _initializer_name(config: Any) -> str | None:
    """``"glorot_uniform"``, ``"zeros"`` or ``"ones"`` for those Keras initializers, else None."""
    if isinstance(config, dict):
        config = config.get("class_name")
    if not isinstance(config, str):
        return None
    for name, class_name in _INITIALIZER_CLASSES.items():
        if config in (name, class_name):
            return name
    return None


def _dtype_policy(dtype: Any) -> dict[str, Any]:
    """A Keras dtype (``None``, ``"float32"``, ``"mixed_float16"``, a policy dict) as the policy
    dict Keras 3's ``get_config()`` returns."""
    if isinstance(dtype, dict):
        policy = {k: v for k, v in dtype.items() if k != "shared_object_id"}
        if not isinstance(policy.get("config"), dict) or "name" not in policy["config"]:
            raise ValueError(f"Cannot interpret the dtype policy dtype={dtype!r}")
        return policy
    name = "float32" if dtype is None else str(dtype)
    return {**_DTYPE_POLICY, "config": {"name": name}}


def _compute_dtype(policy: dict[str, Any]) -> np.dtype:
    """The dtype the layer computes in: the policy's compute dtype (``mixed_float16`` ->
    float16, ``mixed_bfloat16`` -> bfloat16, otherwise the policy's own dtype)."""
    name = str(policy["config"]["name"]).removeprefix("mixed_")
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError as err:
            raise ImportError(
                f"the dtype policy {policy['config']['name']!r} computes in bfloat16, which "
                "NumPy gets from ml_dtypes: pip install ml-dtypes"
            ) from err
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _variable_dtype(policy: dict[str, Any]) -> np.dtype:
    """The dtype the weights are kept in: the policy's variable dtype.

    ``mixed_*`` policies keep float32 variables; bfloat16 weights are kept as float32 (exact).
    """
    name = str(policy["config"]["name"])
    if name.startswith("mixed_") or name == "bfloat16":
        return np.dtype(np.float32)
    if name not in ("float16", "float32", "float64"):
        raise ValueError(
            f"Unsupported dtype policy {name!r}: tconv layers keep float16, float32 or float64 "
            "weights"
        )
    return np.dtype(name)


class BaseConvTranspose(TransposedConv):
    """A Keras ``Conv{1,2,3}DTranspose`` layer: Keras' constructor, config and weights API.

    Data and kernel layouts are Keras' (see the module docstring).  The kernel exists after
    :meth:`set_weights`, :meth:`build` or the first call.  Until then :attr:`kernel` raises.
    The layer sets the attributes of :class:`tconv.layer.TransposedConv` itself, because its
    kernel comes later than its configuration.
    """

    RANK: ClassVar[int]
    KERAS_NAME: ClassVar[str]

    def __init__(
        self,
        filters: int,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = 1,
        padding: str = "valid",
        output_padding: IntOrTuple | None = None,
        data_format: str | None = None,
        dilation_rate: IntOrTuple = 1,
        activation: Any = None,
        use_bias: bool = True,
        *,
        name: str | None = None,
        trainable: bool = True,
        dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        cls = type(self).__name__
        unknown = (
            set(kwargs) - set(_DEFAULT_INITIALIZERS) - set(_OPTIONAL_CONFIG) - set(_LEGACY_KEYS)
        )
        if unknown:
            raise TypeError(
                f"Unrecognized keyword arguments passed to {cls}: "
                f"{ {k: kwargs[k] for k in sorted(unknown)} }"
            )
        rank = self.RANK
        if not is_int(filters) or filters <= 0:
            raise ValueError(
                "Invalid value for argument `filters`. Expected a strictly positive value. "
                f"Received filters={filters}."
            )
        self._filters = int(filters)
        self._kernel_size = standardize_tuple(kernel_size, rank, "kernel_size")
        self.strides = standardize_tuple(strides, rank, "strides")
        self.dilation_rate = standardize_tuple(dilation_rate, rank, "dilation_rate")
        self.dilation = self.dilation_rate
        self.padding = standardize_padding(padding)
        self.output_padding = (
            None
            if output_padding is None
            else standardize_tuple(output_padding, rank, "output_padding", allow_zero=True)
        )
        self.data_format = standardize_data_format(data_format)
        self.activation = _activation_name(activation)
        self.use_bias = bool(use_bias)
        check_output_padding(self.output_padding, self.strides)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                "`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                f"Received: strides={self.strides} and dilation_rate={self.dilation_rate}"
            )
        if name is None:
            count = _NAME_COUNTS.get(self.KERAS_NAME, 0)
            _NAME_COUNTS[self.KERAS_NAME] = count + 1
            name = self.KERAS_NAME if count == 0 else f"{self.KERAS_NAME}_{count}"
        self.name = name
        self.trainable = bool(trainable)
        self.dtype = _dtype_policy(dtype)
        self.variable_dtype = _variable_dtype(self.dtype)
        """The dtype Keras stores the weights in (the dtype policy's variable dtype)."""
        self._extra = {key: kwargs.get(key) for key in _OPTIONAL_CONFIG}
        for key, default in _DEFAULT_INITIALIZERS.items():
            self._extra[key] = kwargs.get(key, default)
        # TransposedConv's attributes.
        self.crops = crop_rule(
            self._kernel_size, self.strides, self.dilation_rate, self.padding, self.output_padding
        )
        self.groups = 1
        self.kernel_layout = KERAS
        self.framework = "keras"
        self.input_shape: tuple[int, ...] | None = None
        self._kernel = None
        self.bias = None
        if kwargs.get("groups", 1) != 1:
            raise ValueError(
                f"{cls} does not support groups: tconv reads Keras transposed convolutions with "
                f"groups=1 only. Received: groups={kwargs['groups']}"
            )
        batch_shape = kwargs.get("batch_input_shape") or kwargs.get("batch_shape")
        shape = kwargs.get("input_shape") or (batch_shape[1:] if batch_shape else None)
        if shape is not None and all(isinstance(v, int) for v in shape):
            self.input_shape = tuple(shape)

    # Configuration, available before the kernel exists.
    @property
    def rank(self) -> int:
        return self.RANK

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return self._kernel_size

    @property
    def filters(self) -> int:
        return self._filters

    @property
    def built(self) -> bool:
        return self._kernel is not None

    @property
    def kernel(self) -> np.ndarray:
        """``(*kernel_size, filters, in_channels)``; raises ``ValueError`` before it exists."""
        if self._kernel is None:
            raise ValueError(
                f"Layer '{self.name}' has no weights yet: call set_weights([kernel, bias]), "
                "build(input_shape) or the layer on an input first"
            )
        return self._kernel

    @kernel.setter
    def kernel(self, value: np.ndarray) -> None:
        self._kernel = frozen(value)

    def _checked_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        """``input_shape`` as a tuple, checked to have the batch, spatial and channel axes."""
        shape = tuple(input_shape)
        if len(shape) != self.rank + 2:
            raise ValueError(
                f"Input 0 of layer '{self.name}' is incompatible with the layer: expected "
                f"ndim={self.rank + 2}, found ndim={len(shape)}. Full shape received: {shape}"
            )
        return shape

    def _weight_shapes(self, in_channels: int) -> list[tuple[int, ...]]:
        shapes = [(*self.kernel_size, self.filters, in_channels)]
        return shapes + [(self.filters,)] if self.use_bias else shapes

    def build(self, input_shape: Sequence[int | None], seed: Any = None) -> None:
        """Create the weights for inputs of ``input_shape`` (batch axis included), as Keras.

        The kernel is drawn like Keras' ``glorot_uniform`` (uniform in ``±sqrt(6 / (fan_in +
        fan_out))`` with ``fan_in = filters * prod(kernel_size)`` and ``fan_out = in_channels *
        prod(kernel_size)``) and the bias is zero, from ``numpy.random.default_rng(seed)``
        (``seed`` defaults to the initializer's configured seed): the same distribution as Keras,
        not the same numbers.  ``zeros`` and ``ones`` initializers are honoured too; any other
        initializer is an error (load the trained weights with :meth:`set_weights`).
        """
        shape = self._checked_shape(input_shape)
        channels = shape[1] if self.data_format == "channels_first" else shape[-1]
        if not isinstance(channels, (int, np.integer)) or channels < 0:
            raise ValueError(
                f"The channel dimension of the inputs of layer '{self.name}' should be defined. "
                f"Received input_shape={shape}"
            )
        values = []
        # One initializer per weight: the bias initializer is unused without a bias.
        shapes = self._weight_shapes(int(channels))
        for key, weight_shape in zip(
            list(_DEFAULT_INITIALIZERS)[: len(shapes)], shapes, strict=True
        ):
            config = self._extra[key]
            init = _initializer_name(config)
            if init is None:
                raise ValueError(
                    f"{key}={config!r} is not one tconv can draw (glorot_uniform, zeros, ones): "
                    f"set the weights of layer '{self.name}' with set_weights()"
                )
            if init == "glorot_uniform":
                if seed is None and isinstance(config, dict):
                    seed = (config.get("config") or {}).get("seed")
                receptive = math.prod(weight_shape[:-2])
                fan_in, fan_out = weight_shape[-2] * receptive, weight_shape[-1] * receptive
                limit = math.sqrt(6.0 / max(1, fan_in + fan_out))
                rng = np.random.default_rng(seed)
                values.append(rng.uniform(-limit, limit, weight_shape))
            else:
                values.append(np.full(weight_shape, 1.0 if init == "ones" else 0.0))
        self._kernel = None
        self.set_weights(values)

    def get_weights(self) -> list[np.ndarray]:
        """``[kernel, bias]`` (``[kernel]`` without bias); ``[]`` before the layer is built."""
        if self._kernel is None:
            return []
        return [self._kernel.copy()] + ([self.bias.copy()] if self.bias is not None else [])

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set ``[kernel, bias]`` (``[kernel]`` when ``use_bias=False``), Keras' layouts.

        Unlike Keras, an unbuilt layer accepts any kernel of shape
        ``(*kernel_size, filters, in_channels)`` and takes ``in_channels`` from it.
        """
        expected = 2 if self.use_bias else 1
        weights = list(weights)
        if len(weights) != expected:
            raise ValueError(
                f"You called `set_weights(weights)` on layer '{self.name}' with a weight list of "
                f"length {len(weights)}, but the layer was expecting {expected} weights."
            )
        arrays = [np.asarray(w) for w in weights]
        if arrays[0].ndim != self.rank + 2:
            raise ValueError(
                f"Layer {self.name} kernel must have shape (*kernel_size, filters, in_channels) "
                f"= {(*self.kernel_size, self.filters, 'in_channels')}, got {arrays[0].shape}"
            )
        in_channels = int(arrays[0].shape[-1]) if self._kernel is None else self.in_channels
        for array, shape in zip(arrays, self._weight_shapes(in_channels), strict=True):
            if array.shape != shape:
                raise ValueError(
                    f"Layer {self.name} weight shape {shape} is not compatible with provided "
                    f"weight shape {array.shape}."
                )
            if array.dtype.kind not in "fiu" and array.dtype.name != "bfloat16":
                raise TypeError(f"Layer {self.name} weights must be numbers, got {array.dtype}")
        dtype = self.variable_dtype
        self._kernel = frozen(arrays[0], dtype)
        self.bias = frozen(arrays[1], dtype) if self.use_bias else None

    @property
    def compute_dtype(self) -> np.dtype:
        """The dtype the layer computes in, as Keras' ``layer.compute_dtype``: float32 by
        default, float16 for ``"float16"`` and ``"mixed_float16"``, bfloat16 (ml_dtypes) for
        ``"bfloat16"`` and ``"mixed_bfloat16"``, float64 for ``"float64"``."""
        return _compute_dtype(self.dtype)

    def computing(self, x: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """As Keras calls a layer: a floating-point input is cast to :attr:`compute_dtype`
        (any other is refused, as Keras refuses it), and the weights too (a ``mixed_*`` policy
        keeps float32 variables and casts them at every call)."""
        x = np.asarray(x)
        dtype = self.compute_dtype
        if x.dtype != dtype and (x.dtype.kind == "f" or x.dtype.name == "bfloat16"):
            x = x.astype(dtype)
        kernel, bias = self.kernel, self.bias
        if kernel.dtype != dtype:
            kernel = kernel.astype(dtype)
            bias = None if bias is None else bias.astype(dtype)
        return x, kernel, bias

    def forward(self, x: Any, method: str = "auto") -> np.ndarray:
        """Apply the layer (building it for ``x``'s shape first if needed), in
        :attr:`compute_dtype`.

        As in Keras, ``softmax`` and ``log_softmax`` normalise the last axis of the layer's
        layout (see :meth:`tconv.layer.TransposedConv.activate`).
        """
        x = np.asarray(x)
        if self._kernel is None:
            self.build(x.shape)
        return super().forward(x, method)

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        """Output shape for ``input_shape`` (batch axis included; ``None`` for unknown sizes)."""
        shape = self._checked_shape(input_shape)
        spatial = shape[2:] if self.data_format == "channels_first" else shape[1:-1]
        ops = self.output_padding or (None,) * self.rank
        out = tuple(
            None if n is None else output_length(n, k, s, d, self.padding, op)
            for n, k, s, d, op in zip(
                spatial, self.kernel_size, self.strides, self.dilation, ops, strict=True
            )
        )
        if self.data_format == "channels_first":
            return (shape[0], self.filters, *out)
        return (shape[0], *out, self.filters)

    @property
    def output_item_shape(self) -> tuple[int, ...] | None:
        """One output item's shape (no batch axis) when :attr:`input_shape` is known."""
        if self.input_shape is None:
            return None
        shape = self.compute_output_shape((1, *self.input_shape))
        return tuple(int(v) for v in shape[1:] if v is not None)

    def count_params(self) -> int:
        """Number of weights: kernel plus bias."""
        return sum(w.size for w in self.get_weights())

    def get_config(self) -> dict[str, Any]:
        """The dict Keras 3's ``layer.get_config()`` returns for the same layer."""
        config: dict[str, Any] = {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": self.dtype,
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "output_padding": self.output_padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "activation": self.activation,
            "use_bias": self.use_bias,
        }
        for key in (*_DEFAULT_INITIALIZERS, *_OPTIONAL_CONFIG):
            config[key] = self._extra[key]
        return copy.deepcopy(config)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BaseConvTranspose:
        """Build the layer from the dict Keras' (or tf.keras') ``layer.get_config()`` returns."""
        return cls(**config)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, filters={self.filters}, "
            f"kernel_size={self.kernel_size}, strides={self.strides}, padding={self.padding!r}, "
            f"output_padding={self.output_padding}, data_format={self.data_format!r}, "
            f"dilation_rate={self.dilation_rate}, activation={self.activation!r}, "
            f"use_bias={self.use_bias})"
        )


class Conv1DTranspose(BaseConvTranspose):
    """``keras.layers.Conv1DTranspose``: data ``(N, steps, C)``, kernel ``(k, filters, C)``."""

    RANK = 1
    KERAS_NAME = "conv1d_transpose"


class Conv2DTranspose(BaseConvTranspose):
    """``keras.layers.Conv2DTranspose``: data ``(N, H, W, C)``, kernel ``(kh, kw, filters, C)``."""

    RANK = 2
    KERAS_NAME = "conv2d_transpose"


class Conv3DTranspose(BaseConvTranspose):
    """``keras.layers.Conv3DTranspose``: data ``(N, D, H, W, C)``, kernel
    ``(kd, kh, kw, filters, C)``."""

    RANK = 3
    KERAS_NAME = "conv3d_transpose"


LAYER_CLASSES: dict[str, type[BaseConvTranspose]] = {
    cls.__name__: cls for cls in (Conv1DTranspose, Conv2DTranspose, Conv3DTranspose)
}
