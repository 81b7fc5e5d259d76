"""The smear QC gate in a real job: a real LocalCluster of processes, a real H&E slide
from ``../shared/data/slides`` and a synthetic smear.

The H&E slide is rejected with its reason and not counted, the smear is processed, a
patient whose only slide was rejected has a status row (no zeros), a patient with one
processed and one failed slide lists the failed one, and ``slides_done`` counts only the
processed slide. With the gate off the same H&E slide is processed.

Skips when the real data is absent, and fails instead under ``CI=true``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

synth = pytest.importorskip("hemoflow.synth")

REPO = Path(__file__).resolve().parents[2]
HE = "CMU-1-Small-Region.svs"


@pytest.fixture(scope="module")
def he_slide() -> Path:
    env = os.environ.get("HEMOFLOW_DATA")
    p = (Path(env) if env else REPO.parent / "shared" / "data") / "slides" / HE
    if not p.is_file():
        msg = f"real H&E slide not found at {p} (set HEMOFLOW_DATA or place the data at ../shared/data)"
        if os.environ.get("CI", "").strip().lower() in ("true", "1"):
            pytest.fail(msg + "; CI=true requires it")
        pytest.skip(msg)
    return p


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      memory_limit="3GB") as c:
        yield c


@pytest.fixture(scope="module")
def manifest(he_slide, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("archive")
    smear = d / "smear.ome.tif"
    synth.write_synthetic_slide(smear, shape=(1024, 1024), mpp=0.25, seed=7)
    broken = d / "broken.tif"
    broken.write_bytes(b"II*\x00" + b"\x00" * 64)
    rows = [
        {"slide": str(he_slide), "patient_id": "P-HE", "specimen": "peripheral_blood", "mpp": ""},
        {"slide": str(smear), "patient_id": "P-MIX", "specimen": "peripheral_blood", "mpp": ""},
        {"slide": str(broken), "patient_id": "P-MIX", "specimen": "peripheral_blood", "mpp": "0.25"},
    ]
    m = d / "manifest.csv"
    pd.DataFrame(rows).to_csv(m, index=False)
    return m


def _run(cluster, manifest, out, **config):
    import hemoflow
    from hemoflow.config import JobConfig

    client = hemoflow.Client(cluster)
    try:
        return client.submit(str(manifest), str(out), config=JobConfig(tile_size=512, **config)).result(timeout=300)
    finally:
        client.dask.close()


@pytest.fixture(scope="module")
def job(cluster, manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return out, _run(cluster, manifest, out)


def test_he_slide_is_rejected_with_reason(job):
    out, res = job
    slides = {s["slide_id"]: s for s in json.loads((out / "slides.json").read_text())}
    he = slides["CMU-1-Small-Region"]
    assert he["status"] == "rejected"
    assert he["reason"].startswith("looks like tissue"), he["reason"]
    assert "counts" not in he and not he["qc"]["ok"]
    assert not (out / "slides" / he["slide_id"] / "cells.parquet").exists()  # not counted
    assert [r["slide_id"] for r in res["job"]["rejections"]] == [he["slide_id"]]


def test_smear_is_processed_and_counts_only_it(job):
    out, res = job
    slides = {s["slide_id"]: s for s in res["slides"]}
    assert slides["smear"]["status"] == "ok" and slides["smear"]["qc"]["ok"]
    assert slides["smear"]["counts"]["rbc"] > 100
    assert slides["broken"]["status"] == "failed" and "SlideReadError" in slides["broken"]["reason"]
    job_json = json.loads((out / "job.json").read_text())
    for j in (res["job"], job_json):
        assert (j["slides_done"], j["slides_rejected"], j["slides_failed"]) == (1, 1, 1)
        assert (j["progress"]["slides_done"], j["progress"]["slides_rejected"], j["progress"]["slides_failed"]) \
            == (1, 1, 1)
        assert j["status"] == "partial"
        assert [f["slide_id"] for f in j["failures"]] == ["broken"]


def test_patient_rows(job):
    out, res = job
    patients = {p["patient_id"]: p for p in json.loads((out / "patients.json").read_text())}
    assert set(patients) == {"P-HE", "P-MIX"}
    he = patients["P-HE"]
    assert he["status"] == "rejected" and "counts" not in he  # no row of zeros
    assert he["reason"].startswith("no slide processed: ") and "looks like tissue" in he["reason"]
    mix = patients["P-MIX"]
    assert mix["status"] == "ok" and mix["slides"] == ["smear"]
    assert mix["counts"]["rbc"] == res["slides"][[s["slide_id"] for s in res["slides"]].index("smear")]["counts"]["rbc"]
    assert [(e["slide_id"], e["status"]) for e in mix["excluded_slides"]] == [("broken", "failed")]
    csv = pd.read_csv(out / "patients.csv")
    he_row = csv[csv["patient_id"] == "P-HE"].iloc[0]
    assert he_row["status"] == "rejected" and pd.isna(he_row.get("counts.wbc"))


def test_report_shows_rejected_and_failed_slides(job, tmp_path):
    from hemoflow.report.html import write_report_from_results

    out, _ = job
    pages = write_report_from_results(str(out), tmp_path / "report")
    html = {p.name: p.read_text() for p in pages}
    he = next(t for n, t in html.items() if "P-HE" in n)
    assert "rejected" in he and "looks like tissue" in he
    mix = next(t for n, t in html.items() if "P-MIX" in n)
    assert "broken" in mix and "failed" in mix and "SlideReadError" in mix


def test_gate_off_processes_the_he_slide_and_a_rerun_with_it_on_rejects_it(cluster, manifest, tmp_path):
    res = _run(cluster, manifest, tmp_path / "out", smear_qc=False)
    slides = {s["slide_id"]: s["status"] for s in res["slides"]}
    assert slides == {"CMU-1-Small-Region": "ok", "smear": "ok", "broken": "failed"}
    assert res["job"]["slides_rejected"] == 0 and res["job"]["slides_done"] == 2
    # the plans recorded without the gate are reused, and gated now
    again = _run(cluster, manifest, tmp_path / "out")
    slides = {s["slide_id"]: s["status"] for s in again["slides"]}
    assert slides == {"CMU-1-Small-Region": "rejected", "smear": "ok", "broken": "failed"}
    assert again["job"]["progress"]["tiles_computed"] == 0  # the smear's tiles came from the ledger
