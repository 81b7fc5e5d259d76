"""``hemoflow demo`` end to end on a tiny archive (real LocalCluster, as a process): the
times it prints agree with job.json, the table carries units, every documented output
file is written, and a second demo reuses the slides."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest


def _demo(out, *extra):
    return subprocess.run([sys.executable, "-m", "hemoflow.cli", "demo", "--out", str(out), "--size", "1024",
                           "--slides-per-patient", "1", "--workers", "1", "--tile-size", "512", *extra],
                          capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_demo_prints_what_job_json_says(tmp_path):
    out = tmp_path / "demo"
    r = _demo(out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    job = json.loads((out / "job.json").read_text())
    assert job["status"] == "ok" and job["progress"]["slides_done"] == 3
    m = re.search(r"job: ([0-9.]+)s \((\d+) tiles, as in job.json\)", r.stdout)
    assert m, r.stdout
    assert float(m.group(1)) == pytest.approx(job["seconds"], abs=0.051)
    assert int(m.group(2)) == job["progress"]["tiles_total"]
    assert re.search(r"slides: [0-9.]+s \(3 written, 0 reused\); cluster start: [0-9.]+s;", r.stdout), r.stdout
    header = r.stdout.splitlines()[0]
    for col in ("WBC", "RBC", "PLT", "neutr%", "blast%", "RBC µm²"):
        assert col in header, header
    firsts = [ln.split()[0] for ln in r.stdout.splitlines()[2:8]]
    assert firsts == ["DEMO-001", "truth", "DEMO-002", "truth", "DEMO-003", "truth"], r.stdout
    assert "writing 3 synthetic slides" in r.stderr and "starting 1 local worker" in r.stderr
    # every output the docs list
    for rel in ("manifest.csv", "job.json", "slides.json", "slides.csv", "patients.json", "patients.csv",
                "report/index.html"):
        assert (out / rel).is_file(), rel
    assert len(list((out / "slides_in").glob("*.ome.tif"))) == 3
    assert len(list((out / "slides_in").glob("*.truth.csv"))) == 3
    for sid in ("DEMO-001-S1", "DEMO-002-S1", "DEMO-003-S1"):
        d = out / "slides" / sid
        for rel in ("cells.parquet", "cells.geojson", "done.json", "plan.json", "image.ome.zarr/zarr.json"):
            assert (d / rel).is_file(), f"{sid}/{rel}"
        assert any((d / "tiles").iterdir())
    assert not (out / "job.lock").exists()  # released at the end

    again = _demo(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(0 written, 3 reused)" in again.stdout
