"""``pseudonymize_key``: no patient id or source path reaches the clinical outputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hemoflow.jobs.client import _pseudonymized
from hemoflow.jobs.manifest import load_manifest
from hemoflow.report.html import pseudonymize


def test_manifest_ids_are_replaced_consistently(tmp_path):
    for name in ("alice-smith-1.tif", "alice-smith-2.tif"):
        (tmp_path / name).write_bytes(b"x")
    m = load_manifest([
        {"slide": str(tmp_path / "alice-smith-1.tif"), "patient_id": "Alice Smith", "specimen": "peripheral_blood"},
        {"slide": str(tmp_path / "alice-smith-2.tif"), "patient_id": "Alice Smith", "specimen": "peripheral_blood"},
    ])
    p = _pseudonymized(m, b"k1")
    assert {e.patient_id for e in p} == {pseudonymize("Alice Smith", b"k1")}
    assert all(e.private and e.slide_id.startswith("S-") and "alice" not in e.slide_id for e in p)
    assert [e.slide for e in p] == [e.slide for e in m]  # still readable
    assert _pseudonymized(m, b"k2").entries[0].patient_id != p.entries[0].patient_id


@pytest.mark.slow
def test_job_outputs_carry_pseudonyms_only(tmp_path):
    import hemoflow
    from hemoflow import synth
    from hemoflow.config import JobConfig

    slide = tmp_path / "alice-smith.ome.tif"
    synth.write_synthetic_slide(slide, shape=(600, 600), mpp=0.25, seed=5)
    manifest = [{"slide": str(slide), "patient_id": "Alice Smith", "specimen": "peripheral_blood"}]
    out = tmp_path / "out"
    with hemoflow.Client(n_workers=1) as client:
        res = client.submit(manifest, str(out), config=JobConfig(tile_size=512), pseudonymize_key=b"k").result(300)
    assert res["job"]["failures"] == []
    for name in ("patients.json", "slides.json", "patients.csv", "slides.csv"):
        text = (out / name).read_text()
        assert "Alice" not in text and "alice" not in text, name
    sid = res["slides"][0]["slide_id"]
    cells = pd.read_parquet(out / "slides" / sid / "cells.parquet")
    assert set(cells["patient_id"]) == {pseudonymize("Alice Smith", b"k")}
    assert "alice" not in (out / "slides" / sid / "cells.geojson").read_text().lower()
    assert not any("alice" in str(p).lower() for p in out.rglob("*") if p.name != "job.json")
    assert json.loads((out / "patients.json").read_text())[0]["patient_id"].startswith("P-")
    assert np.isfinite(cells["area_um2"]).all()
