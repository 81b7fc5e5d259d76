"""Worker plugins: warm the Numba kernels when a worker starts, so no task pays for
compilation (the kernels load from Numba's on-disk cache), and keep large temporary arrays
in the heap (:func:`hemoflow.kernels._malloc.tune_malloc`)."""

from __future__ import annotations

import logging
import time

import numpy as np

from distributed.diagnostics.plugin import WorkerPlugin

log = logging.getLogger(__name__)

__all__ = ["KernelWarmup"]


def _warm_stages() -> None:
    """Run the tile code path once on a tiny synthetic field, which touches every
    compiled kernel the stages use (not only those :func:`hemoflow.kernels.warmup` knows)."""
    from hemoflow import synth
    from hemoflow.stages import analyze_field

    rgb, _ = synth.synth_field((384, 384), mpp=0.25, seed=0, n_wbc=1)
    analyze_field(rgb, mpp=0.25)
    # tile windows arrive as planar channels (ZarrSlide.read_region(interleave=False))
    analyze_field(np.moveaxis(np.ascontiguousarray(np.moveaxis(rgb, -1, 0)), 0, -1), mpp=0.25)
    # basin splitting runs only where a basin holds 2+ cells, which a small field may lack
    from hemoflow.stages._rbc_count import split_basins

    two = np.zeros((6, 12), np.int32)
    two[1:5, 1:11] = 1
    split_basins(two, np.array([2]))


class KernelWarmup(WorkerPlugin):
    """Compile or load every Numba kernel once per worker process."""

    name = "hemoflow-kernel-warmup"

    def setup(self, worker) -> None:
        from hemoflow import kernels
        from hemoflow.kernels._malloc import tune_malloc

        t0 = time.perf_counter()
        worker.hemoflow_malloc_tuned = tune_malloc()
        kernels.warmup()
        _warm_stages()
        worker.hemoflow_kernel_warmup_s = time.perf_counter() - t0
        log.debug("kernels warm on %s in %.2fs", worker.address, worker.hemoflow_kernel_warmup_s)
