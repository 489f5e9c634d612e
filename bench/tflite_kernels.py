"""Where TFLite's default kernels differ from its reference TRANSPOSE_CONV (docs/tflite.md).

``python bench/tflite_kernels.py [COUNT] [SEED] [OUT.json]`` builds COUNT random models as the
test sweep does (Keras Conv2DTranspose -> TFLiteConverter, int8 and 16x8, seeded), runs each
with the reference kernels (``BUILTIN_REF``, the contract, equal to tconv), the default
resolver (AUTO: XNNPACK where it takes the op) and the builtin optimized kernels without
delegates (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``), and reports, per kernel, how many models and
elements differ from the reference, by how many LSB, and the geometries of the models that
differ.  The models are converted first; then every kernel runs in a child process
(:func:`tconv.isolated.run_each`): one that crashes is reported with the model's geometry.
Writes one JSON document (to OUT.json, or stdout, where TensorFlow's converter also prints).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_tflite import _random_spec  # noqa: E402
from tflite_models import convert, keras_model  # noqa: E402

from tconv.isolated import run_each  # noqa: E402
from tconv.tflite import load_layers  # noqa: E402

RESOLVERS = {
    "reference": "BUILTIN_REF",
    "default": "AUTO",
    "builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
}


def main(count: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    summary: dict = {"models": 0, "kinds": Counter(), "kernels": {}}
    tests = Path(__file__).resolve().parents[1] / "tests"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), *sys.path])}
    with tempfile.TemporaryDirectory() as tmp:
        models = []
        while len(models) < count:
            kind = "16x8" if rng.random() < 0.35 else "int8"
            spec = _random_spec(rng, kind == "16x8")
            model = keras_model([spec], rng)
            if 0 in model.outputs[0].shape:
                continue
            path = Path(tmp) / f"m{len(models)}.tflite"
            convert(model, rng, kind, path, per_channel=rng.random() < 0.75)
            models.append((kind, spec, path, int(rng.integers(2**31))))
        items = [
            {"path": str(path), "seed": seed, "resolver": r, "out": f"{path}.{label}.npz"}
            for _, _, path, seed in models
            for label, r in RESOLVERS.items()
        ]
        outcomes = iter(run_each("tflite_models:run_ops_item", items, timeout=300, env=env))
        for kind, spec, path, _ in models:
            runs: dict[str, Any] = {}
            for label in RESOLVERS:
                outcome = next(outcomes)
                if outcome["status"] == "ok":
                    (name,) = outcome["value"]
                    with np.load(f"{path}.{label}.npz") as data:
                        runs[label] = (data[f"{name}/x"], data[f"{name}/y"])
                else:
                    runs[label] = outcome
            (layer,) = load_layers(path).values()
            x, y_ref = runs["reference"]
            assert np.array_equal(layer(x), y_ref)
            summary["models"] += 1
            summary["kinds"][kind] += 1
            for label in ("default", "builtin"):
                k = summary["kernels"].setdefault(
                    label,
                    {
                        "models_differing": 0,
                        "elements": 0,
                        "elements_differing": 0,
                        "lsb": Counter(),
                        "examples": [],
                        "crashed": [],
                        "models_differing_by_kind": Counter(),
                        "one_lsb_models": Counter(),
                    },
                )
                if isinstance(runs[label], dict):  # the kernel died, raised or hung
                    k["crashed"].append({"kind": kind, "spec": spec.__dict__, **runs[label]})
                    continue
                _, y = runs[label]
                diff = np.abs(y.astype(np.int64) - y_ref.astype(np.int64))
                k["elements"] += int(y.size)
                bad = int(np.count_nonzero(diff))
                k["elements_differing"] += bad
                for v in diff[diff > 0].tolist():
                    k["lsb"][int(v)] += 1
                if bad:
                    k["models_differing"] += 1
                    k["models_differing_by_kind"][kind] += 1
                    if diff.max() == 1:  # how many elements, in the models off by 1 LSB only
                        k["one_lsb_models"][bad] += 1
                    if len(k["examples"]) < 12:
                        k["examples"].append(
                            {
                                "kind": kind,
                                "spec": spec.__dict__,
                                "differing": bad,
                                "of": int(y.size),
                                "max_lsb": int(diff.max()),
                            }
                        )
    return summary


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    text = json.dumps(main(*(args + [200, 7][len(args) :])), indent=2, default=str)
    if len(sys.argv) > 3:
        Path(sys.argv[3]).write_text(text + "\n")
    else:
        print(text)
