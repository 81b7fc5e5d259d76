"""Which small stained objects are platelets: a per-candidate logistic model.

A single threshold on the nucleus score cannot tell pale platelets from the stain debris,
red-cell inclusions and background noise around it: set low enough for the pale ones it
admits the rest. Instead, candidates are taken at ``platelet_candidate_frac`` of the
calibrated platelet threshold, and a small logistic model looks at each one (size
relative to a typical platelet, peak and mean stain relative to the threshold, contrast
against a 1 µm ring around it, how much of that ring and of the object lies on red-cell
stain, distance to the nearest WBC up to 5 µm, whether it touches the array edge) and
keeps those it calls platelets.

The coefficients (``hemoflow/models/platelet_count.json``) were fitted on the training
split of the development images' TXL platelet boxes by
:mod:`hemoflow.training.platelet_count`. Every feature is measured within
5 µm of the candidate, so the result stays local (tiles reproduce whole-image platelets).
"""

from __future__ import annotations

import math

import numpy as np

from hemoflow.kernels import label
from hemoflow.kernels._distance import chamfer_distance
from hemoflow.kernels._labelops import label_bboxes, label_pixels, renumber_raster, ring_sums

__all__ = ["candidate_features", "keep_platelets", "FEATURES"]

FEATURES = (
    "bias",
    "log_area",
    "log_area_sq",
    "peak",
    "log_peak",
    "mean",
    "contrast",
    "ring_on_rbc",
    "cell_inside",
    "cell_ring",
    "wbc_distance",
    "border",
)
#: Distances to a WBC are measured up to this many µm (a local feature).
WBC_DISTANCE_CAP_UM = 5.0
#: Typical platelet diameter (µm) the candidate areas are compared with.
TYPICAL_DIAMETER_UM = 2.5


def _means(lab: np.ndarray, n: int, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-label count and means of ``values`` over pixels with labels ``lab`` (1-D, sparse)."""
    area = np.bincount(lab, minlength=n + 1).astype(np.float64)
    den = np.maximum(area, 1.0)
    return (area,) + tuple(np.bincount(lab, weights=v.astype(np.float64), minlength=n + 1) / den for v in values)


def _wbc_distance(labels: np.ndarray, n: int, wbc_mask: np.ndarray, um: float) -> np.ndarray:
    """Per candidate, the chamfer distance (µm, 0.01 steps, capped) from its nearest pixel to a WBC.

    Computed in a window around each WBC (its box grown by the cap), not over the whole
    image: a pixel within the cap of a WBC pixel has its whole chamfer path inside that
    window, so the capped result is the same.
    """
    cap = WBC_DISTANCE_CAP_UM
    dist = np.full(n + 1, cap)
    if not wbc_mask.any():
        return dist
    wlab, m = label(np.ascontiguousarray(wbc_mask, bool), connectivity=2)
    pad = int(math.ceil(cap * um)) + 2
    h, w = labels.shape
    for y0, x0, y1, x1 in label_bboxes(wlab, m)[1:]:
        sl = (slice(max(y0 - pad, 0), min(y1 + pad, h)), slice(max(x0 - pad, 0), min(x1 + pad, w)))
        sub = labels[sl]
        inside = sub > 0
        if not inside.any():
            continue
        d = np.minimum(chamfer_distance(~wbc_mask[sl])[inside] / (5.0 * um), cap)
        np.minimum.at(dist, sub[inside], np.round(d * 100) / 100.0)
    return dist


def candidate_features(
    labels: np.ndarray,
    n: int,
    *,
    nucleus: np.ndarray,
    cell: np.ndarray,
    cell_mask: np.ndarray,
    wbc_mask: np.ndarray,
    platelet_threshold: float,
    cell_threshold: float,
    px_per_um: float,
) -> np.ndarray:
    """Feature matrix ``float64[n, len(FEATURES)]`` of candidates ``1..n`` (working px).

    Candidates are small and sparse, so everything works on their pixel lists or in
    windows around them (and around WBCs), not on whole images.
    """
    if n == 0:
        return np.zeros((0, len(FEATURES)))
    labels = np.ascontiguousarray(labels, np.int32)
    um = float(px_per_um)
    thr = max(float(platelet_threshold), 1e-6)
    cthr = max(float(cell_threshold), 1e-6)
    idx, lab, boxes = label_pixels(labels, n)
    nuc_v = nucleus.ravel()[idx]
    area, mean_nuc, mean_cell = _means(lab, n, nuc_v, cell.ravel()[idx])
    peak = np.zeros(n + 1)
    np.maximum.at(peak, lab, np.clip(nuc_v * 1000.0, 0, None).astype(np.int32) / 1000.0)
    # the ring: unlabelled pixels within 1 µm whose nearest candidate pixel is this one's
    rs = ring_sums(labels, n, 1.0 * um, nucleus, cell_mask, cell, boxes=boxes)
    den = np.maximum(rs[:, 0], 1.0)
    ring_nuc, ring_rbc, ring_cell = rs[:, 1] / den, rs[:, 2] / den, rs[:, 3] / den
    dist = _wbc_distance(labels, n, wbc_mask, um)
    border = np.zeros(n + 1, bool)
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        border[edge] = True
    typical = math.pi / 4.0 * (TYPICAL_DIAMETER_UM * um) ** 2
    la = np.log(np.maximum(area, 1.0) / typical)
    pk = peak / thr
    cols = [
        np.ones(n + 1),
        la,
        la * la,
        pk,
        np.log(np.maximum(pk, 1e-3)),
        mean_nuc / thr,
        (mean_nuc - ring_nuc) / thr,
        ring_rbc,
        mean_cell / cthr,
        ring_cell / cthr,
        dist,
        border.astype(np.float64),
    ]
    return np.stack(cols, axis=1)[1:]


def predict(features: np.ndarray, coef: np.ndarray | None = None) -> np.ndarray:
    """True per candidate the shipped (or given, on standardised features) model calls a platelet."""
    if coef is None:
        from hemoflow import models

        m = models.coefficients("platelet_count")
        coef = m["coef"]
        z = (features - m["mean"]) / m["std"]
    else:
        z = features
    if len(z) == 0:
        return np.zeros(0, bool)
    return np.argmax(z @ coef, axis=1) == 1


def keep_platelets(labels: np.ndarray, n: int, features: np.ndarray) -> tuple[np.ndarray, int]:
    """Keep the candidates the model calls platelets; ``(labels int32, n)`` in raster order."""
    if n == 0:
        return np.zeros(labels.shape, np.int32), 0
    keep = np.zeros(n + 1, np.int32)
    keep[1:] = np.where(predict(features), np.arange(1, n + 1), 0)
    return renumber_raster(labels, keep)
