"""Process pools for the parallel stages (dataset build, encoding splits): one BLAS thread per worker.

Workers are spawned, never forked (JAX is multithreaded and may already be
loaded), and each gets one BLAS/OpenMP thread: n workers on n cores. With
OpenBLAS's default of one thread per core, two workers densifying models ran
3.4x slower than single-threaded ones (threads spinning on each other's cores).
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _exit_with(parent: int) -> None:
    """In a worker: exit as soon as ``parent`` is gone (a killed build must not leave workers computing)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


@contextlib.contextmanager
def process_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A spawn pool of ``workers`` single-threaded processes, shut down (pending work cancelled) on exit."""
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))  # read by each library when a worker loads it
    pool = ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_exit_with, initargs=(os.getpid(),)
    )
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


def in_order(first: int, submit: Callable, result: Callable, ahead: int) -> Iterator[tuple[int, Any]]:
    """(k, result of job k) for k = first, first + 1, ...: ``ahead`` jobs submitted ahead, results yielded in order.

    ``submit(k)`` starts job k and returns a handle; ``result(handle)`` waits for it. Closing the generator
    leaves the jobs still pending to the pool's shutdown (cancelled).
    """
    pending = collections.deque((k, submit(k)) for k in range(first, first + ahead))
    while pending:
        k, handle = pending.popleft()
        pending.append((k + ahead, submit(k + ahead)))
        yield k, result(handle)


def shard_results(
    fn: Callable, args_of: Callable[[int], tuple], first: int, workers: int, ray_address: str | None
) -> Generator[tuple[int, Any], None, None]:
    """(k, fn(*args_of(k))) for k = first, first + 1, ..., in order: in this process (``workers`` 1), in a process
    pool of ``workers``, or as Ray tasks on the cluster at ``ray_address``. Close it to stop (pending jobs cancelled)."""
    if ray_address is not None:
        import ray

        ray.init(address=ray_address, ignore_reinit_error=True, log_to_driver=False)
        remote = ray.remote(fn)
        yield from in_order(first, lambda k: remote.remote(*args_of(k)), ray.get, ahead=max(2, workers))
        return
    if workers <= 1:
        k = first
        while True:
            yield k, fn(*args_of(k))
            k += 1
    with process_pool(workers) as pool:
        yield from in_order(first, lambda k: pool.submit(fn, *args_of(k)), lambda f: f.result(), ahead=workers)
