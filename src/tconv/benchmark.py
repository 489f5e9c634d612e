"""The benchmark behind ``tconv bench``: tconv's paths against the frameworks and the GEMM bound.

Every case is a Keras ``Conv{1,2,3}DTranspose`` (float32, ``channels_last``, with bias) built by
:mod:`tconv.keras`.  The useful work of a transposed convolution is one GEMM's worth of
multiply-adds, ``2*N*|in|*C_in*C_out*|k|/groups`` FLOPs (:meth:`tconv.geometry.Geometry.macs`),
so the bound is one NumPy matmul ``[N*|in|, C_in] @ [C_in, |k|*C_out]`` with one BLAS thread and
with all of them.  All paths of a case run in one process, after a warm-up call each, in
interleaved rounds (the order rotates every round); the time of a path is its median.  Every
path's output is compared with tconv's fast result (and that with the reference where it runs).

Peers (TensorFlow/Keras, PyTorch, ONNX Runtime, JAX) are imported here only, lazily, and a peer
that is not installed is reported as missing.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import keras as tkeras
from . import ops
from .geometry import Geometry
from .layer import TORCH, TransposedConv
from .peers import KerasCall, keras_outputs
from .progress import progress


@dataclass(frozen=True)
class Case:
    """One benchmark case: a Keras transposed convolution on an ``(N, *spatial, C_in)`` input."""

    name: str
    batch: int
    spatial: tuple[int, ...]
    in_channels: int
    filters: int
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    padding: str = "same"

    @property
    def spec(self) -> str:
        """The ``--case`` text of this case."""
        dims = "x".join(map(str, (self.batch, *self.spatial, self.in_channels)))
        kernel = "x".join(map(str, self.kernel))
        strides = "x".join(map(str, self.strides))
        return f"{dims}:{self.filters}:{kernel}:{strides}:{self.padding}"

    def layer(self, rng: np.random.Generator) -> TransposedConv:
        """The layer with random weights and bias (canonical = Keras kernel layout)."""
        kernel = rng.standard_normal((*self.kernel, self.filters, self.in_channels))
        kernel *= 1 / np.sqrt(self.in_channels * np.prod(self.kernel))
        rank = len(self.spatial)
        rule = tkeras.crop_rule(self.kernel, self.strides, (1,) * rank, self.padding, None)
        return TransposedConv(
            kernel.astype(np.float32),
            rng.standard_normal(self.filters).astype(np.float32),
            self.strides,
            (1,) * rank,
            rule,
        )

    def input(self, rng: np.random.Generator) -> np.ndarray:
        shape = (self.batch, *self.spatial, self.in_channels)
        return rng.standard_normal(shape, dtype=np.float32)


def _case(name: str, n: int, spatial: tuple[int, ...], cin: int, cout: int, k: int, s: int) -> Case:
    rank = len(spatial)
    return Case(name, n, spatial, cin, cout, (k,) * rank, (s,) * rank)


SUITE: tuple[Case, ...] = (
    _case("seed_k3", 1, (8, 8), 1024, 512, 3, 2),
    _case("seed_k4", 1, (8, 8), 1024, 512, 4, 2),
    _case("seed_k5_b8", 8, (8, 8), 1024, 512, 5, 2),
    _case("unet_k3", 1, (64, 64), 128, 64, 3, 2),
    _case("dcgan_k4_b16", 16, (16, 16), 256, 128, 4, 2),
    _case("audio1d_k16s8", 1, (2048,), 256, 128, 16, 8),
    _case("vol3d_k3", 1, (8, 8, 8), 64, 32, 3, 2),
)
"""The fixed suite (issue 5)."""

QUICK: tuple[Case, ...] = (
    _case("quick_1d", 2, (9,), 6, 4, 5, 3),
    _case("quick_2d", 1, (5, 4), 8, 6, 3, 2),
    _case("quick_3d", 1, (3, 3, 2), 4, 3, 2, 2),
    Case("quick_valid", 1, (4, 3), 5, 4, (2, 3), (3, 1), "valid"),
)
"""Tiny cases for ``--quick`` (the CI smoke run): every path runs, nothing is timed seriously."""

CASE_SYNTAX = "NxD1[xD2[xD3]]xCIN:FILTERS:K[xK..]:S[xS..][:same|valid]"

_CASE_RE = re.compile(r"^(?:(\w+)=)?([\dx]+):(\d+):([\dx]+):([\dx]+)(?::(same|valid))?$")


def parse_case(text: str) -> Case:
    """Parse ``[name=]NxD1[xD2[xD3]]xCIN:FILTERS:K:S[:same|valid]``.

    ``K`` and ``S`` are one int for every axis or one per axis joined by ``x``; e.g.
    ``1x8x8x1024:512:3:2`` is the seed layer, ``big=4x32x32x64:32:4x2:2:valid`` a named one.
    """
    match = _CASE_RE.match(text.strip())
    if not match:
        raise ValueError(f"--case {text!r} does not match {CASE_SYNTAX}")
    name, dims, filters, kernel, strides, padding = match.groups()
    shape = [int(v) for v in dims.split("x")]
    if not 3 <= len(shape) <= 5:
        raise ValueError(
            f"--case {text!r}: the input shape needs N, 1 to 3 spatial sizes and C_in, got {shape}"
        )
    rank = len(shape) - 2

    def per_axis(value: str, what: str) -> tuple[int, ...]:
        items = tuple(int(v) for v in value.split("x"))
        if len(items) == 1:
            items *= rank
        if len(items) != rank or min(items) < 1:
            raise ValueError(
                f"--case {text!r}: {what} must be one positive int or {rank} joined by 'x', "
                f"got {value!r}"
            )
        return items

    if min(shape) < 1 or int(filters) < 1:
        raise ValueError(f"--case {text!r}: sizes and channels must be positive")
    case = Case(
        name or "case",
        shape[0],
        tuple(shape[1:-1]),
        shape[-1],
        int(filters),
        per_axis(kernel, "the kernel size"),
        per_axis(strides, "the strides"),
        padding or "same",
    )
    if not name:
        case = dataclasses.replace(case, name=case.spec.replace(":", "_"))
    return case


COOL_DOWN = 0.2
"""Seconds of sleep before every timed round (see :func:`run_case`)."""

ROUND_SECONDS = 0.05
"""A timed round runs a path's call back to back about this long (at least once, at most
:data:`MAX_CALLS` times) and counts the mean: the steady state of a layer called in a loop."""

MAX_CALLS = 100

SIZING_SECONDS = 1.0
"""A warm-up call quicker than this is followed by a second call that sizes the rounds (the
warm-up may have compiled or traced: JAX's jit, tconv's native build)."""

WARM_SECONDS = 0.03
"""Before each round a path quicker than a round runs untimed this long (at least once): after
the cool-down the machine needs it (seed_k3's fast path, 6.5 ms a call in a loop, took 8, 7, 12
and 12 ms for its first four calls after a 0.2 s pause on the 2-vCPU VM)."""

SLOW_PATH_SECONDS = 5.0
"""A path whose call is slow gets only about this many seconds of timed rounds."""


class Missing(Exception):
    """A path that cannot run here (peer not installed, no compiler): listed, never dropped."""


@dataclass
class Path:
    """A timed callable and how to read its result as canonical ``(N, *out, C_out)``."""

    name: str
    kind: str  # "tconv", "c", "peer" or "bound"
    run: Callable[[], Any]
    canonical: Callable[[Any], np.ndarray] | None = None
    threads: str = "all"
    settle: Callable[[float], str] | None = None  # after the warm-up (its seconds): a note


@dataclass
class Result:
    path: str
    kind: str
    status: str  # "ok", "missing", "error", "wrong"
    threads: str = ""
    ms: float | None = None
    gflops: float | None = None
    spread: float | None = None  # (slowest - fastest) / median of the timed rounds
    calls: int | None = None  # back-to-back calls per timed round
    vs_best_peer: float | None = None
    of_bound: float | None = None  # fastest bound (1 thread or all) / this
    of_bound_1t: float | None = None  # the 1-thread bound / this
    max_error: float | None = None
    error_bound: float | None = None
    note: str = ""


@dataclass
class CaseReport:
    case: Case
    geometry: Geometry
    flops: int
    fast_extra_bytes: int
    output_bytes: int
    gemm_bytes: int
    results: list[Result] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "case": dataclasses.asdict(self.case),
            "spec": self.case.spec,
            "output_shape": [self.case.batch, *self.geometry.out_shape, self.case.filters],
            "flops": self.flops,
            "memory": {
                "fast_extra_bytes": self.fast_extra_bytes,
                "output_bytes": self.output_bytes,
                "gemm_result_bytes": self.gemm_bytes,
            },
            "results": [dataclasses.asdict(r) for r in self.results],
        }


# --- the paths -----------------------------------------------------------------------------


def _tconv_paths(layer: TransposedConv, x: np.ndarray, with_reference: bool) -> list[Path]:
    paths = [
        Path("tconv fast (NumPy)", "tconv", lambda: layer(x, "fast")),
        Path(
            "tconv default (method=auto)", "tconv", lambda: layer(x), settle=_default_note(layer, x)
        ),
    ]
    if with_reference:
        paths.append(Path("tconv reference", "tconv", lambda: layer(x, "reference")))
    return paths


def _default_note(layer: TransposedConv, x: np.ndarray) -> Callable[[float], str]:
    """After the default's first call (its seconds): how long it took and, after a second call
    and the background build of the C it starts, which path the calls take."""

    def note(first: float) -> str:
        layer(x)  # the second call, which starts the build of the C
        geometry = layer.geometry(layer.spatial_shape(x.shape))
        xc = layer.to_canonical(x)
        path = ops.auto_path(xc, layer.kernel, geometry, layer.bias, wait=True)
        if path == "native":
            path = f"native C [{_isa(ops.NATIVE_FLAGS)}]"
        return f"-> {path}; first call {first * 1e3:.0f} ms"

    return note


def _isa(flags: Sequence[str]) -> str:
    """The micro-kernel branch C built with ``flags`` takes (``?`` when that cannot be told)."""
    from .kernels.build import target_isa

    try:
        return target_isa(flags)
    except RuntimeError:
        return "?"


def _native(layer: TransposedConv, x: np.ndarray) -> Path:
    """``method="native"``; without a compiler it would silently be the NumPy path: missing."""
    from .cexport import find_compiler

    try:
        find_compiler()
    except RuntimeError as err:
        raise Missing(f"falls back to NumPy here: {err}") from err
    return Path(
        f"tconv native (C via ctypes) [{_isa(ops.NATIVE_FLAGS)}]",
        "tconv",
        lambda: layer(x, "native"),
    )


def _bias(layer: TransposedConv) -> np.ndarray:
    """The bias as a writable array (a layer's own is read-only; torch wants to own it)."""
    return np.zeros(layer.filters, np.float32) if layer.bias is None else layer.bias.copy()


def _peer_pads(geometry: Geometry) -> list[tuple[int, int, int]]:
    """Per axis ``(pad_begin, pad_end, output_padding)`` with non-negative pads: the crops."""
    return [(a.crop_start, max(a.crop_end, 0), max(-a.crop_end, 0)) for a in geometry.axes]


_KERAS_TRIED: dict[Case, str | None] = {}
"""Case -> why Keras cannot run it in this process (None: it can), from :func:`try_keras`."""


def try_keras(cases: Sequence[Case], seed: int = 0) -> None:
    """Run every case's Keras layer once in a child process (:mod:`tconv.peers`), all in one,
    before Keras is timed in this one: TensorFlow's oneDNN kernels abort the process on some
    geometries on some CPUs, and the benchmark must report that, not die of it."""
    todo = [c for c in cases if c not in _KERAS_TRIED]
    if not todo or importlib.util.find_spec("keras") is None:
        return
    calls = []
    for case in todo:
        rng = np.random.default_rng(seed)
        layer = case.layer(rng)
        config = {"filters": case.filters, "kernel_size": case.kernel, "strides": case.strides}
        calls.append(
            KerasCall(
                f"Conv{len(case.spatial)}DTranspose",
                {**config, "padding": case.padding},
                [layer.kernel, _bias(layer)],
                case.input(rng),
            )
        )
    # the probe runs the kernels TensorFlow picks for this CPU, as the timed call will
    for case, outcome in zip(todo, keras_outputs(calls, eigen=False), strict=True):
        _KERAS_TRIED[case] = outcome if isinstance(outcome, str) else None


def _keras(layer: TransposedConv, case: Case, x: np.ndarray) -> Path:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import keras
        import tensorflow as tf
    except ImportError as err:
        raise Missing(f"keras/tensorflow not installed ({err})") from err
    try_keras([case])
    if _KERAS_TRIED.get(case):
        raise Missing(f"not run in this process: in a child process, {_KERAS_TRIED[case]}")
    if keras.backend.backend() != "tensorflow":
        raise Missing(f"keras runs on {keras.backend.backend()!r}, not tensorflow")
    cls = getattr(keras.layers, f"Conv{len(case.spatial)}DTranspose")
    peer = cls(case.filters, case.kernel, strides=case.strides, padding=case.padding)
    peer.build((None, *case.spatial, case.in_channels))
    peer.set_weights([layer.kernel, _bias(layer)])
    call = tf.function(lambda t: peer(t))
    xt = tf.constant(x)
    return Path(
        f"Keras {keras.__version__} (TF {tf.__version__})",
        "peer",
        lambda: call(xt),
        lambda out: out.numpy(),
    )


def _torch(layer: TransposedConv, geometry: Geometry, x: np.ndarray) -> Path:
    try:
        import torch
    except ImportError as err:
        raise Missing(f"torch not installed ({err})") from err
    conv = getattr(torch.nn.functional, f"conv_transpose{geometry.rank}d")
    pads = _peer_pads(geometry)
    if any(op >= a.stride for (_, _, op), a in zip(pads, geometry.axes, strict=True)):
        raise Missing("output_padding >= stride is not expressible in PyTorch")
    # PyTorch pads symmetrically: pad by the smaller crop, slice the rest off.
    padding = [min(b, e) for b, e, _ in pads]
    cut = tuple(
        slice(b - p, (b - p) + a.out)
        for (b, _, _), p, a in zip(pads, padding, geometry.axes, strict=True)
    )
    xt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))
    wt = torch.from_numpy(np.array(TORCH.from_canonical(layer.kernel, 1), order="C"))
    bt = torch.from_numpy(_bias(layer))
    kwargs = {"stride": layer.strides, "padding": padding, "output_padding": [p[2] for p in pads]}

    def run() -> Any:
        with torch.no_grad():
            return conv(xt, wt, bt, **kwargs)[(slice(None), slice(None)) + cut]

    return Path(
        f"PyTorch {torch.__version__.split('+')[0]}",
        "peer",
        run,
        lambda out: np.moveaxis(out.numpy(), 1, -1),
    )


def _onnxruntime(layer: TransposedConv, geometry: Geometry, x: np.ndarray) -> Path:
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as err:
        raise Missing(f"onnx/onnxruntime not installed ({err})") from err
    pads = _peer_pads(geometry)
    xc = np.ascontiguousarray(np.moveaxis(x, -1, 1))
    out_shape = [x.shape[0], geometry.out_channels, *geometry.out_shape]
    node = helper.make_node(
        "ConvTranspose",
        ["x", "w", "b"],
        ["y"],
        kernel_shape=list(layer.kernel_size),
        strides=list(layer.strides),
        pads=[p[0] for p in pads] + [p[1] for p in pads],
        output_padding=[p[2] for p in pads],
    )
    graph = helper.make_graph(
        [node],
        "tconv_bench",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(xc.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [
            numpy_helper.from_array(TORCH.from_canonical(layer.kernel, 1), "w"),
            numpy_helper.from_array(_bias(layer), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return Path(
        f"ONNX Runtime {ort.__version__} (onnx {onnx.__version__})",
        "peer",
        lambda: session.run(None, {"x": xc})[0],
        lambda out: np.moveaxis(out, 1, -1),
    )


def _jax(layer: TransposedConv, geometry: Geometry, x: np.ndarray) -> Path:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as err:
        raise Missing(f"jax not installed ({err})") from err
    spatial = "DHW"[-geometry.rank :]
    numbers = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
    # The transposed kernel (*k, C_out, C_in) is the kernel of the forward conv it transposes;
    # jax pads the zero-inserted input by span - 1 - crop on each side.
    padding = [(a.span - 1 - a.crop_start, a.span - 1 - a.crop_end) for a in geometry.axes]
    kernel, bias = jnp.asarray(layer.kernel), jnp.asarray(_bias(layer))

    @jax.jit
    def call(t: Any) -> Any:
        y = jax.lax.conv_transpose(
            t, kernel, layer.strides, padding, dimension_numbers=numbers, transpose_kernel=True
        )
        return y + bias

    xj = jax.device_put(x)
    return Path(
        f"JAX {jax.__version__}",
        "peer",
        lambda: call(xj).block_until_ready(),
        lambda out: np.asarray(out),
    )


C_FAST_FLAGS = ("-O3", "-march=native", "-ffp-contract=fast")
C_PLAIN_FLAGS = ("-O2",)


def _c_paths(
    layer: TransposedConv, x: np.ndarray, builds: Sequence[tuple[Any, ...]] | None = None
) -> list[Path]:
    """tconv's exported C: fast at 1 thread and with OpenMP on all cores, the reference style,
    and the plain scatter loops at ``-O2`` (what a first hand-written port looks like); or
    ``builds``, ``(name, style, flags, openmp, threads)`` each.  Every name ends with the
    instruction set of its build (``[avx512]``, ``[avx2]``, ``[neon]``, ``[portable]``)."""
    try:
        from .cexport import build_shared, find_compiler

        find_compiler()
    except (ImportError, RuntimeError) as err:
        raise Missing(f"no C export or compiler: {err}") from err
    cores = os.cpu_count() or 1
    builds = builds or [
        ("C fast -O3 -march=native", "fast", C_FAST_FLAGS, False, "1"),
        ("C fast -O3 -march=native", "fast", C_FAST_FLAGS, True, str(cores)),
        ("C reference -O3 -march=native", "reference", C_FAST_FLAGS, False, "1"),
        ("C scatter loops -O2", "scatter", C_PLAIN_FLAGS, False, "1"),
    ]
    paths = []
    for name, style, flags, openmp, threads in builds:
        lib = build_shared(
            layer, x.shape[1:], style=style, cflags=flags, openmp=openmp, cache_dir=ops.cache_dir()
        )
        if openmp:
            lib.set_threads(cores)
        name = f"{name} [{_isa(flags)}]"
        paths.append(Path(name, "c", functools.partial(lib, x), threads=threads))
    return paths


def _bounds(geometry: Geometry, batch: int, rng: np.random.Generator) -> list[Path]:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError as err:
        raise Missing(f"threadpoolctl not installed ({err})") from err
    taps = int(np.prod([a.kernel for a in geometry.axes]))
    rows = batch * int(np.prod(geometry.in_shape))
    a = rng.standard_normal((rows, geometry.in_channels), dtype=np.float32)
    b = rng.standard_normal((geometry.in_channels, taps * geometry.out_channels), dtype=np.float32)
    blas = ThreadpoolController().select(user_api="blas").lib_controllers

    def one_thread() -> np.ndarray:
        threads = [lib.num_threads for lib in blas]
        for lib in blas:
            lib.set_num_threads(1)
        try:
            return a @ b
        finally:
            for lib, n in zip(blas, threads, strict=True):
                lib.set_num_threads(n)

    return [
        Path("bound: NumPy matmul", "bound", one_thread, threads="1"),
        Path("bound: NumPy matmul", "bound", lambda: a @ b),
    ]


def _keras_peer(layer: TransposedConv, geometry: Geometry, case: Case, x: np.ndarray) -> Path:
    return _keras(layer, case, x)


PEERS: tuple[tuple[str, Callable[..., Path]], ...] = (
    ("Keras (TensorFlow)", _keras_peer),
    ("PyTorch", lambda layer, geometry, case, x: _torch(layer, geometry, x)),
    ("ONNX Runtime", lambda layer, geometry, case, x: _onnxruntime(layer, geometry, x)),
    ("JAX", lambda layer, geometry, case, x: _jax(layer, geometry, x)),
)


# --- running -------------------------------------------------------------------------------


def _reference_is_cheap(geometry: Geometry, batch: int) -> bool:
    """The reference makes a small matmul per (output position, tap): keep it to small cases."""
    calls = int(np.prod(geometry.out_shape)) * int(
        np.prod([max(1, -(-a.kernel // a.stride)) for a in geometry.axes])
    )
    return calls <= 5000 and geometry.macs(batch) <= 2 * 10**8


def _fast_extra_bytes(layer: TransposedConv, x: np.ndarray) -> tuple[int, int]:
    """Peak bytes the fast path allocates beyond its output, and the output's bytes (after a
    first call, which also builds once-per-process state)."""
    layer(x, "fast")
    tracemalloc.start()
    try:
        y = layer(x, "fast")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - y.nbytes, y.nbytes


def run_case(
    case: Case, repeats: int, seed: int = 0, label: str = "", cool_down: float = COOL_DOWN
) -> CaseReport:
    """Build every path of ``case``, check it against tconv's fast result, and time it.

    After a warm-up call (whose result is checked) and, when that took less than
    :data:`SIZING_SECONDS`, one more call to size the rounds, every round times
    :data:`ROUND_SECONDS` of back-to-back calls of each path in turn (the order rotates) and
    keeps the mean per call; the median over the rounds is reported: the steady state of a
    layer called in a loop.  Before every round the benchmark sleeps ``cool_down`` seconds, so
    that the threads of the path before (OpenBLAS spins for about 0.1 s after a threaded call,
    other pools too) are parked and do not steal cores from this one; then a path quicker than
    a round runs untimed for :data:`WARM_SECONDS`, which wakes its threads (on a virtual
    machine a vCPU that went idle can take milliseconds to wake: a threaded 0.6 ms call
    measured 7.7 ms right after a 20 ms pause)."""
    rng = np.random.default_rng(seed)
    layer = case.layer(rng)
    x = case.input(rng)
    geometry = layer.geometry(case.spatial)
    taps = int(np.prod(case.kernel))
    extra, out_bytes = _fast_extra_bytes(layer, x)
    report = CaseReport(
        case,
        geometry,
        2 * geometry.macs(case.batch),
        extra,
        out_bytes,
        4 * case.batch * int(np.prod(case.spatial)) * taps * case.filters,
    )
    paths: list[Path] = _tconv_paths(layer, x, _reference_is_cheap(geometry, case.batch))
    try:
        paths.append(_native(layer, x))
    except Missing as why:
        report.results.append(
            Result("tconv native (C via ctypes)", "tconv", "missing", note=str(why))
        )
    for name, make in PEERS:
        try:
            paths.append(make(layer, geometry, case, x))
        except Missing as why:
            report.results.append(Result(name, "peer", "missing", note=str(why)))
    try:
        paths += _c_paths(layer, x)
    except Missing as why:
        report.results.append(Result("C export", "c", "missing", note=str(why)))
    try:
        paths += _bounds(geometry, case.batch, rng)
    except Missing as why:
        report.results.append(Result("bound: NumPy matmul", "bound", "missing", note=str(why)))

    expected = layer(x, "fast").astype(np.float64)
    tolerance = 1e-5 + (case.in_channels * taps + 1) * float(np.finfo(np.float32).eps)
    failed, measured = measure_paths(
        paths, expected, tolerance, report.flops, repeats, label, cool_down
    )
    report.results = measured + failed + report.results
    if AVX2_BUILD and "avx512f" in _simd():  # the AVX2 target too, in its own process
        report.results += avx2_results(case, repeats, seed, cool_down)
    return report


def avx2_results(
    case: Case, repeats: int, seed: int = 0, cool_down: float = COOL_DOWN
) -> list[Result]:
    """The AVX2 build's results for ``case``, measured in a child with
    ``OPENBLAS_CORETYPE=Haswell`` (``python -m tconv.bench_targets``; an ``"error"`` result
    saying why when the child fails)."""
    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell")
    env.pop("OPENBLAS_L2_SIZE", None)
    request = {"case": f"{case.name}={case.spec}", "repeats": repeats, "seed": seed}
    request["cool_down"] = cool_down
    cmd = [sys.executable, "-m", "tconv.bench_targets", json.dumps(request)]
    try:
        done = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=CHILD_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        why = f"the AVX2 child took more than {CHILD_SECONDS} s"
        return [Result(AVX2_NAME, "c", "error", note=why)]
    try:
        rows = json.loads(done.stdout.strip().splitlines()[-1])
        return [Result(**row) for row in rows]
    except (ValueError, IndexError, TypeError):
        tail = (done.stderr.strip() or done.stdout.strip())[-500:]
        why = f"the AVX2 child failed (exit {done.returncode}): {tail}"
        return [Result(AVX2_NAME, "c", "error", note=why)]


def measure_paths(
    paths: Sequence[Path],
    expected: np.ndarray,
    tolerance: float,
    flops: int,
    repeats: int,
    label: str = "",
    cool_down: float = COOL_DOWN,
) -> tuple[list[Result], list[Result]]:
    """Check every path against ``expected`` (canonical float64) and time it as
    :func:`run_case` says (``flops`` per call): ``(paths that failed, the measured ones with
    their ratios)``."""
    scale = max(1.0, float(np.max(np.abs(expected), initial=0)))
    failed: list[Result] = []
    live: list[tuple[Path, Result, float]] = []
    for path in paths:
        result = Result(path.name, path.kind, "ok", threads=path.threads)
        try:
            out, warm_up = _timed(path.run)  # the warm-up call, whose result is checked
            if path.settle is not None:  # e.g. the default method's background build
                result.note = path.settle(warm_up)
        except Exception as err:  # a path that fails is reported, not hidden
            failed.append(dataclasses.replace(result, status="error", note=repr(err)))
            continue
        if path.kind != "bound":
            actual = path.canonical(out) if path.canonical else np.asarray(out)
            result.error_bound = tolerance
            if actual.shape != expected.shape:
                result.status = "wrong"
                result.note = f"shape {actual.shape} != {expected.shape}"
            else:
                result.max_error = float(np.max(np.abs(actual - expected), initial=0)) / scale
                if not result.max_error <= tolerance:
                    result.status = "wrong"
        live.append((path, result, warm_up))

    rounds, calls, quick = [], [], []
    for path, result, single in live:
        if single < SIZING_SECONDS:  # the warm-up may have compiled: time a second call
            _, single = _timed(path.run)
        rounds.append(max(1, min(repeats, int(SLOW_PATH_SECONDS / single))))
        calls.append(max(1, min(MAX_CALLS, int(ROUND_SECONDS / single))))
        quick.append(single < ROUND_SECONDS)
        result.calls = calls[-1]
        if rounds[-1] < repeats:
            result.note = "; ".join(filter(None, [result.note, f"{rounds[-1]} timed round(s)"]))
    times: dict[int, list[float]] = {i: [] for i in range(len(live))}
    for r in progress(range(repeats), repeats, label):
        for k in range(len(live)):  # the order rotates every round
            i = (k + r) % len(live)
            if len(times[i]) >= rounds[i]:
                continue
            time.sleep(cool_down)
            run = live[i][0].run
            if quick[i]:  # wake this path's threads (an idle vCPU can take milliseconds)
                start = time.perf_counter()
                run()
                while time.perf_counter() - start < WARM_SECONDS:
                    run()
            start = time.perf_counter()
            for _ in range(calls[i]):
                run()
            times[i].append((time.perf_counter() - start) / calls[i])
    for i, (_, result, _) in enumerate(live):
        result.ms = 1e3 * statistics.median(times[i]) if times[i] else None
        if result.ms:
            result.spread = 1e3 * (max(times[i]) - min(times[i])) / result.ms
        if result.ms:
            result.gflops = flops / result.ms / 1e6
    _ratios([r for _, r, _ in live])
    return failed, [r for _, r, _ in live]


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    """``call()``'s result and the seconds it took."""
    start = time.perf_counter()
    out = call()
    return out, time.perf_counter() - start


def _ratios(results: list[Result]) -> None:
    def best(kind: str, threads: str | None = None) -> float | None:
        ms = [
            r.ms
            for r in results
            if r.kind == kind and r.status == "ok" and r.ms and threads in (None, r.threads)
        ]
        return min(ms) if ms else None

    peer, bound, bound_1t = best("peer"), best("bound"), best("bound", "1")
    for r in results:
        if r.ms:
            r.vs_best_peer = peer / r.ms if peer else None
            r.of_bound = bound / r.ms if bound else None
            r.of_bound_1t = bound_1t / r.ms if bound_1t else None


@functools.cache
def _cpu() -> tuple[str, list[str]]:
    """The CPU's model name and which of AVX2 and AVX-512F it has (``/proc/cpuinfo``)."""
    cpu = platform.processor() or platform.machine()
    flags: list[str] = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = [x for x in line.split(":", 1)[1].split() if x in ("avx2", "avx512f")]
                    break
    except OSError:
        pass
    return cpu, flags


def _simd() -> list[str]:
    return _cpu()[1]


AVX2_NAME = "C fast -O3 -mavx2 -mfma"
CHILD_SECONDS = 600
"""An AVX2 child that takes longer is stopped and reported as an error."""

AVX2_BUILD = True
"""On an AVX-512 machine, :func:`run_case` also measures the AVX2 build of the fast C against
OpenBLAS pinned to Haswell, in a child process (:mod:`tconv.bench_targets`)."""


def machine() -> dict[str, Any]:
    """CPU, cores, BLAS (threadpoolctl) and the environment variables that steer OpenBLAS."""
    cpu, flags = _cpu()
    try:
        from threadpoolctl import threadpool_info

        blas = [
            {k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for i in threadpool_info()
            if i.get("user_api") == "blas"
        ]
    except ImportError:
        blas = []
    return {
        "cpu": cpu,
        "simd": flags,
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "blas": blas,
        "env": {
            k: os.environ.get(k)
            for k in (
                "OPENBLAS_CORETYPE",
                "OPENBLAS_L2_SIZE",
                "OMP_NUM_THREADS",
                "OPENBLAS_NUM_THREADS",
            )
        },
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def run(
    cases: Sequence[Case], repeats: int, seed: int = 0, cool_down: float = COOL_DOWN
) -> tuple[dict[str, Any], list[CaseReport]]:
    """Run ``cases``; returns the machine description (taken before any peer loads) and reports."""
    info = machine()
    info["load_before"] = _load()
    info["repeats"], info["cool_down_s"] = repeats, cool_down
    info["round_s"], info["max_calls"] = ROUND_SECONDS, MAX_CALLS
    info["warm_s"] = WARM_SECONDS
    if any(make is _keras_peer for _, make in PEERS):
        try_keras(cases, seed)
    reports = [
        run_case(case, repeats, seed, f"{case.name} ({i + 1}/{len(cases)})", cool_down)
        for i, case in enumerate(cases)
    ]
    info["load_after"] = _load()
    return info, reports


def _load() -> float | None:
    """The 1-minute load average: how busy the machine was (other processes skew timings)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


# --- output --------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def table(info: dict[str, Any], reports: Sequence[CaseReport]) -> str:
    """The results as a Markdown table, preceded by the machine."""
    blas = (
        "; ".join(
            f"{b['internal_api']} {b['version']} ({b['architecture']}, {b['num_threads']} threads)"
            for b in info["blas"]
        )
        or "unknown (threadpoolctl missing)"
    )
    env = ", ".join(f"{k}={v}" for k, v in info["env"].items() if v is not None) or "none set"
    lines = [
        f"CPU: {info['cpu']} ({info['cores']} cores; {', '.join(info['simd']) or 'no AVX2'}); "
        f"NumPy {info['numpy']}, BLAS: {blas}; BLAS env: {env}; {info['date']}; "
        f"load average (1 min) before/after: {_fmt(info.get('load_before'), '.2f')}/"
        f"{_fmt(info.get('load_after'), '.2f')}; {info.get('repeats')} round(s), "
        f"{info.get('cool_down_s')} s cool-down, then (for paths quicker than a round) "
        f"{WARM_SECONDS * 1e3:.0f} ms of untimed calls before every round; a round times "
        f"{ROUND_SECONDS * 1e3:.0f} ms of back-to-back calls (`calls`); ms = median over rounds "
        f"of the mean per call",
        "",
        "| case | path | threads | calls | ms | spread | GFLOP/s | × best peer | × bound | "
        "× 1-thread bound | max rel. error | note |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for rep in reports:
        for r in rep.results:
            err = "-" if r.max_error is None else f"{r.max_error:.1e}"
            note = r.note if r.status in ("ok", "missing") else f"**{r.status.upper()}** {r.note}"
            lines.append(
                f"| {rep.case.name} | {r.path} | {r.threads} | {_fmt(r.calls, 'd')} | "
                f"{_fmt(r.ms, '.2f')} | "
                f"{_pct(r.spread)} | {_fmt(r.gflops, '.1f')} | "
                f"{_fmt(r.vs_best_peer, '.2f')} | {_fmt(r.of_bound, '.2f')} | "
                f"{_fmt(r.of_bound_1t, '.2f')} | {err} | {note} |"
            )
    lines += ["", "Fast path extra memory (peak beyond its output, tracemalloc):", ""]
    for rep in reports:
        lines.append(
            f"- {rep.case.name}: {rep.fast_extra_bytes / 2**20:.2f} MiB "
            f"(output {rep.output_bytes / 2**20:.2f} MiB, same-FLOP GEMM result "
            f"{rep.gemm_bytes / 2**20:.2f} MiB)"
        )
    return "\n".join(lines)


def write_json(path: str, info: dict[str, Any], reports: Sequence[CaseReport]) -> None:
    with open(path, "w") as f:
        json.dump({"machine": info, "cases": [r.to_json() for r in reports]}, f, indent=1)


def plot(path: str, reports: Sequence[CaseReport]) -> None:
    """Grouped bars per case: GFLOP/s of every path that ran, log scale."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise RuntimeError("--plot needs matplotlib: pip install 'tconv[bench]'") from err
    names: list[str] = []
    for rep in reports:
        for r in rep.results:
            label = f"{r.path} ({r.threads})" if r.kind in ("c", "bound") else r.path
            if r.gflops and label not in names:
                names.append(label)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(reports)), 4), dpi=80)
    width = 0.85 / max(1, len(names))
    cmap = plt.get_cmap("tab20")
    for k, label in enumerate(names):
        xs, ys = [], []
        for c, rep in enumerate(reports):
            for r in rep.results:
                this = f"{r.path} ({r.threads})" if r.kind in ("c", "bound") else r.path
                if this == label and r.gflops:
                    xs.append(c + (k - (len(names) - 1) / 2) * width)
                    ys.append(r.gflops)
        ax.bar(xs, ys, width, label=label, color=cmap(k % 20))
    ax.set_yscale("log")
    ax.set_ylabel("GFLOP/s (useful FLOPs)")
    ax.set_xticks(range(len(reports)), [rep.case.name for rep in reports], rotation=20, fontsize=8)
    ax.legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def failed(reports: Sequence[CaseReport]) -> list[str]:
    """``case: path (status)`` for every path that errored or disagreed."""
    return [
        f"{rep.case.name}: {r.path} ({r.status}{': ' + r.note if r.note else ''})"
        for rep in reports
        for r in rep.results
        if r.status in ("error", "wrong")
    ]
