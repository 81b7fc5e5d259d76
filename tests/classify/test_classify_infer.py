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
        assert set(r) == {"image", "label", "group", "probability", "p_blast", "probabilities", "mpp", "mpp_source"}
        assert r["mpp"] == 0.2 and r["mpp_source"] == "given"
        assert r["group"] == r["label"] and r["p_blast"] == 0.0  # a model without blast or stage labels
        assert r["probability"] == pytest.approx(max(r["probabilities"].values()), abs=1e-4)
    # default = test-time augmentation over the 8 flips/turns of each prepared crop
    crops = np.stack([infer.prepare_cell_image(np.asarray(Image.open(p).convert("RGB")), mpp=0.2,
                                               size=clf.io.input_size, dst_mpp=clf.io.mpp) for p in paths])
    for r, pr in zip(out, clf.predict(crops, tta=True)[1]):
        assert list(r["probabilities"].values()) == pytest.approx(pr.tolist(), abs=1e-5)
    # in chunks (here one image each): the same results, progress after each chunk
    seen = []
    chunked = infer.classify_images(paths, mpp=0.2, model=clf, chunk=1, progress=lambda d, t: seen.append((d, t)))
    assert chunked == out and seen == [(1, 2), (2, 2)]
    assert infer.classify_images([], model=clf) == []
    single = infer.classify_images(paths, mpp=0.2, model=clf, tta=False)
    for r, pr in zip(single, clf.predict(crops)[1]):
        assert list(r["probabilities"].values()) == pytest.approx(pr.tolist(), abs=1e-5)
    with pytest.raises(SlideNotFoundError):
        infer.classify_images([tmp_path / "missing.jpg"], model=clf)


def test_classify_batch_passes_tta(tiny_weights):
    """The job's ``tta`` setting reaches the classifier: labels/confidences of a pooled batch
    equal those of ``predict(..., tta=True)`` on the same crops, split back per tile."""
    from hemoflow.pipeline.tasks import TileResult, classify_batch

    rng = np.random.default_rng(5)
    crops = rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    tiles = [TileResult("s", 0, {}, crops[:3], 0.0), TileResult("s", 1, {}, crops[:0], 0.0),
             TileResult("t", 0, {}, crops[3:], 0.0)]
    clf = infer.get_worker_model(tiny_weights, device="cpu")
    for tta in (False, True):
        out = classify_batch(tiles, 4, str(tiny_weights), tta)
        labels, probs = clf.predict(crops, tta=tta)
        assert [len(x) for x in out["labels"]] == [3, 0, 4] and out["n"] == 7
        assert list(np.concatenate(out["labels"])) == labels
        np.testing.assert_allclose(np.concatenate(out["confidence"]), probs.max(1), atol=1e-6)


def _cells_with_red_cells(tmp_path, n: int, side: int = 160) -> list:
    """``n`` same-size images: a purple cell in the middle, pink 40-px red cells in corners
    (a different pair of corners per image, so per-image estimates scatter a little)."""
    yy, xx = np.mgrid[:side, :side]
    corners = [(22, 22), (22, side - 22), (side - 22, 22), (side - 22, side - 22)]
    paths = []
    for i in range(n):
        img = np.full((side, side, 3), (236, 226, 214), np.uint8)
        for cy, cx in (corners[i % 4], corners[(i + 1) % 4]):
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < (19 + i % 3) ** 2] = (205, 140, 150)
        img[(yy - side / 2) ** 2 + (xx - side / 2) ** 2 < 30 ** 2] = (95, 45, 150)
        p = tmp_path / f"c{i}.png"
        Image.fromarray(img).save(p)
        paths.append(p)
    return paths


def test_classify_images_pools_the_scale_of_same_size_images(tmp_path, tiny_weights):
    clf = infer.get_worker_model(tiny_weights, device="cpu")
    paths = _cells_with_red_cells(tmp_path, 9)
    own = infer.classify_images(paths, model=clf, pool=False, tta=False)
    pooled = infer.classify_images(paths, model=clf, tta=False)
    assert {r["mpp_source"] for r in own} == {"rbc"} and len({r["mpp"] for r in own}) > 1
    assert {r["mpp_source"] for r in pooled} == {"pooled"} and len({r["mpp"] for r in pooled}) == 1
    assert pooled[0]["mpp"] == pytest.approx(float(np.median([r["mpp"] for r in own])), abs=1e-5)
    # too few images of one size to pool: each keeps its own estimate
    few = infer.classify_images(paths[:3], model=clf, tta=False)
    assert [r["mpp"] for r in few] == [r["mpp"] for r in own[:3]]
    # a file that cannot be read is reported and left out of the pool when asked to
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    seen = []
    scales = infer.estimate_scales([*paths, bad], on_error=lambda p, e: seen.append(p))
    assert seen == [bad] and scales[-1] is None and {s[1] for s in scales[:-1]} == {"pooled"}
