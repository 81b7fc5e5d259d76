"""Status of slides, patients and jobs when some slides are rejected or fail.

A slide ends in one of three states: ``"ok"`` (processed and counted), ``"rejected"``
(the blood-smear QC gate, :func:`hemoflow.stages.qc.smear_qc`, found it is not a
stained blood smear) or ``"failed"`` (an error: unreadable file, unsupported image, a
task that kept failing). Only processed slides are counted. A patient none of whose
slides was processed gets no counts at all (never a row of zeros), and its ``status``
and ``reason`` say why.

>>> rows = [{"slide_id": "a", "status": "rejected", "reason": "looks like tissue"}]
>>> p = patient_without_counts("P1", "peripheral_blood", rows)
>>> p["status"], p["reason"]
('rejected', 'no slide processed: a rejected: looks like tissue')
>>> job_status(done=1, rejected=1, failed=0)
'partial'
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

__all__ = ["SLIDE_STATES", "excluded_slides", "patient_without_counts", "patient_rows", "job_status", "job_counts"]

SLIDE_STATES = ("ok", "rejected", "failed")


def excluded_slides(slide_rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``[{"slide_id", "slide", "status", "reason"}]`` of the rows not processed, in order."""
    out = []
    for r in slide_rows:
        status = r.get("status", "ok")
        if status == "ok":
            continue
        out.append({"slide_id": r.get("slide_id"), "slide": r.get("slide", r.get("slide_id")), "status": status,
                    "reason": r.get("reason") or r.get("error") or "not processed"})
    return out


def patient_without_counts(patient_id: str, specimen: str, slide_rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The row of a patient none of whose slides was processed: identity, status, reason.

    ``status`` is ``"rejected"`` when every slide was rejected by the QC gate, else
    ``"failed"``; ``reason`` names each slide with its own reason.
    """
    ex = excluded_slides(slide_rows)
    status = "rejected" if ex and all(e["status"] == "rejected" for e in ex) else "failed"
    reason = "no slide processed: " + ("; ".join(f"{e['slide_id']} {e['status']}: {e['reason']}" for e in ex)
                                       or "no slides")
    return {"patient_id": patient_id, "specimen": specimen, "level": "patient", "slides": [], "status": status,
            "reason": reason, "excluded_slides": ex}


def patient_rows(summaries: Mapping[str, Mapping[str, Any]], unprocessed: Mapping[str, str],
                 slide_rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows of ``patients.json``, sorted by patient id.

    ``summaries``: patient id -> summary of its processed slides
    (:func:`hemoflow.stats.aggregate.summarize_patient`); each gets ``status: "ok"`` and,
    when some of its slides were not processed, ``excluded_slides``. ``unprocessed``:
    patient id -> specimen of the patients none of whose slides was processed
    (:func:`patient_without_counts`).
    """
    by_patient: dict[str, list[Mapping[str, Any]]] = {}
    for r in slide_rows:
        by_patient.setdefault(str(r.get("patient_id")), []).append(r)
    rows = []
    for pid in sorted({*summaries, *unprocessed}):
        if pid in unprocessed:
            rows.append(patient_without_counts(pid, unprocessed[pid], by_patient.get(pid, [])))
            continue
        row = {**summaries[pid], "status": "ok"}
        ex = excluded_slides(by_patient.get(pid, []))
        if ex:
            row["excluded_slides"] = ex
        rows.append(row)
    return rows


def job_counts(slide_rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """``slides_done`` (processed), ``slides_rejected`` and ``slides_failed`` of a job."""
    rows = list(slide_rows)
    n = {s: sum(1 for r in rows if r.get("status", "ok") == s) for s in SLIDE_STATES}
    return {"slides_done": n["ok"], "slides_rejected": n["rejected"], "slides_failed": n["failed"]}


def job_status(*, done: int, rejected: int, failed: int) -> str:
    """``"ok"`` (every slide processed), ``"partial"`` (some processed, some rejected or
    failed) or ``"failed"`` (none processed)."""
    if rejected == 0 and failed == 0:
        return "ok"
    return "partial" if done else "failed"
