"""Compile generated C with the system compiler: verification and ctypes shared libraries."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import cactivations, emit, microkernel, pool
from .spec import Spec

STRICT_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Wpedantic")
FAST_FLAGS = ("-O3", "-march=native", "-ffp-contract=fast")


def find_compiler(cc: str | None = None) -> str:
    """The C compiler to use: ``cc`` if given, else ``$CC``, ``cc``, ``gcc``, ``clang``.

    Raises ``RuntimeError`` saying which were tried when none is found.
    """
    env = os.environ.get("CC")
    found = _first_on_path(cc, env, os.environ.get("PATH"))
    if found is None:
        _first_on_path.cache_clear()  # keep no negative answer: a compiler may be installed
        tried = cc if cc else f"$CC ({env or 'unset'}), cc, gcc, clang"
        raise RuntimeError(f"no C compiler found (tried {tried}); install gcc or clang, or set CC")
    return found


@functools.lru_cache(maxsize=16)
def _first_on_path(cc: str | None, env: str | None, path: str | None) -> str | None:
    """The first of ``cc`` (or ``$CC``, cc, gcc, clang) on ``path``; cached per arguments, as
    a search of PATH costs a fifth of a millisecond and ``method="native"`` asks every call."""
    candidates = [cc] if cc else [c for c in (env, "cc", "gcc", "clang") if c]
    for candidate in candidates:
        if shutil.which(candidate.split()[0], path=path):
            return candidate
    return None


def target_isa(cflags: Sequence[str] = FAST_FLAGS, cc: str | None = None) -> str:
    """Which micro-kernel branch C built by ``cc`` with ``cflags`` takes: one of
    :data:`tconv.kernels.microkernel.NAMES` (``"avx512"``, ``"avx2"``, ``"neon"``,
    ``"portable"``), read from the compiler's predefined macros with the kernels' own tests.

    Raises ``RuntimeError`` when no compiler is found or it rejects the flags."""
    return _target_isa(tuple(cflags), find_compiler(cc))


@functools.lru_cache(maxsize=32)
def _target_isa(cflags: tuple[str, ...], compiler: str) -> str:
    cmd = [*compiler.split(), *cflags, "-E", "-P", "-x", "c", "-"]
    done = subprocess.run(cmd, input=microkernel.probe_source(), capture_output=True, text=True)
    found = re.search(r"tconv_isa (\w+)", done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"the preprocessor failed: {' '.join(cmd)}\n{done.stderr.strip()}")
    return found[1]


def compile_c(
    sources: Sequence[str | Path],
    output: str | Path,
    *,
    cc: str | None = None,
    cflags: Sequence[str] = ("-O2", *STRICT_FLAGS),
    shared: bool = False,
    cwd: str | Path | None = None,
) -> None:
    """Compile ``sources`` into ``output`` (an executable, or a shared library with ``shared``).

    Raises ``RuntimeError`` with the compiler's messages when it fails.
    """
    cmd = [*find_compiler(cc).split(), *cflags]
    if shared:
        cmd += ["-fPIC", "-shared"]
    cmd += ["-o", str(output), *map(str, sources), "-lm"]
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"compiling failed: {' '.join(cmd)}\n{done.stderr.strip()}")
    if done.stderr.strip():
        raise RuntimeError(f"the compiler warned: {' '.join(cmd)}\n{done.stderr.strip()}")


def verify(
    out_dir: str | Path,
    name: str = "tconv_layer",
    *,
    cc: str | None = None,
    cflags: Sequence[str] = ("-O2", *STRICT_FLAGS, "-Werror"),
) -> tuple[bool, str]:
    """Build ``test_NAME`` in ``out_dir`` and run it: ``(passed, its output)``."""
    out = Path(out_dir).resolve()
    sources = [f"test_{name}.c", f"{name}.c", f"{name}_weights.c"]
    compile_c(sources, f"test_{name}", cc=cc, cflags=cflags, cwd=out)
    done = subprocess.run([str(out / f"test_{name}")], cwd=out, capture_output=True, text=True)
    return done.returncode == 0, (done.stdout + done.stderr).strip()


_THREADS_C = """\
#ifdef _OPENMP
#include <omp.h>
#endif
int tconv_set_threads(int n);
int tconv_set_threads(int n)
{
#ifdef _OPENMP
    if (n > 0) omp_set_num_threads(n);
    return omp_get_max_threads();
#else
    (void)n;
    return 1;
#endif
}
"""


class CompiledLayer:
    """An exported layer compiled into a shared library and loaded with ctypes.

    Call it with one batch in the layer's layout, ``(N, *input_shape)``; it returns
    ``(N, *output_shape)`` float32.  ``out=`` reuses an output array (for timing).
    """

    def __init__(
        self, spec: Spec, style: str, library: Path, weights: np.ndarray, compiler: str
    ) -> None:
        self.spec = spec
        self.compiler = compiler
        self.style = style
        self.path = library
        self.geometry = spec.geometry
        # a 64-byte aligned copy: NumPy starts large arrays 16 bytes past a line, and then
        # half the AVX2 build's weight loads straddle two cache lines (seed_k5_b8 0.87 -> 0.92
        # of the Haswell bound, audio1d 0.90 -> 0.96, after 0.2 s pauses on a Zen 4)
        self._weights = aligned_empty(np.shape(weights))
        self._weights[...] = weights
        self._lib = ctypes.CDLL(str(library))
        fn = getattr(self._lib, f"{spec.name}_with_weights")
        fp = ctypes.POINTER(ctypes.c_float)
        fn.argtypes = [fp, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]  # x, y: addresses
        fn.restype = ctypes.c_int
        self._fn = fn
        self._wp = self._weights.ctypes.data_as(fp)  # once: a call of a small layer is ~0.3 ms
        self._lib.tconv_set_threads.argtypes = [ctypes.c_int]
        self._lib.tconv_set_threads.restype = ctypes.c_int
        self._tasks = None  # the fast style's task entry points, for calls shared by threads
        if style == "fast":
            count = getattr(self._lib, f"{spec.name}_task_count")
            count.argtypes, count.restype = [ctypes.c_int], ctypes.c_long
            tasks = getattr(self._lib, f"{spec.name}_tasks_with_weights")
            tasks.argtypes = [fp, fp, fp, ctypes.c_int, ctypes.c_long, ctypes.c_long]
            tasks.restype = ctypes.c_int
            self._tasks = (count, tasks)

    def set_threads(self, n: int) -> int:
        """OpenMP threads for the next calls (builds with ``openmp=True``); returns the count."""
        return int(self._lib.tconv_set_threads(int(n)))

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        x, out = self._arrays(x, out)
        rc = self._fn(self._wp, x.ctypes.data, out.ctypes.data, x.shape[0])
        if rc != 0:
            raise RuntimeError(f"{self.spec.name} returned error code {rc}")
        return out

    def shared(self, x: np.ndarray, threads: int, out: np.ndarray | None = None) -> np.ndarray:
        """Like calling the layer, with the work shared by the calling thread and the
        process's C worker threads (:func:`thread_pool`: at least ``threads - 1``), each
        taking the fast style's tasks one at a time (as OpenMP's ``schedule(dynamic, 1)``)
        without the GIL.  A worker that did not get a core before the tasks ran out is not
        waited for (an OpenMP call waits for all its threads at the end).  Same result, bit
        for bit.  A plain call for other styles, row-wise activations, calls of fewer than
        :data:`~tconv.kernels.emit.PARALLEL_MACS` multiply-adds, one thread, or when the
        pool cannot be built."""
        macs = self.geometry.macs(np.shape(x)[0]) if np.ndim(x) else 0
        rowwise = cactivations.is_rowwise(self.spec.activation)
        if self._tasks is None or rowwise or threads < 2 or macs < emit.PARALLEL_MACS:
            return self(x, out)
        x, out = self._arrays(x, out)
        count, run = self._tasks
        total = int(count(x.shape[0]))
        workers = thread_pool(self.compiler, str(self.path.parent.parent))
        if workers is None:  # no pool on this machine: one plain call
            return self(x, out)
        args = (self._weights.ctypes.data, x.ctypes.data, out.ctypes.data, x.shape[0])
        code = workers.run(ctypes.cast(run, ctypes.c_void_p).value or 0, args, total, threads)
        if code:
            raise RuntimeError(f"{self.spec.name} returned error code {code}")
        return out

    def _arrays(self, x: np.ndarray, out: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """``x`` as C-contiguous float32 of this layer's item shape, and the output array."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape[1:] != self.spec.in_item:
            raise ValueError(
                f"input shape {x.shape} does not match the compiled layer: expected "
                f"(N, {', '.join(map(str, self.spec.in_item))})"
            )
        shape = (x.shape[0], *self.spec.out_item)
        if out is None:
            out = aligned_empty(shape)
        elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous float32 array of shape {shape}")
        return x, out


def aligned_empty(shape: Sequence[int], align: int = 64) -> np.ndarray:
    """An uninitialized C-contiguous float32 array whose data starts on an ``align``-byte
    boundary.  NumPy's own start 16 bytes past one for large arrays; the fast style's threads
    then share the cache lines where their blocks of output channels meet, which measurably
    slows OpenMP runs (unet_k3: 1.4x instead of 1.8-2x on 2 cores)."""
    count = math.prod(shape)
    raw = np.empty(4 * count + align, np.uint8)
    start = -raw.ctypes.data % align
    return raw[start : start + 4 * count].view(np.float32).reshape(shape)


def build_spec(
    spec: Spec,
    *,
    style: str = "fast",
    cflags: Sequence[str] = FAST_FLAGS,
    openmp: bool = False,
    cc: str | None = None,
    cache_dir: str | Path | None = None,
) -> CompiledLayer:
    """Generate ``style`` C for ``spec``, compile it as a shared library (``cflags``, plus
    ``-fopenmp`` with ``openmp``) and load it.

    The library is cached in ``cache_dir`` under a hash of the sources, compiler and flags
    (a fresh temporary folder when ``cache_dir`` is None).  Weights are passed from Python, so
    big layers compile fast.  Raises ``RuntimeError`` when no compiler is found or it fails.
    """
    name = spec.name
    emit.check_style(style)
    blob = emit.weight_blob(spec, style)
    compiler = find_compiler(cc)
    flags = [*cflags, *(["-fopenmp"] if openmp else [])]
    sources = {
        f"{name}.h": emit.header_source(spec, blob.size),
        f"{name}.c": emit.library_source(spec, style),
        "tconv_threads.c": _THREADS_C,
    }
    library = _cached_library(sources, f"lib{name}.so", compiler, flags, cache_dir)
    return CompiledLayer(spec, style, library, blob, compiler)


def _cached_library(
    sources: dict[str, str],
    filename: str,
    compiler: str,
    flags: Sequence[str],
    cache_dir: str | Path | None,
) -> Path:
    """The shared library ``filename`` built from ``sources`` (file name -> text; the ``.c``
    ones are compiled) with ``compiler`` and ``flags``, under a hash of all three in
    ``cache_dir`` (a fresh temporary folder when None); built only when it is not there.
    Processes building the same library at once each build in a folder of their own and the
    first to finish renames it into place."""
    key = hashlib.sha256(repr((sorted(sources.items()), compiler, list(flags))).encode())
    base = Path(cache_dir) if cache_dir is not None else Path(tempfile.mkdtemp(prefix="tconv-"))
    folder = base / key.hexdigest()[:20]
    library = folder / filename
    if not library.exists():
        base.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f"{folder.name}-", dir=base))
        for fname, text in sources.items():
            (build / fname).write_text(text)
        sources_c = [f for f in sources if f.endswith(".c")]
        try:
            compile_c(sources_c, filename, cc=compiler, cflags=flags, shared=True, cwd=build)
        except RuntimeError:
            shutil.rmtree(build, ignore_errors=True)
            raise
        try:
            build.rename(folder)
        except OSError:  # another process built it first
            shutil.rmtree(build, ignore_errors=True)
    return library


_pool: pool.Pool | None = None
_pool_failed = False  # the pool's build failed once: calls stay on the calling thread
_pool_lock = threading.Lock()


def thread_pool(compiler: str, cache_dir: str | None) -> pool.Pool | None:
    """The process's one C worker pool (:mod:`tconv.kernels.pool`; its C calls layers through
    function pointers, so it serves layers of any compiler), built with ``compiler`` the first
    time it is asked for (cached in ``cache_dir`` like a layer) and loaded once; None when
    that build failed (it is not tried again)."""
    global _pool, _pool_failed
    with _pool_lock:
        if _pool is None and not _pool_failed:
            flags = ("-O2", "-pthread", *STRICT_FLAGS)
            sources = {"tconv_pool.c": pool.SOURCE}
            try:
                library = _cached_library(sources, "libtconv_pool.so", compiler, flags, cache_dir)
            except RuntimeError:
                _pool_failed = True
            else:
                _pool = pool.Pool(library)
        return _pool
