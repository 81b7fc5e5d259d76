"""BCCD cells as a training source: the Kaggle-labelled fields with one detected WBC, cut
around the detected centroid, split like the count evaluation (real BCCD images)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from _require import require

from hemoflow.classify.data import bccd_source
from hemoflow.training.splits import in_bccd_validation
from hemoflow.errors import HemoflowError


@pytest.fixture(scope="module")
def small_bccd(data_dir, tmp_path_factory):
    src = data_dir / "bccd"
    require((src / "counts.csv").exists(), "BCCD data not found")
    counts = pd.read_csv(src / "counts.csv", dtype=str, keep_default_na=False)
    labelled = counts[counts["wbc_type_kaggle"].str.fullmatch(r"[A-Z]+")]
    dev = labelled[~labelled["image"].map(in_bccd_validation)].head(4)
    hold = labelled[labelled["image"].map(in_bccd_validation)].head(2)
    unlabelled = counts[counts["wbc_type_kaggle"] == ""].head(1)
    pick = pd.concat([dev, hold, unlabelled])
    root = tmp_path_factory.mktemp("bccd")
    (root / "JPEGImages").mkdir()
    for name in pick["image"]:
        shutil.copy(src / "JPEGImages" / f"{name}.jpg", root / "JPEGImages" / f"{name}.jpg")
    pick.to_csv(root / "counts.csv", index=False)
    return root, dev, hold


def test_bccd_source_splits_and_cuts(small_bccd):
    root, dev, hold = small_bccd
    mpp = 0.0745
    d = bccd_source(root, mpp=mpp, split="train", weight=0.5)
    h = bccd_source(root, mpp=mpp, split="validation")
    a = bccd_source(root, mpp=mpp, split="all")
    assert 0 < len(d) <= len(dev) and len(h) <= len(hold) and len(a) == len(d) + len(h)
    side = round(36.0 / mpp)
    assert all(im.shape == (side, side, 3) and im.dtype.name == "uint8" for im in a.images)
    assert set(a.labels) <= {"neutrophil", "eosinophil", "lymphocyte", "monocyte", "basophil"}
    assert d.mpp == mpp and d.weight == 0.5 and d.info["split"] == "train" and d.info["fields"] == len(d)
    assert len(d.sha256) == 64 and d.sha256 != a.sha256
    with pytest.raises(HemoflowError, match="train, validation or all"):
        bccd_source(root, mpp=mpp, split="self-holdout")
