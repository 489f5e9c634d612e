"""Keras run for the user (``export-c --verify``, ``tconv bench``), in a child process.

TensorFlow picks its kernels for the CPU it meets: on AVX-512 CPUs its oneDNN ones, which abort
the whole process on some inputs that Eigen's kernels refuse with an error (a negative stride,
for one).  tconv itself must not go down with it, so every Keras call it makes for a user runs
here, through :func:`tconv.isolated.run_each`: an abort, an exception or a hang becomes a
:class:`PeerError` saying which.

One rule for which kernels run: a comparison of numbers (``export-c --verify``) uses
TensorFlow's Eigen kernels (``TF_ENABLE_ONEDNN_OPTS=0`` unless the environment sets it), the
same on every CPU; a benchmark's probe (``eigen=False``) what TensorFlow picks for this CPU, as
the timed call will.
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

__all__ = ["KerasCall", "PeerError", "keras_layer_outputs", "keras_outputs"]


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


def keras_outputs(
    calls: Sequence[KerasCall], timeout: float = 300.0, eigen: bool = True
) -> list[np.ndarray | str]:
    """Each call's output computed by Keras (backend ``$KERAS_BACKEND``, default TensorFlow) in
    one child process, or, where Keras raised, died or hung, a sentence saying so.  ``eigen``:
    TensorFlow's Eigen kernels unless the environment says otherwise (see the module)."""
    with tempfile.TemporaryDirectory(prefix="tconv-keras-") as folder:
        items = []
        for i, call in enumerate(calls):
            base = Path(folder) / str(i)
            np.savez(f"{base}-weights.npz", *call.weights)
            np.save(f"{base}-x.npy", call.x)
            items.append(
                {
                    "class_name": call.class_name,
                    "config": call.config,
                    "base": str(base),
                    "eigen": eigen,
                }
            )
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


def _child_environment(eigen: bool) -> None:
    """Before Keras is imported in a child: TensorFlow backend, quiet logs, and Eigen's kernels
    when ``eigen`` (each unless the environment already says)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if eigen:
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def _keras_call(item: dict[str, Any]) -> list[int]:
    """In the child: run one :class:`KerasCall`, write the output beside its input."""
    _child_environment(item["eigen"])
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


def keras_layer_outputs(
    path: str, xs: Sequence[np.ndarray], names: Sequence[str], timeout: float = 600.0
) -> dict[str, np.ndarray] | str:
    """The outputs of the layers ``names`` of the Keras model file ``path`` on the inputs
    ``xs``, computed by Keras in a child process as ``keras.Model(model.inputs, [outputs])``
    (Eigen's kernels, see the module): ``{name: array}`` for the layers Keras can reach from
    the model's inputs (nested models' layers cannot be), or a sentence saying why Keras gave
    nothing."""
    with tempfile.TemporaryDirectory(prefix="tconv-keras-") as folder:
        np.savez(Path(folder) / "x.npz", *xs)
        item = {"path": str(path), "names": list(names), "folder": folder}
        (outcome,) = run_each("tconv.peers:_keras_model_call", [item], timeout=timeout)
        if outcome["status"] != "ok":
            return _why(outcome)
        with np.load(Path(folder) / "y.npz") as data:
            return {k: data[k] for k in data.files}


def _keras_model_call(item: dict[str, Any]) -> list[str]:
    """In the child: every reachable layer output of the model file, written to ``y.npz``."""
    _child_environment(eigen=True)
    import keras

    model = keras.saving.load_model(item["path"], compile=False)
    with np.load(Path(item["folder"]) / "x.npz") as data:
        xs = [data[f"arr_{i}"] for i in range(len(data.files))]
    keep, outputs = [], []
    for name in item["names"]:
        try:
            outputs.append(model.get_layer(name).output)
        except (ValueError, AttributeError):  # inside a nested model: not reachable
            continue
        keep.append(name)
    probe = keras.Model(model.inputs, outputs)
    ys = probe(xs if len(xs) > 1 else xs[0])
    ys = ys if isinstance(ys, (list, tuple)) else [ys]
    arrays: dict[str, Any] = {n: np.asarray(y) for n, y in zip(keep, ys, strict=True)}
    np.savez(Path(item["folder"]) / "y.npz", **arrays)
    return keep
