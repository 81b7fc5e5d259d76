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
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from hemoflow.config import JobConfig
from hemoflow.pipeline import results, tasks
from hemoflow.pipeline.work import Manifest
from hemoflow.stats.status import patient_rows

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
        t0 = time.perf_counter()
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        loop = _JobLoop(self, gpu=bool(gpu_workers(self.client)))
        self._write_running(started)
        loop.submit_prepares()
        loop.drain()
        if self.cancelled.is_set():
            job = {**self._job_head(), "status": "cancelled", "started": started,
                   "seconds": round(time.perf_counter() - t0, 3), "progress": self.progress()}
            results.write_job(self.out_url, job)
            return results.clean({"job": job, "slides": [], "patients": []})
        return self._finish(loop.slides, started, time.perf_counter() - t0, loop.gpu)

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
        results.write_job(self.out_url, {**self._job_head(), "status": "running", "started": started})

    def _finish(self, slides: dict[str, _Slide], started: str, seconds: float, gpu: bool) -> dict[str, Any]:
        patient_futs, unprocessed = self._summarize_patients(slides)
        rows, failures, rejections = results.slide_rows(self.manifest, slides)
        summaries = {pid: f.result() for pid, f in patient_futs.items()}
        patients = patient_rows(summaries, {pid: es[0].specimen for pid, es in unprocessed.items()}, rows)
        job = results.job_record(self._job_head(), out_url=self.out_url, rows=rows, failures=failures,
                                 rejections=rejections, progress=self.progress(), started=started,
                                 seconds=seconds, classified_on=self.classified_on, gpu=gpu)
        return results.write_outputs(self.out_url, rows, patients, job)

    def _summarize_patients(self, slides: dict[str, _Slide]) -> tuple[dict[str, Any], dict[str, list]]:
        """Submit one ``summarize_patient_cells`` per patient with a done slide; return
        those futures and the patients left without one."""
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
        return patient_futs, unprocessed


class _JobLoop:
    """One job's event loop: which future is which task, the finished tiles waiting for
    a classification batch, and what is still running. It reacts to each finished task
    by submitting what that task unblocks."""

    def __init__(self, runner: JobRunner, *, gpu: bool):
        from distributed import as_completed

        self.runner = runner
        self.gpu = gpu
        self.classify_kw = {"resources": {"GPU": 1}} if gpu else {}
        self.slides: dict[str, _Slide] = {e.slide_id: _Slide() for e in runner.manifest}
        self.order = {e.slide_id: i for i, e in enumerate(runner.manifest)}
        self.kinds: dict[Any, tuple] = {}  # future -> ("prepare", sid) | ("tile", sid, index) | ...
        self.ac = as_completed()
        self.pool: list[tuple[str, int, Any]] = []  # (slide_id, tile index, future)
        self.tiles_per_batch = 8
        self.prepares_left = len(runner.manifest)
        self.tiles_running = 0

    def _add(self, fut, kind: tuple) -> None:
        self.kinds[fut] = kind
        self.ac.add(fut)

    def submit_prepares(self) -> None:
        r = self.runner
        for e in r.manifest:
            f = r._submit(tasks.prepare_slide, e, r.out_url, r.config, r.params, r.crop, r.model_sha, r.tile_resume,
                          key_prefix=f"prepare-{e.slide_id}", priority=10, retries=r.task_retries)
            self._add(f, ("prepare", e.slide_id))

    def drain(self) -> None:
        """Handle finished tasks until none is left or the job is cancelled."""
        for fut in self.ac:
            if self.runner.cancelled.is_set():
                break
            kind = self.kinds.pop(fut)
            if self.runner._lost(fut):
                new = self.runner._resubmit(fut)
                if new is not None:
                    self.kinds[new] = kind
                    self._replace(kind, new)
                    self.ac.add(new)
                    continue
            handle = {"prepare": self._on_prepare, "tile": self._on_tile, "classify": self._on_classify,
                      "finalize": self._on_finalize}[kind[0]]
            handle(fut, *kind[1:])
            if self.prepares_left == 0 and self.tiles_running == 0 and self.pool:
                self._flush()
            if kind[0] == "tile":
                self._maybe_finalize(kind[1])

    # -- one handler per kind of task ------------------------------------------------
    def _on_prepare(self, fut, sid: str) -> None:
        self.prepares_left -= 1
        s = self.slides[sid]
        plan = fut.result() if fut.status == "finished" else None
        if plan is None:
            self._fail(sid, _future_error(fut))
        elif plan.status == "failed":
            s.plan = plan
            self._fail(sid, plan.error)
        elif plan.status == "rejected":
            self._reject(sid, plan)
        elif plan.status == "done":
            s.plan, s.status, s.summary = plan, "done", plan.summary
            self.runner._bump(slides_done=1, slides_skipped=1, cells=_n_cells(plan.summary))
        else:
            s.plan, s.status = plan, "ready"
            self.runner._bump(tiles_total=len(plan.tiles))
            self._submit_tiles(sid, plan)

    def _submit_tiles(self, sid: str, plan) -> None:
        r = self.runner
        # Tile tasks get the plan without its tile list: sending every tile
        # to every task grew with the square of the tile count.
        light = dataclasses.replace(plan, tiles=[])
        for t in plan.tiles:
            tf = r._submit(tasks.run_tile, light, t, r.params, r.crop, key_prefix=f"tile-{sid}-{t.index}",
                           priority=-self.order[sid], retries=r.task_retries)
            self.kinds[tf] = ("tile", sid, t.index)
            self.slides[sid].tiles.append(tf)
            self.ac.add(tf)
        self.tiles_running += len(plan.tiles)

    def _on_tile(self, fut, sid: str, idx: int) -> None:
        self.tiles_running -= 1
        self.runner._bump(tiles_done=1)
        if fut.status != "finished":
            self._fail(sid, f"tile {idx}: {_future_error(fut)}")
        else:
            self.slides[sid].tiles_done += 1
            self.pool.append((sid, idx, fut))
        if len(self.pool) >= self.tiles_per_batch:
            self._flush()

    def _on_classify(self, fut, batch: list) -> None:
        if fut.status != "finished":
            for sid in {b[0] for b in batch}:
                self._fail(sid, f"classification: {_future_error(fut)}")
        else:
            res = fut.result()
            self.runner.classified_on.add(res["worker"])
            self.runner._bump(wbc_classified=res["n"], cells=res["n_cells"], tiles_resumed=res.get("n_resumed", 0))
            self._resize_batches(res["n"] / max(1, len(batch)))
        for sid in {b[0] for b in batch}:
            self._maybe_finalize(sid)

    def _resize_batches(self, per_tile: float) -> None:
        """Pool as many tiles per classify task as hold about the target count of crops."""
        if per_tile > 0:
            target = self.runner.config.batch_size * (GPU_POOL_BATCHES if self.gpu else 1)
            self.tiles_per_batch = max(1, min(256, math.ceil(target / per_tile)))

    def _on_finalize(self, fut, sid: str) -> None:
        r = self.runner
        s = self.slides[sid]
        if fut.status != "finished":
            self._fail(sid, f"finalize: {_future_error(fut)}")
            return
        s.summary = r.client.submit(_get_summary, fut, pure=False).result()
        s.status = "done"
        r._bump(slides_done=1)
        for f2 in s.tiles:  # release the tile results on the workers
            r._specs.pop(f2.key, None)
            f2.release()
        r._specs.pop(fut.key, None)

    # -- bookkeeping -------------------------------------------------------------------
    def _flush(self) -> None:
        """Send the pooled tiles to one classify task."""
        if not self.pool:
            return
        r = self.runner
        batch, self.pool = self.pool, []
        f = r._submit(tasks.classify_batch, [t for _, _, t in batch], r.config.batch_size, r.model_path,
                      r.config.tta, key_prefix="classify", priority=5, retries=r.task_retries, **self.classify_kw)
        self.kinds[f] = ("classify", batch)
        for pos, (sid, idx, _) in enumerate(batch):
            self.slides[sid].labels[idx] = (f, pos)
            self.slides[sid].batched += 1
        self.ac.add(f)

    def _maybe_finalize(self, sid: str) -> None:
        """Submit ``finalize_slide`` once every tile of a ready slide has its labels."""
        s = self.slides[sid]
        if s.status != "ready" or s.finalize is not None:
            return
        if s.tiles_done < len(s.tiles) or len(s.labels) < len(s.tiles):
            return
        r = self.runner
        labels = [s.labels[i] for i in range(len(s.tiles))]
        f = r._submit(tasks.finalize_slide, s.plan, s.tiles, labels, r.out_url,
                      key_prefix=f"finalize-{sid}", priority=20, retries=r.task_retries)
        s.finalize = f
        self._add(f, ("finalize", sid))

    def _fail(self, sid: str, error: str) -> None:
        s = self.slides[sid]
        if s.status in ("done", "failed"):
            return
        from hemoflow.io import storage

        error = storage.redact(error)
        s.status, s.error = "failed", error
        self.runner._bump(slides_failed=1)
        log.warning("slide %s failed: %s", sid, error)

    def _reject(self, sid: str, plan) -> None:
        s = self.slides[sid]
        s.plan, s.status, s.error, s.qc = plan, "rejected", plan.error, plan.qc
        self.runner._bump(slides_rejected=1)
        log.warning("slide %s rejected: %s", sid, plan.error)

    def _replace(self, kind: tuple, new) -> None:
        """Point the job's bookkeeping at the resubmitted future of a lost task."""
        if kind[0] == "tile":
            self.slides[kind[1]].tiles[kind[2]] = new
        elif kind[0] == "finalize":
            self.slides[kind[1]].finalize = new
        elif kind[0] == "classify":
            for pos, (sid, idx, _) in enumerate(kind[1]):
                self.slides[sid].labels[idx] = (new, pos)
        for s in self.slides.values():  # inputs resubmitted on the way
            s.tiles = [self.runner._fresh_known(t) for t in s.tiles]


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
