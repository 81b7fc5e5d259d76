"""Exact binomial confidence intervals and the number of cells that settles a flag.

Every proportion hemoflow reports (differential, blast %, immature fraction) comes from
counting ``k`` cells of one kind among ``n`` counted cells. Its uncertainty is the exact
(Clopper–Pearson) interval, which never undercovers and stays sensible at ``k = 0`` and
``k = n``, where the normal approximation breaks down.

All functions work on proportions in ``[0, 1]`` and broadcast over numpy arrays.

Examples
--------
>>> lo, hi = clopper_pearson(10, 100)
>>> round(float(lo), 3), round(float(hi), 3)
(0.049, 0.176)
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import beta

from hemoflow.errors import HemoflowError

__all__ = ["clopper_pearson", "cells_to_resolve", "resolved", "DEFAULT_CONFIDENCE"]

DEFAULT_CONFIDENCE = 0.95


def _check_confidence(confidence: float) -> float:
    c = float(confidence)
    if not 0.0 < c < 1.0:
        raise HemoflowError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    return c


def _interval(k: np.ndarray, n: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Clopper–Pearson bounds for real-valued ``0 <= k <= n`` (no validation)."""
    alpha = 1.0 - confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = beta.ppf(alpha / 2.0, k, n - k + 1.0)
        hi = beta.ppf(1.0 - alpha / 2.0, k + 1.0, n - k)
    lo = np.where(k <= 0, 0.0, lo)
    hi = np.where(k >= n, 1.0, hi)
    return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)


def clopper_pearson(
    k: ArrayLike, n: ArrayLike, *, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial (Clopper–Pearson) confidence interval of ``k / n``.

    Parameters
    ----------
    k : array_like of int
        Number of cells of the kind of interest, ``0 <= k <= n``.
    n : array_like of int
        Number of cells counted. ``n = 0`` gives the uninformative interval ``(0, 1)``.
    confidence : float, optional
        Two-sided coverage, 0.95 by default.

    Returns
    -------
    low, high : ndarray of float64
        Bounds as proportions in ``[0, 1]``, broadcast to the shape of ``k`` and ``n``
        (0-d arrays for scalar input).

    Raises
    ------
    HemoflowError
        If ``k`` or ``n`` is negative or ``k > n``.

    Examples
    --------
    >>> lo, hi = clopper_pearson([0, 100], [100, 100])
    >>> lo.round(4).tolist(), hi.round(4).tolist()
    ([0.0, 0.9638], [0.0362, 1.0])
    """
    confidence = _check_confidence(confidence)
    k_arr = np.asarray(k, dtype=np.float64)
    n_arr = np.asarray(n, dtype=np.float64)
    k_arr, n_arr = np.broadcast_arrays(k_arr, n_arr)
    if np.any(~np.isfinite(k_arr)) or np.any(~np.isfinite(n_arr)):
        raise HemoflowError("k and n must be finite")
    if np.any(k_arr < 0) or np.any(n_arr < 0) or np.any(k_arr > n_arr):
        raise HemoflowError(
            f"need 0 <= k <= n; got k={np.asarray(k).tolist()!r}, n={np.asarray(n).tolist()!r}"
        )
    return _interval(k_arr, n_arr, confidence)


def resolved(low: ArrayLike, high: ArrayLike, range_low: ArrayLike, range_high: ArrayLike) -> np.ndarray:
    """True where an interval lies wholly inside or wholly outside a range.

    The same rule as :func:`hemoflow.stats.reference.range_flag`: inside means
    ``range_low <= low`` and ``high <= range_high``; outside means ``high < range_low`` or
    ``low > range_high``.
    """
    low, high = np.asarray(low, float), np.asarray(high, float)
    rl, rh = np.asarray(range_low, float), np.asarray(range_high, float)
    inside = (low >= rl) & (high <= rh)
    outside = (high < rl) | (low > rh)
    return inside | outside


def cells_to_resolve(
    k: ArrayLike,
    n: ArrayLike,
    lo: ArrayLike,
    hi: ArrayLike,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    max_n: int = 10_000_000,
) -> np.ndarray:
    """Smallest total cell count that would settle an indeterminate flag.

    A flag is indeterminate while the confidence interval of ``k / n`` straddles a
    boundary of the range ``[lo, hi]``. Counting more cells narrows the interval; this
    function returns the smallest total ``n' >= n`` for which it would lie wholly inside
    or wholly outside the range.

    Assumption: the proportion observed so far, ``p = k / n``, is what further counting
    would keep finding. The interval at ``n'`` is computed for ``k' = p * n'`` with the
    beta form of the Clopper–Pearson bounds, which is defined for non-integer ``k'``; this
    makes the answer monotone in ``n'`` and independent of rounding. It is a planning
    figure ("about this many cells"), not a guarantee: the true proportion may differ.

    Parameters
    ----------
    k, n : array_like of int
        Observed count and total, ``0 <= k <= n``.
    lo, hi : array_like of float
        The range as proportions, ``lo <= hi``. A single cut-off ``c`` is the range
        ``[c, c]``: it is settled once the interval lies wholly on one side.
    confidence : float, optional
        Coverage of the interval, 0.95 by default.
    max_n : int, optional
        Largest total considered.

    Returns
    -------
    ndarray of int64
        The total ``n'`` (``n`` itself where the flag is already settled); ``-1`` where
        no ``n' <= max_n`` settles it (``p`` sits on a boundary of the range, or
        ``n = 0`` so there is no proportion to extrapolate). Scalar input gives a numpy
        scalar, as numpy ufuncs do.

    Examples
    --------
    >>> int(cells_to_resolve(5, 100, 0.02, 0.08))   # 5 % of 100: CI 1.6-11.3 %
    319
    >>> int(cells_to_resolve(50, 200, 0.40, 0.60))  # already within
    200
    """
    confidence = _check_confidence(confidence)
    k_arr = np.asarray(k, dtype=np.float64)
    n_arr = np.asarray(n, dtype=np.float64)
    lo_arr = np.asarray(lo, dtype=np.float64)
    hi_arr = np.asarray(hi, dtype=np.float64)
    k_arr, n_arr, lo_arr, hi_arr = np.broadcast_arrays(k_arr, n_arr, lo_arr, hi_arr)
    if np.any(k_arr < 0) or np.any(k_arr > n_arr):
        raise HemoflowError("need 0 <= k <= n")
    if np.any(lo_arr > hi_arr):
        raise HemoflowError("need lo <= hi")
    if int(max_n) < 1:
        raise HemoflowError(f"max_n must be positive, got {max_n!r}")

    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n_arr > 0, k_arr / np.where(n_arr > 0, n_arr, 1.0), np.nan)

    def settled(total: np.ndarray) -> np.ndarray:
        lo_ci, hi_ci = _interval(p * total, total, confidence)
        return resolved(lo_ci, hi_ci, lo_arr, hi_arr)

    out = np.full(k_arr.shape, -1, dtype=np.int64)
    valid = n_arr > 0
    start = np.where(valid, n_arr, 1.0)
    now = valid & settled(start)
    out[now] = n_arr[now].astype(np.int64)

    top = np.maximum(start, float(max_n))
    todo = valid & ~now & settled(top)
    # Bisection on [lo_n, hi_n]: settled(hi_n) is true, settled(lo_n) false.
    lo_n = start.copy()
    hi_n = top.copy()
    while True:
        active = todo & (hi_n - lo_n > 1)
        if not active.any():
            break
        mid = np.floor((lo_n + hi_n) / 2.0)
        ok = settled(mid)
        hi_n = np.where(active & ok, mid, hi_n)
        lo_n = np.where(active & ~ok, mid, lo_n)
    out[todo] = hi_n[todo].astype(np.int64)
    return out[()]
