"""The shipped model: loads, predicts, and holds up on held-out real cells and synthetic slides."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from _require import require

from hemoflow.classify import infer
from hemoflow.classify.config import default_io_config, default_weights_path
from hemoflow.classify.evaluation import degrade, evaluate_pbc, pbc_heldout, synthetic_agreement
from hemoflow.classify.model import load_default_model

PBC8 = ("basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil", "platelet")


@pytest.fixture(scope="module")
def clf():
    return load_default_model()


def test_shipped_model_contract(clf):
    assert clf.io == default_io_config()
    assert set(PBC8) <= set(clf.io.classes)
    assert clf.io.input_size == 96
    assert default_weights_path(".pt").stat().st_size < 10e6
    meta = clf.metadata
    assert len(meta["training_data_sha256"]) == 64
    s = clf.io.input_size
    labels, probs = clf.predict(np.full((3, s, s, 3), 230, np.uint8))
    assert len(labels) == 3 and probs.shape == (3, len(clf.io.classes))


@pytest.fixture(scope="module")
def heldout(data_dir):
    require((data_dir / "pbc" / "labels.csv").exists(), "PBC originals not present")
    return pbc_heldout(data_dir)


@pytest.mark.data
@pytest.mark.parametrize("tta", [False, True], ids=["single-view", "tta"])
def test_heldout_pbc_robust_to_capture(clf, heldout, tta):
    """Accuracy on the 240 held-out PBC originals; JPEG q70 and +-15 % resizing each cost
    <= 1.5 points, with one view per crop (the pipeline's default) and with test-time
    augmentation (``hemoflow classify``'s default).

    Resized copies are processed with their true pixel size (0.1 / scale), as the pipeline
    does when the scanner reports it. Crops are resampled with Pillow here (fast); the
    pipeline's own cropper gives the figures of ``scripts/evaluate_classifier.py``.
    """
    images, labels = heldout
    predict = functools.partial(clf.predict, tta=tta)
    clean = evaluate_pbc(predict, images, labels, clf.io, classes=PBC8, cropper="pil")
    assert clean["accuracy"] >= 0.9, clean
    for kw in ({"jpeg_quality": 70}, {"scale": 0.85}, {"scale": 1.15}):
        imgs = [degrade(im, **kw) for im in images]
        m = evaluate_pbc(predict, imgs, labels, clf.io, mpp=0.1 / kw.get("scale", 1.0), classes=PBC8,
                         cropper="pil")
        assert m["accuracy"] >= clean["accuracy"] - 0.015, (kw, m["accuracy"], clean["accuracy"])


def test_synthetic_differential_agrees_with_truth(clf):
    types = ("neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil", "blast")
    m = synthetic_agreement(clf, n_fields=3, n_wbc=12, wbc_mix={t: 1.0 for t in types})
    assert m["n"] >= 30 and set(m["recall"]) == set(types)
    assert m["agreement"] >= 0.95, m
