"""Drives one job on a ``distributed`` cluster: the only module that submits Dask tasks.

The job is dynamic rather than one static graph, because a slide's tiles are only known
once it is ingested and a classification batch is only worth sending once enough WBC
crops are waiting:

1. ``prepare_slide`` per slide (hash, ledger check, ingest, the blood-smear QC gate,
   calibrate, plan tiles); a slide the gate rejects ends there, not counted;
2. ``run_tile`` per tile, as soon as its slide is planned (earlier slides first);
3. ``classify_batch`` over groups of finished tiles, from any slides, sized so a task
   holds about ``batch_size`` crops (``GPU_POOL_BATCHES`` times that when a GPU worker
   exists); it needs the worker resource ``GPU`` when any worker offers it, and runs on
   CPU workers otherwise;
4. ``finalize_slide`` once a slide's tiles and their batches are done (writes
   ``cells.parquet``, then the ledger marker);
5. ``summarize_patient_cells`` per patient, then ``slides.json``, ``patients.json``
   and ``job.json`` on the client.

Tile results stay on the workers; only summaries and small label arrays reach the client.

Fault tolerance: a worker that dies loses its running tasks and the results it held;
Dask reruns them elsewhere. When Dask gives a task up (``KilledWorker``, after
``distributed.scheduler.allowed-failures`` deaths), the driver resubmits it, and the
lost inputs it depends on, at most ``max_resubmits`` times. Every task is idempotent
(outputs are whole objects, tile records are keyed), so a rerun task changes nothing.
Task exceptions are retried once (``retries=1``) before the slide is marked failed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from hemoflow.config import JobConfig
from hemoflow.pipeline import tasks
from hemoflow.pipeline.work import Manifest
from hemoflow.stats.status import job_counts, job_status, patient_rows

log = logging.getLogger(__name__)

__all__ = ["JobRunner", "gpu_workers"]

#: With a GPU worker, a classify task pools this many ``batch_size`` batches of crops: per
#: task costs (concatenating crops, transfers, labels) dominate small tasks: on a GPU,
#: 4096 crops per task classify about 40 % more cells per second than 512
#: (``benchmarks/classify.py --worker``, docs/experiments/performance.md).
GPU_POOL_BATCHES = 8


def gpu_workers(client) -> list[str]:
    """Addresses of the workers that offer the Dask resource ``GPU``."""
    info = client.scheduler_info(n_workers=-1) if _accepts_n_workers(client) else client.scheduler_info()
    return [a for a, w in info.get("workers", {}).items() if w.get("resources", {}).get("GPU", 0) > 0]


def _accepts_n_workers(client) -> bool:
    import inspect

    try:
        return "n_workers" in inspect.signature(client.scheduler_info).parameters
    except (TypeError, ValueError):
        return False


@dataclass
class _Slide:
    plan: Any = None
    tiles: list = field(default_factory=list)  # futures, index = tile index
    labels: dict = field(default_factory=dict)  # tile index -> (batch future, position)
    tiles_done: int = 0
    batched: int = 0
    finalize: Any = None
    status: str = "pending"  # pending | ready | done | failed | rejected
    error: str = ""  # why it failed, or why the smear QC gate rejected it
    qc: dict | None = None
    summary: dict | None = None


class JobRunner:
    """Runs one job; :class:`hemoflow.jobs.client.Job` drives it from a thread."""

    def __init__(self, client, manifest: Manifest, out_url: str, *, config: JobConfig, params, crop,
                 model_sha: str, model_path: str | None = None, job_id: str | None = None,
                 tile_resume: bool = True, max_resubmits: int = 3, task_retries: int = 1):
        self.client = client
        self.manifest = manifest
        self.out_url = out_url.rstrip("/")
        self.config = config
        self.params = params
        self.crop = crop
        self.model_sha = model_sha
        self.model_path = model_path
        self.job_id = job_id or uuid.uuid4().hex[:12]
        self.tile_resume = tile_resume
        self.max_resubmits = max_resubmits
        self.task_retries = task_retries
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        # slides_done counts processed slides only; a slide ends done, failed or rejected
        self._progress = {"slides_total": len(manifest), "slides_done": 0, "slides_failed": 0,
                          "slides_rejected": 0, "slides_skipped": 0, "tiles_total": 0, "tiles_done": 0,
                          "tiles_resumed": 0, "cells": 0, "wbc_classified": 0, "tasks_resubmitted": 0}
        self.classified_on: set[str] = set()
        self._futures: list = []
        self.lock = None  # a hemoflow.jobs.lock.JobLock taken by the client, released at the end
        self._specs: dict[Any, tuple] = {}  # future key -> (fn, args, kwargs, key prefix, attempts)
        self._replaced: dict[Any, Any] = {}  # key of a lost future -> its resubmitted future

    # -- progress -----------------------------------------------------------------
    def progress(self) -> dict[str, int]:
        with self._lock:
            return dict(self._progress)

    def _bump(self, **kw: int) -> None:
        with self._lock:
            for k, v in kw.items():
                self._progress[k] += v

    def cancel(self) -> None:
        self.cancelled.set()
        try:
            self.client.cancel(list(self._futures))
        except Exception:  # cluster already gone
            pass

    def _submit(self, fn, *args, key_prefix: str, _attempt: int = 0, **kw):
        key = f"{key_prefix}-{self.job_id}-{uuid.uuid4().hex[:8]}"
        fut = self.client.submit(fn, *args, key=key, pure=False, **kw)
        self._futures.append(fut)
        self._specs[fut.key] = (fn, args, kw, key_prefix, _attempt)
        return fut

    # -- lost work ------------------------------------------------------------------
    @staticmethod
    def _lost(fut) -> bool:
        """True when ``fut`` erred because workers died (not because its task raised)."""
        from distributed.scheduler import KilledWorker

        if fut.status not in ("error", "erred"):
            return False
        try:
            return isinstance(fut.exception(), KilledWorker)
        except Exception:  # cancelled meanwhile
            return False

    def _fresh(self, x):
        """``x`` with every lost future in it replaced by a resubmitted one."""
        from distributed import Future

        if isinstance(x, Future):
            while x.key in self._replaced:
                x = self._replaced[x.key]
            if self._lost(x):
                new = self._resubmit(x)
                return x if new is None else new
            return x
        if isinstance(x, list):
            return [self._fresh(v) for v in x]
        if isinstance(x, tuple):
            return tuple(self._fresh(v) for v in x)
        return x

    def _resubmit(self, fut):
        """Submit the task of the lost ``fut`` again (fresh inputs), or None when out of attempts."""
        spec = self._specs.get(fut.key)
        if spec is None or spec[4] >= self.max_resubmits or self.cancelled.is_set():
            return None
        fn, args, kw, prefix, attempt = spec
        new = self._submit(fn, *[self._fresh(a) for a in args], key_prefix=prefix, _attempt=attempt + 1, **kw)
        self._replaced[fut.key] = new
        self._bump(tasks_resubmitted=1)
        log.warning("job %s: task %s lost with its worker; resubmitted (attempt %d of %d)",
                    self.job_id, fut.key, attempt + 2, self.max_resubmits + 1)
        return new

    # -- the job ------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run the job to its end (or cancellation); release the output's lock after."""
        if self.lock is not None:
            self.lock.start_heartbeat()
        try:
            return self._run()
        finally:
            if self.lock is not None:
                self.lock.release()

    def _run(self) -> dict[str, Any]:
        from distributed import as_completed

        t0 = time.perf_counter()
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        gpu = bool(gpu_workers(self.client))
        classify_kw = {"resources": {"GPU": 1}} if gpu else {}
        slides: dict[str, _Slide] = {e.slide_id: _Slide() for e in self.manifest}
        order = {e.slide_id: i for i, e in enumerate(self.manifest)}
        kinds: dict[Any, tuple] = {}
        ac = as_completed()
        self._write_running(started)
        for e in self.manifest:
            f = self._submit(tasks.prepare_slide, e, self.out_url, self.config, self.params, self.crop,
                             self.model_sha, self.tile_resume, key_prefix=f"prepare-{e.slide_id}", priority=10,
                             retries=self.task_retries)
            kinds[f] = ("prepare", e.slide_id)
            ac.add(f)

        pool: list[tuple[str, int, Any]] = []  # (slide_id, tile index, future)
        tiles_per_batch = 8
        prepares_left = len(self.manifest)
        tiles_running = 0

        def flush():
            nonlocal pool
            if not pool:
                return
            batch = pool
            pool = []
            f = self._submit(tasks.classify_batch, [t for _, _, t in batch], self.config.batch_size,
                             self.model_path, self.config.tta, key_prefix="classify", priority=5, retries=self.task_retries,
                             **classify_kw)
            kinds[f] = ("classify", batch)
            for pos, (sid, idx, _) in enumerate(batch):
                slides[sid].labels[idx] = (f, pos)
                slides[sid].batched += 1
            ac.add(f)

        def fail(sid: str, error: str) -> None:
            s = slides[sid]
            if s.status in ("done", "failed"):
                return
            from hemoflow.io import storage

            error = storage.redact(error)
            s.status, s.error = "failed", error
            self._bump(slides_failed=1)
            log.warning("slide %s failed: %s", sid, error)

        def reject(sid: str, plan) -> None:
            s = slides[sid]
            s.plan, s.status, s.error, s.qc = plan, "rejected", plan.error, plan.qc
            self._bump(slides_rejected=1)
            log.warning("slide %s rejected: %s", sid, plan.error)

        def maybe_finalize(sid: str) -> None:
            s = slides[sid]
            if s.status != "ready" or s.finalize is not None:
                return
            if s.tiles_done < len(s.tiles) or len(s.labels) < len(s.tiles):
                return
            labels = [s.labels[i] for i in range(len(s.tiles))]
            f = self._submit(tasks.finalize_slide, s.plan, s.tiles, labels, self.out_url,
                             key_prefix=f"finalize-{sid}", priority=20, retries=self.task_retries)
            s.finalize = f
            kinds[f] = ("finalize", sid)
            ac.add(f)

        def replace(kind: tuple, new) -> None:
            """Point the job's bookkeeping at the resubmitted future of a lost task."""
            if kind[0] == "tile":
                slides[kind[1]].tiles[kind[2]] = new
            elif kind[0] == "finalize":
                slides[kind[1]].finalize = new
            elif kind[0] == "classify":
                for pos, (sid, idx, _) in enumerate(kind[1]):
                    slides[sid].labels[idx] = (new, pos)
            for s in slides.values():  # inputs resubmitted on the way
                s.tiles = [self._fresh_known(t) for t in s.tiles]

        for fut in ac:
            if self.cancelled.is_set():
                break
            kind = kinds.pop(fut)
            if self._lost(fut):
                new = self._resubmit(fut)
                if new is not None:
                    kinds[new] = kind
                    replace(kind, new)
                    ac.add(new)
                    continue
            if kind[0] == "prepare":
                prepares_left -= 1
                sid = kind[1]
                s = slides[sid]
                plan = fut.result() if fut.status == "finished" else None
                if plan is None:
                    fail(sid, _future_error(fut))
                elif plan.status == "failed":
                    s.plan = plan
                    fail(sid, plan.error)
                elif plan.status == "rejected":
                    reject(sid, plan)
                elif plan.status == "done":
                    s.plan, s.status, s.summary = plan, "done", plan.summary
                    self._bump(slides_done=1, slides_skipped=1, cells=_n_cells(plan.summary))
                else:
                    s.plan, s.status = plan, "ready"
                    self._bump(tiles_total=len(plan.tiles))
                    # Tile tasks get the plan without its tile list: sending every tile
                    # to every task grew with the square of the tile count.
                    light = dataclasses.replace(plan, tiles=[])
                    for t in plan.tiles:
                        tf = self._submit(tasks.run_tile, light, t, self.params, self.crop,
                                          key_prefix=f"tile-{sid}-{t.index}", priority=-order[sid],
                                          retries=self.task_retries)
                        kinds[tf] = ("tile", sid, t.index)
                        s.tiles.append(tf)
                        ac.add(tf)
                    tiles_running += len(plan.tiles)
            elif kind[0] == "tile":
                _, sid, idx = kind
                tiles_running -= 1
                s = slides[sid]
                self._bump(tiles_done=1)
                if fut.status != "finished":
                    fail(sid, f"tile {idx}: {_future_error(fut)}")
                else:
                    s.tiles_done += 1
                    pool.append((sid, idx, fut))
                if len(pool) >= tiles_per_batch:
                    flush()
            elif kind[0] == "classify":
                batch = kind[1]
                if fut.status != "finished":
                    for sid in {b[0] for b in batch}:
                        fail(sid, f"classification: {_future_error(fut)}")
                else:
                    res = fut.result()
                    self.classified_on.add(res["worker"])
                    self._bump(wbc_classified=res["n"], cells=res["n_cells"], tiles_resumed=res.get("n_resumed", 0))
                    per_tile = res["n"] / max(1, len(batch))
                    if per_tile > 0:
                        target = self.config.batch_size * (GPU_POOL_BATCHES if gpu else 1)
                        tiles_per_batch = max(1, min(256, math.ceil(target / per_tile)))
                for sid in {b[0] for b in batch}:
                    maybe_finalize(sid)
            elif kind[0] == "finalize":
                sid = kind[1]
                s = slides[sid]
                if fut.status != "finished":
                    fail(sid, f"finalize: {_future_error(fut)}")
                else:
                    s.summary = self.client.submit(_get_summary, fut, pure=False).result()
                    s.status = "done"
                    self._bump(slides_done=1)
                    for f2 in s.tiles:  # release the tile results on the workers
                        self._specs.pop(f2.key, None)
                        f2.release()
                    self._specs.pop(fut.key, None)
            if prepares_left == 0 and tiles_running == 0 and pool:
                flush()
            if kind[0] in ("tile",):
                maybe_finalize(kind[1])

        if self.cancelled.is_set():
            from hemoflow.io import storage

            job = {**self._job_head(), "status": "cancelled", "started": started,
                   "seconds": round(time.perf_counter() - t0, 3), "progress": self.progress()}
            storage.atomic_write_bytes(f"{self.out_url}/job.json", _dumps(job))
            return _clean({"job": job, "slides": [], "patients": []})
        return self._finish(slides, started, time.perf_counter() - t0, gpu)

    def _fresh_known(self, fut):
        while fut.key in self._replaced:
            fut = self._replaced[fut.key]
        return fut

    def _job_head(self) -> dict[str, Any]:
        from hemoflow.io import storage

        return {
            "job_id": self.job_id,
            "config": self.config.to_dict(),
            "params": self.params.to_dict(),
            "crop": {"size": self.crop.size, "mpp": self.crop.mpp},
            "model_sha256": self.model_sha,
            "model_path": self.model_path,
            "tile_resume": self.tile_resume,
            "manifest": [dict(e.to_dict(), slide=storage.redact(e.slide)) for e in self.manifest],
        }

    def _write_running(self, started: str) -> None:
        """``job.json`` with ``status: running`` and all a resubmission needs
        (:meth:`hemoflow.jobs.client.Client.resume`)."""
        from hemoflow.io import storage

        storage.atomic_write_bytes(f"{self.out_url}/job.json",
                                   _dumps({**self._job_head(), "status": "running", "started": started}))

    def _finish(self, slides: dict[str, _Slide], started: str, seconds: float, gpu: bool) -> dict[str, Any]:
        from hemoflow.io import storage

        by_patient: dict[str, list] = {}
        for e in self.manifest:
            by_patient.setdefault(e.patient_id, []).append(e)
        patient_futs = {}
        unprocessed = {}
        for pid, entries in by_patient.items():
            if all(slides[e.slide_id].status != "done" for e in entries):  # no counts, not a row of zeros
                unprocessed[pid] = entries
                continue
            cells, ids = [], []
            for e in entries:
                s = slides[e.slide_id]
                if s.status != "done":
                    continue
                ids.append(e.slide_id)
                if s.finalize is not None:
                    cells.append(self.client.submit(_get_cells, s.finalize, pure=False))
                else:
                    cells.append(self.client.submit(tasks.read_cells, self.out_url, e.slide_id, pure=False))
            patient_futs[pid] = self._submit(tasks.summarize_patient_cells, pid, entries[0].specimen, cells, ids,
                                             key_prefix="patient")
        slide_rows = []
        failures, rejections = [], []
        for e in self.manifest:
            s = slides[e.slide_id]
            if s.status == "done":
                slide_rows.append(dict(s.summary or {}, skipped=s.finalize is None))
                continue
            row = {"slide_id": e.slide_id, "slide": e.slide_id if e.private else storage.redact(e.slide),
                   "patient_id": e.patient_id, "specimen": e.specimen}
            if s.status == "rejected":
                row.update(status="rejected", reason=s.error, qc=s.qc)
                rejections.append({"slide": row["slide"], "slide_id": e.slide_id, "reason": s.error})
            else:
                error = storage.redact(s.error or "not processed")
                row.update(status="failed", reason=error, error=error)
                failures.append({"slide": row["slide"], "slide_id": e.slide_id, "error": error})
            slide_rows.append(row)
        summaries = {pid: f.result() for pid, f in patient_futs.items()}
        patients = patient_rows(summaries, {pid: es[0].specimen for pid, es in unprocessed.items()}, slide_rows)
        progress = self.progress()
        progress["tiles_computed"] = progress["tiles_done"] - progress["tiles_resumed"]
        counts = job_counts(slide_rows)
        job = {
            **self._job_head(),
            "status": job_status(done=counts["slides_done"], rejected=counts["slides_rejected"],
                                 failed=counts["slides_failed"]),
            **counts,
            "started": started,
            "seconds": round(seconds, 3),
            "progress": progress,
            "failures": failures,
            "rejections": rejections,
            "classified_on": sorted(self.classified_on),
            "gpu_workers": gpu,
            "outputs": {"slides": f"{self.out_url}/slides.json", "patients": f"{self.out_url}/patients.json"},
        }
        storage.atomic_write_bytes(f"{self.out_url}/slides.json", _dumps(slide_rows))
        storage.atomic_write_bytes(f"{self.out_url}/patients.json", _dumps(patients))
        _write_csvs(self.out_url, slide_rows, patients)
        storage.atomic_write_bytes(f"{self.out_url}/job.json", _dumps(job))
        return _clean({"job": job, "slides": slide_rows, "patients": patients})


def _n_cells(summary: dict[str, Any] | None) -> int:
    """Cells of a finished slide's summary (``counts.cells``)."""
    s = summary or {}
    return int(s.get("n_cells") or (s.get("counts") or {}).get("cells") or 0)


def _get_summary(res: dict[str, Any]) -> dict[str, Any]:
    return res["summary"]


def _get_cells(res: dict[str, Any]):
    return res["cells"]


def _future_error(fut) -> str:
    try:
        exc = fut.exception()
    except Exception as e:  # cancelled futures raise here
        return f"{type(e).__name__}: {e}"
    return f"{type(exc).__name__}: {exc}" if exc is not None else f"task {fut.status}"


def _dumps(obj: Any) -> bytes:
    return json.dumps(_clean(obj), indent=2, default=_json_default, allow_nan=False).encode()


def _clean(o: Any) -> Any:
    """Replace non-finite floats by None, recursively (JSON has no NaN)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def _json_default(o: Any):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _write_csvs(out_url: str, slides: list[dict], patients: list[dict]) -> None:
    from hemoflow.io import storage

    try:
        from hemoflow.stats.aggregate import summaries_to_frames
    except ImportError:  # pragma: no cover - stats layer always ships it
        return
    s_df, p_df = summaries_to_frames(slides, patients)
    storage.atomic_write_bytes(f"{out_url}/slides.csv", s_df.to_csv(index=False).encode())
    storage.atomic_write_bytes(f"{out_url}/patients.csv", p_df.to_csv(index=False).encode())
