"""Worker threads in C for calls of the fast style shared by all cores from Python.

:meth:`tconv.kernels.CompiledLayer.shared` splits a call into the chunks of its tasks
(``NAME_tasks_with_weights``, see :mod:`tconv.kernels.emit`); this module's small C library
runs those chunks on the calling thread and on persistent worker threads, without the GIL:

- one pool per process, whatever the layer (a model's layers called in turn share it, so no
  layer's idle workers compete with the next one for a core);
- the caller publishes a job and takes chunks itself; a worker takes chunks while any are left.
  A worker that did not get a core before the chunks ran out is not waited for: the call ends
  when every *taken* chunk is done;
- after a job a worker spins for :data:`SPIN_MICROSECONDS` (``TCONV_SPIN_US`` overrides it)
  before it sleeps on a condition variable: the next call of a loop finds it awake.  Waking a
  sleeping thread costs milliseconds on a virtual machine whose idle vCPU was halted, which
  is the time of a whole call here (seed_k3: 1.5 ms on 2 cores);
- after ``fork()`` the child has no workers; the library notices (``pthread_atfork``) and
  starts its own on its first call.

The job is one 64-bit word (generation, chunk count, next chunk): the caller stores a new one
per call, everyone takes chunks by atomic fetch-add on it, so a late worker can never take a
chunk of a job that has finished.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

SPIN_MICROSECONDS = 2000
MAX_CHUNKS = (1 << 20) - 1024  # the chunk fields of the job word are 20 bits wide

SOURCE = r"""
#include <pthread.h>
#include <stdint.h>
#include <time.h>

typedef int (*tconv_task_fn)(const float *, const float *, float *, int, long, long);

#define GEN_SHIFT 40
#define CHUNK_BITS 20
#define CHUNK_MASK ((UINT64_C(1) << CHUNK_BITS) - 1)

static struct {
    tconv_task_fn fn;
    const float *w, *x;
    float *y;
    int batch;
    long tasks;
} job;
static uint64_t ticket;          /* generation << 40 | chunks << 20 | next chunk */
static long done;                /* chunks of the current job finished */
static int failed;               /* the first non-zero code of the current job */
static int workers, sleepers;
static long spin_ns;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;

static void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000000000L + t.tv_nsec;
}

/* Take and run chunks of the job in `ticket` until none is left; the generation last seen. */
static uint64_t take_chunks(void)
{
    for (;;) {
        uint64_t t = __atomic_fetch_add(&ticket, 1, __ATOMIC_ACQ_REL);
        long i = (long)(t & CHUNK_MASK), chunks = (long)((t >> CHUNK_BITS) & CHUNK_MASK);
        if (i >= chunks)
            return t >> GEN_SHIFT;
        long first = (long)((long long)job.tasks * i / chunks);
        long last = (long)((long long)job.tasks * (i + 1) / chunks);
        int rc = job.fn(job.w, job.x, job.y, job.batch, first, last);
        if (rc != 0) {
            int none = 0;
            __atomic_compare_exchange_n(&failed, &none, rc, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
        }
        __atomic_fetch_add(&done, 1, __ATOMIC_RELEASE);
    }
}

static void *worker(void *unused)
{
    (void)unused;
    uint64_t seen = __atomic_load_n(&ticket, __ATOMIC_ACQUIRE) >> GEN_SHIFT;
    for (;;) {
        long until = now_ns() + __atomic_load_n(&spin_ns, __ATOMIC_RELAXED);
        int spins = 0;
        while ((__atomic_load_n(&ticket, __ATOMIC_ACQUIRE) >> GEN_SHIFT) == seen) {
            relax();
            if (++spins % 256 == 0 && now_ns() > until) {
                pthread_mutex_lock(&lock);
                __atomic_fetch_add(&sleepers, 1, __ATOMIC_SEQ_CST);
                while ((__atomic_load_n(&ticket, __ATOMIC_SEQ_CST) >> GEN_SHIFT) == seen)
                    pthread_cond_wait(&wake, &lock);
                __atomic_fetch_sub(&sleepers, 1, __ATOMIC_SEQ_CST);
                pthread_mutex_unlock(&lock);
            }
        }
        seen = take_chunks();
    }
    return NULL;
}

static void forked_child(void)
{
    workers = 0; /* the threads stayed in the parent */
    sleepers = 0;
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&wake, NULL);
}

/* Make sure `threads - 1` workers run; the number running. */
int tconv_pool_start(int threads, long spin_us);
int tconv_pool_start(int threads, long spin_us)
{
    static int registered;
    if (!registered && pthread_atfork(NULL, NULL, forked_child) == 0)
        registered = 1;
    __atomic_store_n(&spin_ns, spin_us * 1000L, __ATOMIC_RELAXED); /* workers read it */
    while (workers < threads - 1) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&thread, &attr, worker, NULL);
        pthread_attr_destroy(&attr);
        if (rc != 0)
            break;
        workers++;
    }
    return workers;
}

/* Run fn's tasks 0 .. tasks-1 in `chunks` near-equal ranges on this thread and the workers;
   0, or the first non-zero code a chunk returned.  One call at a time: the caller holds a
   lock (the GIL is released around it). */
int tconv_pool_run(tconv_task_fn fn, const float *w, const float *x, float *y, int batch,
                   long tasks, long chunks);
int tconv_pool_run(tconv_task_fn fn, const float *w, const float *x, float *y, int batch,
                   long tasks, long chunks)
{
    job.fn = fn;
    job.w = w;
    job.x = x;
    job.y = y;
    job.batch = batch;
    job.tasks = tasks;
    __atomic_store_n(&done, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&failed, 0, __ATOMIC_RELAXED);
    uint64_t gen = (__atomic_load_n(&ticket, __ATOMIC_RELAXED) >> GEN_SHIFT) + 1;
    __atomic_store_n(&ticket, gen << GEN_SHIFT | (uint64_t)chunks << CHUNK_BITS, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&sleepers, __ATOMIC_SEQ_CST) > 0) {
        pthread_mutex_lock(&lock);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&lock);
    }
    take_chunks();
    while (__atomic_load_n(&done, __ATOMIC_ACQUIRE) < chunks)
        relax();
    return __atomic_load_n(&failed, __ATOMIC_RELAXED);
}
"""


class Pool:
    """The loaded pool library (built by :func:`tconv.kernels.build.thread_pool`)."""

    def __init__(self, library: Path) -> None:
        self._lib = ctypes.CDLL(str(library))
        self._lib.tconv_pool_start.argtypes = [ctypes.c_int, ctypes.c_long]
        self._lib.tconv_pool_start.restype = ctypes.c_int
        vp = ctypes.c_void_p
        self._run = self._lib.tconv_pool_run
        self._run.argtypes = [vp, vp, vp, vp, ctypes.c_int, ctypes.c_long, ctypes.c_long]
        self._run.restype = ctypes.c_int
        self._lock = threading.Lock()  # one job at a time
        os.register_at_fork(after_in_child=self._forked)
        spin = os.environ.get("TCONV_SPIN_US")
        if spin is not None and not spin.strip().isdigit():
            raise ValueError(
                f"TCONV_SPIN_US must be a whole number of microseconds (0 or more), got {spin!r}"
            )
        self.spin_us = SPIN_MICROSECONDS if spin is None else int(spin)

    def _forked(self) -> None:
        """In a child forked while another thread held the lock: a new one (the C state
        resets itself)."""
        self._lock = threading.Lock()

    def run(self, task: int, args: tuple[int, int, int, int], tasks: int, threads: int) -> int:
        """Run tasks ``0 .. tasks - 1`` of the task function at address ``task`` (``int
        fn(const float *w, const float *x, float *y, int batch, long first, long last)``),
        with ``args`` = (w, x, y addresses, batch), on the calling thread and the workers
        (``threads - 1`` are started if fewer run; more, started by an earlier call, take
        tasks too), in chunks of one task (at most :data:`MAX_CHUNKS` chunks): 0, or the
        first non-zero code a chunk returned."""
        if tasks < 1:
            raise ValueError(f"tasks must be at least 1, got {tasks}")
        with self._lock:
            self._lib.tconv_pool_start(threads, self.spin_us)
            w, x, y, batch = args
            return int(self._run(task, w, x, y, batch, tasks, min(tasks, MAX_CHUNKS)))
