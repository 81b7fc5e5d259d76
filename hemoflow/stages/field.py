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
Numba kernels of :mod:`hemoflow.kernels._smear` (one pass for the stain channels,
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

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from skimage.filters import threshold_multiotsu, threshold_otsu

from hemoflow.errors import HemoflowError
from hemoflow.kernels import label, regionprops_table
from hemoflow.kernels._smear import (
    binomial3,
    chamfer_distance,
    label_sources,
    lut_gather,
    overlay_labels,
    stain_planes,
)
from hemoflow.stages._platelet_count import candidate_features as platelet_features
from hemoflow.stages._platelet_count import keep_platelets as _keep_platelets
from hemoflow.stages._rbc_count import basin_features, expected_weights, mass_features, predict_proba, split_basins
from hemoflow.stages._rbc_density import basin_mass, kept_mass, rbc_density
from hemoflow.stages.crops import CropSpec, crop_cells
from hemoflow.stages.features import PROPERTIES, empty_table, measure_cells
from hemoflow.stages.preprocess import CELL_CHANNELS, validate_rgb
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


def _pos(name: str, v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise HemoflowError(f"{name} must be a positive number, got {v!r}") from None
    if not (f > 0 and math.isfinite(f)):
        raise HemoflowError(f"{name} must be a positive number, got {v!r}")
    return f


@dataclass(frozen=True)
class SegmentParams:
    """Tunables of segmentation, in µm (converted to px with the image's mpp).

    Parameters
    ----------
    rbc_diameter_um : float
        Typical RBC diameter; sets the expected RBC area (size floors, pallor filling, the
        basin-count model's area feature) and, when the image has no pixel size, the
        estimate ``mpp = rbc_diameter_um / (diameter from the mask's depth distribution)``.
    max_cell_diameter_um : float
        Largest cell (a big monocyte); bounds every local operation and so the tile halo.
    work_mpp : float
        Working pixel size the image is block-averaged towards: by the integer factor whose
        working pixel is nearest to it in ratio (:func:`block_factor`; 0.46 µm/px: an RBC
        is about 16 working px across; 0.21-0.31 µm/px scans get factor 2, BCCD's 0.0745
        factor 6, 0.1 µm/px factor 5), or, where that factor's working pixel is more than
        10 % off, by a ratio ``p/q`` (:func:`working_ratio`; 0.345 µm/px: 4/3).
    normalize_background : bool
        Optical density relative to the measured background colour (white balance / stain
        colour normalisation); False uses pure white (255, 255, 255).
    smooth : bool
        3x3 binomial smoothing of the nucleus channel (WBCs, platelets) at the working
        scale, after the block mean.
    smooth_cell : bool
        The same for the cell channel (RBC outlines). Off by default: on BCCD it costs RBC
        accuracy (MAPE 8.9 % unsmoothed vs 9.5 % smoothed) while smoothing the nucleus
        channel helps platelets (MAE 0.379 vs 0.469); see ``docs/experiments/ablation_counts.md``.
    min_nucleus_od, min_cell_od : float
        Floors for the calibrated nucleus / cell thresholds (optical-density units), so a
        field without any WBC does not turn noise into nuclei.
    wbc_min_nucleus_um2 : float
        Total nuclear area of a WBC (smaller stained objects are platelet candidates).
    wbc_merge_um : float
        Nuclear fragments closer than this are lobes of one cell.
    wbc_cytoplasm_um : float
        Cytoplasm rim taken around a nucleus as part of the WBC.
    wbc_max_nucleus_um : float
        Longest nuclear cluster (Feret diameter) of one WBC; a longer one is two touching
        WBCs and is split in two. Chosen on the development part of BCCD: single WBC
        nuclei there span at most 20.0 µm, touching pairs 21.9-22.1 µm (see
        ``docs/experiments/ablation_counts.md``).
    platelet_diameter_um : tuple
        Accepted equivalent-diameter range of platelets.
    platelet_threshold_frac : float
        Platelet threshold as a fraction of the nucleus threshold (platelets stain paler).
    platelet_max_od, min_platelet_od : float
        Cap and floor of the platelet threshold (optical-density units).
    platelet_wbc_margin_um : float
        Stained objects touching a WBC region grown by this margin are never platelets
        (threshold rule only; the model below sees the distance to the WBC instead).
    platelet_count_model : bool
        Let the shipped per-candidate model (:mod:`hemoflow.stages._platelet_count`)
        decide which small stained objects, found at ``platelet_candidate_frac`` of the
        platelet threshold, are platelets. False: every object above the threshold in
        the ``platelet_diameter_um`` range is one.
    platelet_candidate_frac : float
        Candidate threshold of the platelet model, as a fraction of the platelet threshold.
    rbc_count_model : bool
        Let the shipped per-basin model (:mod:`hemoflow.stages._rbc_count`) drop
        fragments and split clumps of 2-3 cells; False keeps every basin above the area
        floors below.
    rbc_density_model : bool
        With ``rbc_count_model``, give the basin model each basin's mass under the
        shipped red-cell density network (:mod:`hemoflow.stages._rbc_density`), with
        the coefficients fitted that way (``hemoflow/models/rbc_count_density.json``). False: shape only.
    rbc_density_reach_um : float
        Density outside every basin but within this distance of one counts for the
        nearest basin (the mass of a cell sits on its central pallor, often a hole in
        the mask). 3 µm: 0.4 of an RBC diameter. This mass is a feature of the basin
        model.
    rbc_mass_reach_um : float
        With the density network, each kept RBC basin's ``count_weight`` is the density
        mass of its pixels and of the background within this distance (nearest kept basin
        first), WBC pixels excluded, shared by the basin's parts: RBC counts are the density
        summed over the field outside WBCs. 7.5 µm: one RBC diameter.
    rbc_density_count : bool
        With the density network: True weighs RBC rows by density mass as above; False by
        the count model's expected count (the default before; an ablation).
    rbc_min_area_frac : float
        RBC objects smaller than this fraction of a typical RBC area are dropped.
    rbc_border_min_area_frac : float
        The same for objects touching the edge of the analysed array (cells cut by the
        field's edge; in a tile these lie in the halo and are never owned).
    pallor_area_frac : float
        Holes smaller than this fraction of a typical RBC area are filled (central pallor).
    split_depth_frac : float
        Touching RBCs are split when each one's distance-transform peak rises at least
        this fraction of its own height above the saddle between them (a scale-free
        h-maxima rule, so the split does not depend on the pixel-size estimate).
    close_um : float
        Closing radius applied to the cell mask before hole filling (0: none; joins the
        open rims of pale RBCs, but merges neighbours -- off by default, see
        ``docs/experiments/ablation_counts.md``).
    cell_threshold_scale : float
        Multiplier of the calibrated cell threshold (< 1 picks up paler cells).
    irregular_* : float
        Thresholds of the irregularity rule (:mod:`hemoflow.stages.features`).
    cell_channel : str
        Cell score of :func:`~hemoflow.stages.preprocess.stain_channels`.
    """

    rbc_diameter_um: float = 7.5
    max_cell_diameter_um: float = 20.0
    work_mpp: float = 0.46
    smooth: bool = True
    smooth_cell: bool = False
    normalize_background: bool = True
    min_nucleus_od: float = 0.08
    min_cell_od: float = 0.04
    wbc_min_nucleus_um2: float = 14.0
    wbc_merge_um: float = 3.0
    wbc_cytoplasm_um: float = 3.0
    wbc_max_nucleus_um: float = 21.0
    platelet_diameter_um: tuple[float, float] = (1.5, 4.0)
    platelet_threshold_frac: float = 0.6
    platelet_max_od: float = 0.1
    platelet_wbc_margin_um: float = 1.0
    min_platelet_od: float = 0.06
    rbc_min_area_frac: float = 0.08
    rbc_border_min_area_frac: float = 0.04
    pallor_area_frac: float = 0.35
    split_depth_frac: float = 0.1
    rbc_count_model: bool = True
    rbc_density_model: bool = True
    rbc_density_reach_um: float = 3.0
    rbc_mass_reach_um: float = 7.5
    rbc_density_count: bool = True
    platelet_count_model: bool = True
    platelet_candidate_frac: float = 0.75
    close_um: float = 0.0
    cell_threshold_scale: float = 1.0
    irregular_min_solidity: float = 0.90
    irregular_min_circularity: float = 0.75
    irregular_max_eccentricity: float = 0.70
    cell_channel: str = "od_green_minus_red"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in ("smooth", "smooth_cell", "normalize_background", "rbc_count_model", "platelet_count_model",
                          "rbc_density_model", "rbc_density_count"):
                object.__setattr__(self, f.name, bool(v))
            elif f.name == "cell_channel":
                if v not in CELL_CHANNELS:
                    raise HemoflowError(f"cell_channel must be one of {CELL_CHANNELS}, got {v!r}")
            elif f.name == "platelet_diameter_um":
                lo, hi = (float(x) for x in v)
                if not (0 < lo < hi):
                    raise HemoflowError(f"platelet_diameter_um must be (lo, hi) with 0 < lo < hi, got {v!r}")
                object.__setattr__(self, f.name, (lo, hi))
            elif f.name in ("close_um", "platelet_wbc_margin_um", "rbc_mass_reach_um"):
                if not (float(v) >= 0):
                    raise HemoflowError(f"{f.name} must be >= 0, got {v!r}")
                object.__setattr__(self, f.name, float(v))
            else:
                object.__setattr__(self, f.name, _pos(f.name, v))
        if self.irregular_min_solidity > 1 or self.irregular_max_eccentricity > 1:
            raise HemoflowError("irregular_min_solidity and irregular_max_eccentricity must be <= 1")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["platelet_diameter_um"] = list(self.platelet_diameter_um)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SegmentParams":
        d = dict(d)
        if "platelet_diameter_um" in d:
            d["platelet_diameter_um"] = tuple(d["platelet_diameter_um"])
        return cls(**d)


@dataclass(frozen=True)
class Calibration:
    """Image-global quantities measured once per slide by :func:`calibrate`.

    Thresholds are on the stain channels of :mod:`hemoflow.stages.preprocess` computed at
    the working scale (``downsample / upsample`` level-0 pixels per working pixel)
    relative to ``background``.
    """

    background: tuple[float, float, float]
    cell_threshold: float
    nucleus_threshold: float
    platelet_threshold: float
    mpp: float
    mpp_estimated: bool
    downsample: int = 1
    upsample: int = 1

    @property
    def work_scale(self) -> float:
        """Level-0 pixels per working pixel (``downsample / upsample``)."""
        return int(self.downsample) / int(self.upsample)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["background"] = [float(x) for x in self.background]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Calibration":
        d = dict(d)
        d["background"] = tuple(float(x) for x in d["background"])
        return cls(**d)


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


# --------------------------------------------------------------------------- calibration


def _subsample(a: np.ndarray, max_pixels: int = 1_000_000) -> np.ndarray:
    step = max(1, int(math.ceil(math.sqrt(a.shape[0] * a.shape[1] / max_pixels))))
    return a[::step, ::step]


def _background(rgb: np.ndarray) -> tuple[float, float, float]:
    """Median colour of the bright (cell-free) pixels: green above its Otsu threshold."""
    s = _subsample(rgb, 250_000).reshape(-1, 3).astype(np.float32)
    g = s[:, 1]
    if g.max() - g.min() < 1:
        bg = np.median(s, axis=0)
    else:
        bg = np.median(s[g > threshold_otsu(g)], axis=0)
    return tuple(float(v) for v in np.maximum(bg, 1.0))


def _thresholds(cell: np.ndarray, nuc: np.ndarray, params: SegmentParams) -> tuple[float, float]:
    """Nucleus threshold: upper of a 3-class Otsu (RBC/background | nucleus); cell threshold:
    Otsu of the cell score over the non-nuclear pixels (background vs cells)."""
    c = _subsample(cell).ravel()
    n = _subsample(nuc).ravel()
    try:
        t_nuc = float(threshold_multiotsu(n, classes=3)[1])
    except ValueError:
        t_nuc = params.min_nucleus_od
    t_nuc = max(t_nuc, params.min_nucleus_od)
    c = c[n <= t_nuc]
    t_cell = float(threshold_otsu(c)) if c.size and c.max() > c.min() else params.min_cell_od
    return max(t_cell, params.min_cell_od), t_nuc


# For touching or isolated discs of radius r, 10% of the pixels lie deeper than 0.684 r
# (P(depth > d) = (1 - d/r)^2), so the 90th percentile of the distance transform over the
# cell mask measures the radius without needing isolated cells.
_P90_DEPTH = 1.0 - math.sqrt(0.1)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes`` via one labelling of the background."""
    lab, n = label(np.ascontiguousarray(~mask), connectivity=1)
    edge = np.zeros(n + 1, bool)
    for side in (lab[0], lab[-1], lab[:, 0], lab[:, -1]):
        edge[side] = True
    edge[0] = True
    return ~lut_gather(edge, lab) | mask


def _depth_diameter_px(rgb: np.ndarray, bg, params: SegmentParams, factor: int) -> float | None:
    """RBC diameter (px of ``rgb``) from the depth distribution of the hole-filled,
    non-nuclear cell mask at block factor ``factor``."""
    cell, nuc = stain_planes(rgb, factor, bg, green_minus_red=params.cell_channel == "od_green_minus_red", smooth=True)
    t_cell, t_nuc = _thresholds(cell, nuc, params)
    mask = _fill_holes(open_disk(cell > t_cell, 1.0))
    lab, n = label(mask, connectivity=1)
    if n == 0:
        return None
    stained = np.zeros(n + 1, bool)
    stained[lab[nuc > t_nuc]] = True
    stained[0] = True
    mask = ~lut_gather(stained, lab)
    if mask.sum() < 50:
        return None
    depth = chamfer_distance(mask)[mask] / 5.0
    return float(factor * 2.0 * np.percentile(depth, 90) / _P90_DEPTH)


def _estimate_rbc_diameter_px(rgb: np.ndarray, bg, params: SegmentParams) -> float | None:
    """Typical RBC diameter (px): a first pass on at most ~250k working px, then a second
    at the block factor that makes an RBC about 20 px across (holes, i.e. the central
    pallor, filled at that scale)."""
    h, w = rgb.shape[:2]
    f0 = max(1, int(math.ceil(math.sqrt(h * w / 250_000))))
    d0 = _depth_diameter_px(rgb, bg, params, f0)
    if d0 is None:
        return None
    f1 = max(1, int(d0 // 20))
    if f1 == f0:
        return d0
    d1 = _depth_diameter_px(rgb, bg, params, f1)
    return d0 if d1 is None else d1


def _platelet_threshold(t_nuc: float, params: SegmentParams) -> float:
    """``platelet_threshold_frac`` of the nucleus threshold, capped at ``platelet_max_od``
    (a field with few WBCs puts the 3-class Otsu split high, above pale platelets) and
    floored at ``min_platelet_od`` (noise)."""
    return float(max(min(params.platelet_threshold_frac * t_nuc, params.platelet_max_od), params.min_platelet_od))


def block_factor(mpp: float, work_mpp: float) -> int:
    """The integer block-averaging factor ``f >= 1`` whose working pixel ``f * mpp`` is
    nearest to ``work_mpp`` in ratio (the smaller factor on a tie).

    Rounding ``0.5 / mpp`` down (the rule before) left a 40x scan at 0.2527 µm/px (a
    common scanner pixel) at factor 1, half the working scale the models were fitted at:
    a tenth of its red cells counted.

    >>> [block_factor(m, 0.46) for m in (0.0745, 0.1, 0.25, 0.2527, 0.263, 0.5, 1.0)]
    [6, 5, 2, 2, 2, 1, 1]
    """
    mpp = float(mpp)
    work_mpp = float(work_mpp)
    if not (mpp > 0 and work_mpp > 0 and math.isfinite(mpp) and math.isfinite(work_mpp)):
        raise HemoflowError(f"mpp and work_mpp must be positive and finite, got {mpp} and {work_mpp}")
    lo = max(1, int(math.floor(work_mpp / mpp + 1e-9)))
    hi = lo + 1
    return lo if abs(math.log(lo * mpp / work_mpp)) <= abs(math.log(hi * mpp / work_mpp)) else hi


RATIO_TOLERANCE = 0.10
MAX_UPSAMPLE = 8


def working_ratio(mpp: float, work_mpp: float) -> tuple[int, int]:
    """``(p, q)``: a working pixel of ``p/q`` level-0 pixels (lowest terms).

    The integer factor of :func:`block_factor` (q = 1) when its working pixel lies within
    10 % of ``work_mpp``; otherwise the smallest q <= 8 whose nearest p comes within 5 %
    (the best of all when none does). Working pixels far from the scale the counting
    models were fitted at count badly: a 0.345 µm/px scan at factor 1 lost about a fifth of
    its red cells on synthetic fields. The working pixel is never smaller than the scan's
    (p > q when q > 1): scans coarser than ``work_mpp`` stay at factor 1 rather than being enlarged
    (a 2 µm/px image would otherwise become 16x the pixels).

    >>> [working_ratio(m, 0.46) for m in (0.0745, 0.25, 0.345, 0.4, 0.5, 0.6)]
    [(6, 1), (2, 1), (4, 3), (6, 5), (1, 1), (1, 1)]
    """
    f = block_factor(mpp, work_mpp)
    best, err = (f, 1), abs(math.log(f * mpp / work_mpp))
    if err <= math.log1p(RATIO_TOLERANCE):
        return best
    for q in range(2, MAX_UPSAMPLE + 1):
        lo = max(1, int(math.floor(q * work_mpp / mpp)))
        for p in (lo, lo + 1):
            e = abs(math.log(p * mpp / (q * work_mpp)))
            if p > q and math.gcd(p, q) == 1 and e < err - 1e-12:
                best, err = (p, q), e
        if err <= math.log1p(RATIO_TOLERANCE / 2):
            break
    return best


def calibrate(rgb, *, params: SegmentParams = SegmentParams(), mpp: float | None = None) -> Calibration:
    """Measure the image-global quantities of a field or slide thumbnail once.

    Parameters
    ----------
    rgb : uint8[H, W, 3]
        The whole field, or a thumbnail of a slide at the same magnification ratio the
        caller records (thresholds are scale-free; the mpp estimate is in ``rgb`` px).
    params : SegmentParams
    mpp : float, optional
        Known pixel size (µm/px). When None it is estimated from the median diameter of
        isolated RBCs (``params.rbc_diameter_um``) and ``mpp_estimated`` is True.

    Raises
    ------
    UnsupportedImageError
        ``rgb`` is not ``uint8[H, W, 3|4]``.
    HemoflowError
        No pixel size was given and no isolated RBC could be measured.
    """
    rgb = validate_rgb(rgb)
    bg = _background(rgb) if params.normalize_background else (255.0, 255.0, 255.0)
    estimated = mpp is None
    if estimated:
        d_px = _estimate_rbc_diameter_px(rgb, bg, params)
        if d_px is None:
            raise HemoflowError(
                f"cannot estimate the pixel size of a {rgb.shape} image: no isolated red cell found; pass mpp"
            )
        mpp = params.rbc_diameter_um / d_px
    mpp = _pos("mpp", mpp)
    factor, up = working_ratio(mpp, params.work_mpp)
    cell, nuc, _ = _planes(rgb, bg, factor, params, upsample=up)
    t_cell, t_nuc = _thresholds(cell, nuc, params)
    return Calibration(
        background=bg,
        cell_threshold=t_cell,
        nucleus_threshold=t_nuc,
        platelet_threshold=_platelet_threshold(t_nuc, params),
        mpp=float(mpp),
        mpp_estimated=bool(estimated),
        downsample=factor,
        upsample=up,
    )


# --------------------------------------------------------------------------- analysis


def _segment(rgb: np.ndarray, cal: Calibration, params: SegmentParams, px_um: float, count_basins=None,
             keep_platelets=None):
    """Label image (WBC, then platelets, then RBCs), class and count weight per label
    (working scale), and the measurements of the labels that are whole basins (for
    :func:`measure_cells`; None without the count model)."""
    um = 1.0 / px_um  # working px per µm
    # count_basins / keep_platelets: hooks for fitting the shipped models (None: use them)
    density_counts = params.rbc_count_model and params.rbc_density_model and count_basins is None
    cell, nuc, od = _planes(rgb, cal.background, int(cal.downsample), params, od=density_counts,
                            upsample=int(cal.upsample))
    rbc_area = math.pi / 4.0 * (params.rbc_diameter_um * um) ** 2
    cell_mask = open_disk(cell > cal.cell_threshold * params.cell_threshold_scale, max(0.4 * um, 1.0))
    if params.close_um > 0:
        cell_mask = close_disk(cell_mask, params.close_um * um)
    cell_mask = fill_small_holes(cell_mask, params.pallor_area_frac * rbc_area)

    lo, hi = params.platelet_diameter_um
    plt_min = math.pi / 4.0 * (lo * um) ** 2
    plt_max = math.pi / 4.0 * (hi * um) ** 2
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
    if params.platelet_count_model:
        # candidates at a lower threshold and a wider size range; the model picks platelets
        plt, n_plt = segment_platelets(
            nuc, wbc_any, threshold=params.platelet_candidate_frac * cal.platelet_threshold,
            min_px=max(0.3 * plt_min, 2.0), max_px=2.0 * plt_max,
        )
        feats = platelet_features(
            plt, n_plt, nucleus=nuc, cell=cell, cell_mask=cell_mask, wbc_mask=wbc_any,
            platelet_threshold=cal.platelet_threshold, cell_threshold=cal.cell_threshold, px_per_um=um,
        )
        plt, n_plt = (keep_platelets or _keep_platelets)(plt, n_plt, feats)
    rbc_mask = open_disk(rbc_mask, max(0.6 * um, 1.0))
    rbc, n_rbc, dist = rbc_basins(
        rbc_mask, diameter_px=params.rbc_diameter_um * um, split_depth=params.split_depth_frac
    )
    rbc_weight = None
    basin_props = known = None
    if params.rbc_count_model:
        # the model decides which basins are cells, fragments, or clumps of 2-3 cells
        rbc, n_rbc = filter_small(rbc, n_rbc, min_area_px=max(0.02 * rbc_area, 2.0))
        if count_basins is None:
            # the basins' measurements serve the count model and, for the basins that
            # stay whole cells, the cell table
            basin_props = regionprops_table(np.ascontiguousarray(rbc, np.int32), properties=PROPERTIES)
            feats = basin_features(rbc, n_rbc, dist, rbc_area_px=rbc_area, props=basin_props)
            if density_counts:
                density = rbc_density(od)
                mass = basin_mass(rbc, n_rbc, density, reach_px=params.rbc_density_reach_um * um)
                feats = np.hstack([feats, mass_features(mass)])
            proba = predict_proba(feats, density=density_counts)
            if density_counts and params.rbc_density_count:
                # most probable counts; the count is the density itself: each kept basin's region's mass
                counts = np.argmax(proba, axis=1).astype(np.int64)
                # kept_mass is 0 for dropped basins; a basin's parts share its mass
                weight = kept_mass(rbc, counts, density, reach_px=params.rbc_mass_reach_um * um,
                                   exclude=wbc_any) / np.maximum(counts, 1)
            else:
                counts, weight = expected_weights(proba, rbc, reach_px=params.rbc_diameter_um * um)
        else:
            counts = count_basins(rbc, n_rbc, dist, rbc_area)
            weight = np.ones(n_rbc)
        old = rbc
        boxes = None
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
                known["label"] = (n_wbc + n_plt + 1 + whole).astype(np.int64)
    else:
        rbc, n_rbc = filter_small(
            rbc,
            n_rbc,
            min_area_px=params.rbc_min_area_frac * rbc_area,
            border_min_area_px=params.rbc_border_min_area_frac * rbc_area,
        )
    labels = overlay_labels((wbc, n_wbc), (plt, n_plt), (rbc, n_rbc))
    classes = np.array(["wbc"] * n_wbc + ["platelet"] * n_plt + ["rbc"] * n_rbc, dtype="U8")
    weights = np.ones(len(classes))
    if rbc_weight is not None:
        weights[n_wbc + n_plt:] = rbc_weight
    return labels, classes, weights, known


def _planes(rgb: np.ndarray, bg, factor: int, params: SegmentParams, *, od: bool = False, upsample: int = 1):
    """Cell and nucleus scores at the working scale (block mean, then a 3x3 binomial on
    the planes ``params.smooth`` / ``params.smooth_cell`` ask for), and with ``od`` the
    three optical-density planes (else None)."""
    planes = stain_planes(rgb, factor, bg, green_minus_red=params.cell_channel == "od_green_minus_red", od=od,
                          upsample=upsample)
    cell, nuc = planes[:2]
    if params.smooth_cell:
        cell = binomial3(cell)
    if params.smooth:
        nuc = binomial3(nuc)
    return cell, nuc, (planes[2] if od else None)


def analyze_field(
    rgb,
    *,
    mpp: float | None = None,
    calibration: Calibration | None = None,
    params: SegmentParams = SegmentParams(),
    crop: CropSpec = CropSpec(),
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
    labels, classes, weights, known = _segment(rgb, calibration, params, px_um=mpp * f)
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
