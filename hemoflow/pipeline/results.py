"""What a job leaves beside its slides: ``slides.json``, ``patients.json``, their CSVs
and ``job.json``.

Plain functions of plain values. The driver (:mod:`hemoflow.pipeline.graph`) keeps the
Dask work (the per-patient summaries) and hands the finished rows here to be written.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hemoflow.stats.status import job_counts, job_status

__all__ = ["slide_rows", "job_record", "write_job", "write_outputs", "dumps", "clean"]


def slide_rows(manifest, slides: dict[str, Any]) -> tuple[list[dict], list[dict], list[dict]]:
    """One row per manifest slide (its summary when done, else why not), with the
    failures and the QC rejections listed apart; ``slides`` maps slide id to its state
    (``status``, ``summary``, ``finalize``, ``error``, ``qc``)."""
    from hemoflow.io import storage

    rows = []
    failures, rejections = [], []
    for e in manifest:
        s = slides[e.slide_id]
        if s.status == "done":
            rows.append(dict(s.summary or {}, skipped=s.finalize is None))
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
        rows.append(row)
    return rows, failures, rejections


def job_record(head: dict[str, Any], *, out_url: str, rows: list[dict], failures: list[dict],
               rejections: list[dict], progress: dict[str, int], started: str, seconds: float,
               classified_on, gpu: bool) -> dict[str, Any]:
    """The finished job's ``job.json``: ``head`` (what ran) with its status, counts and outputs."""
    progress = dict(progress)
    progress["tiles_computed"] = progress["tiles_done"] - progress["tiles_resumed"]
    counts = job_counts(rows)
    return {
        **head,
        "status": job_status(done=counts["slides_done"], rejected=counts["slides_rejected"],
                             failed=counts["slides_failed"]),
        **counts,
        "started": started,
        "seconds": round(seconds, 3),
        "progress": progress,
        "failures": failures,
        "rejections": rejections,
        "classified_on": sorted(classified_on),
        "gpu_workers": gpu,
        "outputs": {"slides": f"{out_url}/slides.json", "patients": f"{out_url}/patients.json"},
    }


def write_job(out_url: str, job: dict[str, Any]) -> None:
    from hemoflow.io import storage

    storage.atomic_write_bytes(f"{out_url}/job.json", dumps(job))


def write_outputs(out_url: str, rows: list[dict], patients: list[dict], job: dict[str, Any]) -> dict[str, Any]:
    """Write the tables, then ``job.json`` last (its presence says the job finished);
    return what :meth:`hemoflow.pipeline.graph.JobRunner.run` returns."""
    from hemoflow.io import storage

    storage.atomic_write_bytes(f"{out_url}/slides.json", dumps(rows))
    storage.atomic_write_bytes(f"{out_url}/patients.json", dumps(patients))
    _write_csvs(out_url, rows, patients)
    write_job(out_url, job)
    return clean({"job": job, "slides": rows, "patients": patients})


def dumps(obj: Any) -> bytes:
    return json.dumps(clean(obj), indent=2, default=_json_default, allow_nan=False).encode()


def clean(o: Any) -> Any:
    """Replace non-finite floats by None, recursively (JSON has no NaN)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [clean(v) for v in o]
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
