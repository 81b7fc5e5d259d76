"""train_from_folder works for any class names (here a 10-class bone-marrow taxonomy)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from hemoflow.classify.model import load_model
from hemoflow.classify.train import train_from_folder
from hemoflow.errors import HemoflowError

MARROW = ("proerythroblast", "basophilic_normoblast", "polychromatic_normoblast", "myeloblast",
          "promyelocyte", "myelocyte", "metamyelocyte", "band_cell", "plasma_cell", "megakaryocyte")


def _write_folder(root, n_per_class=4, size=40):
    """Tiny labelled folder: one coloured disc per image, colour and radius set by class."""
    rng = np.random.default_rng(0)
    rows = []
    yy, xx = np.mgrid[:size, :size]
    for k, name in enumerate(MARROW):
        (root / "img" / name).mkdir(parents=True)
        colour = np.array([40 + 20 * k, 200 - 15 * k, 120 + (k % 3) * 40])
        for j in range(n_per_class):
            img = np.full((size, size, 3), 235, np.uint8)
            r = 6 + k % 5 + rng.uniform(-1, 1)
            img[np.hypot(yy - size / 2, xx - size / 2) < r] = colour
            path = f"img/{name}/{j}.png"
            from PIL import Image

            Image.fromarray(img).save(root / path)
            rows.append((path, name))
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(rows)


def _state(path):
    return {k: v.clone() for k, v in load_model(path).network.state_dict().items()}


def test_train_from_folder_any_classes_and_reproducible(tmp_path):
    _write_folder(tmp_path / "marrow")
    kw = dict(epochs=1, seed=3, io_mpp=0.3, input_size=32, val_fraction=0.2, batch_size=16,
              samples_per_epoch=48, threads=1, arch={"name": "WbcNet", "widths": [8, 8, 16, 16]})
    info = train_from_folder(tmp_path / "marrow", tmp_path / "m1.pt", **kw)
    assert info["classes"] == sorted(MARROW)
    clf = load_model(tmp_path / "m1.pt")
    assert clf.io.classes == tuple(sorted(MARROW)) and clf.io.input_size == 32
    meta = clf.metadata
    assert len(meta["training_data_sha256"]) == 64
    val = meta["validation"]["marrow-val"]
    assert set(val) >= {"accuracy", "macro_f1", "recall", "confusion"}
    assert np.asarray(val["confusion"]).shape == (10, 10)
    labels, probs = clf.predict(np.zeros((2, 32, 32, 3), np.uint8))
    assert probs.shape == (2, 10) and set(labels) <= set(MARROW)
    # same seed, same threads -> the same weights
    train_from_folder(tmp_path / "marrow", tmp_path / "m2.pt", **kw)
    a, b = _state(tmp_path / "m1.pt"), _state(tmp_path / "m2.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_rejects_unknown_labels(tmp_path):
    _write_folder(tmp_path / "marrow", n_per_class=1)
    with pytest.raises(HemoflowError, match="not in the class list"):
        train_from_folder(tmp_path / "marrow", tmp_path / "m.pt", epochs=1, classes=("a", "b"), input_size=32)
    with pytest.raises(FileNotFoundError):
        train_from_folder(tmp_path / "nowhere", tmp_path / "m.pt", epochs=1)


def test_continued_training_starts_from_given_weights(tmp_path):
    """init_state + epoch_offset: a continued run is reproducible and differs from a fresh one."""
    from hemoflow.classify.train import train_model
    from hemoflow.classify.config import ModelIOConfig
    from hemoflow.classify.data import CellSource

    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8) for _ in range(8)]
    src = CellSource("toy", imgs, ["a", "b"] * 4, 0.3)
    io = ModelIOConfig(classes=("a", "b"), input_size=32)
    kw = dict(epochs=1, seed=0, batch_size=8, samples_per_epoch=16, threads=1,
              arch={"name": "WbcNet", "widths": [8, 8, 16, 16]})
    first, rec = train_model([src], io, **kw)
    assert rec["init"] == "random" and rec["epoch_offset"] == 0
    init = {k: v.clone() for k, v in first.state_dict().items()}
    c1, rec1 = train_model([src], io, init_state=init, epoch_offset=1, **kw)
    c2, _ = train_model([src], io, init_state=init, epoch_offset=1, **kw)
    fresh, _ = train_model([src], io, **kw)
    s1, s2, s0 = c1.state_dict(), c2.state_dict(), fresh.state_dict()
    assert rec1["init"] == "weights" and rec1["epoch_offset"] == 1
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not all(torch.equal(s1[k], s0[k]) for k in s1)
