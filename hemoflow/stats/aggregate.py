"""Per-slide and per-patient summaries of a cell table.

One core computes everything from a table of cells; a slide summary runs it on the
cells of one slide, a patient summary on the pooled cells of all the patient's slides
(pooling counts, not averaging slide percentages, so every cell weighs the same).

The summary is a JSON-serialisable ``dict`` (plain ``int``/``float``/``str``/``None``;
NaN becomes ``None``). Percentages are in percent (0-100), areas in µm².

How the classifier's labels are counted
---------------------------------------
Only rows with ``cls == "wbc"`` carry a label. Labels and their differential ``group``
come from :func:`hemoflow.stats.clinical.cell_labels` (the taxonomy of
:mod:`hemoflow.classify.taxonomy`; older ``wbc_type`` labels are mapped onto it), and
every count below is of groups, so the five-type differential works for any label set.

- ``platelet``: a segmented object the classifier calls a platelet (a clump or giant
  platelet). It is counted as a platelet, not as a white cell.
- ``erythroblast``: nucleated red cells. They are not white cells: they are left out of
  the WBC count and the differential and reported per 100 WBC (the usual nRBC correction).
- every other label is a white cell. The *differential denominator*
  (``counts.wbc_classified``) is the identified white cells: classified, and not
  ``not_identifiable``. Rejected cells are counted in ``counts.wbc_not_identifiable`` and
  reported with their interval (``not_identifiable``); unclassified ones
  (``counts.wbc_unclassified``) count towards the WBC total only.
- the differential's ``neutrophil`` is the ``neutrophil`` group (band and segmented).
- blast % counts the ``blast`` group; the *immature fraction* counts blasts plus immature
  granulocytes (group ``ig``). Both are flagged against the WHO 20 % blast cut-off; for
  the immature fraction this is a screening threshold (a large left shift), not a
  diagnostic criterion.
- :mod:`hemoflow.stats.clinical` adds the blast review flag (``blast.review``), IG %
  (``ig``), band % (``band``) and, for marrow, the maturation table and M:E ratio
  (``marrow``); ``docs/outputs.md`` lists every column.

Bone marrow (``specimen="bone_marrow"``): the differential is computed but not flagged,
as peripheral-blood ranges do not apply.

Examples
--------
>>> import pandas as pd
>>> cells = pd.DataFrame({
...     "cls": ["rbc", "rbc", "wbc", "platelet"],
...     "area_um2": [40.0, 44.0, 90.0, 5.0],
...     "irregular": [False, True, False, False],
...     "wbc_type": ["", "", "neutrophil", ""],
... })
>>> s = summarize_slide(cells, specimen="peripheral_blood", slide="s1")
>>> s["counts"]["rbc"], s["counts"]["wbc"], s["differential"]["neutrophil"]["percent"]
(2, 1, 100.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from hemoflow.classify.taxonomy import MYELOID_SERIES, REJECT
from hemoflow.errors import HemoflowError
from hemoflow.schema import BLAST, WBC_TYPES
from hemoflow.stats.clinical import cell_labels, clinical_indices
from hemoflow.stats.intervals import DEFAULT_CONFIDENCE, cells_to_resolve, clopper_pearson
from hemoflow.stats.reference import (
    BLAST_CUTOFF_PERCENT,
    DIFFERENTIAL_RANGES,
    NOT_APPLICABLE,
    cutoff_flag,
    range_flag,
)

__all__ = [
    "SPECIMENS",
    "MATURATION_STAGES",
    "RBC_AREA_BIN_EDGES",
    "summarize_slide",
    "summarize_patient",
    "flatten_summary",
    "summaries_to_frames",
]

SPECIMENS: tuple[str, ...] = ("peripheral_blood", "bone_marrow")

#: The stages of the marrow maturation table (least to most mature).
MATURATION_STAGES: tuple[str, ...] = MYELOID_SERIES

NUCLEATED_RED = frozenset(("erythroblast",))
PLATELET_LABEL = "platelet"
BLAST_LABELS = frozenset((BLAST,))
IG_LABELS = frozenset(("ig",))
IMMATURE_LABELS = BLAST_LABELS | IG_LABELS
NEUTROPHIL_LABELS = frozenset(("neutrophil",))

#: Fixed bins of the RBC area histogram (µm²), shared by every summary so slides add up.
#: Areas at or above the last edge are counted in ``overflow``.
RBC_AREA_BIN_EDGES: tuple[float, ...] = tuple(float(v) for v in range(0, 123, 3))

_REQUIRED = ("cls", "area_um2", "irregular")


# --------------------------------------------------------------------------- helpers


def _num(v: Any) -> float | None:
    """A finite float, or None."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _div(a: float, b: float) -> float | None:
    return None if b == 0 else _num(a / b)


def _check_specimen(specimen: str) -> str:
    if specimen not in SPECIMENS:
        raise HemoflowError(f"specimen must be one of {SPECIMENS}, got {specimen!r}")
    return specimen


def _check_cells(cells: pd.DataFrame) -> None:
    if not isinstance(cells, pd.DataFrame):
        raise HemoflowError(f"cells must be a pandas DataFrame, got {type(cells).__name__}")
    missing = [c for c in _REQUIRED if c not in cells.columns]
    if missing:
        raise HemoflowError(
            f"cell table lacks column(s) {missing}; it has {sorted(map(str, cells.columns))}"
        )


def _labels(cells: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """``cls``, the differential group of every row ("" if none) and the label table."""
    lab = cell_labels(cells)
    return cells["cls"].astype(str).to_numpy(), lab["group"].to_numpy(dtype=object), lab


def _proportion(k: int, n: int, *, confidence: float) -> dict[str, Any]:
    lo, hi = clopper_pearson(k, n, confidence=confidence)
    return {
        "count": int(k),
        "n": int(n),
        "percent": _num(100.0 * k / n) if n else None,
        "ci_low": _num(100.0 * lo),
        "ci_high": _num(100.0 * hi),
    }


def _resolve(k: int, n: int, lo: float, hi: float, confidence: float) -> int | None:
    r = int(cells_to_resolve(k, n, lo / 100.0, hi / 100.0, confidence=confidence))
    return None if r < 0 else r


def _class_stats(area: np.ndarray, irregular: np.ndarray) -> dict[str, Any]:
    n = int(area.size)
    finite = area[np.isfinite(area)]
    return {
        "n": n,
        "area_um2_mean": _num(finite.mean()) if finite.size else None,
        "area_um2_sd": _num(finite.std(ddof=1)) if finite.size > 1 else None,
        "irregular_percent": _num(100.0 * irregular.sum() / n) if n else None,
    }


# --------------------------------------------------------------------------- core


class _Masks(NamedTuple):
    """Which cells count as what (see the module docstring)."""

    is_rbc: np.ndarray
    is_wbc: np.ndarray
    is_plt: np.ndarray
    wbc_as_platelet: np.ndarray
    nucleated_red: np.ndarray
    leuko: np.ndarray
    rejected: np.ndarray
    classified: np.ndarray


def _masks(cls: np.ndarray, wt: np.ndarray) -> _Masks:
    is_rbc, is_wbc, is_plt = cls == "rbc", cls == "wbc", cls == "platelet"
    wbc_as_platelet = is_wbc & (wt == PLATELET_LABEL)
    nucleated_red = is_wbc & np.isin(wt, list(NUCLEATED_RED))
    leuko = is_wbc & ~wbc_as_platelet & ~nucleated_red
    rejected = leuko & (wt == REJECT)
    classified = leuko & (wt != "") & ~rejected
    return _Masks(is_rbc, is_wbc, is_plt, wbc_as_platelet, nucleated_red, leuko, rejected, classified)


def _counts(cells: pd.DataFrame, m: _Masks, wt: np.ndarray, lab: pd.DataFrame) -> dict[str, Any]:
    n_rbc_cells = int(m.is_rbc.sum())
    if "count_weight" in cells.columns:
        # the expected number of red cells (see hemoflow.schema, count_weight)
        w = pd.to_numeric(cells["count_weight"], errors="coerce").to_numpy(dtype=np.float64)
        n_rbc = int(np.rint(np.nansum(w[m.is_rbc])))
    else:
        n_rbc = n_rbc_cells
    n_wbc = int(m.leuko.sum())
    n_diff = int(m.classified.sum())
    shown = np.where(lab["label"] != "", lab["label"], lab["group"])  # older labels keep their group
    labels, label_counts = np.unique(shown[m.is_wbc & (wt != "")], return_counts=True)
    return {
        "cells": int(len(cells)),
        "rbc": n_rbc,
        "rbc_cells": n_rbc_cells,
        "wbc": n_wbc,
        "platelet": int(m.is_plt.sum() + m.wbc_as_platelet.sum()),
        "wbc_classified": n_diff,
        "wbc_unclassified": n_wbc - n_diff - int(m.rejected.sum()),
        "wbc_not_identifiable": int(m.rejected.sum()),
        "nucleated_rbc": int(m.nucleated_red.sum()),
        "wbc_types": {str(k): int(v) for k, v in zip(labels, label_counts)},
    }


def _rbc_area_histogram(rbc_area: np.ndarray) -> dict[str, Any]:
    edges = np.asarray(RBC_AREA_BIN_EDGES)
    finite_rbc = rbc_area[np.isfinite(rbc_area)]
    hist, _ = np.histogram(finite_rbc[finite_rbc < edges[-1]], bins=edges)
    return {
        "edges_um2": [float(e) for e in edges],
        "counts": [int(c) for c in hist],
        "overflow": int((finite_rbc >= edges[-1]).sum()),
    }


def _differential(
    classified: np.ndarray, wt: np.ndarray, n_diff: int, *, specimen: str, confidence: float
) -> dict[str, Any]:
    is_ref = specimen == "peripheral_blood"
    differential: dict[str, Any] = {}
    for name in WBC_TYPES:
        members = NEUTROPHIL_LABELS if name == "neutrophil" else {name}
        k = int((classified & np.isin(wt, list(members))).sum())
        entry = _proportion(k, n_diff, confidence=confidence)
        ref = DIFFERENTIAL_RANGES.get(name)
        if is_ref and ref is not None:
            flag = str(range_flag(entry["ci_low"], entry["ci_high"], ref.low, ref.high))
            entry.update(ref_low=ref.low, ref_high=ref.high, flag=flag)
            entry["cells_to_resolve"] = (
                _resolve(k, n_diff, ref.low, ref.high, confidence) if flag == "indeterminate" else None
            )
        else:
            entry.update(ref_low=None, ref_high=None, flag=NOT_APPLICABLE, cells_to_resolve=None)
        differential[name] = entry
    return differential


def _cutoff(
    classified: np.ndarray, wt: np.ndarray, n_diff: int, members: frozenset[str], *, confidence: float
) -> dict[str, Any]:
    k = int((classified & np.isin(wt, list(members))).sum())
    entry = _proportion(k, n_diff, confidence=confidence)
    flag = str(cutoff_flag(entry["ci_low"], entry["ci_high"], BLAST_CUTOFF_PERCENT))
    entry.update(cutoff=BLAST_CUTOFF_PERCENT, flag=flag)
    entry["cells_to_resolve"] = (
        _resolve(k, n_diff, BLAST_CUTOFF_PERCENT, BLAST_CUTOFF_PERCENT, confidence)
        if flag == "indeterminate"
        else None
    )
    return entry


def _summarize(cells: pd.DataFrame, *, specimen: str, confidence: float) -> dict[str, Any]:
    _check_cells(cells)
    specimen = _check_specimen(specimen)
    cls, wt, lab = _labels(cells)
    area = pd.to_numeric(cells["area_um2"], errors="coerce").to_numpy(dtype=np.float64)
    irregular = cells["irregular"].fillna(False).astype(bool).to_numpy()
    m = _masks(cls, wt)
    counts = _counts(cells, m, wt, lab)
    n_rbc, n_wbc, n_plt = counts["rbc"], counts["wbc"], counts["platelet"]
    n_nrbc, n_diff = counts["nucleated_rbc"], counts["wbc_classified"]

    rbc_stats = _class_stats(area[m.is_rbc], irregular[m.is_rbc])
    mean, sd = rbc_stats["area_um2_mean"], rbc_stats["area_um2_sd"]
    summary: dict[str, Any] = {
        "specimen": specimen,
        "confidence": confidence,
        "counts": counts,
        "wbc_rbc_ratio": _div(n_wbc, n_rbc),
        "wbc_per_1000_rbc": _div(1000.0 * n_wbc, n_rbc),
        "platelets_per_1000_rbc": _div(1000.0 * n_plt, n_rbc),
        "nucleated_rbc_per_100_wbc": _div(100.0 * n_nrbc, n_wbc),
        "morphology": {
            "rbc": rbc_stats,
            "wbc": _class_stats(area[m.is_wbc], irregular[m.is_wbc]),
            "platelet": _class_stats(area[m.is_plt], irregular[m.is_plt]),
        },
        "rbc_indices": {
            "anisocytosis_cv_percent": _num(100.0 * sd / mean) if sd is not None and mean else None,
            "poikilocytosis_percent": rbc_stats["irregular_percent"],
        },
        "rbc_area_histogram": _rbc_area_histogram(area[m.is_rbc]),
        "differential": _differential(m.classified, wt, n_diff, specimen=specimen, confidence=confidence),
        "blast": _cutoff(m.classified, wt, n_diff, BLAST_LABELS, confidence=confidence),
        "immature": _cutoff(m.classified, wt, n_diff, IMMATURE_LABELS, confidence=confidence),
    }
    clinical = clinical_indices(lab[m.is_wbc], specimen=specimen, confidence=confidence)
    summary["blast"].update(clinical.pop("blast_review"))
    summary.update(clinical)
    return summary


def _single(cells: pd.DataFrame, column: str, given: str | None, what: str) -> str | None:
    if given is not None:
        return str(given)
    if column not in cells.columns or len(cells) == 0:
        return None
    values = pd.unique(cells[column].astype(str))
    if len(values) > 1:
        raise HemoflowError(f"{what} summary needs one {column}, got {len(values)}: {list(values)[:5]}")
    return str(values[0])


def summarize_slide(
    cells: pd.DataFrame,
    *,
    specimen: str,
    slide: str | None = None,
    patient_id: str | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, Any]:
    """Summarise the cells of one slide.

    Parameters
    ----------
    cells : pandas.DataFrame
        Cell table (``CELL_COLUMNS``; ``CLASS_COLUMNS`` and ``SLIDE_COLUMNS`` when present).
        Needs at least ``cls``, ``area_um2`` and ``irregular``.
    specimen : {"peripheral_blood", "bone_marrow"}
    slide, patient_id : str, optional
        Identity; by default read from the ``slide`` / ``patient_id`` columns, which must
        then hold one value. A key whose value is unknown (no such column, no cells) is
        left out of the summary, so a caller's own identity fields merged before it stand.
    confidence : float, optional
        Coverage of every interval, 0.95 by default.

    Returns
    -------
    dict
        JSON-serialisable summary; see the module docstring for how labels count.

    Raises
    ------
    HemoflowError
        Missing columns, unknown specimen, or several slides in ``cells``.
    """
    _check_cells(cells)
    out: dict[str, Any] = {"level": "slide"}
    for key, given in (("slide", slide), ("patient_id", patient_id)):
        value = _single(cells, key, given, "slide")
        if value is not None:
            out[key] = value
    out.update(_summarize(cells, specimen=specimen, confidence=confidence))
    return out


def summarize_patient(
    cells: pd.DataFrame,
    *,
    specimen: str,
    patient_id: str | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, Any]:
    """Summarise the pooled cells of all of one patient's slides.

    Same fields as :func:`summarize_slide`, with ``slides`` (the slide names, sorted) and
    ``slide_counts`` (rbc/wbc/platelet counts per slide) in place of ``slide``; like the
    identity keys, these two are present only when ``cells`` has rows and a ``slide`` column.
    """
    _check_cells(cells)
    out: dict[str, Any] = {"level": "patient"}
    pid = _single(cells, "patient_id", patient_id, "patient")
    if pid is not None:
        out["patient_id"] = pid
    if "slide" in cells.columns and len(cells):
        slide_col = cells["slide"].astype(str)
        slides = sorted(pd.unique(slide_col))
        out["slides"] = slides
        out["slide_counts"] = [
            {
                "slide": s,
                **{
                    k: v
                    for k, v in _summarize(cells[slide_col == s], specimen=specimen, confidence=confidence)[
                        "counts"
                    ].items()
                    if k in ("rbc", "wbc", "platelet")
                },
            }
            for s in slides
        ]
    out.update(_summarize(cells, specimen=specimen, confidence=confidence))
    return out


# --------------------------------------------------------------------------- flat tables


def flatten_summary(summary: Mapping[str, Any], *, sep: str = ".") -> dict[str, Any]:
    """One flat row from a summary: nested keys joined with ``sep``.

    Lists of strings (``slides``) are joined with ``";"``; other lists (histogram,
    per-slide counts) are left out of the row. The counts of individual classifier
    labels appear as ``counts.wbc_types.<label>``.

    Examples
    --------
    >>> flatten_summary({"a": {"b": 1, "c": None}, "slides": ["s1", "s2"]})
    {'a.b': 1, 'a.c': None, 'slides': 's1;s2'}
    """
    row: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}{sep}{k}" if prefix else str(k), v)
        elif isinstance(value, (list, tuple)):
            if all(isinstance(v, str) for v in value):
                row[prefix] = ";".join(value)
        else:
            row[prefix] = value

    walk("", summary)
    return row


def summaries_to_frames(
    slide_summaries: Iterable[Mapping[str, Any]],
    patient_summaries: Iterable[Mapping[str, Any]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Flat tables for ``slides.csv`` and ``patients.csv``, one row per summary.

    Identity columns (``slide``, ``patient_id``, ``specimen``) come first; columns
    missing from one row (a classifier label seen on one slide only) are empty.

    Examples
    --------
    >>> slides, patients = summaries_to_frames([], [])
    >>> len(slides), len(patients)
    (0, 0)
    """

    def frame(rows: Iterable[Mapping[str, Any]], first: list[str]) -> pd.DataFrame:
        df = pd.DataFrame([flatten_summary(r) for r in rows])
        lead = [c for c in first if c in df.columns]
        return df[lead + [c for c in df.columns if c not in lead]]

    return (
        frame(slide_summaries, ["slide", "patient_id", "specimen"]),
        frame(patient_summaries, ["patient_id", "slides", "specimen"]),
    )
