"""Process pools for the parallel stages (dataset build, encoding splits): one BLAS thread per worker.

Workers are spawned, never forked (JAX is multithreaded and may already be
loaded), and each gets one BLAS/OpenMP thread: n workers on n cores. With
OpenBLAS's default of one thread per core, two workers densifying models ran
3.4x slower than single-threaded ones (threads spinning on each other's cores).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def process_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A spawn pool of ``workers`` single-threaded processes, shut down (pending work cancelled) on exit."""
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))  # read by each library when a worker loads it
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        list(pool.map(abs, range(workers)))  # start every worker now, while the variables are set
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
