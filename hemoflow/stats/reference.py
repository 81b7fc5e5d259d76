"""Reference ranges and the flags that compare a counted proportion with them.

A proportion is only flagged when the data say so with confidence: the whole exact 95 %
interval (:func:`hemoflow.stats.intervals.clopper_pearson`) must lie on one side.

Range flags (:func:`range_flag`), for the peripheral-blood differential:

- ``"high"``: the interval lies wholly above the range (``ci_low > high``);
- ``"low"``: the interval lies wholly below the range (``ci_high < low``);
- ``"within"``: the interval lies wholly inside the range;
- ``"indeterminate"``: the interval straddles a boundary; count more cells.

Cut-off flags (:func:`cutoff_flag`), for the WHO 20 % blast threshold:

- ``"above"``: the interval lies wholly at or above the cut-off (``ci_low >= cutoff``);
- ``"below"``: the interval lies wholly below it (``ci_high < cutoff``);
- ``"indeterminate"``: otherwise.

``"not_applicable"`` is used where no reference applies (the differential of a bone-marrow
aspirate is not compared with peripheral-blood ranges).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from hemoflow.errors import HemoflowError
from hemoflow.schema import DIFFERENTIAL_REFERENCE

__all__ = [
    "ReferenceRange",
    "DIFFERENTIAL_RANGES",
    "BLAST_CUTOFF_PERCENT",
    "BLAST_REVIEW_MIN_CONFIDENCE",
    "BLAST_REVIEW_MIN_CELLS",
    "IG_RANGE",
    "BAND_RANGE",
    "RANGE_FLAGS",
    "CUTOFF_FLAGS",
    "NOT_APPLICABLE",
    "range_flag",
    "cutoff_flag",
    "explain_range_flag",
    "explain_cutoff_flag",
]

#: WHO (5th edition) / ICC: at least 20 % blasts in blood or marrow defines acute leukaemia.
BLAST_CUTOFF_PERCENT = 20.0

RANGE_FLAGS: tuple[str, ...] = ("low", "within", "high", "indeterminate")
CUTOFF_FLAGS: tuple[str, ...] = ("below", "above", "indeterminate")
NOT_APPLICABLE = "not_applicable"


@dataclass(frozen=True)
class ReferenceRange:
    """A reference interval in percent of the counted cells.

    Attributes
    ----------
    name : str
        What is measured (a WBC type).
    low, high : float
        Bounds in percent, ``0 <= low <= high <= 100``.
    source : str
        Where the numbers come from, shown in the report.
    """

    name: str
    low: float
    high: float
    source: str = "adult peripheral blood"

    def __post_init__(self) -> None:
        if not (0.0 <= self.low <= self.high <= 100.0):
            raise HemoflowError(
                f"reference range for {self.name!r} must satisfy 0 <= low <= high <= 100, "
                f"got ({self.low}, {self.high})"
            )

    def to_dict(self) -> dict:
        return {"name": self.name, "low": self.low, "high": self.high, "source": self.source}


DIFFERENTIAL_RANGES: dict[str, ReferenceRange] = {
    name: ReferenceRange(name, float(lo), float(hi))
    for name, (lo, hi) in DIFFERENTIAL_REFERENCE.items()
}

#: Immature granulocytes (promyelocytes + myelocytes + metamyelocytes) in adult peripheral
#: blood: upper reference limit 0.9 % of white cells, the limit recommended for patients
#: over 10 years from 2,400 outpatient samples (Roehrl et al., Arch Pathol Lab Med
#: 2011;135:471-477; children up to 10 years: 0.3 %). A healthy smear often shows none.
IG_RANGE = ReferenceRange(
    "immature granulocyte", 0.0, 0.9,
    source="adult peripheral blood, upper limit 0.9 % (Roehrl et al., Arch Pathol Lab Med 2011;135:471)",
)
#: Band neutrophils as the left shift: more than 10 % bands ("immature forms") is the
#: white-cell criterion of the SIRS consensus (Bone et al., Chest 1992;101:1644-1655).
BAND_RANGE = ReferenceRange(
    "band neutrophil", 0.0, 10.0,
    source="left shift above 10 % bands (SIRS consensus, Bone et al., Chest 1992;101:1644)",
)
#: Blasts do not circulate in healthy peripheral blood: one blast the classifier is at
#: least this sure of (``p_blast``, else its confidence) asks for review by a person.
BLAST_REVIEW_MIN_CONFIDENCE = 0.9
BLAST_REVIEW_MIN_CELLS = 1


def range_flag(ci_low: ArrayLike, ci_high: ArrayLike, low: ArrayLike, high: ArrayLike) -> np.ndarray:
    """Compare intervals with a range: ``"low"``, ``"within"``, ``"high"`` or ``"indeterminate"``.

    All four arguments share one unit (proportions or percent) and broadcast.
    A NaN bound gives ``"indeterminate"``.

    Examples
    --------
    >>> range_flag([0.5, 41.0, 61.0, 35.0], [1.9, 59.0, 70.0, 45.0], 40.0, 60.0).tolist()
    ['low', 'within', 'high', 'indeterminate']
    """
    lo, hi = np.asarray(ci_low, float), np.asarray(ci_high, float)
    rl, rh = np.asarray(low, float), np.asarray(high, float)
    if np.any(rl > rh):
        raise HemoflowError("reference range needs low <= high")
    out = np.full(np.broadcast_shapes(lo.shape, hi.shape, rl.shape, rh.shape), "indeterminate", dtype="<U13")
    out[np.broadcast_to((lo >= rl) & (hi <= rh), out.shape)] = "within"
    out[np.broadcast_to(hi < rl, out.shape)] = "low"
    out[np.broadcast_to(lo > rh, out.shape)] = "high"
    return out


def cutoff_flag(ci_low: ArrayLike, ci_high: ArrayLike, cutoff: ArrayLike) -> np.ndarray:
    """Compare intervals with a cut-off: ``"above"``, ``"below"`` or ``"indeterminate"``.

    ``"above"`` means at or above (``ci_low >= cutoff``), as the WHO criterion reads
    "20 % or more blasts".

    Examples
    --------
    >>> cutoff_flag([25.0, 2.0, 15.0], [40.0, 10.0, 26.0], 20.0).tolist()
    ['above', 'below', 'indeterminate']
    """
    lo, hi = np.asarray(ci_low, float), np.asarray(ci_high, float)
    c = np.asarray(cutoff, float)
    out = np.full(np.broadcast_shapes(lo.shape, hi.shape, c.shape), "indeterminate", dtype="<U13")
    out[np.broadcast_to(hi < c, out.shape)] = "below"
    out[np.broadcast_to(lo >= c, out.shape)] = "above"
    return out


def _pct(v: float | None) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.1f} %"


def explain_range_flag(
    name: str,
    flag: str,
    *,
    percent: float | None,
    ci_low: float | None,
    ci_high: float | None,
    ref_low: float | None,
    ref_high: float | None,
    n: int,
    cells_to_resolve: int | None = None,
) -> str:
    """One plain-language sentence explaining a differential flag (all values in percent)."""
    est = f"{name.capitalize()}s were {_pct(percent)} of {n} counted white cells"
    ci = f"(95 % interval {_pct(ci_low)} to {_pct(ci_high)})"
    if flag == NOT_APPLICABLE or ref_low is None or ref_high is None:
        return f"{est} {ci}. No reference range is applied to this specimen."
    ref = f"the reference range {ref_low:g}-{ref_high:g} %"
    if flag == "within":
        return f"{est} {ci}: the whole interval lies inside {ref}, so the value is normal."
    if flag == "high":
        return f"{est} {ci}: even the lowest plausible value is above {ref}, so the value is high."
    if flag == "low":
        return f"{est} {ci}: even the highest plausible value is below {ref}, so the value is low."
    more = ""
    if cells_to_resolve is not None and cells_to_resolve > n:
        more = (
            f" If the proportion held, about {cells_to_resolve} white cells in total "
            f"({cells_to_resolve - n} more) would settle it."
        )
    elif n == 0:
        more = " No white cells were counted."
    else:
        more = " The estimate itself sits on the boundary, so counting more cells may not settle it."
    return f"{est} {ci}: the interval overlaps a boundary of {ref}, so the count cannot tell.{more}"


def explain_cutoff_flag(
    name: str,
    flag: str,
    *,
    percent: float | None,
    ci_low: float | None,
    ci_high: float | None,
    cutoff: float,
    n: int,
    cells_to_resolve: int | None = None,
) -> str:
    """One plain-language sentence explaining a cut-off flag (all values in percent)."""
    est = f"{name.capitalize()} {_pct(percent)} of {n} counted white cells"
    ci = f"(95 % interval {_pct(ci_low)} to {_pct(ci_high)})"
    if flag == "above":
        return f"{est} {ci}: the whole interval is at or above the {cutoff:g} % cut-off."
    if flag == "below":
        return f"{est} {ci}: the whole interval is below the {cutoff:g} % cut-off."
    more = ""
    if cells_to_resolve is not None and cells_to_resolve > n:
        more = (
            f" If the proportion held, about {cells_to_resolve} white cells in total "
            f"({cells_to_resolve - n} more) would settle it."
        )
    elif n == 0:
        more = " No white cells were counted."
    else:
        more = " The estimate itself sits on the boundary, so counting more cells may not settle it."
    return f"{est} {ci}: the interval spans the {cutoff:g} % cut-off, so the count cannot tell.{more}"
