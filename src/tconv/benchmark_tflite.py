"""``tconv bench --tflite``: tconv's integer C against TFLite's optimized int8 kernels, 1 thread.

The quantized seed layer: Keras ``Conv2DTranspose(512, 3, strides=2, padding="same")`` on a
``1x8x8x1024`` input, seeded weights, converted by TensorFlow's ``TFLiteConverter`` to a
full-integer int8 ``.tflite`` (representative dataset from the same seed).  TensorFlow runs in a
child process (:func:`tconv.isolated.run_each`; ``TF_ENABLE_ONEDNN_OPTS=0`` set before it is
imported): it converts, then times ``Interpreter.invoke`` with ``num_threads=1`` for the
default kernels (XNNPACK) and the builtin optimized kernels without delegates, and returns each
one's output.  Here tconv reads the file,
exports the op as integer C, compiles it (``-O3 -march=native``), checks it bit-exact with the
reference definition in its harness and times it (``--bench``).  Each time is the median of
``repeats`` runs after a warm-up; the two processes run one after the other, not interleaved.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .isolated import run_each
from .quant import QuantizedTransposeConv


def _tflite_child(item: dict[str, Any]) -> dict[str, Any]:
    """In the child process (:func:`tconv.isolated.run_each`): convert the seed layer, time
    TFLite's kernels on 1 thread, write the model, the input and each kernel's output into
    ``item["folder"]``; return the median times (seconds) and TensorFlow's version."""
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf

    folder, repeats = Path(item["folder"]), int(item["repeats"])
    rng = np.random.default_rng(int(item["seed"]))
    inp = keras.Input((8, 8, 1024), batch_size=1)
    layer = keras.layers.Conv2DTranspose(512, 3, strides=2, padding="same")
    model = keras.Model(inp, layer(inp))
    layer.set_weights(
        [rng.normal(0, 0.02, w.shape).astype(np.float32) for w in layer.get_weights()]
    )
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [rng.normal(0, 1, (1, 8, 8, 1024)).astype(np.float32)] for _ in range(8)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    path = folder / "seed_int8.tflite"
    path.write_bytes(converter.convert())
    x = rng.integers(-128, 128, (1, 8, 8, 1024)).astype(np.int8)
    np.save(folder / "input.npy", x)
    kinds = tf.lite.experimental.OpResolverType
    found: dict[str, Any] = {"tensorflow": tf.__version__}
    for label, kind in (
        ("xnnpack", kinds.AUTO),
        ("builtin", kinds.BUILTIN_WITHOUT_DEFAULT_DELEGATES),
    ):
        it = tf.lite.Interpreter(
            model_path=str(path), num_threads=1, experimental_op_resolver_type=kind
        )
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            it.invoke()
            times.append(time.perf_counter() - t0)
        np.save(folder / f"{label}.npy", it.get_tensor(it.get_output_details()[0]["index"]))
        found[label] = statistics.median(times)
    return found


C_FLAGS = ("-O3", "-march=native", "-std=c99")


def run(repeats: int = 20, seed: int = 0, cc: str | None = None) -> dict[str, Any]:
    """Run the comparison; returns the times (seconds), the ratios and the checks."""
    from . import cexport
    from .kernels import build
    from .tflite import load_layers

    with tempfile.TemporaryDirectory(prefix="tconv-bench-tflite-") as tmp:
        item = {"folder": tmp, "seed": seed, "repeats": repeats}
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"}
        (outcome,) = run_each("tconv.benchmark_tflite:_tflite_child", [item], timeout=900, env=env)
        if outcome["status"] != "ok":
            raise RuntimeError(f"the TensorFlow child process failed: {outcome}"[:3000])
        peer = outcome["value"]
        folder = Path(tmp)
        (layer,) = load_layers(folder / "seed_int8.tflite").values()
        x = np.load(folder / "input.npy")
        y = layer(x)
        out = folder / "c"
        cexport.export_c(layer, out, name="seed_q", test_input=x)
        build.compile_c(
            ["test_seed_q.c", "seed_q.c", "seed_q_weights.c"],
            "test_seed_q",
            cc=cc,
            cflags=C_FLAGS,
            cwd=out,
        )
        harness = subprocess.run(
            [str(out / "test_seed_q"), "--bench", str(repeats)],
            cwd=out,
            capture_output=True,
            text=True,
            timeout=900,
        )
        text = harness.stdout.strip()
        found = re.search(r"median (\S+) ms", text)
        c_seconds = float(found.group(1)) * 1e-3 if found else None
        differences = {}
        for label in ("xnnpack", "builtin"):
            theirs = np.load(folder / f"{label}.npy")
            diff = np.abs(theirs.astype(np.int32) - y.astype(np.int32))
            differences[label] = {
                "elements": int(np.count_nonzero(diff)),
                "max_lsb": int(diff.max()),
            }
    result: dict[str, Any] = {
        "layer": "Conv2DTranspose(512, 3, strides=2, padding='same') on 1x8x8x1024, int8",
        "macs": layer.geometry.macs(1) if isinstance(layer, QuantizedTransposeConv) else None,
        "tensorflow": peer["tensorflow"],
        "c_flags": " ".join(C_FLAGS),
        "c_harness": text,
        "c_bit_exact": harness.returncode == 0 and ": PASS" in text,
        "seconds": {
            "tconv_c": c_seconds,
            "tflite_xnnpack": peer["xnnpack"],
            "tflite_builtin": peer["builtin"],
        },
        "tflite_vs_reference_definition": differences,
    }
    if c_seconds:
        result["ratio_c_over_xnnpack"] = c_seconds / peer["xnnpack"]
        result["ratio_c_over_builtin"] = c_seconds / peer["builtin"]
    return result


def table(result: dict[str, Any]) -> str:
    """The result as text."""
    s = result["seconds"]
    macs = result["macs"]
    lines = [
        f"quantized seed layer: {result['layer']} ({macs:,} multiply-adds), 1 thread each, "
        f"TensorFlow {result['tensorflow']}",
    ]
    for label, key in (
        ("tconv integer C", "tconv_c"),
        ("TFLite default (XNNPACK)", "tflite_xnnpack"),
        ("TFLite builtin optimized", "tflite_builtin"),
    ):
        t = s[key]
        lines.append(
            f"  {label:<26} {'?' if t is None else f'{1e3 * t:8.3f} ms'}"
            + ("" if t is None else f"  {macs / t * 1e-9:6.1f} GMAC/s")
        )
    if "ratio_c_over_xnnpack" in result:
        lines.append(
            f"  C / XNNPACK = {result['ratio_c_over_xnnpack']:.2f}, C / builtin = "
            f"{result['ratio_c_over_builtin']:.2f} (below 1: the C is faster)"
        )
    lines.append(
        f"  C harness: {result['c_harness'].splitlines()[0] if result['c_harness'] else '?'}"
    )
    for label, d in result["tflite_vs_reference_definition"].items():
        lines.append(
            f"  TFLite {label} vs the reference kernel's definition: {d['elements']} elements "
            f"differ, at most {d['max_lsb']} LSB"
        )
    return "\n".join(lines)
