"""Smoke test on real BCCD fields (skipped without ../shared/data)."""

import csv

import pytest

from hemoflow.analyze import analyze_image

pytestmark = pytest.mark.data


def test_bccd_first_20_wbc_counts(data_dir):
    root = data_dir / "bccd"
    if not (root / "counts.csv").is_file():
        pytest.skip("bccd data not present")
    with open(root / "counts.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[:20]
    ok = 0
    for r in rows:
        out = analyze_image(root / "JPEGImages" / f"{r['image']}.jpg")
        assert out["mpp_estimated"] and 0.04 < out["mpp"] < 0.15
        assert out["rbc"] >= 3
        ok += out["wbc"] == int(r["wbc_voc"])
    assert ok / len(rows) >= 0.9
