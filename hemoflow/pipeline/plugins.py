"""Worker plugins: warm the Numba kernels when a worker starts, so no task pays for
compilation (the kernels load from Numba's on-disk cache)."""

from __future__ import annotations

import logging
import time

from distributed.diagnostics.plugin import WorkerPlugin

log = logging.getLogger(__name__)

__all__ = ["KernelWarmup"]


class KernelWarmup(WorkerPlugin):
    """Compile or load every Numba kernel once per worker process."""

    name = "hemoflow-kernel-warmup"

    def setup(self, worker) -> None:
        from hemoflow import kernels

        t0 = time.perf_counter()
        kernels.warmup()
        worker.hemoflow_kernel_warmup_s = time.perf_counter() - t0
        log.debug("kernels warm on %s in %.2fs", worker.address, worker.hemoflow_kernel_warmup_s)
