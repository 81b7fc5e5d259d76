"""Is this image a stained blood smear? A quality gate run on a slide's calibration sample.

Mislabelled slides exist in every archive: an H&E tissue section counted as blood gives
confident nonsense (hundreds of "WBCs", most of them "eosinophils"). :func:`smear_qc`
looks at a sample of the slide at a working scale of about ``work_mpp`` µm/px and checks,
in this order (the first that fails is the reason), with thresholds chosen on real smears
and real non-smears by ``scripts/qc_margins.py`` (margins in ``docs/qc.md``):

1. **Stained material.** The foreground (pixels whose optical density, summed over the
   three channels, lies above the lower split of a 3-class Otsu and above
   ``min_foreground_od``) covers ``foreground`` of the sample: a blank or empty slide
   has nothing to count, a slide with no glass between cells is not a spread smear.
2. **Separate cells.** At most ``max_sheet_fraction`` of the foreground lies in connected
   masses larger than ``sheet_rbc_areas`` red-cell areas: tissue is one continuous sheet.
3. **Stain density.** A smear's reading area is a monolayer of thin cells (a red cell is
   about 2 µm thick): the median optical density of its foreground stays at most
   ``max_foreground_od``. A 4-5 µm tissue section stained with eosin and haematoxylin is
   far denser. The hue mix (share of pink-purple vs red-cell coloured foreground, by the
   blue/green optical-density ratio) is reported with it; hue alone does not separate
   them (lilac-stained red cells of BCCD are as pink-purple as eosin).
4. **A red-cell population.** The foreground, small holes (central pallor) filled, is cut
   into basins by the distance-transform watershed of the red-cell segmentation
   (:func:`hemoflow.stages.segment.rbc_basins`). At least ``min_cell_fraction`` of the
   basins' area (basins on the sample's edge aside) must be cell-like: solidity of at
   least ``cell_solidity`` and an equivalent diameter within ``cell_diameter_um`` (a red
   cell, or a clump of two or three that the watershed left joined).
5. **The size of a red cell.** Round basins (solidity ``round_solidity``, diameter within
   ``round_diameter_um``) are single cells. With a pixel size and at least
   ``min_cells_for_size`` of them, their median diameter lies within ``rbc_diameter_um``.
6. **A sensible density.** Round cells per 1000 µm² of foreground within
   ``cells_per_1000um2`` (with a pixel size and ``min_cells_for_size`` round cells).

The function is pure (numpy in, :class:`QCResult` out) and bounded: the sample is block
averaged to the working scale, and at most ``max_pixels`` working pixels are analysed.

>>> import numpy as np
>>> res = smear_qc(np.full((256, 256, 3), 235, np.uint8), mpp=0.25)
>>> res.ok, res.reason
(False, 'no stained material: 0% of the sample is darker than the background (a smear has at least 3%)')
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from hemoflow.errors import HemoflowError
from hemoflow.kernels import regionprops_table
from hemoflow.kernels._label import label_with_sizes
from hemoflow.kernels._smear import stain_planes
from hemoflow.stages.preprocess import validate_rgb
from hemoflow.stages.segment import fill_small_holes, open_disk, rbc_basins

__all__ = ["QCParams", "QCResult", "smear_qc"]


@dataclass(frozen=True)
class QCParams:
    """Thresholds of :func:`smear_qc` (see the module docstring for what each checks).

    The defaults come from ``scripts/qc_margins.py`` over every BCCD field, synthetic
    smears of several seeds, pixel sizes and densities, the demo's slides and the H&E
    slides of the test data; the margins each leaves are in ``docs/qc.md``. Optical
    densities are natural-log units summed over R, G and B, relative to the glass.
    """

    work_mpp: float = 0.46
    max_pixels: int = 4_000_000
    min_foreground_od: float = 0.12
    foreground: tuple[float, float] = (0.03, 0.97)
    max_foreground_od: float = 1.5
    red_cell_od_ratio: float = 0.7
    sheet_rbc_areas: float = 30.0
    max_sheet_fraction: float = 0.5
    cell_diameter_um: tuple[float, float] = (4.5, 13.5)
    cell_solidity: float = 0.8
    min_cell_fraction: float = 0.06
    round_diameter_um: tuple[float, float] = (4.5, 10.5)
    round_solidity: float = 0.9
    rbc_diameter_um: tuple[float, float] = (6.0, 9.0)
    min_cells_for_size: int = 20
    cells_per_1000um2: tuple[float, float] = (2.0, 40.0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class QCResult:
    """Outcome of :func:`smear_qc`: ``ok``, a plain-words ``reason`` (why it failed, or a
    one-line description when it passed) and the ``measures`` behind it."""

    ok: bool
    reason: str
    measures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": bool(self.ok), "reason": self.reason, "measures": dict(self.measures)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "QCResult":
        return cls(bool(d["ok"]), str(d["reason"]), dict(d.get("measures") or {}))


def _pct(v: float) -> str:
    return f"{100.0 * v:.0f}%" if v >= 0.01 or v == 0 else f"{100.0 * v:.1f}%"


def _background(rgb: np.ndarray) -> tuple[float, float, float]:
    """Median colour of the brightest tenth of the pixels (by green): the glass."""
    s = rgb.reshape(-1, 3)
    if len(s) > 250_000:
        s = s[:: len(s) // 250_000]
    g = s[:, 1]
    bright = s[g >= np.percentile(g, 90)]
    return tuple(float(max(v, 1.0)) for v in np.median(bright, axis=0))


def _working(rgb: np.ndarray, mpp: float | None, params: QCParams):
    """Optical densities ``(3, h, w)`` of ``rgb`` block-averaged to about ``work_mpp``
    (coarser when that would exceed ``max_pixels``), and the working pixel in µm."""
    h, w = rgb.shape[:2]
    f = max(1, int(round(params.work_mpp / mpp))) if mpp else 1
    f = max(f, int(math.ceil(math.sqrt(h * w / params.max_pixels))))
    bg = _background(rgb[:: max(1, f // 2), :: max(1, f // 2)])
    _, _, od = stain_planes(rgb, f, bg, od=True)
    return np.maximum(od, 0.0), (mpp * f if mpp else None), bg


def _foreground(od: np.ndarray, params: QCParams) -> np.ndarray:
    from skimage.filters import threshold_multiotsu

    s = od.sum(axis=0)
    sub = s[:: max(1, s.shape[0] // 512), :: max(1, s.shape[1] // 512)].ravel()
    t = params.min_foreground_od
    if sub.max() - sub.min() > 1e-3:
        try:
            t = max(t, float(threshold_multiotsu(sub, classes=3)[0]))
        except ValueError:  # fewer than three grey levels
            pass
    return s > t


def _stain(od: np.ndarray, fg: np.ndarray, params: QCParams) -> dict[str, float]:
    g, b = od[1][fg], od[2][fg]
    red = float(np.mean(b >= params.red_cell_od_ratio * g))
    return {"foreground_od": float(np.median(od.sum(axis=0)[fg])), "red_colour_fraction": red,
            "pink_purple_fraction": 1.0 - red}


def _cells_mask(fg: np.ndarray, d_px: float) -> np.ndarray:
    mask = fill_small_holes(fg, 0.35 * math.pi / 4.0 * d_px**2)
    return open_disk(mask, max(0.05 * d_px, 1.0))


def _sheet_fraction(mask: np.ndarray, d_px: float, params: QCParams) -> float:
    """Share of ``mask`` in 4-connected masses larger than ``sheet_rbc_areas`` red cells."""
    _, _, sizes = label_with_sizes(np.ascontiguousarray(mask), connectivity=1)
    sizes = sizes[1:].astype(np.float64)
    big = sizes > params.sheet_rbc_areas * math.pi / 4.0 * d_px**2
    return float(sizes[big].sum() / sizes.sum()) if sizes.sum() else 0.0


def _population(mask: np.ndarray, px_um: float | None, d_px: float, params: QCParams) -> dict[str, Any]:
    """Cell-like and round basins of the hole-filled foreground (edge basins aside)."""
    lab, n, _ = rbc_basins(mask, diameter_px=d_px, split_depth=0.1)
    out: dict[str, Any] = {"n_basins": int(n), "cell_fraction": 0.0, "n_round_cells": 0,
                           "rbc_diameter_um": None, "round_cells_per_1000um2": None}
    if n == 0:
        return out
    props = regionprops_table(np.ascontiguousarray(lab, np.int32), properties=("label", "area", "bbox", "solidity"))
    area = np.asarray(props["area"], np.float64)
    sol = np.asarray(props["solidity"], np.float64)
    h, w = lab.shape
    inner = ((np.asarray(props["bbox-0"]) > 0) & (np.asarray(props["bbox-1"]) > 0)
             & (np.asarray(props["bbox-2"]) < h) & (np.asarray(props["bbox-3"]) < w))
    # without a pixel size a typical red cell is taken to be d_px across: sizes are relative
    d_um = 2.0 * np.sqrt(area / math.pi) * (px_um if px_um else float(np.mean(params.rbc_diameter_um)) / d_px)
    lo, hi = params.cell_diameter_um
    cell = inner & (sol >= params.cell_solidity) & (d_um >= lo) & (d_um <= hi)
    lo, hi = params.round_diameter_um
    round_ = inner & (sol >= params.round_solidity) & (d_um >= lo) & (d_um <= hi)
    inner_area = float(area[inner].sum())
    # cells cut by the sample's edge are neither counted nor held against it: a small
    # field (a camera frame) has most of its cells on the edge
    out["cell_fraction"] = float(area[cell].sum() / inner_area) if inner_area else 0.0
    out["n_round_cells"] = int(round_.sum())
    if round_.any() and px_um:
        out["rbc_diameter_um"] = float(np.median(d_um[round_]))
        fg_um2 = float(np.count_nonzero(mask)) * px_um * px_um
        out["round_cells_per_1000um2"] = 1000.0 * out["n_round_cells"] / fg_um2 if fg_um2 else None
    return out


def smear_qc(rgb, *, mpp: float | None, params: QCParams = QCParams()) -> QCResult:
    """Check that ``rgb`` (a sample of a slide, level-0 pixels) is a stained blood smear.

    Parameters
    ----------
    rgb : uint8[H, W, 3] (or 4 channels; alpha is dropped)
    mpp : float or None
        Pixel size of ``rgb`` in µm. None skips the checks in µm (red-cell diameter,
        density) and takes a red cell to be 16 px across.
    params : QCParams

    Returns
    -------
    QCResult
        ``ok`` False with the first failed check in ``reason`` (plain words, with the
        measured value and the threshold), or ``ok`` True with a one-line summary.

    Raises
    ------
    UnsupportedImageError
        ``rgb`` is not an 8-bit RGB(A) image.
    HemoflowError
        ``mpp`` is not a positive number or None.
    """
    rgb = validate_rgb(rgb)
    if mpp is not None:
        try:
            mpp = float(mpp)
        except (TypeError, ValueError):
            raise HemoflowError(f"mpp must be a positive number or None, got {mpp!r}") from None
        if not (math.isfinite(mpp) and mpp > 0):
            raise HemoflowError(f"mpp must be a positive number or None, got {mpp!r}")
    od, px_um, bg = _working(rgb, mpp, params)
    fg = _foreground(od, params)
    m: dict[str, Any] = {"working_mpp": px_um, "shape": list(fg.shape), "background_rgb": [round(v, 1) for v in bg],
                         "foreground_fraction": float(fg.mean())}
    m["background_fraction"] = 1.0 - m["foreground_fraction"]
    fail = _check_foreground(m, params)
    if not fail:
        m.update(_stain(od, fg, params))
        d_px = float(np.mean(params.rbc_diameter_um)) / px_um if px_um else 16.0
        mask = _cells_mask(fg, d_px)
        m["sheet_fraction"] = _sheet_fraction(mask, d_px, params)
        m.update(_population(mask, px_um, d_px, params))
        fail = _check_cells(m, params)
    return QCResult(not fail, fail or _summary(m), m)


def _check_foreground(m: Mapping[str, Any], p: QCParams) -> str:
    f = m["foreground_fraction"]
    lo, hi = p.foreground
    if f < lo:
        return (f"no stained material: {_pct(f)} of the sample is darker than the background "
                f"(a smear has at least {_pct(lo)})")
    if f > hi:
        return (f"no background between cells: {_pct(f)} of the sample is stained "
                f"(a smear's reading area has at most {_pct(hi)})")
    return ""


def _check_cells(m: Mapping[str, Any], p: QCParams) -> str:
    """The first failed check after the foreground's, in plain words ("" when all pass)."""
    hue = f"{_pct(m['pink_purple_fraction'])} of it pink-purple, {_pct(m['red_colour_fraction'])} red-cell coloured"
    od = f"median optical density {m['foreground_od']:.2f}"
    if m["sheet_fraction"] > p.max_sheet_fraction:
        dense = f" (denser than a smear's {p.max_foreground_od:g})" if m["foreground_od"] > p.max_foreground_od else ""
        return (f"looks like tissue (H&E?), not a blood smear: {_pct(m['sheet_fraction'])} of the foreground is "
                f"continuous masses larger than {p.sheet_rbc_areas:g} red cells (a smear has at most "
                f"{_pct(p.max_sheet_fraction)}); {od}{dense}; {hue}")
    lo, hi = p.cell_diameter_um
    if m["foreground_od"] > p.max_foreground_od:
        return (f"stained far denser than a blood smear: {od} of the foreground, a smear's monolayer has at most "
                f"{p.max_foreground_od:g}; {hue}")
    if m["cell_fraction"] < p.min_cell_fraction:
        return (f"no red-cell population: {_pct(m['cell_fraction'])} of the foreground is compact cells of "
                f"{lo:g}-{hi:g} µm (a smear has at least {_pct(p.min_cell_fraction)})")
    if m["rbc_diameter_um"] is not None and m["n_round_cells"] >= p.min_cells_for_size:
        lo, hi = p.rbc_diameter_um
        d = m["rbc_diameter_um"]
        if not lo <= d <= hi:
            return (f"round cells are {d:.1f} µm across (median of {m['n_round_cells']}), not the {lo:g}-{hi:g} µm "
                    f"of red cells: wrong pixel size, or not a blood smear")
        c = m["round_cells_per_1000um2"]
        lo, hi = p.cells_per_1000um2
        if c is not None and not lo <= c <= hi:
            return (f"implausible cell density: {c:.1f} round cells per 1000 µm² of foreground "
                    f"(a smear has {lo:g}-{hi:g})")
    return ""


def _summary(m: Mapping[str, Any]) -> str:
    d = m.get("rbc_diameter_um")
    size = f" of median {d:.1f} µm" if d is not None else ""
    return (f"blood smear: {m['n_round_cells']} round cells{size}, {_pct(m['cell_fraction'])} of the foreground "
            f"compact cells, {_pct(m['red_colour_fraction'])} red-cell coloured, "
            f"{_pct(m['background_fraction'])} background")
