"""Segmentation of WBCs, platelets and RBCs from the stain channels (working-scale pixels).

All sizes here are in working-scale pixels; :mod:`hemoflow.stages.field` converts the
µm parameters of :class:`~hemoflow.stages.SegmentParams`. Every operation is local
(thresholds come from the calibration; morphology, distance transforms and watershed act
within a bounded neighbourhood of a cell), so analysing a tile with a halo at least as
large as the largest cell reproduces the whole-image cells in the tile's core.

Labelling uses :func:`hemoflow.kernels.label` (Numba).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

from hemoflow.kernels import label

__all__ = [
    "disk",
    "fill_small_holes",
    "remove_small",
    "segment_wbc",
    "segment_platelets",
    "segment_rbc",
]


def disk(radius: float) -> np.ndarray:
    """Boolean disk footprint of the given radius (px).

    >>> disk(1).astype(int)
    array([[0, 1, 0],
           [1, 1, 1],
           [0, 1, 0]])
    """
    r = max(int(np.floor(radius)), 0)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy * yy + xx * xx) <= radius * radius + 1e-9


def _sizes(labels: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(labels.ravel(), minlength=n + 1)


def remove_small(mask: np.ndarray, min_area: float, connectivity: int = 2) -> np.ndarray:
    """Drop connected components of ``mask`` with fewer than ``min_area`` pixels.

    >>> remove_small(np.array([[1, 0, 1, 1]], bool), 2).astype(int)
    array([[0, 0, 1, 1]])
    """
    lab, n = label(np.ascontiguousarray(mask, bool), connectivity=connectivity)
    keep = _sizes(lab, n) >= min_area
    keep[0] = False
    return keep[lab]


def fill_small_holes(mask: np.ndarray, max_area: float) -> np.ndarray:
    """Fill background components (4-connected) of fewer than ``max_area`` pixels.

    Used for the central pallor of RBCs. Only the hole's size matters (not whether it
    touches the array border), which keeps the operation local.

    >>> m = np.ones((3, 3), bool); m[1, 1] = False
    >>> bool(fill_small_holes(m, 2)[1, 1])
    True
    """
    lab, n = label(np.ascontiguousarray(~mask), connectivity=1)
    small = _sizes(lab, n) < max_area
    small[0] = False
    return mask | small[lab]


def _within(mask: np.ndarray, radius: float) -> np.ndarray:
    """Pixels within Euclidean ``radius`` of ``mask`` (a dilation by a disk)."""
    if not mask.any():
        return np.zeros_like(mask)
    if radius <= 0:
        return mask.copy()
    return ndi.distance_transform_edt(~mask) <= radius


def segment_wbc(
    nucleus: np.ndarray,
    cell_mask: np.ndarray,
    *,
    threshold: float,
    min_fragment_px: float,
    min_nucleus_px: float,
    merge_px: float,
    cytoplasm_px: float,
) -> tuple[np.ndarray, int, np.ndarray]:
    """Find WBCs as clusters of strongly stained nuclear fragments plus surrounding cytoplasm.

    Nuclear fragments (``nucleus > threshold``, at least ``min_fragment_px``) closer than
    ``merge_px`` are one cell, so the lobes of a segmented neutrophil count once. A cluster
    is a WBC when its total nuclear area is at least ``min_nucleus_px`` (smaller stained
    objects are platelet candidates). The WBC region is the nucleus plus every pixel within
    ``cytoplasm_px`` of it (nearest nucleus wins) that is connected to it.

    Returns
    -------
    labels : int32[H, W]
        WBC regions numbered 1..n.
    n : int
    nuclei : bool[H, W]
        The nuclear pixels of the accepted WBCs.
    """
    frag = remove_small(nucleus > threshold, min_fragment_px)
    if not frag.any():
        return np.zeros(nucleus.shape, np.int32), 0, frag
    merged = _within(frag, merge_px / 2.0)
    mlab, n = label(merged, connectivity=2)
    nuc_area = np.bincount(mlab[frag], minlength=n + 1)
    keep = nuc_area >= min_nucleus_px
    keep[0] = False
    if not keep.any():
        return np.zeros(nucleus.shape, np.int32), 0, np.zeros_like(frag)
    nuclei = frag & keep[mlab]
    # Renumber the accepted clusters 1..k in raster order of their first pixel.
    seeds = np.where(nuclei, mlab, 0)
    # Grow each nucleus cluster by up to cytoplasm_px, nearest-seed wins.
    dist, (iy, ix) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    grown = seeds[iy, ix]
    region = (dist <= cytoplasm_px) | nuclei
    grown = np.where(region, grown, 0)
    # Keep, per cluster, the connected part that holds its nucleus.
    lab, m = label(grown > 0, connectivity=1)
    has_nuc = np.zeros(m + 1, bool)
    has_nuc[lab[nuclei]] = True
    has_nuc[0] = False
    grown = np.where(has_nuc[lab], grown, 0)
    ids = np.unique(grown[grown > 0])
    order = _raster_order(grown, ids)
    lut = np.zeros(int(grown.max()) + 1, np.int32)
    lut[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    return lut[grown], len(order), nuclei


def _raster_order(lab: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``ids`` sorted by the raster position of each id's first pixel (skimage numbering)."""
    if ids.size == 0:
        return ids
    flat = lab.ravel()
    first = np.full(int(lab.max()) + 1, flat.size, np.int64)
    nz = np.flatnonzero(flat)
    np.minimum.at(first, flat[nz], nz)
    return ids[np.argsort(first[ids], kind="stable")]


def segment_platelets(
    nucleus: np.ndarray,
    exclude: np.ndarray,
    *,
    threshold: float,
    min_px: float,
    max_px: float,
) -> tuple[np.ndarray, int]:
    """Small stained objects (``min_px <= area <= max_px``) that do not touch ``exclude``.

    ``exclude`` is the WBC region grown by a margin, so nuclear fragments of a WBC are never
    platelets. Returns ``(labels int32, n)``.
    """
    cand = nucleus > threshold
    lab, n = label(cand, connectivity=2)
    if n == 0:
        return lab, 0
    sizes = _sizes(lab, n)
    touching = np.zeros(n + 1, bool)
    touching[lab[exclude & cand]] = True
    keep = (sizes >= min_px) & (sizes <= max_px) & ~touching
    keep[0] = False
    lut = np.zeros(n + 1, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[lab], int(keep.sum())


def segment_rbc(
    cell_mask: np.ndarray,
    *,
    diameter_px: float,
    min_area_px: float,
    min_distance_px: float,
    smooth_px: float = 1.0,
) -> tuple[np.ndarray, int]:
    """Split the RBC mask into cells: distance transform, peak markers, watershed.

    Markers are the local maxima of the (slightly smoothed) distance transform at least
    ``min_distance_px`` apart and deeper than a fifth of the expected radius; each
    watershed basin is one RBC. Objects smaller than ``min_area_px`` are dropped
    (slivers between cells, fragments cut by a WBC). Returns ``(labels int32, n)``.
    """
    mask = np.ascontiguousarray(cell_mask, bool)
    if not mask.any():
        return np.zeros(mask.shape, np.int32), 0
    dist = ndi.distance_transform_edt(mask).astype(np.float32)
    if smooth_px > 0:
        dist = ndi.gaussian_filter(dist, smooth_px, mode="nearest", truncate=3.0)
    dist[~mask] = 0
    # Quantise so that ties resolve identically whatever the tile origin.
    dist = np.round(dist * 64.0) / 64.0
    peaks = peak_local_max(
        dist,
        min_distance=max(int(round(min_distance_px)), 1),
        threshold_abs=max(diameter_px / 10.0, 1.0),
        exclude_border=False,
        labels=mask.astype(np.int32),
    )
    markers = np.zeros(mask.shape, np.int32)
    if len(peaks):
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    ws = watershed(-dist, markers, mask=mask)
    # Components without any marker (thin objects) get their own label.
    rest, nrest = label(mask & (ws == 0), connectivity=2)
    ws = np.where(rest > 0, rest + len(peaks), ws).astype(np.int32)
    n = int(ws.max())
    sizes = _sizes(ws, n)
    keep = sizes >= min_area_px
    keep[0] = False
    ws = np.where(keep[ws], ws, 0)
    ids = np.flatnonzero(keep)
    order = _raster_order(ws, ids)
    lut = np.zeros(n + 1, np.int32)
    lut[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    return lut[ws], len(order)
