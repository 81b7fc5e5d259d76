"""Slide, patient and job status when slides are rejected by the smear QC gate or fail."""

from hemoflow.stats.status import excluded_slides, job_counts, job_status, patient_rows, patient_without_counts

ROWS = [
    {"slide_id": "a", "slide": "a.svs", "patient_id": "P1", "status": "rejected", "reason": "looks like tissue"},
    {"slide_id": "b", "slide": "b.tif", "patient_id": "P2", "status": "ok", "counts": {"rbc": 10}},
    {"slide_id": "c", "slide": "c.tif", "patient_id": "P2", "status": "failed", "error": "SlideReadError: bad"},
    {"slide_id": "d", "slide": "d.tif", "patient_id": "P3", "status": "failed", "reason": "boom"},
    {"slide_id": "e", "slide": "e.svs", "patient_id": "P3", "status": "rejected", "reason": "no stained material"},
]


def test_excluded_slides_keep_order_and_take_error_as_reason():
    assert excluded_slides(ROWS) == [
        {"slide_id": "a", "slide": "a.svs", "status": "rejected", "reason": "looks like tissue"},
        {"slide_id": "c", "slide": "c.tif", "status": "failed", "reason": "SlideReadError: bad"},
        {"slide_id": "d", "slide": "d.tif", "status": "failed", "reason": "boom"},
        {"slide_id": "e", "slide": "e.svs", "status": "rejected", "reason": "no stained material"},
    ]


def test_patient_without_counts_says_why():
    p1 = patient_without_counts("P1", "peripheral_blood", ROWS[:1])
    assert p1["status"] == "rejected" and "counts" not in p1 and p1["slides"] == []
    assert p1["reason"] == "no slide processed: a rejected: looks like tissue"
    p3 = patient_without_counts("P3", "bone_marrow", ROWS[3:])
    assert p3["status"] == "failed"  # not every slide was rejected
    assert p3["reason"] == "no slide processed: d failed: boom; e rejected: no stained material"


def test_patient_rows_mark_processed_patients_and_list_excluded_slides():
    rows = patient_rows({"P2": {"patient_id": "P2", "counts": {"rbc": 10}}},
                        {"P1": "peripheral_blood", "P3": "bone_marrow"}, ROWS)
    assert [r["patient_id"] for r in rows] == ["P1", "P2", "P3"]
    assert [r["status"] for r in rows] == ["rejected", "ok", "failed"]
    assert rows[1]["counts"] == {"rbc": 10}
    assert [e["slide_id"] for e in rows[1]["excluded_slides"]] == ["c"]
    assert "counts" not in rows[0] and "counts" not in rows[2]


def test_job_counts_and_status():
    assert job_counts(ROWS) == {"slides_done": 1, "slides_rejected": 2, "slides_failed": 2}
    assert job_status(done=3, rejected=0, failed=0) == "ok"
    assert job_status(done=1, rejected=2, failed=0) == "partial"
    assert job_status(done=1, rejected=0, failed=1) == "partial"
    assert job_status(done=0, rejected=2, failed=0) == "failed"
