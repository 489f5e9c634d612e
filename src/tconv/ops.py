"""The canonical transposed convolution: the reference (the definition) and the fast path.

Layouts (channels last, whatever the framework):

- ``x``: ``(N, *geometry.in_shape, in_channels)``
- ``kernel``: ``geometry.kernel_shape`` = ``(*kernel_size, out_channels, in_channels // groups)``
- ``bias``: ``(out_channels,)`` or ``None``
- result: ``(N, *geometry.out_shape, out_channels)``

Both functions compute::

    y[n, o, f] = bias[f] + sum over taps (i, j) with i*stride + j*dilation == o + crop_start
                           of sum over c in group(f) of x[n, i, c] * kernel[j, f, c - group start]

then ``activation`` (a Keras activation name, see :mod:`tconv.activations`), in the input's
dtype (float16 and bfloat16 are computed in float32 and cast back).
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import activations
from .checks import is_frozen
from .geometry import Axis, Geometry

METHODS = ("auto", "fast", "reference", "native")
DEFAULT_METHOD = "auto"
"""What ``method`` is when left out, here and in every adapter: see :func:`auto`."""
Index = tuple[int | slice, ...]


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype arithmetic runs in for data of ``dtype``: float32 or float64.

    Raises ``TypeError`` for anything that is not a floating-point type.
    """
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return dtype
    if dtype.kind == "f" or dtype.name == "bfloat16":
        return np.dtype(np.float32)
    raise TypeError(
        f"transposed convolution needs floating-point data (float16, bfloat16, float32 or "
        f"float64), got dtype={dtype.name}"
    )


def _check(x: np.ndarray, kernel: np.ndarray, geometry: Geometry, bias: np.ndarray | None) -> None:
    expected = (geometry.in_shape, geometry.in_channels)
    if x.ndim != geometry.rank + 2 or (x.shape[1:-1], x.shape[-1]) != expected:
        raise ValueError(
            f"input shape {x.shape} does not match the geometry: expected "
            f"(N, {', '.join(map(str, geometry.in_shape))}, {geometry.in_channels})"
        )
    if kernel.shape != geometry.kernel_shape:
        raise ValueError(
            f"kernel shape {kernel.shape} does not match the geometry: expected "
            f"{geometry.kernel_shape} = (*kernel_size, out_channels, in_channels // groups)"
        )
    if bias is not None and bias.shape != (geometry.out_channels,):
        raise ValueError(f"bias shape {bias.shape} must be ({geometry.out_channels},)")
    out = (x.shape[0], *geometry.out_shape, geometry.out_channels)
    need = math.prod(out) * compute_dtype(x.dtype).itemsize
    if need > _memory_bytes():
        raise MemoryError(
            f"the output {out} needs {need / 2**30:.1f} GiB, more than this machine's "
            f"{_memory_bytes() / 2**30:.1f} GiB; per axis (size, kernel, stride, dilation, "
            f"output): {[(a.size, a.kernel, a.stride, a.dilation, a.out) for a in geometry.axes]}"
        )


@functools.cache
def _memory_bytes() -> int:
    """Physical memory (sysconf), or no limit where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**62


def reference(
    x: np.ndarray,
    kernel: np.ndarray,
    geometry: Geometry,
    bias: np.ndarray | None = None,
    activation: str | None = None,
) -> np.ndarray:
    """The definition, one output position at a time (slow: for tests and explanations).

    For every output position ``o`` it visits the taps that reach it and sums, per group, the
    channel dot products ``x[:, i, group] @ kernel[j, group's filters, :].T``.
    """
    _check(x, kernel, geometry, bias)
    dtype = compute_dtype(x.dtype)
    xc, kc = x.astype(dtype, copy=False), kernel.astype(dtype, copy=False)
    n, cin, cout = x.shape[0], geometry.in_per_group, geometry.out_per_group
    y = np.zeros((n, *geometry.out_shape, geometry.out_channels), dtype)
    for o in np.ndindex(*geometry.out_shape):
        for i, j in geometry.taps(o):
            for g in range(geometry.groups):
                source: Index = (slice(None), *i, slice(g * cin, (g + 1) * cin))
                tap: Index = (*j, slice(g * cout, (g + 1) * cout))
                target: Index = (slice(None), *o, slice(g * cout, (g + 1) * cout))
                y[target] += xc[source] @ kc[tap].T  # (N, cin) @ (cin, cout)
    if bias is not None:
        y += bias.astype(dtype)
    return activations.apply(activation, y).astype(x.dtype, copy=False)


def fast(
    x: np.ndarray,
    kernel: np.ndarray,
    geometry: Geometry,
    bias: np.ndarray | None = None,
    activation: str | None = None,
) -> np.ndarray:
    """Vectorized: a GEMM per kernel tap, added into the output through a strided view.

    With ``M = N*|in|`` input pixels, tap ``j`` of group ``g`` is one
    ``(M, C_in/G) @ (C_in/G, C_out/G)`` product (the canonical kernel ``(*k, C_out, C_in/G)`` is
    read transposed, without a copy).  Tap ``j`` sends input ``i`` to output
    ``o = i*stride + j*dilation - crop_start``; per axis the inputs that land inside the output
    form a range and their outputs a strided range, so each tap is one strided add.

    Small per-tap GEMMs (``M*C_in*C_out/G**2 < 2**22``) are merged: all taps share one wide
    ``(M, C_in/G) @ (C_in/G, T*C_out/G)`` GEMM (many tiny GEMMs run badly, worst on a threaded
    BLAS).  Otherwise each tap has its own GEMM, in blocks (one batched ``matmul``), on chunks
    of input rows small enough that a product is still in cache when it is added
    (:data:`_CHUNK`).

    Threads: with per-tap GEMMs and from ``2**24`` multiply-adds on, the output is cut into
    disjoint parts (by output channels when each part keeps >= 128 of them, else by batch items,
    else by output rows of the first spatial axis), one per Python thread, as many as BLAS may
    use (needs threadpoolctl).  Each thread runs its GEMMs on one BLAS thread and its own
    strided adds, so that the adds run in parallel too; BLAS's thread count is restored after.

    Extra memory: one block's result (over all threads), at most ``max(output size, 2**20,
    one tap's result)`` elements and never more than the same-FLOP GEMM result
    ``(M, T*C_out/G)`` (plus a float32 copy of ``x`` and ``kernel`` for float16/bfloat16
    data).
    """
    _check(x, kernel, geometry, bias)
    dtype = compute_dtype(x.dtype)
    n, groups = x.shape[0], geometry.groups
    cin, cout = geometry.in_per_group, geometry.out_per_group
    y = np.empty((n, *geometry.out_shape, geometry.out_channels), dtype)
    y[...] = 0 if bias is None else bias.astype(dtype)
    if y.size == 0 or x.size == 0:
        return activations.apply(activation, y).astype(x.dtype, copy=False)
    taps = list(np.ndindex(*kernel.shape[:-2]))
    m = x.size // geometry.in_channels
    xc = x.astype(dtype, copy=False)
    # (T, G, cout, cin): per tap and group, the matrix from input to output channels.
    weights = kernel.astype(dtype, copy=False).reshape(len(taps), groups, cout, cin)
    wide = m * cin * cout < _WIDE_GEMM_MACS
    block = max(1, max(y.size, 1 << 20) // (m * groups * cout))  # taps per GEMM block
    blas = _blas_libraries()
    threads = min((lib.num_threads for lib in blas), default=1)
    parallel = not wide and threads > 1 and geometry.macs(n) >= _PARALLEL_MACS
    jobs = _jobs(y, xc, geometry, threads) if parallel else []
    if len(jobs) < 2:
        _accumulate(y, xc, weights, geometry, taps, slice(0, cout), wide, block)
    else:
        _share(jobs, blas, weights, taps, block)
    return activations.apply(activation, y).astype(x.dtype, copy=False)


def _share(
    jobs: list[Job], blas: list[Any], weights: np.ndarray, taps: list[tuple[int, ...]], block: int
) -> None:
    """Run ``jobs`` on a thread each (the first on the calling thread), every one with a single
    BLAS thread; restore BLAS's thread count."""
    saved = [lib.num_threads for lib in blas]
    for lib in blas:
        lib.set_num_threads(1)
    try:
        pool = _pool(len(jobs) - 1, os.getpid())
        futures = [
            pool.submit(_accumulate, y_part, x_part, weights, part, taps, channels, False, block)
            for y_part, x_part, part, channels in jobs[1:]
        ]
        y_part, x_part, part, channels = jobs[0]
        _accumulate(y_part, x_part, weights, part, taps, channels, False, block)
        for future in futures:
            future.result()
    finally:
        for lib, count in zip(blas, saved, strict=True):
            lib.set_num_threads(count)


Job = tuple[np.ndarray, np.ndarray, Geometry, slice]
"""Part of the work for one thread: ``(y part, x part, its geometry, output channels)``."""


def _split_kind(batch: int, geometry: Geometry, threads: int) -> str:
    """How to share the work among threads: by ``"channels"``, ``"batch"`` or ``"rows"``.

    Channel parts keep their strided adds long only when they are wide; otherwise the batch
    items, or else the output rows of the first spatial axis, are shared out.
    """
    if geometry.out_per_group >= _WIDE_CHANNEL_PART * threads:
        return "channels"
    if batch >= threads:
        return "batch"
    if geometry.axes[0].size >= _MIN_ROWS_PER_THREAD * threads:
        return "rows"
    return "channels"


def _jobs(y: np.ndarray, x: np.ndarray, geometry: Geometry, threads: int) -> list[Job]:
    """Disjoint parts of the output, each with the input and geometry that produce it."""
    cout = geometry.out_per_group
    kind = _split_kind(x.shape[0], geometry, threads)
    if kind == "batch":
        return [(y[a:b], x[a:b], geometry, slice(0, cout)) for a, b in _parts(x.shape[0], threads)]
    if kind == "rows":
        return [job for a, b in _parts(y.shape[1], threads) if (job := _rows(y, x, geometry, a, b))]
    threads = min(threads, cout // _MIN_CHANNELS_PER_THREAD)
    return [(y, x, geometry, slice(a, b)) for a, b in _parts(cout, threads)]


def _parts(length: int, count: int) -> list[tuple[int, int]]:
    """``count`` near-equal non-empty ranges covering ``range(length)`` (fewer if short)."""
    bounds = [length * k // max(count, 1) for k in range(max(count, 1) + 1)]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def _rows(y: np.ndarray, x: np.ndarray, geometry: Geometry, a: int, b: int) -> Job | None:
    """Output rows ``a:b`` of the first spatial axis: the input rows that reach them (a halo of
    ``ceil(span/stride)`` rows is shared with the neighbours) and their geometry, whose crops
    select those rows.  None when only the bias reaches them."""
    axis = geometry.axes[0]
    lo = max(0, -((axis.dilation * (axis.kernel - 1) - a - axis.crop_start) // axis.stride))
    hi = min(axis.size, (b - 1 + axis.crop_start) // axis.stride + 1)
    if hi <= lo:
        return None
    start = axis.crop_start + a - lo * axis.stride
    end = (hi - lo - 1) * axis.stride + axis.span - start - (b - a)
    sub = _first_axis(geometry, Axis(hi - lo, *_kernel_of(axis), start, end))
    return y[:, a:b], x[:, lo:hi], sub, slice(0, geometry.out_per_group)


def _accumulate(
    y: np.ndarray,
    x: np.ndarray,
    weights: np.ndarray,
    geometry: Geometry,
    taps: list[tuple[int, ...]],
    channels: slice,
    wide: bool,
    block: int,
) -> None:
    """Add every tap's product into output channels ``channels`` of every group of ``y``.

    ``x`` is ``(N, *geometry.in_shape, C_in)``, ``weights`` ``(T, G, cout, cin)``; ``block``
    taps share one (batched) GEMM, a ``wide`` one when set.  Per-tap GEMMs run on chunks of
    input rows whose products stay in cache until they are added (:func:`_row_chunks`).
    """
    groups, cin = geometry.groups, geometry.in_per_group
    weights = weights[:, :, channels]
    part = weights.shape[2]
    for xs, g, per_gemm in _row_chunks(x, geometry, part, wide, block):
        n, m = xs.shape[0], xs.size // geometry.in_channels
        rows = xs.reshape(m, groups, cin).transpose(1, 0, 2)  # (G, M, cin); copies if strided
        for t0 in range(0, len(taps), per_gemm):
            w = weights[t0 : t0 + per_gemm]
            t = len(w)
            if wide:  # one (M, cin) @ (cin, t*part) product per group, viewed as (t, G, M, part)
                w = w.transpose(1, 0, 2, 3).reshape(groups, t * part, cin)  # a view when G == 1
                product = np.matmul(rows, w.transpose(0, 2, 1)).reshape(groups, m, t, part)
                product = product.transpose(2, 0, 1, 3)
            else:  # one (M, cin) @ (cin, part) product per tap and group: (t, G, M, part)
                product = np.matmul(rows, w.transpose(0, 1, 3, 2))
            product = product.reshape(t, groups, n, *g.in_shape, part)
            for j, tap_product in zip(taps[t0 : t0 + per_gemm], product, strict=True):
                _scatter_tap(y, tap_product, g, j, channels)
            del product, tap_product  # free this block before the next one is allocated


def _row_chunks(
    x: np.ndarray, geometry: Geometry, part: int, wide: bool, block: int
) -> Iterator[tuple[np.ndarray, Geometry, int]]:
    """``(input rows, their geometry, taps per GEMM block)`` for near-equal chunks of the first
    spatial axis whose per-tap products (``part`` channels per group) have about :data:`_CHUNK`
    elements: each product is still in cache when it is added.  One chunk for a wide GEMM."""
    per_row = x.shape[0] * geometry.groups * part * (x[0, 0].size // geometry.in_channels)
    chunks = 1 if wide else -(-x.shape[1] // max(1, _CHUNK // max(1, per_row)))
    if chunks <= 1:
        yield x, geometry, block
        return
    rows = -(-x.shape[1] // chunks)
    block = max(1, min(block, _CHUNK // max(1, per_row * rows)))
    axis = geometry.axes[0]
    for a in range(0, x.shape[1], rows):
        b = min(x.shape[1], a + rows)
        start = axis.crop_start - a * axis.stride  # the same output: the crops shift
        end = (b - a - 1) * axis.stride + axis.span - start - axis.out
        yield x[:, a:b], _first_axis(geometry, Axis(b - a, *_kernel_of(axis), start, end)), block


def _kernel_of(axis: Axis) -> tuple[int, int, int]:
    return axis.kernel, axis.stride, axis.dilation


def _first_axis(geometry: Geometry, axis: Axis) -> Geometry:
    """``geometry`` with its first spatial axis replaced by ``axis``."""
    return Geometry(
        (axis, *geometry.axes[1:]), geometry.in_channels, geometry.out_channels, geometry.groups
    )


def _scatter_tap(
    y: np.ndarray,
    product: np.ndarray,
    geometry: Geometry,
    j: tuple[int, ...],
    channels: slice,
) -> None:
    """Add tap ``j``'s per-group products ``(G, N, *in, part)`` into ``channels`` of each group."""
    where = _tap_slices(geometry, j)
    if where is None:
        return
    src, dst = where
    cout = geometry.out_per_group
    for g, group_product in enumerate(product):
        target = (slice(None), *dst, slice(g * cout + channels.start, g * cout + channels.stop))
        view = y[target]
        np.add(view, group_product[(slice(None),) + src], out=view)


@functools.lru_cache(maxsize=4096)
def _tap_slices(
    geometry: Geometry, j: tuple[int, ...]
) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Tap ``j``'s input ranges and strided output ranges per axis; None if it reaches nothing."""
    ranges = [axis.tap_range(t) for axis, t in zip(geometry.axes, j, strict=True)]
    if any(count == 0 for _, count, _ in ranges):
        return None
    src = tuple(slice(i0, i0 + count) for i0, count, _ in ranges)
    dst = tuple(
        slice(o0, o0 + (count - 1) * axis.stride + 1, axis.stride)
        for (_, count, o0), axis in zip(ranges, geometry.axes, strict=True)
    )
    return src, dst


_WIDE_GEMM_MACS = 1 << 22
"""Per-tap GEMMs of fewer multiply-adds than this are merged into one wide GEMM: small GEMMs run
badly, worst on a threaded BLAS, where every call pays a thread hand-off (and, when another
process holds the other cores, a scheduler time slice)."""

_CHUNK = 1 << 17
"""Per-tap GEMMs run on chunks of input rows whose product has about this many elements (512 KiB
of float32: it stays in a core's L2 cache until it is added into the output)."""

_MIN_CHANNELS_PER_THREAD = 16
"""A split by output channels gives every thread at least this many channels per group."""

_PARALLEL_MACS = 1 << 24
"""Problems of fewer multiply-adds run on the calling thread (sharing costs more than it gives)."""

_WIDE_CHANNEL_PART = 128
"""Channel parts at least this wide are preferred (their strided adds stay long)."""

_MIN_ROWS_PER_THREAD = 4
"""A split by output rows needs at least this many input rows per thread (halos cost)."""


@functools.cache
def _blas_controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController().select(user_api="blas")


def _blas_libraries() -> list[Any]:
    """NumPy's BLAS libraries as threadpoolctl controls them (none without threadpoolctl)."""
    controller = _blas_controller()
    return [] if controller is None else list(controller.lib_controllers)


@functools.cache
def _pool(threads: int, pid: int) -> concurrent.futures.ThreadPoolExecutor:
    """A pool per process (``pid``): a forked child does not inherit its parent's threads."""
    return concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="tconv")


def cache_dir() -> str:
    """Where compiled layers are kept: ``$XDG_CACHE_HOME/tconv`` (default ``~/.cache/tconv``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "tconv")
    os.makedirs(path, exist_ok=True)
    return path


NATIVE_FLAGS = ("-O3", "-march=native", "-ffp-contract=fast")
"""How :func:`native` compiles (plus ``-fopenmp``): for the CPU it runs on."""
_native_cache: OrderedDict[tuple[Any, ...], tuple[np.ndarray | None, np.ndarray | None, Any]] = (
    OrderedDict()
)


def _frozen(a: np.ndarray | None) -> bool:
    """True for None and for a layer's weights (:func:`tconv.layer.frozen`)."""
    return a is None or is_frozen(a)


def _kept(a: np.ndarray | None) -> np.ndarray | None:
    """What the cache keeps of weights: frozen ones themselves, others as a copy."""
    return a if _frozen(a) else a.copy()  # type: ignore[union-attr]


def _same(kept: np.ndarray | None, current: np.ndarray | None) -> bool:
    """Whether the weights a library was built with are still ``current``'s: by identity for
    frozen weights (no pass over them), by value otherwise."""
    if kept is current:
        return _frozen(current)
    return kept is not None and current is not None and np.array_equal(kept, current)


def native(
    x: np.ndarray,
    kernel: np.ndarray,
    geometry: Geometry,
    bias: np.ndarray | None = None,
    activation: str | None = None,
) -> np.ndarray:
    """tconv's own fast C (:mod:`tconv.kernels`, style ``"fast"``), called through ctypes.

    The C is compiled once per geometry with the system compiler (``$CC``, ``cc``, ``gcc`` or
    ``clang``; ``-O3 -march=native``) and cached under :func:`cache_dir`; a call runs on all
    cores, its tasks shared by C worker threads (:meth:`~tconv.kernels.CompiledLayer.shared`:
    a thread that gets no core in time is not waited for), or with OpenMP for a row-wise
    activation;
    the last few layers stay loaded (a changed kernel or bias is noticed: they are compared
    with the loaded copy on every call, unless they are a layer's frozen weights, which cannot
    change).  It computes in float32: float32 data only.  Falls back
    to :func:`fast` for other dtypes, empty data, or when no C compiler is found.
    """
    _check(x, kernel, geometry, bias)
    compiler = _native_compiler(x, geometry)
    if compiler is None:
        return fast(x, kernel, geometry, bias, activation)
    key = _native_key(geometry, activation, bias, compiler)
    compiled = _loaded(key, kernel, bias)
    if compiled is None:
        compiled = _load(key, kernel, geometry, bias, activation, compiler)
    return compiled.shared(x, _cores())


def _cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _native_compiler(x: np.ndarray, geometry: Geometry) -> str | None:
    """The C compiler :func:`native` would use for ``x``, or None when it falls back to
    :func:`fast` (not float32, empty data, no compiler)."""
    if x.dtype != np.float32 or x.size == 0 or 0 in geometry.out_shape:
        return None
    from .kernels import find_compiler

    try:
        return find_compiler()
    except RuntimeError:
        return None


def _native_key(
    geometry: Geometry, activation: str | None, bias: np.ndarray | None, compiler: str
) -> tuple[Any, ...]:
    return (geometry, activations.canonical_name(activation), bias is None, compiler)


def _loaded(key: tuple[Any, ...], kernel: np.ndarray, bias: np.ndarray | None) -> Any:
    """The loaded library of ``key`` if it was built with these weights, else None."""
    with _native_lock:
        entry = _native_cache.get(key)
        if entry is None or not (_same(entry[0], kernel) and _same(entry[1], bias)):
            return None
        _native_cache.move_to_end(key)
        return entry[2]


def _load(
    key: tuple[Any, ...],
    kernel: np.ndarray,
    geometry: Geometry,
    bias: np.ndarray | None,
    activation: str | None,
    compiler: str,
) -> Any:
    """Build (or find on disk) and load the library of ``key`` with these weights; keep it."""
    from .kernels import Spec, build_spec

    spec = Spec(
        "tconv_layer",
        geometry,
        np.asarray(kernel, np.float32),
        None if bias is None else np.asarray(bias, np.float32),
        activations.canonical_name(activation),
        channels_first=False,
        framework="tconv",
        kernel_layout="keras",
    )
    compiled = build_spec(
        spec, cflags=NATIVE_FLAGS, openmp=True, cc=compiler, cache_dir=cache_dir()
    )
    with _native_lock:
        _native_cache[key] = (_kept(kernel), _kept(bias), compiled)
        _native_built.add(key)
        while len(_native_cache) > 4:
            _native_cache.popitem(last=False)
    return compiled


_native_lock = threading.Lock()
_native_built: set[tuple[Any, ...]] = set()
"""Keys whose library was built (or found on disk) in this process: loading it again is quick."""
_native_pending: dict[tuple[Any, ...], concurrent.futures.Future[Any]] = {}
_native_seen: set[tuple[Any, ...]] = set()
"""Keys :func:`auto` was called with (their build starts on the second call)."""

AUTO_NATIVE_MACS = 1 << 22
""":func:`auto` uses the C from this many multiply-adds per call on; smaller layers stay on
NumPy (a compile, about 0.5 s, would take thousands of their calls to pay back)."""


def auto(
    x: np.ndarray,
    kernel: np.ndarray,
    geometry: Geometry,
    bias: np.ndarray | None = None,
    activation: str | None = None,
) -> np.ndarray:
    """The default method: :func:`native` once its C is ready for this geometry, else
    :func:`fast`.

    For float32 data of at least :data:`AUTO_NATIVE_MACS` multiply-adds on a machine with a C
    compiler, the second call of a new geometry starts compiling its C in a background thread
    (one build at a time; a library already in :func:`cache_dir` is only loaded; a geometry
    called once, as by a script that exits, costs no build) and, like the first, is computed
    by :func:`fast`, so that it costs no more than the NumPy path; the calls after the build go
    to the C.  Without a compiler, for other dtypes, small layers, or when the build
    fails, every call is :func:`fast`.  The two paths agree to float32 rounding, not bit for
    bit: use ``method="fast"`` or ``"native"`` for one fixed path.  :func:`auto_path` says
    which path a call takes.
    """
    _check(x, kernel, geometry, bias)
    compiler = _auto_compiler(x, geometry)
    if compiler is None:
        return fast(x, kernel, geometry, bias, activation)
    key = _native_key(geometry, activation, bias, compiler)
    compiled = _loaded(key, kernel, bias)
    if compiled is not None:
        return compiled.shared(x, _cores())
    with _native_lock:
        known = key in _native_built
        pending = _native_pending.get(key)  # a build under way, or finished a moment ago
        again = key in _native_seen  # a geometry called once only is not worth a build
        _native_seen.add(key)
    if known:  # built before with other weights: repacking them and loading are quick
        return _load(key, kernel, geometry, bias, activation, compiler).shared(x, _cores())
    if again and pending is None and key not in _native_failed:
        _start_build(key, kernel, geometry, bias, activation, compiler)
    return fast(x, kernel, geometry, bias, activation)


def _auto_compiler(x: np.ndarray, geometry: Geometry) -> str | None:
    if geometry.macs(x.shape[0]) < AUTO_NATIVE_MACS:
        return None
    return _native_compiler(x, geometry)


def _start_build(
    key: tuple[Any, ...],
    kernel: np.ndarray,
    geometry: Geometry,
    bias: np.ndarray | None,
    activation: str | None,
    compiler: str,
) -> None:
    """Build ``key``'s library in the background (with a copy of mutable weights)."""
    kept = kernel if _frozen(kernel) else kernel.copy()

    def build() -> None:  # the state is updated before the future is done
        try:
            _load(key, kept, geometry, _kept(bias), activation, compiler)
        except Exception as err:  # stays on NumPy: remember why
            with _native_lock:
                _native_failed[key] = str(err).splitlines()[-1] if str(err) else repr(err)
        finally:
            with _native_lock:
                _native_pending.pop(key, None)

    with _native_lock:
        _native_pending[key] = _builder(os.getpid()).submit(build)


_native_failed: dict[tuple[Any, ...], str] = {}


def _after_fork() -> None:
    """In a forked child the parent's build threads do not exist: forget their builds."""
    global _native_lock
    _native_lock = threading.Lock()
    _native_pending.clear()


os.register_at_fork(after_in_child=_after_fork)


@functools.cache
def _builder(pid: int) -> concurrent.futures.ThreadPoolExecutor:
    """One background build at a time, per process (``pid``: a forked child has no threads)."""
    return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tconv-build")


def auto_path(
    x: np.ndarray,
    kernel: np.ndarray,
    geometry: Geometry,
    bias: np.ndarray | None = None,
    activation: str | None = None,
    *,
    wait: bool = False,
) -> str:
    """Which path :func:`auto` takes for this call: ``"native"`` or ``"fast (why)"``.

    With ``wait``, a background build of this geometry is waited for first (so the answer is
    the steady state).  A build that fails is reported here with its error."""
    _check(x, kernel, geometry, bias)
    if x.dtype != np.float32:
        return f"fast (dtype {x.dtype.name}: the C computes float32)"
    if x.size == 0 or 0 in geometry.out_shape:
        return "fast (empty data)"
    if geometry.macs(x.shape[0]) < AUTO_NATIVE_MACS:
        return f"fast (fewer than {AUTO_NATIVE_MACS} multiply-adds a call)"
    compiler = _native_compiler(x, geometry)
    if compiler is None:
        return "fast (no C compiler)"
    key = _native_key(geometry, activation, bias, compiler)
    with _native_lock:
        pending = _native_pending.get(key)
    if pending is not None and wait:
        concurrent.futures.wait([pending])
    with _native_lock:
        if key in _native_failed:
            return f"fast (building the C failed: {_native_failed[key]})"
        if key in _native_built:
            return "native"
        if key in _native_pending:
            return "fast (the C is being built)"
        if key in _native_seen:
            return "fast (the C is built from the next call on)"
    return "fast (the C is built from the second call on)"


def run(
    x: np.ndarray,
    kernel: np.ndarray,
    geometry: Geometry,
    bias: np.ndarray | None = None,
    activation: str | None = None,
    method: str = DEFAULT_METHOD,
) -> np.ndarray:
    """Dispatch to :func:`auto`, :func:`fast`, :func:`reference` or :func:`native` by
    ``method``."""
    if method == "auto":
        return auto(x, kernel, geometry, bias, activation)
    if method == "native":
        return native(x, kernel, geometry, bias, activation)
    if method == "fast":
        return fast(x, kernel, geometry, bias, activation)
    if method == "reference":
        return reference(x, kernel, geometry, bias, activation)
    raise ValueError(f"method must be one of {METHODS}, got method={method!r}")
