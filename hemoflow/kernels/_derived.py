"""Quantities derived from region-table columns (plain numpy)."""

from __future__ import annotations

import numpy as np

__all__ = ["centroid_um", "circularity"]


def circularity(area: np.ndarray | float, perimeter: np.ndarray | float) -> np.ndarray:
    """Isoperimetric quotient ``4 * pi * area / perimeter**2`` (1 for a perfect disc).

    Regions with zero perimeter (single pixels, per skimage's estimator) give ``nan``.

    Examples
    --------
    >>> float(circularity(np.pi, 2 * np.pi))
    1.0
    """
    a = np.asarray(area, dtype=np.float64)
    p = np.asarray(perimeter, dtype=np.float64)
    if a.shape != p.shape:
        raise ValueError(f"area and perimeter must have the same shape; got {a.shape} and {p.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, 4.0 * np.pi * a / np.where(p > 0, p * p, 1.0), np.nan)


def centroid_um(centroid: np.ndarray, mpp: float) -> np.ndarray:
    """Pixel coordinates (any shape, e.g. (N, 2) rows of (row, col)) to micrometres.

    Examples
    --------
    >>> centroid_um(np.array([[10.0, 4.0]]), 0.25).tolist()
    [[2.5, 1.0]]
    """
    try:
        m = float(mpp)
    except (TypeError, ValueError):
        raise TypeError(f"mpp must be a positive number (micrometres per pixel); got {mpp!r}") from None
    if not np.isfinite(m) or m <= 0:
        raise ValueError(f"mpp must be a positive finite number (micrometres per pixel); got {mpp!r}")
    c = np.asarray(centroid, dtype=np.float64)
    return c * m
