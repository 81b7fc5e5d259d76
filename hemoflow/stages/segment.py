"""Segmentation of WBCs, platelets and RBCs from the stain channels (working-scale pixels).

All sizes here are in working-scale pixels; :mod:`hemoflow.stages.field` converts the
µm parameters of :class:`~hemoflow.stages.SegmentParams`. Every operation is local
(thresholds come from the calibration; morphology, distance transforms and watershed act
within a bounded neighbourhood of a cell), so analysing a tile with a halo at least as
large as the largest cell reproduces the whole-image cells in the tile's core.

Labelling uses :func:`hemoflow.kernels.label`; distances, morphology and the watershed use
the Numba kernels of :mod:`hemoflow.kernels` (chamfer distance, disk painting,
union-find flooding), so no step costs more than a few passes over the working image.
"""

from __future__ import annotations

import numpy as np
from hemoflow.kernels import label
from hemoflow.kernels._distance import chamfer_distance
from hemoflow.kernels._label import label_with_sizes
from hemoflow.kernels._labelops import label_sizes, lut_gather, renumber_raster
from hemoflow.kernels._morphology import dilate_disk, erode_disk
from hemoflow.kernels._watershed import dt_watershed, paint_nearest, select_seeds

__all__ = [
    "disk",
    "fill_small_holes",
    "remove_small",
    "segment_wbc",
    "segment_platelets",
    "segment_rbc",
    "rbc_basins",
    "filter_small",
    "open_disk",
    "close_disk",
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
    return label_sizes(labels, n)


def remove_small(mask: np.ndarray, min_area: float, connectivity: int = 2) -> np.ndarray:
    """Drop connected components of ``mask`` with fewer than ``min_area`` pixels.

    >>> remove_small(np.array([[1, 0, 1, 1]], bool), 2).astype(int)
    array([[0, 0, 1, 1]])
    """
    lab, n, sizes = label_with_sizes(np.ascontiguousarray(mask, bool), connectivity=connectivity)
    keep = sizes >= min_area
    keep[0] = False
    return lut_gather(keep, lab)


def fill_small_holes(mask: np.ndarray, max_area: float) -> np.ndarray:
    """Fill background components (4-connected) of fewer than ``max_area`` pixels.

    Used for the central pallor of RBCs. Only the hole's size matters (not whether it
    touches the array border), which keeps the operation local.

    >>> m = np.ones((3, 3), bool); m[1, 1] = False
    >>> bool(fill_small_holes(m, 2)[1, 1])
    True
    """
    lab, n, sizes = label_with_sizes(np.ascontiguousarray(~mask), connectivity=1)
    small = sizes < max_area
    small[0] = False
    return mask | lut_gather(small, lab)


def _within(mask: np.ndarray, radius: float) -> np.ndarray:
    """Pixels within Euclidean ``radius`` of ``mask`` (a dilation by a disk)."""
    if radius <= 0 or not mask.any():
        return np.array(mask, bool, copy=True)
    return dilate_disk(mask, radius)


def open_disk(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary opening by a disk of ``radius`` px (erosion treats the outside as foreground).

    >>> m = np.zeros((5, 7), bool); m[1:4, 1:4] = True; m[2, 5] = True
    >>> open_disk(m, 1).astype(int)[2].tolist()
    [0, 1, 1, 1, 0, 0, 0]
    """
    if radius < 1 or not mask.any():
        return np.array(mask, bool, copy=True)
    return dilate_disk(erode_disk(mask, radius), radius)


def close_disk(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary closing by a disk of ``radius`` px (joins the open rings of pale RBCs)."""
    if radius < 1 or not mask.any():
        return np.array(mask, bool, copy=True)
    return erode_disk(dilate_disk(mask, radius), radius)


def segment_wbc(
    nucleus: np.ndarray,
    *,
    threshold: float,
    min_fragment_px: float,
    min_nucleus_px: float,
    merge_px: float,
    cytoplasm_px: float,
    max_nucleus_px: float = float("inf"),
) -> tuple[np.ndarray, int, np.ndarray]:
    """Find WBCs as clusters of strongly stained nuclear fragments plus surrounding cytoplasm.

    Nuclear fragments (``nucleus > threshold``, at least ``min_fragment_px``) closer than
    ``merge_px`` are one cell, so the lobes of a segmented neutrophil count once. A cluster
    is a WBC when its total nuclear area is at least ``min_nucleus_px`` (smaller stained
    objects are platelet candidates). The WBC region is the nucleus plus every pixel within
    ``cytoplasm_px`` of it (nearest nucleus wins) that is connected to it.

    A cluster whose nuclear pixels span more than ``max_nucleus_px`` (Feret diameter) is
    longer than any one WBC's nucleus: it is two touching WBCs, and is split in two by
    2-means on its nuclear pixel positions (started from the two farthest pixels, so the
    split is deterministic).

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
    # the nuclear pixels of the kept clusters, their flat indices and the clusters' boxes
    seeds, seed_index, boxes = select_seeds(frag, mlab, keep)
    if np.isfinite(max_nucleus_px):
        seeds = _split_long_clusters(seeds, np.flatnonzero(keep), max_nucleus_px, min_nucleus_px, boxes)
    # Grow each nucleus cluster by up to cytoplasm_px, nearest nuclear pixel wins. Every
    # grown pixel lies in a digital disk around a nuclear pixel, so it is 4-connected to a
    # nucleus through grown pixels: the region is connected to its nucleus by construction.
    grown = paint_nearest(seeds, cytoplasm_px, seed_index=seed_index)
    out, n_out = renumber_raster(grown)
    return out, n_out, seeds > 0


def _split_long_clusters(seeds: np.ndarray, ids: np.ndarray, max_len: float, min_part: float,
                         boxes: np.ndarray) -> np.ndarray:
    """Split every nuclear cluster of ``seeds`` longer than ``max_len`` px into two.

    The bounding box bounds the Feret diameter from above, so only clusters whose box
    diagonal exceeds ``max_len`` are measured. The two parts come from the same
    deterministic 2-means as the RBC basin splits; a split is kept only when both parts
    hold at least ``min_part`` nuclear pixels. ``boxes`` are the clusters' boxes
    (:func:`~hemoflow.kernels._labelops.label_bboxes` rows); new clusters get ids from
    ``len(boxes)`` up, above every existing one.
    """
    from hemoflow.kernels._kmeans import kmeans_parts
    from hemoflow.kernels._labelops import bbox_slices

    next_id = len(boxes)
    out = seeds
    for k in ids:
        box = bbox_slices(boxes[k]) if k < len(boxes) else None
        if box is None:
            continue
        h, w = box[0].stop - box[0].start, box[1].stop - box[1].start
        if h * h + w * w <= max_len * max_len:
            continue
        m = seeds[box] == k
        if feret_diameter(m) <= max_len:
            continue
        ys, xs = np.nonzero(m)
        part = kmeans_parts(ys, xs, 2, iters=20)
        if min(np.count_nonzero(part == 0), np.count_nonzero(part == 1)) < min_part:
            continue
        if out is seeds:
            out = seeds.copy()
        out[box][ys[part == 1], xs[part == 1]] = next_id
        next_id += 1
    return out


def feret_diameter(mask: np.ndarray) -> float:
    """Largest distance between two pixel centres of ``mask`` (0 for one pixel or none).

    The farthest pair lies on the convex hull, whose vertices are edge pixels (a pixel
    with all four neighbours in the mask is the midpoint of two of them), so only the
    edge pixels are compared.
    """
    from scipy.spatial.distance import pdist

    m = np.asarray(mask, bool)
    inner = np.zeros_like(m)
    inner[1:-1, 1:-1] = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    ey, ex = np.nonzero(m & ~inner)
    if len(ey) < 2:
        return 0.0
    return float(pdist(np.c_[ey, ex].astype(np.float64)).max())


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
    lab, n, sizes = label_with_sizes(cand, connectivity=2)
    if n == 0:
        return lab, 0
    touching = np.zeros(n + 1, bool)
    touching[lab[exclude & cand]] = True
    keep = (sizes >= min_px) & (sizes <= max_px) & ~touching
    keep[0] = False
    lut = np.zeros(n + 1, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut_gather(lut, lab), int(keep.sum())


def rbc_basins(
    cell_mask: np.ndarray,
    *,
    diameter_px: float,
    split_depth: float,
    noise_px: float = 0.5,
) -> tuple[np.ndarray, int, np.ndarray]:
    """Watershed basins of the RBC mask's chamfer distance (h-maxima rule, see
    :func:`segment_rbc`). Returns ``(labels int32, n, dist int32)`` with ``dist`` in
    units of 1/5 px and labels in raster order."""
    mask = np.ascontiguousarray(cell_mask, bool)
    if not mask.any():
        return np.zeros(mask.shape, np.int32), 0, np.zeros(mask.shape, np.int32)
    dist = chamfer_distance(mask)
    ws, n = dt_watershed(
        dist,
        h=max(int(round(5.0 * noise_px)), 1),
        min_peak=int(round(5.0 * diameter_px / 10.0)),
        rel=split_depth,
    )
    return ws, n, dist


def filter_small(
    labels: np.ndarray, n: int, *, min_area_px: float, border_min_area_px: float | None = None
) -> tuple[np.ndarray, int]:
    """Drop labels smaller than ``min_area_px`` (``border_min_area_px`` for labels that
    touch the array edge), renumbering the rest in order."""
    sizes = _sizes(labels, n)
    keep = sizes >= min_area_px
    if border_min_area_px is not None:
        edge = np.zeros(n + 1, bool)
        for side in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
            edge[side] = True
        keep |= edge & (sizes >= border_min_area_px)
    keep[0] = False
    lut = np.zeros(n + 1, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut_gather(lut, labels), int(keep.sum())


def segment_rbc(
    cell_mask: np.ndarray,
    *,
    diameter_px: float,
    min_area_px: float,
    split_depth: float,
    noise_px: float = 0.5,
    border_min_area_px: float | None = None,
) -> tuple[np.ndarray, int]:
    """Split the RBC mask into cells: distance transform and watershed with h-maxima markers.

    The chamfer distance to the background is flooded from the top
    (:func:`hemoflow.kernels._watershed.dt_watershed`): two touching cells stay apart when
    each one's distance peak ``P`` rises at least ``split_depth * P`` (a scale-free
    fraction) and ``noise_px`` above the saddle where they meet; shallower bumps (outline
    noise) and peaks lower than a tenth of the diameter join their deeper neighbour.
    Objects smaller than ``min_area_px`` are dropped (slivers, fragments cut by a WBC);
    objects touching the array border need only ``border_min_area_px`` (default
    ``min_area_px``): the visible part of a cell cut by the field's edge. (In a tile such
    objects lie in the halo, never in the core.) Returns ``(labels int32, n)`` in raster
    order.
    """
    ws, n, _ = rbc_basins(cell_mask, diameter_px=diameter_px, split_depth=split_depth, noise_px=noise_px)
    if n == 0:
        return ws, 0
    return filter_small(ws, n, min_area_px=min_area_px, border_min_area_px=border_min_area_px)
