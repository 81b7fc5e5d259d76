"""Figures of a WBC classifier on the cached sources, and the provenance sidecar record.

The evaluations are the ones ``scripts/evaluate_classifier.py`` prints, on crops cut the
way inference cuts them; every record says whether its cells were trained on or held out
for validation (:func:`hemoflow.training.splits.cell_split`).
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from scipy.stats import rankdata

from hemoflow.classify.metrics import binary_figures, confusion_matrix, macro_recall, recall_table
from hemoflow.classify.model import WbcClassifier, labels_from_probs
from hemoflow.classify.taxonomy import LABELS, REJECT, group_of
from hemoflow.training.wbc_data import CellSet

__all__ = ["ABSTAIN_BELOW", "TASKS", "evaluate_task", "evaluate_all", "blast_ranking", "provenance"]

#: The confidence rule of the shipped model: below this top probability a cell is
#: ``not_identifiable``. Fixed, not fitted: a cell whose best label has under 40 % is one
#: the network cannot place.
ABSTAIN_BELOW = 0.40

#: name -> (source, classes the truth is scored over, how labels are compared)
TASKS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "pbc_8class_group": ("pbc8", ("basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte",
                                      "neutrophil", "platelet"), "group"),
    "pbc_maturation_5class": ("pbc_full", ("promyelocyte", "myelocyte", "metamyelocyte", "band_neutrophil",
                                           "segmented_neutrophil"), "label"),
    "marrow_6class": ("marrow_mll", ("blast", "promyelocyte", "segmented_neutrophil", "lymphocyte", "monocyte",
                                     "eosinophil"), "label"),
    "marrow_7class": ("marrow_mll", ("blast", "promyelocyte", "segmented_neutrophil", "lymphocyte", "monocyte",
                                     "eosinophil", REJECT), "label"),
    "bccd_4class_group": ("bccd", ("neutrophil", "lymphocyte", "monocyte", "eosinophil"), "group"),
}


def _truth_pred(cs: CellSet, labels: list[str], how: str) -> tuple[np.ndarray, np.ndarray]:
    if how == "group":
        truth = np.array([lab if lab in ("ig", "neutrophil") else group_of(lab) for lab in cs.label])
        pred = np.array([group_of(lab) for lab in labels])
    else:
        truth, pred = np.asarray(cs.label), np.asarray(labels)
    return truth, pred


def evaluate_task(name: str, cs: CellSet, probs: np.ndarray, *, abstain_below: float = ABSTAIN_BELOW) -> dict[str, Any]:
    """Confusion matrix, macro recall and blast figures of one task on one set of cells."""
    _, classes, how = TASKS[name]
    labels = labels_from_probs(probs, LABELS, abstain_below=abstain_below)
    truth, pred = _truth_pred(cs, labels, how)
    keep = np.isin(truth, classes)
    truth, pred = truth[keep], pred[keep]
    cols = list(classes) + sorted(set(pred) - set(classes))
    out: dict[str, Any] = {
        "task": name, "n": int(keep.sum()), "classes": list(classes), "columns": cols,
        "confusion": confusion_matrix(truth, pred, cols).tolist(),
        "macro_recall": macro_recall(truth, pred, classes),
        "recall": recall_table(truth, pred, classes),
        "accuracy": round(float((truth == pred).mean()), 4) if len(truth) else float("nan"),
        "abstained": int((pred == REJECT).sum()) if REJECT not in classes else None,
    }
    if "blast" in classes:
        out["blast"] = binary_figures(truth == "blast", pred == "blast")
        out["blast_ranking"] = blast_ranking(truth == "blast", np.asarray(probs)[keep, LABELS.index("blast")])
    return out


def blast_ranking(is_blast: np.ndarray, p_blast: np.ndarray, *, precision: float = 0.90) -> dict[str, float]:
    """How well ``p_blast`` ranks blasts above other cells, whatever the threshold: average
    precision, ROC AUC (the chance that a blast outranks a non-blast, ties half), and the
    highest sensitivity any threshold reaches at ``precision`` or better.

    >>> r = blast_ranking(np.array([1, 1, 0, 0], bool), np.array([0.9, 0.4, 0.5, 0.1]))
    >>> r["roc_auc"], r["average_precision"], r["sensitivity_at_precision"]
    (0.75, 0.833, 0.5)
    """
    is_blast, p_blast = np.asarray(is_blast, bool), np.asarray(p_blast, float)
    n_pos, n_neg = int(is_blast.sum()), int((~is_blast).sum())
    if n_pos == 0 or n_neg == 0:
        return {"average_precision": float("nan"), "roc_auc": float("nan"), "sensitivity_at_precision": float("nan"),
                "precision": precision}
    order = np.argsort(-p_blast, kind="stable")
    hits = is_blast[order]
    tp = np.cumsum(hits)
    prec = tp / np.arange(1, len(hits) + 1)
    ranks = rankdata(p_blast)
    auc = (ranks[is_blast].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    ok = prec >= precision
    return {"average_precision": round(float(prec[hits].mean()), 3), "roc_auc": round(float(auc), 3),
            "sensitivity_at_precision": round(float(tp[ok].max() / n_pos) if ok.any() else 0.0, 3),
            "precision": precision}


def _stems(data: Path, folder: str) -> set[str]:
    import pandas as pd

    paths = pd.read_csv(data / folder / "labels.csv", dtype=str, keep_default_na=False)["path"]
    return {p.rsplit("/", 1)[-1].rsplit(".", 1)[0] for p in paths}


def _views(sets: Mapping[str, CellSet], data: Path) -> dict[str, CellSet]:
    """Cell sets per evaluation source. PBC is scored on full-size originals only (the
    128-px ``pbc_train`` copies are not what a user passes): ``pbc8`` the 8-class ``pbc/``
    folder, ``pbc_full`` that and ``pbc_maturation/``."""
    out = dict(sets)
    if "pbc" in sets:
        pbc = sets["pbc"]
        eight = _stems(data, "pbc")
        out["pbc8"] = pbc.take(np.isin(pbc.names, sorted(eight)))
        out["pbc_full"] = pbc.take(np.isin(pbc.names, sorted(eight | _stems(data, "pbc_maturation"))))
    return out


def evaluate_all(clf: WbcClassifier, sets: Mapping[str, CellSet], data: str | Path, *, split: str = "validation",
                 abstain_below: float = ABSTAIN_BELOW) -> dict[str, Any]:
    """Every task of :data:`TASKS` on the ``split`` cells of its source."""
    from hemoflow.training.wbc import predict_sets

    views = _views(sets, Path(data))
    res, cache = {}, {}
    for name, (src, _, _) in TASKS.items():
        if src not in views:
            continue
        cs = views[src].take(views[src].split == split)
        if src not in cache:
            cache[src] = predict_sets(clf, cs)
        res[name] = evaluate_task(name, cs, cache[src], abstain_below=abstain_below)
    return res


def provenance(clf: WbcClassifier, sets: Mapping[str, CellSet], data: str | Path, *, sources,
               info: Mapping[str, Any], argv: list[str]) -> dict[str, Any]:
    """The sidecar record: data, split, command, training settings, validation figures."""
    import torch

    val = evaluate_all(clf, sets, data)
    data = {k: {"n": int(len(v)), "train": int((v.split == "train").sum()),
                "validation": int((v.split == "validation").sum())} for k, v in sets.items()}
    return {
        "abstain_below": ABSTAIN_BELOW,
        "data": {"root": "../shared/data", "sources": list(sources), "cells": data,
                 "folders": ["pbc", "pbc_maturation", "pbc_train", "marrow_mll", "bccd"],
                 "generated": "junk: 400 non-cell images (flat, noise, smooth noise, gradient, background)"},
        "split": "hemoflow.training.splits.cell_split (pbc*, marrow_mll: 20 % by salted sha256 of the file "
                 "stem), bccd_split (BCCD fields), junk: every 5th",
        "scale": "hemoflow.classify.scale.estimate_cell_mpp per image, pooled per source and image size "
                 "(pool_estimates), resampled to io.mpp",
        "command": " ".join(["python -m hemoflow.training.wbc", *argv[1:]]),
        "training": dict(info),
        "metrics": {"kind": "validation", "intervals": "95 %: Clopper-Pearson; macro recall: bootstrap",
                    "tasks": {k: {kk: v[kk] for kk in ("n", "macro_recall", "recall", "accuracy", "blast") if kk in v}
                              for k, v in val.items()}},
        "torch": torch.__version__, "python": platform.python_version(),
    }
