"""Keras' built-in activations, in NumPy, by the names Keras uses in ``get_config()``.

Each function maps an array to an array of the same shape and dtype.  Parameters take Keras 3's
defaults (``leaky_relu`` slope 0.2, ``elu`` alpha 1, exact ``gelu``).  ``softmax`` and
``log_softmax`` act on the last axis, as Keras applies them whatever the ``data_format``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Activation = Callable[[np.ndarray], np.ndarray]

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Split by sign so that exp never overflows.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def _softplus(x: np.ndarray) -> np.ndarray:
    return (np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))).astype(x.dtype)


def _elu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))).astype(x.dtype)


def _gelu(x: np.ndarray) -> np.ndarray:
    return (0.5 * x * (1 + _erf(x / math.sqrt(2)))).astype(x.dtype)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return (e / np.sum(e, axis=-1, keepdims=True)).astype(x.dtype)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - np.max(x, axis=-1, keepdims=True)
    return (z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))).astype(x.dtype)


def _hard_sigmoid(x: np.ndarray) -> np.ndarray:
    return (np.clip(x + 3, 0, 6) / 6).astype(x.dtype)


ACTIVATIONS: dict[str, Activation] = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0).astype(x.dtype),
    "relu6": lambda x: np.clip(x, 0, 6).astype(x.dtype),
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.2 * x).astype(x.dtype),
    "elu": _elu,
    "selu": lambda x: (_SELU_SCALE * _elu(x, _SELU_ALPHA)).astype(x.dtype),
    "celu": _elu,
    "gelu": _gelu,
    "sigmoid": _sigmoid,
    "hard_sigmoid": _hard_sigmoid,
    "tanh": np.tanh,
    "softplus": _softplus,
    "softsign": lambda x: (x / (1 + np.abs(x))).astype(x.dtype),
    "silu": lambda x: (x * _sigmoid(x)).astype(x.dtype),
    "hard_silu": lambda x: (x * _hard_sigmoid(x)).astype(x.dtype),
    "mish": lambda x: (x * np.tanh(_softplus(x))).astype(x.dtype),
    "log_sigmoid": lambda x: (-_softplus(-x)).astype(x.dtype),
    "exponential": np.exp,
    "softmax": _softmax,
    "log_softmax": _log_softmax,
}
LAST_AXIS = ("softmax", "log_softmax")
"""Activations that mix the elements of the last axis (all others act element by element)."""

# Names Keras accepts for the same function.
ALIASES = {"swish": "silu", "hard_swish": "hard_silu", None: "linear", "None": "linear"}


def canonical_name(name: str | None) -> str:
    """Resolve an activation name (or alias, or ``None``) to its entry in ``ACTIVATIONS``.

    Raises ``ValueError`` naming the known activations when ``name`` is not one of them.
    """
    key = ALIASES.get(name, name)
    if not isinstance(key, str) or key not in ACTIVATIONS:
        known = ", ".join(sorted(set(ACTIVATIONS) | {a for a in ALIASES if isinstance(a, str)}))
        raise ValueError(f"Unknown activation: activation={name!r}. Known activations: {known}")
    return key


def apply(name: str | None, x: np.ndarray) -> np.ndarray:
    """Apply the activation ``name`` to ``x``."""
    return ACTIVATIONS[canonical_name(name)](x)
