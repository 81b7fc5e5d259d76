"""Classical baselines for the WBC classifier: hand-made features + SVM, random forest or
logistic regression (scikit-learn).

Features of a model crop (uint8 [S,S,3] at ``io.mpp``): joint hue-saturation histogram
and value histogram of the central disc, the share and shape of dark-purple (nuclear)
pixels, a rotation-invariant local-binary-pattern histogram, and HOG of the grey image.
The classifiers are fitted on standardised features, every class weighted equally
(``class_weight="balanced"``). Used for the comparison figures only
(``scripts/evaluate_classifier.py --parts baseline``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from skimage.color import rgb2hsv
from skimage.feature import hog, local_binary_pattern
from skimage.transform import resize

__all__ = ["crop_features", "features", "FeatureBaseline", "KINDS"]

#: Baseline name -> what it is, as the figures name it.
KINDS = {
    "svm": "RBF support-vector machine",
    "rf": "random forest (500 trees)",
    "logistic": "multinomial logistic regression",
}


def crop_features(crop: np.ndarray) -> np.ndarray:
    """Feature vector (float64) of one uint8 [S,S,3] crop."""
    s = crop.shape[0]
    yy, xx = np.mgrid[:s, :s]
    r = np.hypot(yy - (s - 1) / 2, xx - (s - 1) / 2)
    disc = r < 0.42 * s
    hsv = rgb2hsv(crop)
    h, sat, v = hsv[..., 0][disc], hsv[..., 1][disc], hsv[..., 2][disc]
    hs, _, _ = np.histogram2d(h, sat, bins=(12, 4), range=((0, 1), (0, 1)))
    vh, _ = np.histogram(v, bins=8, range=(0, 1))
    n = disc.sum()
    dark = (hsv[..., 2] < 0.55) & (hsv[..., 1] > 0.25) & disc
    dy, dx = np.nonzero(dark)
    frac = dark.sum() / n
    if len(dy) > 3:
        spread = [np.std(dy) / s, np.std(dx) / s, np.hypot(dy.mean() - s / 2, dx.mean() - s / 2) / s]
    else:
        spread = [0.0, 0.0, 0.0]
    grey = crop.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0
    lbp = local_binary_pattern((grey * 255).astype(np.uint8), 8, 1, method="uniform")
    lh, _ = np.histogram(lbp[disc], bins=10, range=(0, 10))
    small = resize(grey, (48, 48), anti_aliasing=True)
    hg = hog(small, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2), feature_vector=True)
    stats = [crop[..., c][disc].mean() / 255 for c in range(3)] + [crop[..., c][disc].std() / 255 for c in range(3)]
    return np.concatenate([hs.ravel() / n, vh / n, [frac], spread, lh / n, hg, stats])


def features(crops: np.ndarray) -> np.ndarray:
    return np.stack([crop_features(c) for c in crops])


def _estimator(kind: str, seed: int) -> Any:
    try:
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC
    except ImportError as e:  # pragma: no cover - scikit-learn comes with the test extra
        raise ImportError("the classical baselines need scikit-learn: pip install -e '.[test]'") from e
    if kind == "svm":
        model = SVC(C=10.0, gamma="scale", class_weight="balanced", random_state=seed)
    elif kind == "rf":
        model = RandomForestClassifier(n_estimators=500, min_samples_leaf=2, class_weight="balanced", n_jobs=-1,
                                       random_state=seed)
    elif kind == "logistic":
        model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
    else:
        raise ValueError(f"unknown baseline {kind!r}; expected one of {', '.join(KINDS)}")
    return make_pipeline(StandardScaler(), model)


@dataclass
class FeatureBaseline:
    """One of :data:`KINDS` on :func:`crop_features`; ``fit`` and ``predict`` take feature
    matrices (compute them once with :func:`features` and share them between baselines)."""

    kind: str
    classes: tuple[str, ...]
    seed: int = 0
    model: Any = field(default=None, repr=False)

    def fit(self, X: np.ndarray, labels: Sequence[str]) -> "FeatureBaseline":
        self.model = _estimator(self.kind, self.seed).fit(X, np.asarray(labels))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """[N, len(classes)]: one-hot of the predicted label (the SVM gives no probabilities;
        the figures need labels only), zero for classes never seen in fitting."""
        pred = self.model.predict(X)
        out = np.zeros((len(X), len(self.classes)), np.float32)
        idx = {c: i for i, c in enumerate(self.classes)}
        out[np.arange(len(X)), [idx[p] for p in pred]] = 1.0
        return out
