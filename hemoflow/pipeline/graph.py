"""Drives one job on a ``distributed`` cluster: the only module that submits Dask tasks.

The job is dynamic rather than one static graph, because a slide's tiles are only known
once it is ingested and a classification batch is only worth sending once enough WBC
crops are waiting:

1. ``prepare_slide`` per slide (hash, ledger check, ingest, calibrate, plan tiles);
2. ``run_tile`` per tile, as soon as its slide is planned (earlier slides first);
3. ``classify_batch`` over groups of finished tiles, from any slides, sized so a batch
   holds about ``batch_size`` crops; it needs the worker resource ``GPU`` when any
   worker offers it, and runs on CPU workers otherwise;
4. ``finalize_slide`` once a slide's tiles and their batches are done (writes
   ``cells.parquet``, then the ledger marker);
5. ``summarize_patient_cells`` per patient, then ``slides.json``, ``patients.json``
   and ``job.json`` on the client.

Tile results stay on the workers; only summaries and small label arrays reach the client.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from hemoflow.config import JobConfig
from hemoflow.jobs.manifest import Manifest
from hemoflow.pipeline import tasks

log = logging.getLogger(__name__)

__all__ = ["JobRunner", "gpu_workers"]


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
    status: str = "pending"  # pending | ready | done | failed
    error: str = ""
    summary: dict | None = None


class JobRunner:
    """Runs one job; :class:`hemoflow.jobs.client.Job` drives it from a thread."""

    def __init__(self, client, manifest: Manifest, out_url: str, *, config: JobConfig, params, crop,
                 model_sha: str, model_path: str | None = None, job_id: str | None = None):
        self.client = client
        self.manifest = manifest
        self.out_url = out_url.rstrip("/")
        self.config = config
        self.params = params
        self.crop = crop
        self.model_sha = model_sha
        self.model_path = model_path
        self.job_id = job_id or uuid.uuid4().hex[:12]
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._progress = {"slides_total": len(manifest), "slides_done": 0, "slides_failed": 0,
                          "slides_skipped": 0, "tiles_total": 0, "tiles_done": 0, "cells": 0, "wbc_classified": 0}
        self.classified_on: set[str] = set()
        self._futures: list = []

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

    def _submit(self, fn, *args, key_prefix: str, **kw):
        key = f"{key_prefix}-{self.job_id}-{uuid.uuid4().hex[:8]}"
        fut = self.client.submit(fn, *args, key=key, pure=False, **kw)
        self._futures.append(fut)
        return fut

    # -- the job ------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from distributed import as_completed

        t0 = time.perf_counter()
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        gpu = bool(gpu_workers(self.client))
        classify_kw = {"resources": {"GPU": 1}} if gpu else {}
        slides: dict[str, _Slide] = {e.slide_id: _Slide() for e in self.manifest}
        order = {e.slide_id: i for i, e in enumerate(self.manifest)}
        kinds: dict[Any, tuple] = {}
        ac = as_completed()
        for e in self.manifest:
            f = self._submit(tasks.prepare_slide, e, self.out_url, self.config, self.params, self.crop,
                             self.model_sha, key_prefix=f"prepare-{e.slide_id}", priority=10)
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
                             self.model_path, key_prefix="classify", priority=5, **classify_kw)
            kinds[f] = ("classify", batch)
            for pos, (sid, idx, _) in enumerate(batch):
                slides[sid].labels[idx] = (f, pos)
                slides[sid].batched += 1
            ac.add(f)

        def fail(sid: str, error: str) -> None:
            s = slides[sid]
            if s.status in ("done", "failed"):
                return
            s.status, s.error = "failed", error
            self._bump(slides_done=1, slides_failed=1)
            log.warning("slide %s failed: %s", sid, error)

        def maybe_finalize(sid: str) -> None:
            s = slides[sid]
            if s.status != "ready" or s.finalize is not None:
                return
            if s.tiles_done < len(s.tiles) or len(s.labels) < len(s.tiles):
                return
            labels = [s.labels[i] for i in range(len(s.tiles))]
            f = self._submit(tasks.finalize_slide, s.plan, s.tiles, labels, self.out_url,
                             key_prefix=f"finalize-{sid}", priority=20)
            s.finalize = f
            kinds[f] = ("finalize", sid)
            ac.add(f)

        for fut in ac:
            if self.cancelled.is_set():
                break
            kind = kinds.pop(fut)
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
                elif plan.status == "done":
                    s.plan, s.status, s.summary = plan, "done", plan.summary
                    self._bump(slides_done=1, slides_skipped=1, cells=int((plan.summary or {}).get("n_cells", 0)))
                else:
                    s.plan, s.status = plan, "ready"
                    self._bump(tiles_total=len(plan.tiles))
                    for t in plan.tiles:
                        tf = self._submit(tasks.run_tile, plan, t, self.params, self.crop,
                                          key_prefix=f"tile-{sid}-{t.index}", priority=-order[sid])
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
                    self._bump(wbc_classified=res["n"], cells=res["n_cells"])
                    per_tile = res["n"] / max(1, len(batch))
                    if per_tile > 0:
                        tiles_per_batch = max(1, min(256, math.ceil(self.config.batch_size / per_tile)))
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
                        f2.release()
            if prepares_left == 0 and tiles_running == 0 and pool:
                flush()
            if kind[0] in ("tile",):
                maybe_finalize(kind[1])

        if self.cancelled.is_set():
            return {"job_id": self.job_id, "status": "cancelled", "progress": self.progress()}
        return self._finish(slides, started, time.perf_counter() - t0, gpu)

    def _finish(self, slides: dict[str, _Slide], started: str, seconds: float, gpu: bool) -> dict[str, Any]:
        from hemoflow.io import storage

        by_patient: dict[str, list] = {}
        for e in self.manifest:
            by_patient.setdefault(e.patient_id, []).append(e)
        patient_futs = {}
        for pid, entries in by_patient.items():
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
        patients = [patient_futs[pid].result() for pid in sorted(patient_futs)]
        slide_rows = []
        failures = []
        for e in self.manifest:
            s = slides[e.slide_id]
            if s.status == "done":
                slide_rows.append(dict(s.summary or {}, skipped=s.finalize is None))
            else:
                row = {"slide_id": e.slide_id, "slide": e.slide, "patient_id": e.patient_id,
                       "specimen": e.specimen, "status": "failed", "error": s.error or "not processed"}
                slide_rows.append(row)
                failures.append({"slide": e.slide, "slide_id": e.slide_id, "error": row["error"]})
        job = {
            "job_id": self.job_id,
            "status": "ok" if not failures else ("failed" if len(failures) == len(slide_rows) else "partial"),
            "started": started,
            "seconds": round(seconds, 3),
            "progress": self.progress(),
            "failures": failures,
            "config": self.config.to_dict(),
            "params": self.params.to_dict(),
            "model_sha256": self.model_sha,
            "classified_on": sorted(self.classified_on),
            "gpu_workers": gpu,
            "outputs": {"slides": f"{self.out_url}/slides.json", "patients": f"{self.out_url}/patients.json"},
        }
        storage.atomic_write_bytes(f"{self.out_url}/slides.json", _dumps(slide_rows))
        storage.atomic_write_bytes(f"{self.out_url}/patients.json", _dumps(patients))
        _write_csvs(self.out_url, slide_rows, patients)
        storage.atomic_write_bytes(f"{self.out_url}/job.json", _dumps(job))
        return _clean({"job": job, "slides": slide_rows, "patients": patients})


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
