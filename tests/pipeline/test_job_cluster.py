"""A whole job through a real LocalCluster of processes: two workers, one offering GPU=1.

Checks the synthetic counts against ground truth, that CNN tasks land only on the GPU
worker, that outputs are written, that bad slides fail alone with their reason, and that
a rerun is answered from the ledger.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from hemoflow import synth

SIZE = 1600
#: Reported RBC count / the generator's RBCs - 1 on 1600² fields: mean -2.1 %, sd 0.17 % over 8 seeds; mean ± 5 sd (tiling adds its own).
RBC_COUNT_BAND = (-0.030, -0.012)


@pytest.fixture(scope="module")
def cluster():
    from distributed import Nanny, Scheduler, SpecCluster

    spec = {
        "cpu": {"cls": Nanny, "options": {"nthreads": 1, "memory_limit": "3GB"}},
        "gpu": {"cls": Nanny, "options": {"nthreads": 1, "memory_limit": "3GB", "resources": {"GPU": 1}}},
    }
    with SpecCluster(workers=spec, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}},
                     asynchronous=False) as c:
        yield c


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    d = tmp_path_factory.mktemp("archive")
    rows, truth = [], {}
    for k, pid in enumerate(["P1", "P1", "P2"]):
        p = d / f"s{k}.ome.tif"
        truth[f"s{k}"] = synth.write_synthetic_slide(p, shape=(SIZE, SIZE), mpp=0.25, seed=100 + k)
        rows.append({"slide": str(p), "patient_id": pid, "specimen": "peripheral_blood", "mpp": ""})
    bad = d / "corrupt.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 64)
    deep = d / "deep16.tif"
    tifffile.imwrite(deep, np.zeros((300, 300, 3), np.uint16), photometric="rgb")
    rows.append({"slide": str(bad), "patient_id": "P3", "specimen": "peripheral_blood", "mpp": "0.25"})
    rows.append({"slide": str(deep), "patient_id": "P3", "specimen": "bone_marrow", "mpp": "0.25"})
    m = d / "manifest.csv"
    pd.DataFrame(rows).to_csv(m, index=False)
    return m, truth


@pytest.fixture(scope="module")
def job_result(cluster, archive, tmp_path_factory):
    import hemoflow
    from hemoflow.config import JobConfig

    out = tmp_path_factory.mktemp("out")
    client = hemoflow.Client(cluster)
    try:
        job = client.submit(str(archive[0]), str(out), config=JobConfig(tile_size=700))
        assert not job.done() or job.progress()["slides_total"] == 5  # submit returned at once
        result = job.result(timeout=600)
        rerun = client.submit(str(archive[0]), str(out), config=JobConfig(tile_size=700)).result(timeout=300)
    finally:
        client.dask.close()
    return out, result, rerun


def test_counts_match_ground_truth(job_result, archive):
    out, result, _ = job_result
    truth = archive[1]
    ok = {s["slide_id"]: s for s in result["slides"] if s["status"] == "ok"}
    assert set(ok) == {"s0", "s1", "s2"}
    n_rbc_true = {sid: int((np.asarray(t["cls"]) == "rbc").sum()) for sid, t in truth.items()}
    for sid, t in truth.items():
        cells = pd.read_parquet(out / "slides" / sid / "cells.parquet")
        n_wbc_true = int((np.asarray(t["cls"]) == "wbc").sum())
        assert int((cells["cls"] == "wbc").sum()) == n_wbc_true, sid
        assert ok[sid]["counts"]["wbc"] == n_wbc_true, sid
        # the RBC count users get: the slide's reported count (the count_weight sum)
        err = ok[sid]["counts"]["rbc"] / n_rbc_true[sid] - 1
        assert RBC_COUNT_BAND[0] <= err <= RBC_COUNT_BAND[1], (sid, ok[sid]["counts"]["rbc"], n_rbc_true[sid])
        assert ok[sid]["counts"]["rbc"] == round(cells.loc[cells["cls"] == "rbc", "count_weight"].sum())
        assert (cells.loc[cells["cls"] == "wbc", "wbc_type"] != "").all()
    # the per-patient figure pools its slides: P1 holds s0 and s1
    p1 = next(p for p in result["patients"] if p["patient_id"] == "P1")
    err = p1["counts"]["rbc"] / (n_rbc_true["s0"] + n_rbc_true["s1"]) - 1
    assert RBC_COUNT_BAND[0] <= err <= RBC_COUNT_BAND[1], (p1["counts"], n_rbc_true)


def test_cnn_tasks_only_on_gpu_worker(job_result, cluster):
    _, result, _ = job_result
    gpu = [a for a, w in cluster.scheduler_info["workers"].items() if w.get("resources", {}).get("GPU")]
    assert len(gpu) == 1
    assert result["job"]["gpu_workers"] is True
    assert result["job"]["classified_on"] == gpu


def test_bad_slides_fail_alone_with_reason(job_result):
    out, result, _ = job_result
    failures = {f["slide_id"]: f["error"] for f in result["job"]["failures"]}
    assert set(failures) == {"corrupt", "deep16"}
    assert "SlideReadError" in failures["corrupt"]
    assert "UnsupportedImageError" in failures["deep16"]
    assert result["job"]["status"] == "partial"
    job = json.loads((out / "job.json").read_text())
    assert {f["slide_id"] for f in job["failures"]} == {"corrupt", "deep16"}


def test_outputs_written(job_result):
    out, result, _ = job_result
    patients = json.loads((out / "patients.json").read_text())
    assert [p["patient_id"] for p in patients] == ["P1", "P2", "P3"]
    p1 = patients[0]
    assert p1["slides"] == ["s0", "s1"]
    slides = json.loads((out / "slides.json").read_text())
    assert len(slides) == 5
    assert not list(out.rglob("*.tmp*")), "temporary files left behind"


def test_rerun_is_answered_from_the_ledger(job_result):
    _, result, rerun = job_result
    assert rerun["job"]["progress"]["tiles_total"] == 0
    assert rerun["job"]["progress"]["slides_skipped"] == 3
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("skipped", "tile_seconds")} for r in rows]
    assert strip(rerun["slides"]) == strip(result["slides"])
    assert rerun["patients"] == result["patients"]
