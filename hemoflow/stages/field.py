"""Calibration (image-global, once per slide) and field analysis (local, per tile).

>>> from hemoflow.stages import analyze_field
>>> import numpy as np
>>> res = analyze_field(np.full((64, 64, 3), 230, np.uint8), mpp=0.25)
>>> len(res.table["cls"]), res.crops.shape
(0, (0, 96, 96, 3))

Border rule
-----------
A cell is reported when its centroid lies inside the analysed array, i.e. every visible
cell or part of a cell, provided the visible part passes the class's size rule (for RBCs
the basin-count model of :mod:`hemoflow.stages._rbc_count` decides whether a small
basin, e.g. the visible part of a cell cut by the field's edge, is a cell). The
pipeline's ownership by centroid-in-core applies the same rule per tile, so a slide's
cells are counted exactly once.

Counting
--------
The per-basin RBC model gives each watershed basin a probability of holding 0, 1, 2 or 3
cells. The table holds the most probable cells (a basin of most probable count k is split
into k rows). With the red-cell density network (the default), every RBC row carries a
``count_weight``: the density mass of its basin, of the dropped basins (most probable
count 0) and background within ``rbc_mass_reach_um`` (one RBC diameter) of it, nearest
kept basin first, WBC pixels excluded, shared by the basin's parts. Counts are the rounded
sum of the weights: the density summed over the field outside WBCs, which on BCCD is closer
to the annotated counts than the most probable cells or the count model's expectation
(see ``docs/experiments/ablation_counts.md``). Without the network a row weighs its basin's expected
count ``sum_k k p_k`` (plus that of nearby dropped basins) shared by its parts. WBC and
platelet rows weigh 1.

Working scale
-------------
Segmentation runs on the image block-averaged by ``Calibration.downsample``, the integer
factor that brings the pixel nearest to ``work_mpp`` (:func:`block_factor`; 0.46 µm/px by
default, an RBC about 16 px across), with the
Numba kernels of :mod:`hemoflow.kernels` (one pass for the stain channels,
chamfer distance, union-find watershed, disk morphology). Areas, centroids and boxes are
reported in level-0 pixels: a working pixel of factor ``f`` covers ``f*f`` level-0
pixels, so ``area_px = n*f*f`` and ``y = f*mean(i) + (f-1)/2``, and ``y * area_px`` is
still an integer (the pipeline's exact centroid shift relies on it). When no integer
factor comes within 10 % of ``work_mpp`` (scans of about 0.17-0.21 and 0.31-0.42 µm/px;
never for scans coarser than the working pixel, which stay at factor 1), the working
pixel is a ratio ``p/q`` of level-0 pixels (``Calibration.upsample`` = q > 1,
:func:`working_ratio`): each level-0 pixel counts q x q times and blocks of p x p are
averaged (area weighting), and the same formulas hold with ``f = p/q`` (centroids then
are not exact integer sums over ``area_px``).

Tiling
------
:func:`calibrate` holds every image-global quantity. :func:`analyze_field` then uses only
local operations whose reach is bounded by ``SegmentParams.max_cell_diameter_um`` (and the
crop window), so a tile analysed with the slide's calibration finds, in its core, the same
cells as the whole image. When ``Calibration.downsample`` > 1 (images much finer than
``work_mpp``), tile windows must start at multiples of it (``p`` for a ratio ``p/q``) so the
averaging blocks line up;
with the red-cell density network (:mod:`hemoflow.stages._rbc_density`, on by default) at
multiples of 4 working pixels, its output grid
(:func:`hemoflow.pipeline.tiles.window_align`). The network's receptive field (about
34 working px) is local too.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from hemoflow.kernels import regionprops_table
from hemoflow.kernels._labelops import label_sources, overlay_labels
from hemoflow.stages._platelet_count import candidate_features as platelet_features
from hemoflow.stages._platelet_count import keep_platelets as _keep_platelets
from hemoflow.stages._rbc_count import basin_features, expected_weights, mass_features, predict_proba, split_basins
from hemoflow.stages._rbc_density import basin_mass, kept_mass, rbc_density
from hemoflow.stages.calibration import (  # noqa: F401 (re-exported: the field's API in one place)
    Calibration,
    _planes,
    block_factor,
    calibrate,
    working_ratio,
)
from hemoflow.stages.crops import CropSpec, crop_cells
from hemoflow.stages.features import PROPERTIES, empty_table, measure_cells
from hemoflow.stages.params import SegmentParams, _pos, ablation_switch
from hemoflow.stages.preprocess import validate_rgb
from hemoflow.stages.segment import (
    _within,
    close_disk,
    fill_small_holes,
    filter_small,
    open_disk,
    rbc_basins,
    segment_platelets,
    segment_wbc,
)

__all__ = ["SegmentParams", "Calibration", "FieldResult", "block_factor", "working_ratio", "calibrate",
           "analyze_field"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FieldResult:
    """Result of :func:`analyze_field`.

    ``table`` is a cell table (:data:`hemoflow.schema.CELL_COLUMNS`); ``crops`` holds one
    ``uint8[size, size, 3]`` crop per ``cls == "wbc"`` row, in table order.
    """

    table: dict[str, np.ndarray]
    crops: np.ndarray
    mpp: float
    mpp_estimated: bool
    calibration: Calibration = field(repr=False)

# --------------------------------------------------------------------------- analysis


@dataclass
class StainedObjects:
    """What one field's stain planes show before any red cell is counted (working scale).

    The steps of :func:`_segment` up to the red-cell basins; the fitting code of
    :mod:`hemoflow.training` starts from here too, so it sees the objects the shipped
    models see.
    """

    um: float  # working px per µm
    rbc_area: float  # area of a typical RBC, working px
    cell: np.ndarray
    nuc: np.ndarray
    od: np.ndarray | None
    cell_mask: np.ndarray
    wbc: np.ndarray
    n_wbc: int
    wbc_any: np.ndarray
    rbc_mask: np.ndarray  # cells less WBCs and threshold-rule platelets, before opening
    plt: np.ndarray  # platelets by the threshold rule
    n_plt: int


def stained_objects(rgb: np.ndarray, cal: Calibration, params: SegmentParams, px_um: float, *,
                    od: bool = False) -> StainedObjects:
    """Stain planes, cell mask, WBCs and threshold-rule platelets of a field (``od``: keep
    the three optical-density planes the density network reads)."""
    um = 1.0 / px_um  # working px per µm
    cell, nuc, od_planes = _planes(rgb, cal.background, int(cal.downsample), params, od=od,
                                   upsample=int(cal.upsample))
    rbc_area = math.pi / 4.0 * (params.rbc_diameter_um * um) ** 2
    t_cell = cal.cell_threshold * ablation_switch(params, "cell_threshold_scale")
    cell_mask = open_disk(cell > t_cell, max(0.4 * um, 1.0))
    close_um = ablation_switch(params, "close_um")
    if close_um > 0:
        cell_mask = close_disk(cell_mask, close_um * um)
    cell_mask = fill_small_holes(cell_mask, params.pallor_area_frac * rbc_area)

    plt_min, plt_max = _platelet_area_range(params, um)
    wbc, n_wbc, _ = segment_wbc(
        nuc,
        threshold=cal.nucleus_threshold,
        min_fragment_px=max(plt_min * 0.5, 2.0),
        min_nucleus_px=params.wbc_min_nucleus_um2 * um * um,
        merge_px=params.wbc_merge_um * um,
        cytoplasm_px=params.wbc_cytoplasm_um * um,
        max_nucleus_px=params.wbc_max_nucleus_um * um,
    )
    wbc_any = wbc > 0
    # small stained objects above the platelet threshold (not touching a WBC): platelets by
    # the threshold rule, and what is carved out of the red-cell mask either way
    plt, n_plt = segment_platelets(
        nuc,
        _within(wbc_any, params.platelet_wbc_margin_um * um),
        threshold=cal.platelet_threshold,
        min_px=plt_min,
        max_px=plt_max,
    )
    rbc_mask = cell_mask & ~_within(wbc_any | (plt > 0), 0.3 * um)
    return StainedObjects(um=um, rbc_area=rbc_area, cell=cell, nuc=nuc, od=od_planes, cell_mask=cell_mask, wbc=wbc,
                          n_wbc=n_wbc, wbc_any=wbc_any, rbc_mask=rbc_mask, plt=plt, n_plt=n_plt)


def _platelet_area_range(params: SegmentParams, um: float) -> tuple[float, float]:
    lo, hi = params.platelet_diameter_um
    return math.pi / 4.0 * (lo * um) ** 2, math.pi / 4.0 * (hi * um) ** 2


def platelet_candidates(s: StainedObjects, cal: Calibration, params: SegmentParams) -> tuple[np.ndarray, int,
                                                                                             np.ndarray]:
    """Candidates of the platelet model (at ``platelet_candidate_frac`` of the platelet
    threshold, a wider size range) and their features: ``(labels, n, features)``."""
    um = s.um
    plt_min, plt_max = _platelet_area_range(params, um)
    plt, n_plt = segment_platelets(
        s.nuc, s.wbc_any, threshold=params.platelet_candidate_frac * cal.platelet_threshold,
        min_px=max(0.3 * plt_min, 2.0), max_px=2.0 * plt_max,
    )
    feats = platelet_features(
        plt, n_plt, nucleus=s.nuc, cell=s.cell, cell_mask=s.cell_mask, wbc_mask=s.wbc_any,
        platelet_threshold=cal.platelet_threshold, cell_threshold=cal.cell_threshold, px_per_um=um,
    )
    return plt, n_plt, feats


def red_cell_basins(s: StainedObjects, params: SegmentParams) -> tuple[np.ndarray, int, np.ndarray]:
    """Watershed basins of the red-cell mask ``(labels, n, chamfer distance)``; with the
    count model only the tiniest are dropped (the model judges the rest), without it the
    area floors of ``params`` apply."""
    um, rbc_area = s.um, s.rbc_area
    rbc_mask = open_disk(s.rbc_mask, max(0.6 * um, 1.0))
    rbc, n_rbc, dist = rbc_basins(
        rbc_mask, diameter_px=params.rbc_diameter_um * um, split_depth=params.split_depth_frac
    )
    if params.rbc_count_model:
        rbc, n_rbc = filter_small(rbc, n_rbc, min_area_px=max(0.02 * rbc_area, 2.0))
    else:
        rbc, n_rbc = filter_small(
            rbc,
            n_rbc,
            min_area_px=params.rbc_min_area_frac * rbc_area,
            border_min_area_px=params.rbc_border_min_area_frac * rbc_area,
        )
    return rbc, n_rbc, dist


def _count_basins(s: StainedObjects, rbc: np.ndarray, n_rbc: int, dist: np.ndarray, params: SegmentParams,
                  density_weights) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Most probable cell count and count weight of each basin, and the basins'
    measurements: ``(counts int64[n], weight float64[n], props)``."""
    um = s.um
    density_counts = s.od is not None
    # the basins' measurements serve the count model and, for the basins that stay whole
    # cells, the cell table
    basin_props = regionprops_table(np.ascontiguousarray(rbc, np.int32), properties=PROPERTIES)
    feats = basin_features(rbc, n_rbc, dist, rbc_area_px=s.rbc_area, props=basin_props)
    if density_counts:
        density = rbc_density(s.od, path=density_weights)
        mass = basin_mass(rbc, n_rbc, density, reach_px=params.rbc_density_reach_um * um)
        feats = np.hstack([feats, mass_features(mass)])
    proba = predict_proba(feats, density=density_counts)
    if density_counts and ablation_switch(params, "rbc_density_count"):
        # most probable counts; the count is the density itself: each kept basin's region's mass
        counts = np.argmax(proba, axis=1).astype(np.int64)
        # kept_mass is 0 for dropped basins; a basin's parts share its mass
        weight = kept_mass(rbc, counts, density, reach_px=params.rbc_mass_reach_um * um,
                           exclude=s.wbc_any) / np.maximum(counts, 1)
    else:
        counts, weight = expected_weights(proba, rbc, reach_px=params.rbc_diameter_um * um)
    return counts, weight, basin_props


def _split_counted(rbc: np.ndarray, n_rbc: int, counts: np.ndarray, weight: np.ndarray,
                   basin_props: dict[str, np.ndarray] | None, first_label: int):
    """Split the basins by their counts: ``(labels, n, weight per part, known)``, where
    ``known`` holds the measurements of the parts that are whole basins, labelled from
    ``first_label`` on as in the overlay (None when they cannot be reused)."""
    old = rbc
    boxes = known = rbc_weight = None
    # row b - 1 of the measurements is basin b when every basin is present (as after
    # filter_small); otherwise neither the boxes nor the measurements are reused
    if basin_props is not None and len(basin_props["label"]) != n_rbc:
        basin_props = None
    if basin_props is not None:
        # label_bboxes rows: label 0 first, then basins 1..n
        boxes = np.zeros((n_rbc + 1, 4), np.int64)
        boxes[1:] = np.stack([basin_props[f"bbox-{i}"] for i in range(4)], axis=1)
    rbc, n_rbc = split_basins(rbc, counts, boxes)
    if n_rbc:
        # each part carries its basin's weight (the parts of basin b share it)
        src = label_sources(rbc, old, n_rbc)[1:] - 1
        rbc_weight = weight[src]
        if basin_props is not None:
            # a basin counted as one cell is that cell, pixel for pixel (red cells lie
            # on top in the overlay): its measurements carry over
            whole = np.flatnonzero(counts[src] == 1)
            known = {k: np.asarray(v)[src[whole]] for k, v in basin_props.items()}
            known["label"] = (first_label + whole).astype(np.int64)
    return rbc, n_rbc, rbc_weight, known


def _segment(rgb: np.ndarray, cal: Calibration, params: SegmentParams, px_um: float, *, density_weights=None):
    """Label image (WBC, then platelets, then RBCs), class and count weight per label
    (working scale), and the measurements of the labels that are whole basins (for
    :func:`measure_cells`; None without the count model).

    ``density_weights``: red-cell density weights other than the shipped ones (evaluation
    only, e.g. a cross-validation fold's network)."""
    density_counts = params.rbc_count_model and params.rbc_density_model
    s = stained_objects(rgb, cal, params, px_um, od=density_counts)
    plt, n_plt = s.plt, s.n_plt
    if ablation_switch(params, "platelet_count_model"):
        # candidates at a lower threshold and a wider size range; the model picks platelets
        plt, n_plt = _keep_platelets(*platelet_candidates(s, cal, params))
    rbc, n_rbc, dist = red_cell_basins(s, params)
    rbc_weight = known = None
    if params.rbc_count_model:
        # the model decides which basins are cells, fragments, or clumps of 2-3 cells
        counts, weight, basin_props = _count_basins(s, rbc, n_rbc, dist, params, density_weights)
        rbc, n_rbc, rbc_weight, known = _split_counted(rbc, n_rbc, counts, weight, basin_props,
                                                       s.n_wbc + n_plt + 1)
    labels = overlay_labels((s.wbc, s.n_wbc), (plt, n_plt), (rbc, n_rbc))
    classes = np.array(["wbc"] * s.n_wbc + ["platelet"] * n_plt + ["rbc"] * n_rbc, dtype="U8")
    weights = np.ones(len(classes))
    if rbc_weight is not None:
        weights[s.n_wbc + n_plt:] = rbc_weight
    return labels, classes, weights, known


def analyze_field(
    rgb,
    *,
    mpp: float | None = None,
    calibration: Calibration | None = None,
    params: SegmentParams = SegmentParams(),
    crop: CropSpec = CropSpec(),
    density_weights=None,
) -> FieldResult:
    """Find, measure and crop the cells of one field or tile.

    Parameters
    ----------
    rgb : uint8[H, W, 3] (or 4 channels; alpha is dropped)
    mpp : float, optional
        Pixel size in µm. None: use ``calibration.mpp`` (estimated when no calibration is
        given either).
    calibration : Calibration, optional
        The slide's calibration; None calibrates on ``rgb`` itself.
    params : SegmentParams
    crop : CropSpec
    density_weights : path, optional
        Red-cell density weights instead of the shipped ones (evaluation only: e.g. the
        cross-validation fold network that did not see this field).

    Returns
    -------
    FieldResult
        ``table`` (one row per cell whose centroid lies in ``rgb``; rows ordered WBCs,
        platelets, RBCs, each in raster order) and the WBC crops.

    Raises
    ------
    UnsupportedImageError
        ``rgb`` is not an 8-bit RGB(A) image.
    """
    # any layout (a Zarr window arrives as planar channels): the stages read it in place
    rgb = validate_rgb(rgb, contiguous=False)
    if mpp is not None:
        mpp = _pos("mpp", mpp)
    if calibration is None:
        calibration = calibrate(rgb, params=params, mpp=mpp)
    if mpp is None:
        mpp, estimated = calibration.mpp, calibration.mpp_estimated
    else:
        estimated = False
    f = calibration.work_scale
    labels, classes, weights, known = _segment(rgb, calibration, params, px_um=mpp * f,
                                                density_weights=density_weights)
    if len(classes):
        table = measure_cells(
            labels,
            classes,
            mpp=mpp,
            scale=f,
            min_solidity=params.irregular_min_solidity,
            min_circularity=params.irregular_min_circularity,
            max_eccentricity=params.irregular_max_eccentricity,
            weights=weights,
            known=known,
        )
        h, w = rgb.shape[:2]
        for k, lim in (("bbox_y1", h), ("bbox_x1", w), ("bbox_y0", h), ("bbox_x0", w)):
            table[k] = np.minimum(table[k], lim)
    else:
        table = empty_table()
    is_wbc = table["cls"] == "wbc"
    crops = crop_cells(
        rgb, table["y"][is_wbc], table["x"][is_wbc], mpp=mpp, crop=crop, background=calibration.background
    )
    return FieldResult(table=table, crops=crops, mpp=float(mpp), mpp_estimated=bool(estimated), calibration=calibration)
