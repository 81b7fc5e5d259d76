"""Per-process model cache, batched crops, single-image CLI helper, worker plugin."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from hemoflow.classify import infer
from hemoflow.errors import SlideNotFoundError


@pytest.fixture(autouse=True)
def _fresh_cache():
    infer.clear_model_cache()
    yield
    infer.clear_model_cache()


def test_worker_model_is_cached(tiny_weights):
    a = infer.get_worker_model(tiny_weights, device="cpu")
    b = infer.get_worker_model(tiny_weights, device="cpu")
    assert a is b
    labels, probs = infer.classify_crops(np.zeros((3, 32, 32, 3), np.uint8), a, batch_size=2)
    assert len(labels) == 3 and probs.shape == (3, 3)


def test_default_model_via_classify_crops():
    clf = infer.get_worker_model(device="cpu")
    s = clf.io.input_size
    labels, probs = infer.classify_crops(np.full((4, s, s, 3), 220, np.uint8))
    assert len(labels) == 4 and probs.shape == (4, len(clf.io.classes))
    assert infer.get_worker_model(device="cpu") is clf


def test_model_plugin_sets_up_worker(tiny_weights):
    worker = SimpleNamespace(state=SimpleNamespace(total_resources={}), address="tcp://x")
    plugin = infer.ModelPlugin(tiny_weights)
    plugin.setup(worker)
    assert worker.hemoflow_wbc_model.device.type == "cpu"
    assert worker.hemoflow_wbc_model is infer.get_worker_model(tiny_weights, device="cpu")
    plugin.teardown(worker)
    assert not hasattr(worker, "hemoflow_wbc_model")


def test_classify_images(tmp_path, tiny_weights):
    clf = infer.get_worker_model(tiny_weights, device="cpu")
    paths = []
    for i, colour in enumerate([(200, 60, 180), (240, 230, 220)]):
        p = tmp_path / f"cell{i}.png"
        Image.fromarray(np.full((120, 110, 3), colour, np.uint8)).save(p)
        paths.append(p)
    out = infer.classify_images(paths, mpp=0.2, model=clf)
    assert [r["image"] for r in out] == [str(p) for p in paths]
    for r in out:
        assert r["label"] in clf.io.classes
        assert r["confidence"] == pytest.approx(max(r["probs"].values()), abs=1e-4)
    with pytest.raises(SlideNotFoundError):
        infer.classify_images([tmp_path / "missing.jpg"], model=clf)
