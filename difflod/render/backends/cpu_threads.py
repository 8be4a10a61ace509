"""numba's threading layer for the "cpu" kernels: OpenMP first, then TBB, then
numba's own workqueue.

numba's default order tries TBB first wherever libtbb is found. With TBB, a
process that ran parallel kernels can hang at exit: unloading numba's TBB pool
calls tbb::finalize, which waits for the worker threads in a sched_yield loop
that does not end (seen once at the end of `difflod demo` on the 2-core
development machine under load, Debian's libtbb 2021.8; numba issue 10556).
GNU OpenMP has no such exit path, and it is faster here: bench/render.py
--backend cpu --res 512 --batch 4 --triangles 20000, the two layers in
turn, three runs each, this 2-core machine otherwise idle: rasterize 24.2-28.6 ms
(TBB) vs 16.3-16.7 ms (OpenMP), the whole pipeline forward and backward
218.7-220.9 ms vs 177.4-197.0 ms.

A user's own choice (NUMBA_THREADING_LAYER or NUMBA_THREADING_LAYER_PRIORITY
in the environment) is kept. The order only matters before numba starts its
threads, at the first parallel kernel of the process; the "cpu" kernel
modules call `prefer_openmp()` when they are imported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["ORDER", "prefer_openmp"]

ORDER = ("omp", "tbb", "workqueue")


def prefer_openmp(environ: Mapping[str, str] | None = None) -> bool:
    """Make numba try OpenMP first, unless `environ` (os.environ) names a layer or
    an order. Returns whether the order was set."""
    env = os.environ if environ is None else environ
    if env.get("NUMBA_THREADING_LAYER", "default") != "default" or \
            "NUMBA_THREADING_LAYER_PRIORITY" in env:
        return False
    import numba

    numba.config.THREADING_LAYER_PRIORITY = list(ORDER)
    return True
