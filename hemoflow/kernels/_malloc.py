"""Keep large temporary arrays in the C heap instead of fresh memory maps.

A tile's working images (a few to tens of MB each) are allocated and freed dozens of times
per tile. glibc serves blocks above its mmap threshold with a fresh ``mmap`` and unmaps
them on free, so every such array pays a page fault per 4 KB page on first touch, which
can cost a kernel call most of its time. Dask makes it worse: its
nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, so freed heap goes back to the
system at once too.

So worker processes get a 256 MB mmap threshold, a 512 MB trim threshold and one malloc
arena: freed blocks are reused without faults, and one arena keeps the threads' freed
memory in one place: tile tasks take about a third less time for a few percent more peak
memory (``benchmarks/slide_throughput.py --pipeline-only``; figures in
``docs/experiments/performance.md``). Raising the thresholds alone with ``mallopt`` after the worker
has started is as fast but peaks higher (arenas made earlier cannot be merged), hence the
environment at spawn (:func:`worker_environ`, used by :class:`hemoflow.Client` for its embedded cluster;
the Helm chart sets ``MALLOC_ARENA_MAX`` for its workers) plus :func:`tune_malloc` in the
worker plugin for workers started elsewhere. ``HEMOFLOW_MALLOC_TUNE=0`` turns both off.
Linux/glibc only; otherwise nothing is changed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys

__all__ = ["tune_malloc", "worker_environ", "spawn_environ"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_DONE: list[bool] = []

#: defaults; ``HEMOFLOW_MALLOC_MMAP_MB`` / ``HEMOFLOW_MALLOC_TRIM_MB`` override them
MMAP_MB = 256
TRIM_MB = 512


def _mb(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if raw.strip() == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        v = -1
    if v < 0:
        from hemoflow.errors import HemoflowError

        raise HemoflowError(f"{name} must be a whole number of MB >= 0, got {raw!r}")
    return v


def _settings(mmap_mb: int | None, trim_mb: int | None) -> tuple[bool, int, int]:
    """(on unless ``HEMOFLOW_MALLOC_TUNE=0``, mmap MB, trim MB): arguments, else the
    environment overrides, else the defaults."""
    on = os.environ.get("HEMOFLOW_MALLOC_TUNE", "1") != "0"
    mmap_mb = _mb("HEMOFLOW_MALLOC_MMAP_MB", MMAP_MB) if mmap_mb is None else mmap_mb
    trim_mb = _mb("HEMOFLOW_MALLOC_TRIM_MB", TRIM_MB) if trim_mb is None else trim_mb
    return on, int(mmap_mb), int(trim_mb)


def tune_malloc(mmap_mb: int | None = None, trim_mb: int | None = None, arena_max: int = 1) -> bool:
    """Raise glibc's mmap and trim thresholds for this process and cap its arenas (once,
    unless ``HEMOFLOW_MALLOC_TUNE=0``); True when applied."""
    if _DONE:
        return _DONE[0]
    on, mmap_mb, trim_mb = _settings(mmap_mb, trim_mb)
    ok = False
    if sys.platform.startswith("linux") and on:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # not glibc (musl has no mallopt)
            mallopt = None
        if mallopt is not None:
            ok = (bool(mallopt(_M_MMAP_THRESHOLD, mmap_mb << 20))
                  and bool(mallopt(_M_TRIM_THRESHOLD, trim_mb << 20))
                  and (arena_max <= 0 or bool(mallopt(_M_ARENA_MAX, int(arena_max)))))
    _DONE.append(ok)
    return ok


def worker_environ(base: dict | None = None, mmap_mb: int | None = None, trim_mb: int | None = None,
                   arena_max: int = 1) -> dict:
    """Environment for spawning worker processes (Dask's ``distributed.nanny.pre-spawn-environ``):
    ``base`` (default: that setting) plus glibc's ``MALLOC_ARENA_MAX``,
    ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` as :func:`tune_malloc` sets
    them, unless ``HEMOFLOW_MALLOC_TUNE=0``. Set at spawn, the arena cap holds for every
    thread of the worker (``mallopt`` later cannot merge arenas already made)."""
    if base is None:
        import dask

        base = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    env = dict(base)
    on, mmap_mb, trim_mb = _settings(mmap_mb, trim_mb)
    if on:
        env.update({"MALLOC_ARENA_MAX": int(arena_max), "MALLOC_MMAP_THRESHOLD_": mmap_mb << 20,
                    "MALLOC_TRIM_THRESHOLD_": trim_mb << 20})
    return env


@contextlib.contextmanager
def spawn_environ():
    """While a ``LocalCluster`` is built inside this block, its nannies spawn workers with
    :func:`worker_environ`. Dask lets a variable already in ``os.environ`` win over its
    ``pre-spawn-environ`` setting, and every nanny copies that setting into
    ``os.environ`` (so one plain ``LocalCluster`` earlier in the process leaves
    ``MALLOC_TRIM_THRESHOLD_=65536`` behind); hence the keys are also set in
    ``os.environ`` for the block, and restored after."""
    import dask

    env = worker_environ()
    extra = {k: str(v) for k, v in env.items() if k.startswith("MALLOC_")}
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
            yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
