"""How many red cells each watershed basin holds, and splitting basins accordingly.

The distance-transform watershed (:func:`hemoflow.stages.segment.segment_rbc`) leaves two
kinds of error on real smears: heavily overlapping cells stay one basin (no saddle in
the distance map), and pale cells with an open central pallor break into C-shaped
pieces. A small multinomial logistic model looks at each basin's shape (area relative
to a typical RBC, solidity, eccentricity, circularity, depth of its distance peak,
whether it touches the array edge) and predicts 0, 1, 2 or 3 cells. Basins predicted to
hold 0 are dropped; those predicted to hold k >= 2 are split into k parts by k-means on
their pixel coordinates (deterministic farthest-point start, coordinates relative to the
basin's bounding box, so the split does not depend on where the window starts).

The coefficients (``hemoflow/models/rbc_count_*.json``) were fitted on the training
split of the development images' box annotations by :mod:`hemoflow.training.rbc_count`.
Everything here is per basin, so the result stays local.
"""

from __future__ import annotations

import math

import numpy as np

from hemoflow.kernels import regionprops_table
from hemoflow.kernels._kmeans import split_labels
from hemoflow.kernels._labelops import label_bboxes, label_max, lut_gather, renumber_raster

__all__ = ["basin_features", "predict_proba", "predict_counts", "expected_weights", "split_basins", "FEATURES"]

FEATURES = (
    "bias",
    "log_area",
    "log_area_sq",
    "solidity",
    "eccentricity",
    "circularity",
    "depth",
    "border",
    "border_log_area",
)
N_CLASSES = 4
#: Extra features of the density-aware model: the basin's red-cell density mass
#: (:mod:`hemoflow.stages._rbc_density`) and its log.
MASS_FEATURES = ("mass", "log_mass")


def mass_features(mass: np.ndarray) -> np.ndarray:
    """``float64[n, 2]``: the basins' density mass and ``log(mass + 0.05)``."""
    m = np.maximum(np.asarray(mass, np.float64), 0.0)
    return np.stack([m, np.log(m + 0.05)], axis=1)


#: What :func:`basin_features` measures of each basin (a ``props`` argument must hold these).
BASIN_PROPERTIES = ("label", "area", "perimeter", "solidity", "eccentricity", "bbox")


def basin_features(labels: np.ndarray, n: int, dist: np.ndarray, *, rbc_area_px: float,
                   props: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Feature matrix ``float64[n, len(FEATURES)]`` of basins ``1..n`` (working px).

    ``dist`` is the chamfer distance (1/5 px units) of the RBC mask; ``rbc_area_px`` the
    area of a typical RBC in working px. ``props``: ``regionprops_table`` of ``labels``
    with at least :data:`BASIN_PROPERTIES`, when the caller has it already.
    """
    if n == 0:
        return np.zeros((0, len(FEATURES)))
    p = props if props is not None else regionprops_table(np.ascontiguousarray(labels, np.int32),
                                                          properties=BASIN_PROPERTIES)
    order = np.argsort(p["label"], kind="stable")
    p = {k: np.asarray(v)[order] for k, v in p.items()}
    area = p["area"].astype(np.float64)
    perim = np.maximum(p["perimeter"].astype(np.float64), 1.0)
    peak = label_max(labels, dist, n)[1:].astype(np.float64) / 5.0
    h, w = labels.shape
    border = ((p["bbox-0"] == 0) | (p["bbox-1"] == 0) | (p["bbox-2"] == h) | (p["bbox-3"] == w)).astype(np.float64)
    la = np.log(area / rbc_area_px)
    radius = math.sqrt(rbc_area_px / math.pi)
    return np.stack(
        [
            np.ones(n),
            la,
            la * la,
            p["solidity"].astype(np.float64),
            p["eccentricity"].astype(np.float64),
            np.minimum(4.0 * math.pi * area / (perim * perim), 1.5),
            peak / radius,
            border,
            border * la,
        ],
        axis=1,
    )


def predict_proba(features: np.ndarray, *, density: bool = False) -> np.ndarray:
    """``float64[n, 4]``: probability of 0..3 cells per basin under the shipped model
    (``density``: the density-aware one, whose features end with :data:`MASS_FEATURES`)."""
    from hemoflow import models

    m = models.coefficients("rbc_count_density" if density else "rbc_count_shape")
    if len(features) == 0:
        return np.zeros((0, N_CLASSES))
    s = ((features - m["mean"]) / m["std"]) @ m["coef"]
    s -= s.max(axis=1, keepdims=True)
    p = np.exp(s)
    return p / p.sum(axis=1, keepdims=True)


def predict_counts(features: np.ndarray, coef: np.ndarray | None = None, *, density: bool = False) -> np.ndarray:
    """Most probable cell count (0..3) per basin under the shipped model (see
    :func:`predict_proba`), or under ``coef`` for features already standardised."""
    if len(features) == 0:
        return np.zeros(0, np.int64)
    scores = predict_proba(features, density=density) if coef is None else features @ coef
    return np.argmax(scores, axis=1).astype(np.int64)


def expected_weights(proba: np.ndarray, labels: np.ndarray, *, reach_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Most probable counts and count weights of basins ``1..n`` (``proba`` from
    :func:`predict_proba`): ``(counts int64[n], weight float64[n])``.

    A kept basin (most probable count k >= 1) weighs its expected count ``sum_j j p_j``
    plus the expected counts of the dropped basins (most probable count 0, typically
    fragments of pale cells) whose bounding-box centre lies within ``reach_px`` of its
    own, nearest first; each of its k parts carries ``weight / k``. Summed over a field,
    the weights give the expected number of red cells, which argmax counts underestimate
    (fragments that are each probably nothing are together often a cell). Everything is
    local (reach_px), so tiles agree with the whole field.
    """
    n = len(proba)
    counts = np.argmax(proba, axis=1).astype(np.int64) if n else np.zeros(0, np.int64)
    expect = proba @ np.arange(proba.shape[1], dtype=np.float64) if n else np.zeros(0)
    total = np.where(counts > 0, expect, 0.0)
    kept = np.flatnonzero(counts > 0)
    dropped = np.flatnonzero((counts == 0) & (expect > 0))
    if len(kept) and len(dropped):
        from scipy.spatial import cKDTree

        b = label_bboxes(labels, n)[1:].astype(np.float64)
        centre = np.stack([(b[:, 0] + b[:, 2]) / 2.0, (b[:, 1] + b[:, 3]) / 2.0], axis=1)
        dist, idx = cKDTree(centre[kept]).query(centre[dropped], k=1, distance_upper_bound=reach_px)
        ok = np.isfinite(dist)
        np.add.at(total, kept[idx[ok]], expect[dropped[ok]])
    weight = np.where(counts > 0, total / np.maximum(counts, 1), 0.0)
    return counts, weight


def split_basins(labels: np.ndarray, counts: np.ndarray, boxes: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Drop basins with count 0, split those with count k >= 2 into k parts (k-means on
    the pixel coordinates; the first part keeps the basin). ``boxes``: the basins' boxes
    as :func:`hemoflow.kernels._labelops.label_bboxes` gives them, when the caller has them.

    Returns ``(labels int32, n)`` numbered in raster order of each part's first pixel.
    """
    n = len(counts)
    if n == 0:
        return np.zeros(labels.shape, np.int32), 0
    counts = np.asarray(counts, np.int64)
    keep = np.zeros(n + 1, np.int32)
    keep[1:] = np.where(counts > 0, np.arange(1, n + 1), 0)
    if not (counts >= 2).any():
        return renumber_raster(labels, keep)
    out = lut_gather(keep, labels)
    ks = np.zeros(n + 1, np.int64)
    ks[1:] = counts
    split_labels(labels, out, label_bboxes(labels, n) if boxes is None else boxes, ks, n + 1)
    return renumber_raster(out)
