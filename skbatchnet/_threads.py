"""How many threads the compiled loop runs on, counted as scikit-learn counts.

The loop's threads are OpenMP's (``_pass.pxd``), and every result is the same
bits on any number of them, so the count is free to follow the machine:

- as many as OpenMP allows in the calling thread: ``OMP_NUM_THREADS``, or
  the limit of ``threadpoolctl.threadpool_limits`` (which also limits joblib's
  workers, whose processes get ``OMP_NUM_THREADS`` from joblib), and without
  either at most the physical cores, as in scikit-learn's
  ``_openmp_effective_n_threads``;
- shared among the fits running at once in this process (threads of
  ``GridSearchCV`` under the threading backend, Dask's threaded scheduler),
  so that together they use the cores once, not once each;
- one where scipy's BLAS is not OpenBLAS. The loop's products inside its
  threads must run on one thread each; OpenBLAS does so below a size it is
  built with (``_codes.ONE_THREAD_GEMM``), which the tiles respect, and no
  per-call thread count exists to ask the same of another vendor's BLAS;
- one in a forked child. GNU OpenMP's threads do not survive ``fork``, and a
  team started in the child of a process that had one hangs; the loop runs
  without starting one (scikit-learn documents the same limit and asks for
  the ``forkserver`` or ``spawn`` start methods).

A fit sets no process-wide limit: the count goes to the loop as an argument.
"""

import contextlib
import functools
import os
import threading

__all__ = ["blas_vendor", "loop_threads", "splits_products"]

_lock = threading.Lock()
_running = [0]  # compiled epochs in flight in this process
_forked = [False]


def _in_child():
    global _lock
    _forked[0] = True
    _running[0] = 0
    _lock = threading.Lock()  # another thread may have held it at the fork


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_in_child)


@functools.cache
def blas_vendor():
    """The BLAS that scipy's ``cython_blas`` calls, as threadpoolctl names
    it (``'openblas'``, ``'mkl'``, ...), or None when it cannot tell: then
    several or none were found."""
    import scipy.linalg  # noqa: F401 - loads scipy's BLAS
    from threadpoolctl import threadpool_info

    blas = [info for info in threadpool_info() if info["user_api"] == "blas"]
    apis = {info["internal_api"] for info in blas}
    return apis.pop() if len(apis) == 1 else None


def splits_products():
    """Whether the loop cuts its products into one-thread tiles (OpenBLAS)."""
    return blas_vendor() == "openblas"


@functools.cache
def _cores():
    """The physical cores this process may use (joblib reads the CPU
    affinity and cgroup quotas, which takes a tenth of a millisecond: once
    per process, not once per epoch)."""
    from joblib import cpu_count

    return cpu_count(only_physical_cores=True)


@contextlib.contextmanager
def loop_threads(openmp_max_threads, split):
    """The thread count of one compiled epoch, counted while it runs.

    ``openmp_max_threads`` is the compiled epoch's query of OpenMP's count
    in this thread (None for a build without OpenMP); ``split`` whether the
    plan cuts its products into tiles.
    """
    with _lock:
        _running[0] += 1
        sharing = _running[0]
    try:
        if _forked[0] or not split or openmp_max_threads is None:
            yield 1
            return
        count = openmp_max_threads()
        if "OMP_NUM_THREADS" not in os.environ:
            count = min(count, _cores())
        yield max(1, count // sharing)
    finally:
        with _lock:
            _running[0] -= 1
