"""Splitting labelled regions into k parts by k-means on their pixel coordinates.

- :func:`kmeans_parts` -- k-means of one pixel set (farthest-point start, Lloyd steps).
- :func:`split_labels` -- every region ``L`` with ``k[L] >= 2`` of a label image cut
  into ``k[L]`` parts in one compiled pass: part 0 keeps ``L``, the others get new ids.

The arithmetic is that of the numpy formulation ``pts.mean(axis=0)``,
``((pts - c) ** 2).sum(axis=1)``, first-index ``argmax`` / ``argmin``: coordinates are
integers, so every sum is exact and the parts equal numpy's bit for bit (tested).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["kmeans_parts", "split_labels"]


@njit(cache=True, nogil=True, inline="always")
def _nearest(y, x, cy, cx, n):
    # (index, squared distance) of the nearest of centres 0..n-1 (the first of equals)
    dm = np.inf
    a = 0
    for j in range(n):
        dy = y - cy[j]
        dx = x - cx[j]
        d = dy * dy + dx * dx
        if d < dm:
            dm = d
            a = j
    return a, dm


@njit(cache=True, nogil=True)
def _kmeans(ys, xs, k, iters):
    m = ys.shape[0]
    cy = np.empty(k, np.float64)
    cx = np.empty(k, np.float64)
    sy = 0.0
    sx = 0.0
    for t in range(m):
        sy += ys[t]
        sx += xs[t]
    my = sy / m
    mx = sx / m
    # farthest-point start: the pixel farthest from the mean, then from the nearest centre
    best = -1.0
    arg = 0
    for t in range(m):
        dy = ys[t] - my
        dx = xs[t] - mx
        d = dy * dy + dx * dx
        if d > best:
            best = d
            arg = t
    cy[0] = ys[arg]
    cx[0] = xs[arg]
    for c in range(1, k):
        best = -1.0
        arg = 0
        for t in range(m):
            dm = _nearest(ys[t], xs[t], cy, cx, c)[1]
            if dm > best:
                best = dm
                arg = t
        cy[c] = ys[arg]
        cx[c] = xs[arg]
    assign = np.zeros(m, np.int64)
    new = np.empty(m, np.int64)
    cnt = np.empty(k, np.int64)
    ay = np.empty(k, np.float64)
    ax = np.empty(k, np.float64)
    for it in range(iters):
        same = True
        for t in range(m):
            a = _nearest(ys[t], xs[t], cy, cx, k)[0]
            new[t] = a
            if a != assign[t]:
                same = False
        if it > 0 and same:
            break
        assign[:] = new
        cnt[:] = 0
        ay[:] = 0.0
        ax[:] = 0.0
        for t in range(m):
            a = assign[t]
            cnt[a] += 1
            ay[a] += ys[t]
            ax[a] += xs[t]
        for j in range(k):
            if cnt[j] > 0:
                cy[j] = ay[j] / cnt[j]
                cx[j] = ax[j] / cnt[j]
    return assign


@njit(cache=True, nogil=True)
def _split_labels(labels, out, boxes, ks, first_id, iters):
    nxt = first_id
    n = ks.shape[0] - 1
    for lab in range(1, n + 1):
        k = ks[lab]
        if k < 2:
            continue
        r0, c0, r1, c1 = boxes[lab, 0], boxes[lab, 1], boxes[lab, 2], boxes[lab, 3]
        m = 0
        for i in range(r0, r1):
            for j in range(c0, c1):
                if labels[i, j] == lab:
                    m += 1
        if m == 0:
            continue
        ys = np.empty(m, np.float64)
        xs = np.empty(m, np.float64)
        t = 0
        for i in range(r0, r1):
            for j in range(c0, c1):
                if labels[i, j] == lab:
                    ys[t] = i - r0  # relative to the box: translation-invariant
                    xs[t] = j - c0
                    t += 1
        kk = min(k, m)
        part = _kmeans(ys, xs, kk, iters)
        for j in range(1, kk):
            for t in range(m):
                if part[t] == j:
                    out[r0 + np.int64(ys[t]), c0 + np.int64(xs[t])] = nxt
            nxt += 1
    return nxt


def kmeans_parts(ys: np.ndarray, xs: np.ndarray, k: int, iters: int = 8) -> np.ndarray:
    """Part (``0..k-1``, int64) of each point ``(ys[t], xs[t])`` (integer coordinates):
    k-means from the farthest-point start, at most ``iters`` Lloyd steps, stopping when an
    assignment repeats."""
    ys = np.ascontiguousarray(ys, np.float64)
    xs = np.ascontiguousarray(xs, np.float64)
    if ys.shape != xs.shape or ys.ndim != 1:
        raise ValueError(f"ys and xs must be 1-D of one length, got {ys.shape} and {xs.shape}")
    if not 1 <= int(k) <= max(len(ys), 1) or len(ys) == 0:
        raise ValueError(f"k must be in 1..{len(ys)} (the number of points), got {k}")
    return _kmeans(ys, xs, int(k), int(iters))


def split_labels(labels: np.ndarray, out: np.ndarray, boxes: np.ndarray, ks: np.ndarray, first_id: int,
                 iters: int = 8) -> int:
    """Cut each region ``L`` of ``labels`` with ``ks[L] >= 2`` into ``min(ks[L], area)``
    parts by :func:`kmeans_parts` (coordinates relative to its box ``boxes[L]``, as
    :func:`hemoflow.kernels._labelops.label_bboxes` gives). Part 0 keeps what ``out`` holds;
    part ``j >= 1`` is written into ``out`` as a new id, counting up from ``first_id`` in
    label order. Returns the next unused id."""
    labels = np.ascontiguousarray(labels, np.int32)
    if out.shape != labels.shape or out.dtype != np.int32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous int32 of shape {labels.shape}")
    ks = np.ascontiguousarray(ks, np.int64)
    boxes = np.ascontiguousarray(boxes, np.int64)
    if boxes.shape != (len(ks), 4):
        raise ValueError(f"boxes has shape {boxes.shape}, expected {(len(ks), 4)}")
    return int(_split_labels(labels, out, boxes, ks, int(first_id), int(iters)))
