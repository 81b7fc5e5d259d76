"""The report of a finished job, read back from its output folder (as ``hemoflow report`` does)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hemoflow.errors import HemoflowError
from hemoflow.report.html import write_report_from_results
from hemoflow.stats.aggregate import summarize_patient, summarize_slide

from report_synth import make_cells, make_thumbnail


def _job_output(root, *, with_image: bool):
    """slides.json, patients.json, job.json and per-slide cells (+ image) like a job writes."""
    cells = make_cells("s1", "patient-9", seed=2, n_rbc=200)
    rgb, ds = make_thumbnail(cells)
    # Use the thumbnail as the whole slide: cell coordinates in its pixels.
    for c in ("y", "x", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"):
        cells[c] = cells[c] / ds if c in ("y", "x") else (cells[c] // int(ds)).astype("int64")
    slide_dir = root / "slides" / "s1"
    slide_dir.mkdir(parents=True)
    cells.to_parquet(slide_dir / "cells.parquet")
    if with_image:
        import tifffile

        from hemoflow.io import ingest

        tif = root / "s1.tif"
        tifffile.imwrite(tif, rgb, photometric="rgb")
        ingest(str(tif), str(slide_dir / "image.ome.zarr"), mpp=2.0, chunk=256)
    slide = {"slide_id": "s1", **summarize_slide(cells, specimen="peripheral_blood")}
    failed = {"slide_id": "s2", "slide": "/data/s2.svs", "patient_id": "patient-9", "status": "failed", "error": "x"}
    patient = {"patient_id": "patient-9", **summarize_patient(cells, specimen="peripheral_blood")}
    (root / "slides.json").write_text(json.dumps([slide, failed]))
    (root / "patients.json").write_text(json.dumps([patient]))
    (root / "job.json").write_text(json.dumps({"job_id": "j-1", "model_sha256": "ab" * 32, "started": "2026-01-02"}))
    return rgb


@pytest.mark.parametrize("with_image", [True, False])
def test_report_from_job_folder(tmp_path, with_image):
    _job_output(tmp_path / "out", with_image=with_image)
    paths = write_report_from_results(tmp_path / "out", tmp_path / "report", pseudonymize_key=b"k")
    assert [p.name for p in paths][-1] == "index.html" and len(paths) == 2
    page = paths[0].read_text(encoding="utf-8")
    assert "patient-9" not in page and "j-1" in page
    assert page.count("<img") == (1 if with_image else 0)
    if not with_image:
        assert "no thumbnail" in page


def test_not_a_job_folder(tmp_path):
    with pytest.raises(HemoflowError, match="patients.json"):
        write_report_from_results(tmp_path, tmp_path / "r")
