"""Classical baseline for the WBC classifier: hand-made features + logistic regression.

Features of a model crop (uint8 [S,S,3] at ``io.mpp``): joint hue-saturation histogram
and value histogram of the central disc, the share and shape of dark-purple (nuclear)
pixels, a rotation-invariant local-binary-pattern histogram, and HOG of the grey image.
The classifier is an L2-regularised multinomial logistic regression fitted with
L-BFGS (scipy), on standardised features. Used for the comparison figures only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import minimize
from skimage.color import rgb2hsv
from skimage.feature import hog, local_binary_pattern
from skimage.transform import resize

__all__ = ["crop_features", "LogisticBaseline"]


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


@dataclass
class LogisticBaseline:
    """Multinomial logistic regression on :func:`crop_features`."""

    classes: tuple[str, ...]
    l2: float = 1e-3
    max_iter: int = 400

    def fit(self, crops: np.ndarray, labels: Sequence[str]) -> "LogisticBaseline":
        X = features(crops)
        self.mu, self.sd = X.mean(0), X.std(0) + 1e-6
        X = (X - self.mu) / self.sd
        idx = {c: i for i, c in enumerate(self.classes)}
        y = np.array([idx[lb] for lb in labels])
        n, d = X.shape
        k = len(self.classes)
        Y = np.zeros((n, k))
        Y[np.arange(n), y] = 1.0
        Xb = np.hstack([X, np.ones((n, 1))])

        def loss(wflat):
            W = wflat.reshape(d + 1, k)
            z = Xb @ W
            z -= z.max(1, keepdims=True)
            lse = np.log(np.exp(z).sum(1))
            p = np.exp(z - lse[:, None])
            reg = 0.5 * self.l2 * (W[:-1] ** 2).sum()
            f = -(Y * (z - lse[:, None])).sum() / n + reg
            g = Xb.T @ (p - Y) / n
            g[:-1] += self.l2 * W[:-1]
            return f, g.ravel()

        res = minimize(loss, np.zeros((d + 1) * k), jac=True, method="L-BFGS-B",
                       options={"maxiter": self.max_iter})
        self.W = res.x.reshape(d + 1, k)
        return self

    def predict(self, crops: np.ndarray) -> tuple[list[str], np.ndarray]:
        X = (features(crops) - self.mu) / self.sd
        z = np.hstack([X, np.ones((len(X), 1))]) @ self.W
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        return [self.classes[i] for i in p.argmax(1)], p.astype(np.float32)
