"""Console helpers of the ``hemoflow`` command: progress on stderr, never a silent wait.

- :class:`ProgressBar` draws a job's progress (one updating line on a terminal, a plain
  line every few seconds otherwise, and at least every ``heartbeat`` seconds).
- :class:`Heartbeat` says what a long step is doing while it runs.
- option values (:func:`positive_float`, :func:`segment_params` for ``--param``) and the
  tables the commands print (:func:`print_patients`, :func:`print_fields`).
- :func:`warm_kernels` compiles the Numba kernels (or loads them from Numba's on-disk
  cache) in this process, with a message and per-step times, so that worker processes
  started afterwards load them from the cache instead of each compiling them in silence.

Only the CLI uses this module; library code logs.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import threading
import time
from typing import Any, Callable, Sequence, TextIO

from hemoflow.errors import HemoflowError

__all__ = ["ProgressBar", "Heartbeat", "warm_kernels", "kernels_cached", "say", "UsageError", "positive_float",
           "positive_int", "key_value", "segment_params", "print_patients", "print_fields", "json_default", "fmt"]


def say(msg: str, stream: TextIO | None = None) -> None:
    """Print ``msg`` on stderr (stdout is kept for tables and JSON)."""
    s = stream or sys.stderr
    s.write(msg + "\n")
    s.flush()


class ProgressBar:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal).

    Off a terminal a line is printed when the state changed and ``every`` seconds have
    passed, and at least every ``heartbeat`` seconds even when nothing changed.
    """

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30, every: float = 5.0,
                 heartbeat: float = 30.0):
        self.label, self.stream, self.width = label, stream or sys.stderr, width
        self.every, self.heartbeat = every, heartbeat
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self._last: object = None
        self._t0 = time.perf_counter()
        self._last_print = -1e9

    def __call__(self, p: dict[str, int]) -> None:
        # Slides and tiles both count, so the bar reaches 100% only when slides are final;
        # a rejected or failed slide is final too.
        final = p.get("slides_done", 0) + p.get("slides_failed", 0) + p.get("slides_rejected", 0)
        done = p.get("tiles_done", 0) + final
        total = p.get("tiles_total", 0) + p.get("slides_total", 0)
        frac = min(1.0, done / total) if total else 0.0
        n = int(frac * self.width)
        state = (p.get("slides_done"), p.get("tiles_done"), p.get("tiles_total"), p.get("slides_failed"),
                 p.get("slides_rejected"))
        now = time.perf_counter()
        line = (f"{self.label} [{'#' * n}{'.' * (self.width - n)}] {frac * 100:5.1f}% "
                f"slides {p.get('slides_done', 0)}/{p.get('slides_total', 0)} "
                f"tiles {p.get('tiles_done', 0)}/{p.get('tiles_total', 0)} "
                f"cells {p.get('cells', 0):,} failed {p.get('slides_failed', 0)} "
                f"rejected {p.get('slides_rejected', 0)} "
                f"{now - self._t0:6.1f}s")
        if self.tty:
            self.stream.write("\r" + line)
        elif ((state != self._last and (now - self._last_print >= self.every or frac >= 1.0))
              or now - self._last_print >= self.heartbeat):
            self.stream.write(line + "\n")
            self._last_print = now
            self._last = state
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


class Heartbeat:
    """Context manager that reports a long step while it runs.

    Prints ``msg ...`` at the start; then, on a terminal, the elapsed seconds each second
    on the same line, otherwise a ``still working`` line every ``every`` seconds; and
    ``done in N s`` at the end.

    >>> import io
    >>> with Heartbeat("counting", stream=io.StringIO()) as hb:
    ...     pass
    >>> hb.seconds >= 0
    True
    """

    def __init__(self, msg: str, stream: TextIO | None = None, every: float = 15.0):
        self.msg, self.stream, self.every = msg, stream or sys.stderr, every
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Heartbeat":
        self._t0 = time.perf_counter()
        self.stream.write(f"{self.msg} ..." + ("" if self.tty else "\n"))
        self.stream.flush()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        period = 1.0 if self.tty else self.every
        while not self._stop.wait(period):
            el = time.perf_counter() - self._t0
            if self.tty:
                self.stream.write(f"\r{self.msg} ... {el:.0f}s")
            else:
                self.stream.write(f"{self.msg}: still working ({el:.0f}s)\n")
            self.stream.flush()

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.seconds = time.perf_counter() - self._t0
        end = "done" if exc_type is None else "stopped"
        self.stream.write(("\r" if self.tty else "") + f"{self.msg}: {end} in {self.seconds:.1f}s\n")
        self.stream.flush()


def _dispatchers() -> list[Any]:
    """The cached Numba functions of hemoflow's kernels and stages (imports them)."""
    import importlib
    import pkgutil

    from numba.core.dispatcher import Dispatcher

    import hemoflow.kernels
    import hemoflow.stages

    out = []
    for pkg in (hemoflow.kernels, hemoflow.stages):
        for info in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."):
            mod = importlib.import_module(info.name)
            out += [v for v in vars(mod).values() if isinstance(v, Dispatcher) and v._cache is not None]
    return out


def kernels_cached() -> bool:
    """Whether Numba's on-disk cache holds an index for every hemoflow kernel.

    True when most kernels have an index (some helpers are compiled only inside their
    callers). An index can still be stale (the source changed since), so True means
    "probably fast"; it decides only whether the CLI compiles ahead, with a message.
    """
    try:
        disp = _dispatchers()
        # helpers that the warm-up path never calls on their own have no index of their own
        found = sum(os.path.exists(d._cache._cache_file._index_path) for d in disp)
        return found > len(disp) // 2
    except Exception:  # numba's cache layout is private: when in doubt, say it may compile
        return False


def warm_kernels(stream: TextIO | None = None, *, quiet_when_cached: bool = False) -> float:
    """Compile (or load from cache) every Numba kernel a tile task uses; return seconds.

    The steps are those of the worker plugin (:class:`hemoflow.pipeline.plugins.KernelWarmup`):
    the kernels' own warm-up, then one small synthetic field through every stage.
    """
    from hemoflow import kernels
    from hemoflow.pipeline.plugins import _warm_stages

    cached = kernels_cached()
    if cached and quiet_when_cached:
        steps: list[tuple[str, Callable[[], Any]]] = [("", kernels.warmup), ("", _warm_stages)]
        t0 = time.perf_counter()
        for _, fn in steps:
            fn()
        return time.perf_counter() - t0
    if cached:
        say("loading the compiled Numba kernels from the cache", stream)
    else:
        say("compiling the Numba kernels: once per install, a few minutes on 2 cores; later runs load them "
            "from the cache (`hemoflow warmup` does this ahead of time)", stream)
    t0 = time.perf_counter()
    for i, (name, fn) in enumerate([("labelling and region measurement", kernels.warmup),
                                    ("segmentation and counting stages", _warm_stages)], 1):
        with Heartbeat(f"  [{i}/2] {name}", stream=stream):
            fn()
    return time.perf_counter() - t0


# -- option values ----------------------------------------------------------------------
class UsageError(HemoflowError):
    """The command line is wrong (exit status 2)."""


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return v


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def segment_params(pairs: Sequence[tuple[str, str]] | None) -> Any:
    """``SegmentParams`` with the ``--param KEY=VALUE`` overrides applied (None without any).

    Keys are the fields of :class:`hemoflow.stages.SegmentParams`; values are parsed by
    the field's type (booleans as 0/1/true/false, a range as ``lo,hi``).

    Raises
    ------
    UsageError
        Unknown key or invalid value, naming ``--param``.
    """
    if not pairs:
        return None
    from hemoflow.config import parse_bool
    from hemoflow.stages import SegmentParams

    defaults = SegmentParams()
    known = {f.name for f in dataclasses.fields(SegmentParams)}
    kw: dict[str, Any] = {}
    for key, value in pairs:
        if key not in known:
            raise UsageError(f"--param {key}: unknown parameter; known: {', '.join(sorted(known))}")
        default = getattr(defaults, key)
        try:
            if isinstance(default, bool):
                kw[key] = parse_bool(key, value)
            elif isinstance(default, tuple):
                kw[key] = tuple(float(x) for x in value.split(","))
            elif isinstance(default, float):
                kw[key] = float(value)
            else:
                kw[key] = value
        except (ValueError, HemoflowError):
            raise UsageError(f"--param {key}={value}: expected {type(default).__name__} "
                             f"like the default {default!r}") from None
    try:
        return SegmentParams(**kw)
    except HemoflowError as e:
        raise UsageError(f"--param: {e}") from None


# -- tables -------------------------------------------------------------------------------
def print_patients(patients: list[dict[str, Any]], truth: dict[str, list] | None) -> None:
    from hemoflow.demo import TYPES, truth_summary

    hdr = (f"{'patient':<10} {'':<9} {'WBC':>6} {'RBC':>7} {'PLT':>5} "
           + " ".join(f"{t[:5] + '%':>7}" for t in TYPES) + f" {'RBC µm²':>8}")  # mean RBC area
    print(hdr)
    print("-" * len(hdr))
    for p in patients:
        counts = p.get("counts") or {}
        diff = p.get("differential") or {}
        pct = {t: (diff.get(t, {}) or {}).get("percent") for t in TYPES}
        if pct.get("blast") is None:
            pct["blast"] = (p.get("blast", {}) or {}).get("percent")
        status = p.get("status")
        label = "measured" if status in (None, "ok", "measured") else str(status)[:9]
        # a patient with no processed slide has no counts: dashes, not a row of zeros
        n = {k: counts.get(k, "-") if counts else "-" for k in ("wbc", "rbc", "platelet")}
        print(f"{p['patient_id']:<10} {label:<9} {n['wbc']:>6} {n['rbc']:>7} {n['platelet']:>5} "
              + " ".join(fmt(pct[t]) for t in TYPES) + f" {fmt(_rbc_area(p), 8)}")
        if truth and p["patient_id"] in truth:
            t = truth_summary(truth[p["patient_id"]])
            print(f"{'':<10} {'truth':<9} {t['wbc']:>6} {t['rbc']:>7} {t['platelets']:>5} "
                  + " ".join(fmt(t["diff"][k]) for k in TYPES))


def _rbc_area(p: dict[str, Any]) -> float | None:
    """Mean RBC area (µm²) of a patient summary."""
    v = ((p.get("morphology") or {}).get("rbc") or {}).get("area_um2_mean")
    return float(v) if isinstance(v, (int, float)) else None


def fmt(v: float | None, width: int = 7) -> str:
    return f"{v:{width}.1f}" if v is not None else f"{'-':>{width}}"


def json_default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def print_fields(results: list[dict[str, Any]]) -> None:
    import numpy as np

    print(f"{'image':<40} {'WBC':>4} {'RBC':>5} {'PLT':>4} {'RBC µm²':>8} {'µm/px':>6}  WBC types")
    for r in results:
        types = [c.get("wbc_type") for c in r["cells"] if c.get("cls") == "wbc"]
        wt = ",".join(t or "?" for t in types) if any(types) else "-"
        areas = [c["area_um2"] for c in r["cells"] if c.get("cls") == "rbc"]
        area = float(np.mean(areas)) if areas else None
        if r.get("mpp_pooled_over"):
            est = f" (estimated over {r['mpp_pooled_over']} fields)"
        else:
            est = " (estimated)" if r.get("mpp_estimated") else ""
        print(f"{r['image']:<40} {r['wbc']:>4} {r['rbc']:>5} {r['platelets']:>4} {fmt(area, 8)} "
              f"{r['mpp']:>6.3f}  {wt}{est}")
