"""The classical baselines (features + SVM / random forest / logistic regression) learn a
difference a feature can see, and refuse an unknown kind."""

from __future__ import annotations

import numpy as np
import pytest

from hemoflow.training.baseline import KINDS, FeatureBaseline, features


def _crops(n: int, radius: float, seed: int, side: int = 48) -> np.ndarray:
    """Pale crops with one purple disc of about ``radius`` px, jittered in place, size and tint."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    out = np.empty((n, side, side, 3), np.uint8)
    for i in range(n):
        img = np.full((side, side, 3), (232, 222, 214), np.float64)
        cy, cx = side / 2 + rng.normal(0, 2, 2)
        r = radius * rng.uniform(0.9, 1.1)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = (100, 50, 150) + rng.normal(0, 8, 3)
        out[i] = np.clip(img + rng.normal(0, 4, img.shape), 0, 255)
    return out


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_baseline_separates_small_and_large_nuclei(kind):
    classes = ("lymphocyte", "monocyte")
    X = features(np.concatenate([_crops(40, 7, 0), _crops(40, 15, 1)]))
    y = ["lymphocyte"] * 40 + ["monocyte"] * 40
    model = FeatureBaseline(kind, classes).fit(X, y)
    test = features(np.concatenate([_crops(20, 7, 2), _crops(20, 15, 3)]))
    p = model.predict_proba(test)
    assert p.shape == (40, 2) and np.allclose(p.sum(1), 1)
    pred = np.array(classes)[p.argmax(1)]
    assert (pred == np.array(["lymphocyte"] * 20 + ["monocyte"] * 20)).mean() >= 0.9


def test_unknown_baseline_is_refused():
    with pytest.raises(ValueError, match="unknown baseline"):
        FeatureBaseline("knn", ("a", "b")).fit(np.zeros((4, 3)), ["a", "b", "a", "b"])
