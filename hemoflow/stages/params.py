"""Tunables of the field stages, in µm (converted to working pixels per image).

>>> from hemoflow.stages import SegmentParams
>>> SegmentParams(rbc_diameter_um=8.0).rbc_diameter_um
8.0
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from hemoflow.errors import HemoflowError
from hemoflow.stages.preprocess import CELL_CHANNELS

__all__ = ["SegmentParams", "ABLATION_DEFAULTS", "ablation_switch"]

#: Switches that exist only for the ablations of ``docs/experiments/ablation_counts.md``, with the value
#: every production run uses. They are not fields of :class:`SegmentParams`, so they are no
#: part of a job's parameters or its ledger keys;
#: :class:`hemoflow.training.ablation.AblationParams` adds them as fields for the
#: experiment scripts (``scripts/evaluate_counts.py --param smooth_cell=1``).
ABLATION_DEFAULTS: dict[str, Any] = {
    "normalize_background": True,
    "smooth": True,
    "smooth_cell": False,
    "close_um": 0.0,
    "cell_threshold_scale": 1.0,
    "rbc_density_count": True,
    "platelet_count_model": True,
}


def ablation_switch(params: Any, name: str) -> Any:
    """The ablation switch ``name`` of ``params``: its field on ablation parameters, else
    the production value of :data:`ABLATION_DEFAULTS`."""
    return getattr(params, name, ABLATION_DEFAULTS[name])


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

    Switches that exist only for ablations are not here (:data:`ABLATION_DEFAULTS`).

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
    irregular_* : float
        Thresholds of the irregularity rule (:mod:`hemoflow.stages.features`).
    cell_channel : str
        Cell score of :func:`~hemoflow.stages.preprocess.stain_channels`.
    """

    rbc_diameter_um: float = 7.5
    max_cell_diameter_um: float = 20.0
    work_mpp: float = 0.46
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
    platelet_candidate_frac: float = 0.75
    irregular_min_solidity: float = 0.90
    irregular_min_circularity: float = 0.75
    irregular_max_eccentricity: float = 0.70
    cell_channel: str = "od_green_minus_red"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(SegmentParams):
            v = getattr(self, f.name)
            if f.name in ("rbc_count_model", "rbc_density_model"):
                object.__setattr__(self, f.name, bool(v))
            elif f.name == "cell_channel":
                if v not in CELL_CHANNELS:
                    raise HemoflowError(f"cell_channel must be one of {CELL_CHANNELS}, got {v!r}")
            elif f.name == "platelet_diameter_um":
                lo, hi = (float(x) for x in v)
                if not (0 < lo < hi):
                    raise HemoflowError(f"platelet_diameter_um must be (lo, hi) with 0 < lo < hi, got {v!r}")
                object.__setattr__(self, f.name, (lo, hi))
            elif f.name in ("platelet_wbc_margin_um", "rbc_mass_reach_um"):
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
