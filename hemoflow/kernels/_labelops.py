"""Label-image utilities (Numba): per-label statistics, boxes, lookups, renumbering.

- :func:`label_max`, :func:`label_sizes`, :func:`label_bboxes`, :func:`label_pixels`,
  :func:`ring_sums` -- per-label maximum, size, bounding box, pixel lists and sums over
  a ring around each label (``scipy.ndimage`` statistics without a sort).
- :func:`lut_gather` -- ``lut[labels]`` for a label image (2-3x numpy's fancy indexing).
- :func:`renumber_raster` -- relabel through a lookup table, numbering in raster order.
- :func:`label_sources`, :func:`overlay_labels` -- which old label a new one came from;
  several label layers stacked into one image.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._morphology import disk_offsets

__all__ = ["label_max", "label_bboxes", "label_pixels", "ring_sums", "bbox_slices", "lut_gather", "label_sizes",
           "label_sources", "overlay_labels", "renumber_raster"]


@njit(cache=True, nogil=True)
def _label_max(labels, values, n):
    out = np.zeros(n + 1, np.int64)
    h, w = labels.shape
    for i in range(h):
        for j in range(w):
            lab = labels[i, j]
            if lab > 0 and values[i, j] > out[lab]:
                out[lab] = values[i, j]
    return out


def label_max(labels: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per-label maximum of the non-negative int ``values`` (int64[n + 1], index 0 unused);
    ``scipy.ndimage.maximum`` without its full-array sort."""
    labels = np.ascontiguousarray(labels, np.int32)
    values = np.ascontiguousarray(values, np.int32)
    if labels.shape != values.shape:
        raise ValueError(f"labels {labels.shape} and values {values.shape} differ in shape")
    return _label_max(labels, values, int(n))


@njit(cache=True, nogil=True, inline="always")
def _empty_boxes(n, h, w):
    out = np.empty((n + 1, 4), np.int64)
    for k in range(n + 1):
        out[k, 0] = h
        out[k, 1] = w
        out[k, 2] = 0
        out[k, 3] = 0
    return out


@njit(cache=True, nogil=True, inline="always")
def _box_add(boxes, k, i, j):
    if i < boxes[k, 0]:
        boxes[k, 0] = i
    if j < boxes[k, 1]:
        boxes[k, 1] = j
    if i + 1 > boxes[k, 2]:
        boxes[k, 2] = i + 1
    if j + 1 > boxes[k, 3]:
        boxes[k, 3] = j + 1


@njit(cache=True, nogil=True)
def _label_bboxes(labels, n):
    h, w = labels.shape
    out = _empty_boxes(n, h, w)
    for i in range(h):
        for j in range(w):
            lab = labels[i, j]
            if 0 < lab <= n:
                _box_add(out, lab, i, j)
    return out


@njit(cache=True, nogil=True)
def _ring_sums(labels, boxes, offs, r2max, a, b, c):
    h, w = labels.shape
    n = boxes.shape[0] - 1
    out = np.zeros((n + 1, 4), np.float64)
    r = 0
    for t in range(offs.shape[0]):
        r = max(r, abs(offs[t, 0]), abs(offs[t, 1]))
    for k in range(1, n + 1):
        if boxes[k, 2] <= boxes[k, 0]:
            continue
        for i in range(max(boxes[k, 0] - r, 0), min(boxes[k, 2] + r, h)):
            for j in range(max(boxes[k, 1] - r, 0), min(boxes[k, 3] + r, w)):
                if labels[i, j] != 0:
                    continue
                # the nearest labelled pixel within the radius (first in raster order on a tie)
                best = r2max + 1
                best_pos = h * w
                owner = 0
                for t in range(offs.shape[0]):
                    ii = i + offs[t, 0]
                    jj = j + offs[t, 1]
                    if ii < 0 or ii >= h or jj < 0 or jj >= w:
                        continue
                    lab = labels[ii, jj]
                    if lab == 0:
                        continue
                    d2 = offs[t, 0] * offs[t, 0] + offs[t, 1] * offs[t, 1]
                    pos = ii * w + jj
                    if d2 < best or (d2 == best and pos < best_pos):
                        best = d2
                        best_pos = pos
                        owner = lab
                if owner == k:
                    out[k, 0] += 1.0
                    out[k, 1] += np.float64(a[i, j])
                    out[k, 2] += np.float64(b[i, j])
                    out[k, 3] += np.float64(c[i, j])
    return out


def ring_sums(labels: np.ndarray, n: int, radius: float, a: np.ndarray, b: np.ndarray, c: np.ndarray, *,
              boxes: np.ndarray | None = None) -> np.ndarray:
    """Per label ``1..n``, the pixel count and the sums of ``a``, ``b``, ``c`` over its ring:
    the unlabelled pixels within Euclidean ``radius`` whose nearest labelled pixel is that
    label's (first in raster order on a tie) -- what :func:`paint_nearest` would give it,
    computed in windows around each label instead of over the whole image
    (float64[n + 1, 4], row 0 unused). ``boxes``: the labels' :func:`label_bboxes`, when
    the caller has them."""
    labels = np.ascontiguousarray(labels, np.int32)
    boxes = label_bboxes(labels, n) if boxes is None else np.ascontiguousarray(boxes, np.int64)
    if boxes.shape != (int(n) + 1, 4):
        raise ValueError(f"boxes must have shape ({int(n) + 1}, 4), got {boxes.shape}")
    # in their own dtypes (bool as uint8): the kernel adds them into float64, exactly as a
    # float64 copy would, without three image-sized copies per call
    arrs = [np.ascontiguousarray(v).view(np.uint8) if v.dtype == np.bool_ else np.ascontiguousarray(v)
            for v in (np.asarray(a), np.asarray(b), np.asarray(c))]
    return _ring_sums(labels, boxes, disk_offsets(radius), np.int64(np.floor(radius * radius + 1e-9)), *arrs)


@njit(cache=True, nogil=True)
def _label_pixels(labels, n):
    h, w = labels.shape
    idx = np.empty(h * w, np.int64)  # untouched beyond the labelled pixels: costs no memory
    lab = np.empty(h * w, np.int32)
    boxes = _empty_boxes(n, h, w)
    m = 0
    for i in range(h):
        for j in range(w):
            v = labels[i, j]
            if 0 < v <= n:
                idx[m] = i * w + j
                lab[m] = v
                m += 1
                _box_add(boxes, v, i, j)
    return idx[:m], lab[:m], boxes


def label_pixels(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixels of labels ``1..n`` in one pass: ``(flat indices int64`` in raster order,
    ``their labels int32,`` :func:`label_bboxes` ``int64[n + 1, 4])`` -- a sparse view of a
    label image whose labels cover few pixels."""
    return _label_pixels(np.ascontiguousarray(labels, np.int32), int(n))


def label_bboxes(labels: np.ndarray, n: int) -> np.ndarray:
    """Bounding boxes of labels ``1..n`` in one pass: int64[n + 1, 4] rows
    ``(y0, x0, y1, x1)`` (end-exclusive; row 0 unused; an absent label has ``y1 <= y0``)."""
    labels = np.ascontiguousarray(labels)
    if labels.dtype not in (np.int32, np.int64):
        labels = labels.astype(np.int64)
    return _label_bboxes(labels, int(n))


def bbox_slices(row) -> tuple[slice, slice] | None:
    """One row of :func:`label_bboxes` as a pair of slices (None for an absent label)."""
    y0, x0, y1, x1 = (int(v) for v in row)
    return (slice(y0, y1), slice(x0, x1)) if y1 > y0 else None


@njit(cache=True, nogil=True)
def _lut_gather(lut, flat):
    out = np.empty(flat.shape[0], lut.dtype)
    n = lut.shape[0]
    for k in range(flat.shape[0]):
        v = flat[k]
        if v < 0 or v >= n:
            raise ValueError("label outside the lookup table")
        out[k] = lut[v]
    return out


def lut_gather(lut: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``lut[labels]`` (an array of ``labels``' shape and ``lut``'s dtype) for int32/int64
    labels in ``0 .. len(lut) - 1``; ValueError for a label outside the table."""
    labels = np.ascontiguousarray(labels)
    if labels.dtype not in (np.int32, np.int64):
        raise ValueError(f"labels must be int32 or int64, got {labels.dtype}")
    lut = np.ascontiguousarray(lut)
    return _lut_gather(lut, labels.ravel()).reshape(labels.shape)


@njit(cache=True, nogil=True)
def _renumber(labels, lut):
    h, w = labels.shape
    out = np.zeros((h, w), np.int32)
    ids = np.zeros(lut.shape[0], np.int32)
    m = 0
    for i in range(h):
        for j in range(w):
            v = lut[labels[i, j]]
            if v == 0:
                continue
            if ids[v] == 0:
                m += 1
                ids[v] = m
            out[i, j] = ids[v]
    return out, m


@njit(cache=True, nogil=True)
def _label_sizes(flat, n):
    out = np.zeros(n + 1, np.int64)
    for k in range(flat.shape[0]):
        v = flat[k]
        if 0 <= v <= n:
            out[v] += 1
    return out


def label_sizes(labels: np.ndarray, n: int) -> np.ndarray:
    """Pixel count of each label ``0..n`` (int64[n + 1]; values outside are ignored):
    ``np.bincount(labels.ravel(), minlength=n + 1)`` without its int64 copy of the image."""
    labels = np.asarray(labels)
    if labels.dtype not in (np.int32, np.int64, np.uint8, np.uint16, np.uint32):
        labels = labels.astype(np.int64)
    return _label_sizes(np.ascontiguousarray(labels).ravel(), int(n))


@njit(cache=True, nogil=True)
def _label_sources(new, old, n):
    out = np.zeros(n + 1, np.int64)
    for k in range(new.shape[0]):
        v = new[k]
        if v > 0:
            out[v] = old[k]
    return out


def label_sources(new: np.ndarray, old: np.ndarray, n: int) -> np.ndarray:
    """For labels ``new`` (1..n) whose regions each lie inside one region of ``old`` (a
    split or renumbering of it), the ``old`` label of each (int64[n + 1], entry 0 = 0)."""
    new = np.ascontiguousarray(new, np.int32).ravel()
    old = np.ascontiguousarray(old).ravel()
    if new.shape != old.shape:
        raise ValueError(f"label images differ in size: {new.shape} vs {old.shape}")
    return _label_sources(new, old, int(n))


@njit(cache=True, nogil=True)
def _overlay(base, top, offset):
    for k in range(base.shape[0]):
        if top[k] > 0:
            base[k] = top[k] + offset


def overlay_labels(*layers: tuple[np.ndarray, int]) -> np.ndarray:
    """One int32 label image from ``(labels, n)`` layers: the first layer's labels as they
    are, each next layer's nonzero labels shifted by the counts of the layers before it and
    painted over what lies beneath (``np.where(top > 0, top + offset, base)`` in one pass)."""
    first = np.asarray(layers[0][0])
    out = np.array(first, np.int32, copy=True, order="C")
    flat = out.ravel()
    offset = int(layers[0][1])
    for lab, n in layers[1:]:
        lab = np.ascontiguousarray(lab, np.int32)
        if lab.shape != out.shape:
            raise ValueError(f"label images differ in size: {lab.shape} vs {out.shape}")
        _overlay(flat, lab.ravel(), np.int32(offset))
        offset += int(n)
    return out


def renumber_raster(labels: np.ndarray, lut: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Map ``labels`` through ``lut`` (identity when None; 0 = drop) and number the
    resulting regions 1..m in raster order of their first pixel (skimage numbering)."""
    labels = np.ascontiguousarray(labels)
    if labels.dtype not in (np.int32, np.int64):
        labels = labels.astype(np.int64)
    if lut is None:
        lut = np.arange(int(labels.max()) + 1 if labels.size else 1, dtype=np.int64)
    return _renumber(labels, np.ascontiguousarray(lut, np.int64))
