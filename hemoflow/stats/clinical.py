"""Clinical indices of a patient's white cells: blasts, immature granulocytes, left shift, marrow.

Everything here is counted on the taxonomy of :mod:`hemoflow.classify.taxonomy`: every
classified white cell has a ``label`` (one of the 13) and a ``group`` (its class in the
peripheral differential). :func:`cell_labels` reads both from a cell table, whether it
carries ``label`` (the current classifier) or only ``wbc_type`` (older tables and
classifiers; see :data:`LEGACY_LABELS`).

Denominators
------------
- *leukocytes*: classified white cells, i.e. rows with ``cls == "wbc"`` whose group is not
  empty (unclassified), ``platelet`` or ``erythroblast`` (nucleated red cells are not
  white cells).
- *identified* white cells: leukocytes less ``not_identifiable``. Every percentage of white
  cells (blast, IG, band, the differential) is of the identified ones, so a cell the model
  cannot place neither dilutes nor inflates them. The rejected cells are counted and
  reported on their own (``not_identifiable``, as a share of all leukocytes), never hidden.

Indices (each ``count`` of ``n`` with its exact Clopper–Pearson interval, in percent)
-------------------------------------------------------------------------------------
- ``not_identifiable``: rejected cells among all leukocytes.
- ``blast`` review: ``review`` is ``"review"`` when a peripheral-blood specimen holds at
  least :data:`~hemoflow.stats.reference.BLAST_REVIEW_MIN_CELLS` blasts that the model is at
  least :data:`~hemoflow.stats.reference.BLAST_REVIEW_MIN_CONFIDENCE` sure of (``p_blast``,
  else the cell's confidence), ``"none"`` otherwise, and ``"not_applicable"`` in marrow,
  where blasts are normal. The blast percentage and its 20 % cut-off flag stay where
  :mod:`hemoflow.stats.aggregate` puts them.
- ``ig``: promyelocytes + myelocytes + metamyelocytes (group ``ig``), flagged against
  :data:`~hemoflow.stats.reference.IG_RANGE` in peripheral blood.
- ``band``: band neutrophils, the left shift, flagged against
  :data:`~hemoflow.stats.reference.BAND_RANGE` in peripheral blood. Unavailable (``None``)
  when the labels carry no neutrophil stages.
- ``marrow`` (bone-marrow specimens): the myeloid maturation table (count and percent of
  each stage of :data:`~hemoflow.classify.taxonomy.MYELOID_SERIES` among the cells of the
  series) and the M:E ratio.

M:E ratio and its interval
--------------------------
``M`` counts the granulocytic cells: the myeloid series (blast to segmented neutrophil)
plus eosinophils and basophils, the usual convention (monocytes and lymphocytes are left
out); ``E`` counts erythroblasts. Given ``M + E`` cells, ``M`` is binomial with
``p = M / (M + E)`` and the ratio is ``p / (1 - p)``, which increases with ``p``; so the
exact interval ``[pL, pU]`` of ``p`` maps to the ratio interval
``[pL / (1 - pL), pU / (1 - pU)]`` with the same coverage (the conditional exact interval
of a ratio of two Poisson counts). ``E = 0`` leaves the ratio and its upper bound
unbounded (``None``); ``M + E = 0`` leaves everything ``None``.

Examples
--------
>>> import pandas as pd
>>> cells = pd.DataFrame({"cls": ["wbc"] * 4,
...                       "label": ["blast", "myelocyte", "segmented_neutrophil", "not_identifiable"],
...                       "confidence": [0.95, 0.8, 0.9, 0.4]})
>>> out = clinical_indices(cell_labels(cells), specimen="peripheral_blood")
>>> out["ig"]["count"], out["ig"]["n"], out["not_identifiable"]["count"], out["blast_review"]["review"]
(1, 3, 1, 'review')
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from hemoflow.classify.taxonomy import LABELS, MYELOID_SERIES, REJECT, group_of
from hemoflow.errors import HemoflowError
from hemoflow.stats.intervals import DEFAULT_CONFIDENCE, cells_to_resolve, clopper_pearson
from hemoflow.stats.reference import (
    BAND_RANGE,
    BLAST_REVIEW_MIN_CELLS,
    BLAST_REVIEW_MIN_CONFIDENCE,
    IG_RANGE,
    NOT_APPLICABLE,
    ReferenceRange,
    range_flag,
)

__all__ = [
    "LEGACY_LABELS",
    "ME_MYELOID_GROUPS",
    "NOT_WHITE_GROUPS",
    "cell_labels",
    "blast_likeness",
    "clinical_indices",
]

log = logging.getLogger(__name__)

#: Labels of older classifiers and tables: ``label -> (label, group)``. ``neutrophil`` and
#: ``ig`` name a group without its maturation stage, so their label is empty.
LEGACY_LABELS: dict[str, tuple[str, str]] = {
    "neutrophil": ("", "neutrophil"),
    "ig": ("", "ig"),
    "myeloblast": ("blast", "blast"),
    **{s: ("erythroblast", "erythroblast") for s in (
        "pronormoblast", "basophilic_normoblast", "polychromatic_normoblast", "orthochromatic_normoblast")},
}
#: Groups of ``cls == "wbc"`` rows that are not white cells.
NOT_WHITE_GROUPS: tuple[str, ...] = ("platelet", "erythroblast")
#: Groups counted as myeloid in the M:E ratio.
ME_MYELOID_GROUPS: tuple[str, ...] = ("blast", "ig", "neutrophil", "eosinophil", "basophil")

_LABEL_COLUMNS = ("label", "wbc_type")
_CONFIDENCE_COLUMNS = ("confidence", "wbc_confidence")


def _text_column(cells: pd.DataFrame) -> pd.Series | None:
    for name in _LABEL_COLUMNS:
        # a numeric ``label`` is a segmentation label id, not a class
        if name in cells.columns and not pd.api.types.is_numeric_dtype(cells[name].dtype):
            return cells[name]
    return None


def _float_column(cells: pd.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    for name in names:
        if name in cells.columns:
            return pd.to_numeric(cells[name], errors="coerce").to_numpy(dtype=np.float64)
    return np.full(len(cells), np.nan)


def cell_labels(cells: pd.DataFrame) -> pd.DataFrame:
    """The taxonomy label, group, confidence and ``p_blast`` of every row of a cell table.

    Parameters
    ----------
    cells : pandas.DataFrame
        Needs ``cls``. The label comes from ``label`` (text) when present, else
        ``wbc_type``; the confidence from ``confidence``, else ``wbc_confidence``;
        ``p_blast`` from ``p_blast``. Each may be missing.

    Returns
    -------
    pandas.DataFrame
        Same index as ``cells``; columns ``label`` and ``group`` (``""`` for rows that are
        not white cells or not classified; ``group`` is recomputed from the label with
        :func:`~hemoflow.classify.taxonomy.group_of`), ``confidence`` and ``p_blast``
        (float, NaN where unknown).

    Raises
    ------
    HemoflowError
        No ``cls`` column.

    Notes
    -----
    A label outside the taxonomy and :data:`LEGACY_LABELS` (a model trained on other
    classes) is logged and kept as its own group: it counts as an identified white cell
    in no index, as the differential has always counted unknown labels.
    """
    if not isinstance(cells, pd.DataFrame) or "cls" not in cells.columns:
        raise HemoflowError("cell_labels needs a pandas DataFrame with a 'cls' column")
    is_wbc = cells["cls"].astype(str).to_numpy() == "wbc"
    raw = _text_column(cells)
    text = (raw.fillna("").astype(str).str.strip().to_numpy(dtype=object) if raw is not None
            else np.full(len(cells), "", dtype=object))
    text = np.where(is_wbc, text, "")
    label = np.empty(len(cells), dtype=object)
    group = np.empty(len(cells), dtype=object)
    for value in pd.unique(text):
        if value == "" or value in LABELS:
            pair = (value, group_of(value))
        elif value in LEGACY_LABELS:
            pair = LEGACY_LABELS[value]
        else:  # a model trained on other classes: count the cell, in no index
            log.warning("cell label %r is not in the taxonomy; it is its own group", value)
            pair = (value, value)
        sel = text == value
        label[sel], group[sel] = pair
    conf = np.where(is_wbc, _float_column(cells, _CONFIDENCE_COLUMNS), np.nan)
    p_blast = np.where(is_wbc, _float_column(cells, ("p_blast",)), np.nan)
    return pd.DataFrame({"label": label.astype(str), "group": group.astype(str),
                         "confidence": conf, "p_blast": p_blast}, index=cells.index)


def blast_likeness(labels: pd.DataFrame) -> np.ndarray:
    """How sure the model is that each cell is a blast: ``p_blast`` where known, else the
    confidence of cells labelled ``blast``; NaN for other cells without ``p_blast``."""
    p = labels["p_blast"].to_numpy(dtype=np.float64)
    fallback = np.where(labels["label"].to_numpy() == "blast", labels["confidence"].to_numpy(dtype=np.float64), np.nan)
    return np.where(np.isfinite(p), p, fallback)


# --------------------------------------------------------------------------- proportions


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _proportion(k: int, n: int, confidence: float) -> dict[str, Any]:
    lo, hi = clopper_pearson(k, n, confidence=confidence)
    return {"count": int(k), "n": int(n), "percent": _num(100.0 * k / n) if n else None,
            "ci_low": _num(100.0 * float(lo)), "ci_high": _num(100.0 * float(hi))}


def _against(entry: dict[str, Any], ref: ReferenceRange, applies: bool, confidence: float) -> dict[str, Any]:
    """Add the reference limit, the flag and the cells that would settle it."""
    if not applies or (entry["percent"] is None and entry["n"] > 0):
        return {**entry, "ref_high": ref.high, "flag": NOT_APPLICABLE, "cells_to_resolve": None}
    flag = str(range_flag(entry["ci_low"], entry["ci_high"], ref.low, ref.high))
    settle = None
    if flag == "indeterminate" and entry["n"] > 0:
        r = int(cells_to_resolve(entry["count"], entry["n"], ref.low / 100.0, ref.high / 100.0,
                                 confidence=confidence))
        settle = None if r < 0 else r
    return {**entry, "ref_high": ref.high, "flag": flag, "cells_to_resolve": settle}


# --------------------------------------------------------------------------- indices


def clinical_indices(
    labels: pd.DataFrame, *, specimen: str, confidence: float = DEFAULT_CONFIDENCE
) -> dict[str, Any]:
    """Blast review, not-identifiable share, IG %, band %, and the marrow block.

    Parameters
    ----------
    labels : pandas.DataFrame
        :func:`cell_labels` of a cell table (all rows, or only the ``wbc`` ones).
    specimen : {"peripheral_blood", "bone_marrow"}
    confidence : float, optional
        Coverage of every interval, 0.95 by default.

    Returns
    -------
    dict
        ``not_identifiable``, ``blast_review``, ``ig``, ``band`` and ``marrow`` (``None``
        unless ``specimen == "bone_marrow"``), JSON-serialisable; see the module docstring.
    """
    label = labels["label"].to_numpy(dtype=str)
    group = labels["group"].to_numpy(dtype=str)
    leuko = (group != "") & ~np.isin(group, NOT_WHITE_GROUPS)
    identified = leuko & (group != REJECT)
    n_leuko, n_id = int(leuko.sum()), int(identified.sum())
    blood = specimen == "peripheral_blood"

    likeness = blast_likeness(labels)
    is_blast = identified & (group == "blast")
    sure = is_blast & (np.nan_to_num(likeness, nan=0.0) >= BLAST_REVIEW_MIN_CONFIDENCE)
    n_sure = int(sure.sum())
    review = NOT_APPLICABLE if not blood else ("review" if n_sure >= BLAST_REVIEW_MIN_CELLS else "none")

    neutrophils = identified & (group == "neutrophil")
    staged = bool(np.all(label[neutrophils] != ""))
    band = _proportion(int((identified & (label == "band_neutrophil")).sum()), n_id, confidence)
    if not staged:
        band.update(count=None, percent=None, ci_low=None, ci_high=None)
    return {
        "not_identifiable": _proportion(int((leuko & (group == REJECT)).sum()), n_leuko, confidence),
        "blast_review": {
            "review": review,
            "confident_count": n_sure,
            "review_min_confidence": BLAST_REVIEW_MIN_CONFIDENCE,
            "review_min_cells": BLAST_REVIEW_MIN_CELLS,
        },
        "ig": _against(_proportion(int((identified & (group == "ig")).sum()), n_id, confidence),
                       IG_RANGE, blood, confidence),
        "band": {**_against(band, BAND_RANGE, blood and staged, confidence), "staged": staged},
        "marrow": _marrow(label, group, identified, confidence) if specimen == "bone_marrow" else None,
    }


def _me_ratio(m: int, e: int, confidence: float) -> dict[str, Any]:
    lo, hi = (float(v) for v in clopper_pearson(m, m + e, confidence=confidence))
    empty = m + e == 0

    def odds(p: float) -> float | None:
        return None if empty or p >= 1.0 else p / (1.0 - p)

    note = None
    if empty:
        note = "no myeloid or erythroid cells counted"
    elif e == 0:
        note = "no erythroblasts counted: the ratio has no upper bound"
    return {"myeloid": int(m), "erythroid": int(e), "ratio": None if e == 0 else m / e,
            "ci_low": odds(lo), "ci_high": odds(hi), "note": note}


def _marrow(label: np.ndarray, group: np.ndarray, identified: np.ndarray, confidence: float) -> dict[str, Any]:
    series = identified & np.isin(group, ("blast", "ig", "neutrophil"))
    unstaged = series & (label == "")
    n_series = int(series.sum())
    out: dict[str, Any] = {"series_n": n_series, "unstaged": int(unstaged.sum()),
                           "stages_available": not unstaged.any(), "stages": None, "stages_note": None}
    if unstaged.any():
        out["stages_note"] = (f"{int(unstaged.sum())} myeloid cells carry a group (neutrophil or ig) "
                              "but no maturation stage: the classifier emits no stage labels")
    else:
        out["stages"] = {s: _proportion(int((series & (label == s)).sum()), n_series, confidence)
                         for s in MYELOID_SERIES}
    m = int((identified & np.isin(group, ME_MYELOID_GROUPS)).sum())
    e = int((group == "erythroblast").sum())
    out["me_ratio"] = _me_ratio(m, e, confidence)
    return out
