"""``tconv bench --model MODEL``: a whole Keras model's exported C against Keras and TFLite.

In one run: the model's C (:func:`tconv.cexport.export_c`, built with ``-O3 -march=native
-ffp-contract=fast -fopenmp``, timed by its own harness, ``OMP_NUM_THREADS`` 1 and 2 with
``OMP_WAIT_POLICY=passive``), Keras on
TensorFlow (a ``tf.function`` of the model, intra-op threads 1 and 2) and the TFLite float32
interpreter (XNNPACK on, ``num_threads`` 1 and 2), each peer in a child process
(:mod:`tconv.isolated`).  Each time is the median over ``repeats`` rounds of the time per
call of a batch.  Also the memory: tconv's arena (one item) and the TFLite interpreter's
tensors' memory (:func:`_tflite_memory`; XNNPACK keeps its own workspace besides).  Every
peer's output is checked against tconv's NumPy model.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .isolated import run_each

FLAGS = ("-O3", "-std=c99", "-march=native", "-ffp-contract=fast", "-fopenmp")
THREADS = (1, 2)


def _median_seconds(call: Callable[[], Any], repeats: int, budget: float = 0.05) -> float:
    """Median over ``repeats`` rounds of the seconds per call (each round ~``budget`` s)."""
    call()
    t0 = time.perf_counter()
    call()
    once = max(time.perf_counter() - t0, 1e-6)
    per_round = max(1, int(budget / once))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(per_round):
            call()
        times.append((time.perf_counter() - t0) / per_round)
    return float(np.median(times))


def _c_times(out: Path, name: str, repeats: int) -> dict[int, float]:
    from .kernels.build import compile_c

    compile_c(
        [f"test_{name}.c", f"{name}.c", f"{name}_weights.c"], f"test_{name}", cflags=FLAGS, cwd=out
    )
    times = {}
    for threads in THREADS:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_PROC_BIND": "false"}
        done = subprocess.run(
            [str(out / f"test_{name}"), "--bench", str(max(repeats, 5) * 10)],
            cwd=out,
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        found = re.search(r"median (\S+) ms", done.stdout)
        if done.returncode != 0 or found is None:
            raise RuntimeError(f"the model's C failed its test: {done.stdout}{done.stderr}")
        times[threads] = float(found.group(1)) * 1e-3
    return times


def _peer_call(item: dict[str, Any]) -> dict[str, Any]:
    """In a child: Keras (TensorFlow) and TFLite on ``item['threads']`` threads."""
    threads = int(item["threads"])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    model = keras.saving.load_model(item["path"], compile=False)
    with np.load(item["inputs"]) as data:
        xs = [data[f"arr_{i}"] for i in range(len(data.files))]
    args = xs if len(xs) > 1 else xs[0]
    fn = tf.function(lambda v: model(v, training=False))
    result: dict[str, Any] = {}
    y = fn(args)
    ys = [np.asarray(v) for v in (y if isinstance(y, (list, tuple)) else [y])]
    result["keras_seconds"] = _median_seconds(lambda: fn(args), item["repeats"])
    np.savez(Path(item["folder"]) / f"keras{threads}.npz", *ys)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    flat = converter.convert()
    interp = tf.lite.Interpreter(model_content=flat, num_threads=threads)
    interp.allocate_tensors()
    ins = interp.get_input_details()
    outs = interp.get_output_details()
    order = _tflite_order(ins, xs)
    for d, x in zip(ins, order, strict=True):
        if tuple(d["shape"]) != x.shape:
            interp.resize_tensor_input(d["index"], x.shape)
    interp.allocate_tensors()

    def run() -> None:
        for d, x in zip(ins, order, strict=True):
            interp.set_tensor(d["index"], x)
        interp.invoke()

    run()
    np.savez(
        Path(item["folder"]) / f"tflite{threads}.npz",
        *[interp.get_tensor(d["index"]) for d in outs],
    )
    result["tflite_seconds"] = _median_seconds(run, item["repeats"])
    memory = _tflite_memory(tf, flat, order)
    result["tflite_activation_bytes"] = memory["activations"]
    result["tflite_total_bytes"] = memory["total"]
    result["tflite_outputs"] = [list(map(int, d["shape"])) for d in outs]
    return result


def _tflite_order(details: list[dict[str, Any]], xs: list[np.ndarray]) -> list[np.ndarray]:
    """The inputs in the interpreter's order (matched by item shape, then by position)."""
    left = list(xs)
    order = []
    for d in details:
        shape = tuple(int(v) for v in d["shape"][1:])
        match = next((x for x in left if x.shape[1:] == shape), left[0])
        left = [x for x in left if x is not match]
        order.append(match)
    return order


def _union(ranges: list[tuple[int, int]]) -> int:
    """Bytes covered by the address ranges ``[lo, hi)`` (overlaps counted once)."""
    total, end = 0, None
    for lo, hi in sorted(ranges):
        if end is None or lo >= end:
            total, end = total + hi - lo, hi
        elif hi > end:
            total, end = total + hi - end, hi
    return total


def _tflite_memory(tf: Any, flat: bytes, xs: list[np.ndarray]) -> dict[str, int]:
    """The memory of the TFLite interpreter's tensors after one invoke (default delegates
    off), outside the model's flatbuffer (where the constants stay), as the union of their
    address ranges (tensors that share arena bytes count once): ``activations`` — the named
    tensors (inputs, outputs, intermediates) — and ``total`` — every tensor, with the unnamed
    scratch (im2col) and the weights TFLite repacks at allocation."""
    kind = tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = tf.lite.Interpreter(model_content=flat, experimental_op_resolver_type=kind)
    ins = interp.get_input_details()
    for d, x in zip(ins, xs, strict=True):
        if tuple(d["shape"]) != x.shape:
            interp.resize_tensor_input(d["index"], x.shape)
    interp.allocate_tensors()
    for d, x in zip(ins, xs, strict=True):
        interp.set_tensor(d["index"], x)
    interp.invoke()  # dynamic tensors (transposed convolutions' outputs) exist only now
    constants = np.frombuffer(flat, np.uint8).ctypes.data
    named, every = [], []
    for detail in interp.get_tensor_details():
        try:
            view = interp.tensor(detail["index"])()
        except ValueError:  # tensors without data
            continue
        if not isinstance(view, np.ndarray) or view.nbytes == 0:
            continue
        start = view.ctypes.data
        if constants <= start < constants + len(flat):
            continue
        every.append((start, start + view.nbytes))
        if detail["name"]:
            named.append(every[-1])
    return {"activations": _union(named), "total": _union(every)}


SUITE = {"dcgan": {"width": 32}, "unet": {"width": 16, "size": 64}}
"""The architectures of :mod:`tconv.keras.zoo` that ``tconv bench --model NAME`` builds, at
benchmark sizes: the DCGAN generator 4x4x256 -> 32x32x3, the U-Net on 64x64x3."""


def _build_zoo(item: dict[str, Any]) -> str:
    """In a child: build a suite architecture with Keras and save it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import keras

    from .keras import zoo

    model = zoo.build(item["name"], keras, seed=item["seed"], **SUITE[item["name"]])
    model.save(item["path"])
    return str(item["path"])


def bench_model(path: str, batch: int = 1, repeats: int = 9, seed: int = 0) -> dict[str, Any]:
    """Time the model of ``path`` (see the module docstring), or of a suite architecture
    (``"dcgan"``, ``"unet"``: built with Keras first, see :data:`SUITE`); returns a JSON-ready
    report."""
    if path in SUITE and not os.path.exists(path):
        with tempfile.TemporaryDirectory(prefix="tconv-zoo-") as folder:
            saved = str(Path(folder) / f"{path}.keras")
            (outcome,) = run_each(
                "tconv.model_bench:_build_zoo",
                [{"name": path, "seed": seed, "path": saved}],
                timeout=600,
            )
            if outcome["status"] != "ok":
                raise RuntimeError(f"Keras could not build {path}: {outcome}")
            return bench_model(saved, batch, repeats, seed)
    from .cexport import export_c
    from .cexport.model import build_export
    from .graph import executor
    from .graph.planner import describe
    from .keras import load_model

    model = load_model(path)
    rng = np.random.default_rng(seed)
    xs = [
        rng.uniform(-1, 1, (batch, *model.graph.node(n).shape)).astype(np.float32)
        for n in model.graph.inputs
    ]
    expected = executor.run(model.graph, xs)
    report: dict[str, Any] = {"model": str(path), "name": model.name, "batch": batch}
    plan = describe(build_export(model.graph, "model").plan)
    io_bytes = (
        4
        * batch
        * sum(model.graph.node(n).size for n in [*model.graph.inputs, *model.graph.outputs])
    )
    report["memory"] = {**plan, "inputs_outputs_bytes": io_bytes}
    shapes = {n.name: n.shape for n in model.graph}
    from .graph import macs

    report["macs_per_item"] = sum(macs(n, shapes) for n in model.graph)
    with tempfile.TemporaryDirectory(prefix="tconv-bench-") as folder:
        out = Path(folder) / "c"
        export_c(model, out, name="model", test_input=xs)
        report["c_seconds"] = {str(k): v for k, v in _c_times(out, "model", repeats).items()}
        np.savez(Path(folder) / "x.npz", *xs)
        peers: dict[str, Any] = {}
        for threads in THREADS:
            item = {
                "threads": threads,
                "path": str(path),
                "inputs": str(Path(folder) / "x.npz"),
                "folder": folder,
                "repeats": repeats,
            }
            (outcome,) = run_each("tconv.model_bench:_peer_call", [item], timeout=1800)
            if outcome["status"] != "ok":
                peers[str(threads)] = {"error": outcome}
                continue
            found = outcome["value"]
            for peer in ("keras", "tflite"):
                with np.load(Path(folder) / f"{peer}{threads}.npz") as data:
                    got = [data[f"arr_{i}"] for i in range(len(data.files))]
                found[f"{peer}_max_abs_vs_tconv"] = _worst(got, expected, model.graph.outputs)
            peers[str(threads)] = found
        report["peers"] = peers
    return report


def _worst(got: Sequence[np.ndarray], expected: dict[str, np.ndarray], names: list[str]) -> float:
    """Max |peer - tconv| over the outputs (TFLite may order them differently: by shape)."""
    worst = 0.0
    pool = list(got)
    for name in names:
        ref = expected[name]
        match = next((g for g in pool if g.shape == ref.shape), None)
        if match is None:
            return float("inf")
        pool = [g for g in pool if g is not match]
        worst = max(worst, float(np.max(np.abs(match - ref), initial=0.0)))
    return worst


def table(report: dict[str, Any]) -> str:
    """The report as text: ms per batch and the ratio of each peer's time to the C's."""
    lines = [
        f"model {report['name']} ({report['model']}), batch {report['batch']}, "
        f"{report['macs_per_item']:,} multiply-adds per item"
    ]
    c = report["c_seconds"]
    lines.append(
        f"{'threads':>7}  {'tconv C ms':>10}  {'Keras ms':>9}  {'TFLite ms':>9}  "
        f"{'C vs Keras':>10}  {'C vs TFLite':>11}  max|Keras-tconv|  max|TFLite-tconv|"
    )
    for threads in THREADS:
        p = report["peers"].get(str(threads), {})
        t = c[str(threads)]
        if "error" in p:
            lines.append(f"{threads:>7}  {1e3 * t:>10.3f}  peers failed: {p['error']}")
            continue
        k, f = p["keras_seconds"], p["tflite_seconds"]
        lines.append(
            f"{threads:>7}  {1e3 * t:>10.3f}  {1e3 * k:>9.3f}  {1e3 * f:>9.3f}  {k / t:>9.2f}x  "
            f"{f / t:>10.2f}x  {p['keras_max_abs_vs_tconv']:>16.2e}  "
            f"{p['tflite_max_abs_vs_tconv']:>17.2e}"
        )
    m = report["memory"]
    peer: dict[str, Any] = next(
        (p for p in report["peers"].values() if "tflite_total_bytes" in p), {}
    )
    lines.append(
        f"memory: tconv arena {m['arena_bytes']:,} B per item (lower bound "
        f"{m['lower_bound_bytes']:,} B) + the caller's inputs/outputs "
        f"{m['inputs_outputs_bytes']:,} B = {m['arena_bytes'] + m['inputs_outputs_bytes']:,} B; "
        f"TFLite tensors {peer.get('tflite_activation_bytes', 0):,} B (inputs, outputs, "
        f"intermediates), {peer.get('tflite_total_bytes', 0):,} B with its scratch and "
        "repacked weights"
    )
    return "\n".join(lines)
