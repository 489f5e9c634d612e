"""Keras run for the user (``export-c --verify``, ``tconv bench``), in a child process.

TensorFlow picks its kernels for the CPU it meets: on AVX-512 CPUs its oneDNN ones, which abort
the whole process on some inputs that Eigen's kernels refuse with an error (a negative stride,
for one).  tconv itself must not go down with it, so every Keras call it makes for a user runs
here, through :func:`tconv.isolated.run_each`: an abort, an exception or a hang becomes a
:class:`PeerError` saying which.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .isolated import run_each

__all__ = ["KerasCall", "PeerError", "keras_outputs"]


class PeerError(RuntimeError):
    """A peer framework refused a call, died on it, or did not finish."""


@dataclass(frozen=True)
class KerasCall:
    """``keras.layers.<class_name>.from_config(config)``, built for ``x``'s shape, given
    ``weights`` (as ``set_weights`` takes them), called on ``x`` (the layer's own layout)."""

    class_name: str
    config: dict[str, Any]
    weights: Sequence[np.ndarray]
    x: np.ndarray


def keras_outputs(calls: Sequence[KerasCall], timeout: float = 300.0) -> list[np.ndarray | str]:
    """Each call's output computed by Keras (backend ``$KERAS_BACKEND``, default TensorFlow) in
    one child process, or, where Keras raised, died or hung, a sentence saying so."""
    with tempfile.TemporaryDirectory(prefix="tconv-keras-") as folder:
        items = []
        for i, call in enumerate(calls):
            base = Path(folder) / str(i)
            np.savez(f"{base}-weights.npz", *call.weights)
            np.save(f"{base}-x.npy", call.x)
            items.append({"class_name": call.class_name, "config": call.config, "base": str(base)})
        outcomes = run_each("tconv.peers:_keras_call", items, timeout=timeout)
        results: list[np.ndarray | str] = []
        for item, outcome in zip(items, outcomes, strict=True):
            if outcome["status"] == "ok":
                results.append(np.load(f"{item['base']}-y.npy"))
            else:
                results.append(_why(outcome))
    return results


def _why(outcome: dict[str, Any]) -> str:
    if outcome["status"] == "raised":
        return f"Keras raised {outcome['type']}: {outcome['message'][:300]}"
    if outcome["status"] == "timeout":
        return f"Keras did not finish in {outcome['seconds']:.0f} s"
    code = outcome["returncode"]
    how = f"signal {-code}" if code < 0 else f"exit code {code}"
    last = outcome["stderr"].strip().splitlines()[-1:] or [""]
    return f"Keras took its process down ({how}; TensorFlow's oneDNN kernels do so) {last[0]}"


def _keras_call(item: dict[str, Any]) -> list[int]:
    """In the child: run one :class:`KerasCall`, write the output beside its input."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    base = item["base"]
    x = np.load(f"{base}-x.npy")
    with np.load(f"{base}-weights.npz") as data:
        weights = [data[f"arr_{i}"] for i in range(len(data.files))]
    layer = getattr(keras.layers, item["class_name"]).from_config(item["config"])
    layer.build((None, *x.shape[1:]))
    layer.set_weights(weights)
    y = np.asarray(layer(x))
    np.save(f"{base}-y.npy", y)
    return list(y.shape)
