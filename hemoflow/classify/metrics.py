"""Classification metrics as plain dicts (JSON-ready): accuracy, macro-F1, recall, confusion.

>>> m = classification_metrics(["a", "b", "b"], ["a", "b", "a"], classes=("a", "b"))
>>> m["accuracy"], m["confusion"]
(0.6667, [[1, 0], [1, 1]])
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["confusion_matrix", "classification_metrics", "format_metrics", "proportion", "macro_recall",
           "binary_figures", "recall_table"]


def confusion_matrix(truth: Sequence[str], pred: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Counts [true class, predicted class]; labels outside ``classes`` are ignored."""
    index = {c: i for i, c in enumerate(classes)}
    cm = np.zeros((len(classes), len(classes)), np.int64)
    for t, p in zip(truth, pred):
        if t in index and p in index:
            cm[index[t], index[p]] += 1
    return cm


def classification_metrics(
    truth: Sequence[str], pred: Sequence[str], *, classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1 (over classes present in ``truth``), per-class recall/precision
    and the confusion matrix (rows: truth, columns: prediction), rounded to 4 digits."""
    truth, pred = list(truth), list(pred)
    if len(truth) != len(pred):
        raise ValueError(f"truth and pred differ in length: {len(truth)} vs {len(pred)}")
    cm = confusion_matrix(truth, pred, classes)
    n = len(truth)
    correct = sum(t == p for t, p in zip(truth, pred))
    recall, precision, f1 = {}, {}, {}
    for i, c in enumerate(classes):
        support = cm[i].sum()
        if support == 0:
            continue
        r = cm[i, i] / support
        col = cm[:, i].sum()
        pr = cm[i, i] / col if col else 0.0
        recall[c] = round(float(r), 4)
        precision[c] = round(float(pr), 4)
        f1[c] = float(2 * pr * r / (pr + r)) if pr + r else 0.0
    return {
        "n": n,
        "accuracy": round(correct / n, 4) if n else float("nan"),
        "macro_f1": round(float(np.mean(list(f1.values()))), 4) if f1 else float("nan"),
        "recall": recall,
        "precision": precision,
        "classes": list(classes),
        "confusion": cm.tolist(),
    }


def format_metrics(m: dict[str, Any], title: str = "") -> str:
    """Human-readable block: headline figures, per-class recall, confusion matrix."""
    classes = m["classes"]
    rows = [i for i, c in enumerate(classes) if c in m["recall"] or any(r[i] for r in m["confusion"])]
    short = [classes[i][:6] for i in rows]
    lines = []
    if title:
        lines.append(title)
    lines.append(f"  n={m['n']}  accuracy={m['accuracy']:.4f}  macro-F1={m['macro_f1']:.4f}")
    lines.append("  recall: " + ", ".join(f"{c}={r:.3f}" for c, r in m["recall"].items()))
    lines.append("  confusion (rows=truth, cols=pred):")
    lines.append("  " + " " * 13 + " ".join(f"{s:>6}" for s in short))
    for i in rows:
        lines.append(f"  {classes[i][:12]:>12} " + " ".join(f"{m['confusion'][i][j]:>6d}" for j in rows))
    return "\n".join(lines)


def _cp(k: int, n: int) -> tuple[float, float]:
    from hemoflow.stats.intervals import clopper_pearson

    lo, hi = clopper_pearson(k, n)
    return round(float(lo), 4), round(float(hi), 4)


def proportion(k: int, n: int) -> dict[str, Any]:
    """``{"value", "ci_low", "ci_high", "k", "n"}``: ``k / n`` with its 95 % Clopper–Pearson interval."""
    lo, hi = _cp(int(k), int(n))
    return {"value": round(k / n, 4) if n else float("nan"), "ci_low": lo, "ci_high": hi, "k": int(k), "n": int(n)}


def macro_recall(truth: Sequence[str], pred: Sequence[str], classes: Sequence[str], *, n_boot: int = 2000,
                 seed: int = 0) -> dict[str, Any]:
    """Mean recall over ``classes`` (those present in ``truth``) with a 95 % percentile
    bootstrap interval (cells resampled with replacement, stratified by true class).

    >>> m = macro_recall(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b"], n_boot=200)
    >>> m["value"]
    0.75
    """
    t, p = np.asarray(truth), np.asarray(pred)
    present = [c for c in classes if (t == c).any()]
    if not present:
        return {"value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    hits = [(p[t == c] == c).astype(np.float64) for c in present]
    value = float(np.mean([h.mean() for h in hits]))
    rng = np.random.default_rng(seed)
    boot = np.mean([[h[rng.integers(0, len(h), len(h))].mean() for h in hits] for _ in range(n_boot)], axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"value": round(value, 4), "ci_low": round(float(lo), 4), "ci_high": round(float(hi), 4),
            "n": int(sum(len(h) for h in hits)), "classes": present}


def binary_figures(truth_pos: Sequence[bool], pred_pos: Sequence[bool]) -> dict[str, dict[str, Any]]:
    """Sensitivity, specificity and precision of a yes/no call, each with its 95 %
    Clopper–Pearson interval."""
    t, p = np.asarray(truth_pos, bool), np.asarray(pred_pos, bool)
    tp, fn = int((t & p).sum()), int((t & ~p).sum())
    tn, fp = int((~t & ~p).sum()), int((~t & p).sum())
    return {"sensitivity": proportion(tp, tp + fn), "specificity": proportion(tn, tn + fp),
            "precision": proportion(tp, tp + fp)}


def recall_table(truth: Sequence[str], pred: Sequence[str], classes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per-class recall with 95 % Clopper–Pearson intervals (classes present in ``truth``)."""
    t, p = np.asarray(truth), np.asarray(pred)
    return {c: proportion(int(((t == c) & (p == c)).sum()), int((t == c).sum())) for c in classes if (t == c).any()}
