"""Calibration: the image-global quantities of a slide, measured once.

Background colour, stain thresholds, pixel size (given, or estimated from the red cells'
size) and the working scale (:func:`working_ratio`). Everything :func:`calibrate` returns
is fixed for the slide, so every tile analysed with it sees the same thresholds as the
whole image.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from skimage.filters import threshold_multiotsu, threshold_otsu

from hemoflow.errors import HemoflowError
from hemoflow.kernels import label
from hemoflow.kernels._distance import chamfer_distance
from hemoflow.kernels._labelops import lut_gather
from hemoflow.kernels._stain import binomial3, stain_planes
from hemoflow.stages.params import SegmentParams, _pos, ablation_switch
from hemoflow.stages.preprocess import validate_rgb
from hemoflow.stages.segment import open_disk

__all__ = ["Calibration", "block_factor", "working_ratio", "calibrate"]


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

    Rounding ``0.5 / mpp`` down instead would leave a 40x scan at 0.2527 µm/px (a common
    scanner pixel) at factor 1, half the working scale the models were fitted at, where a
    tenth of its red cells are counted.

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
    bg = _background(rgb) if ablation_switch(params, "normalize_background") else (255.0, 255.0, 255.0)
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


def _planes(rgb: np.ndarray, bg, factor: int, params: SegmentParams, *, od: bool = False, upsample: int = 1):
    """Cell and nucleus scores at the working scale (block mean, then a 3x3 binomial on
    the planes the ablation switches ``smooth`` / ``smooth_cell`` ask for), and with ``od`` the
    three optical-density planes (else None)."""
    planes = stain_planes(rgb, factor, bg, green_minus_red=params.cell_channel == "od_green_minus_red", od=od,
                          upsample=upsample)
    cell, nuc = planes[:2]
    if ablation_switch(params, "smooth_cell"):
        cell = binomial3(cell)
    if ablation_switch(params, "smooth"):
        nuc = binomial3(nuc)
    return cell, nuc, (planes[2] if od else None)
