"""Keep large temporary arrays in the C heap instead of fresh memory maps.

A tile's working images (a few to tens of MB each) are allocated and freed dozens of times
per tile. glibc serves blocks above its mmap threshold with a fresh ``mmap`` and unmaps
them on free, so every such array pays a page fault per 4 KB page on first touch: measured
here, a 2048² kernel call spent 17 ms of its 19 ms in page faults. Raising the mmap and
trim thresholds lets freed blocks be reused without faults: 0.72-0.77 s -> 0.64-0.67 s per
4096² field (``analyze_field``, same process, alternating runs). The cost is memory: the
process keeps freed heap instead of returning it, and a tile worker's peak RSS rose from
645-660 MB to 993-1002 MB in ``benchmarks/slide_throughput.py --quick`` (the speed-up there
was within the run-to-run noise). So it is opt-in: ``HEMOFLOW_MALLOC_TUNE=1`` in the
workers' environment. Linux/glibc only; otherwise nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["tune_malloc"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_DONE: list[bool] = []


def tune_malloc(mmap_mb: int = 256, trim_mb: int = 512) -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once, when
    ``HEMOFLOW_MALLOC_TUNE=1``); True when applied."""
    if _DONE:
        return _DONE[0]
    ok = False
    if sys.platform.startswith("linux") and os.environ.get("HEMOFLOW_MALLOC_TUNE", "0") == "1":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # not glibc (musl has no mallopt)
            mallopt = None
        if mallopt is not None:
            ok = bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_mb) << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, int(trim_mb) << 20))
    _DONE.append(ok)
    return ok
