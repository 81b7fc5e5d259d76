"""Smoke test on real BCCD fields (skipped without ../shared/data)."""

import csv

import pytest
from _require import require

from hemoflow.analyze import analyze_image

pytestmark = pytest.mark.data


def test_bccd_first_20_wbc_counts(data_dir):
    root = data_dir / "bccd"
    require((root / "counts.csv").is_file(), "bccd data not present")
    with open(root / "counts.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[:20]
    ok = 0
    for r in rows:
        out = analyze_image(root / "JPEGImages" / f"{r['image']}.jpg")
        assert out["mpp_estimated"] and 0.04 < out["mpp"] < 0.15
        assert out["rbc"] >= 3
        ok += out["wbc"] == int(r["wbc_voc"])
    assert ok / len(rows) >= 0.9


def test_bccd_pooled_mpp_removes_per_field_scatter(data_dir):
    """Fields of one microscope: per-field estimates scatter, the pooled one is one value
    inside the range the annotated RBC boxes imply (about 100-110 px per 7.5 µm cell)."""
    from hemoflow.analyze import estimate_shared_mpp

    root = data_dir / "bccd"
    require((root / "counts.csv").is_file(), "bccd data not present")
    with open(root / "counts.csv", newline="") as fh:
        names = [r["image"] for r in csv.DictReader(fh)][:40]
    paths = [root / "JPEGImages" / f"{n}.jpg" for n in names]
    mpp, n = estimate_shared_mpp(paths)
    assert n == len(paths)
    assert 0.065 < mpp < 0.085
