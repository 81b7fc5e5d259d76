"""Shipped models as data: weights and fitted coefficients, each with its provenance.

Every file in this folder that is not Python is a model or its card. Stage code loads them
through :func:`path` / :func:`coefficients` with an explicit file name, and the ledger keys
every finished tile and slide by :func:`digest` (the content of every model file plus the
package version), so an upgrade of any model recomputes the results it changes.

=========================  ===============================================================
file                       what it is
=========================  ===============================================================
``rbc_density.pt``         red-cell density network (fp32 + int8), card ``rbc_density.md``
``rbc_count_density.json`` per-basin RBC count model with density features (default)
``rbc_count_shape.json``   per-basin RBC count model on shape only (density network off)
``platelet_count.json``    per-candidate platelet model
``wbc_classifier.pt``      the 13-label white-cell classifier, sidecar ``wbc_classifier.json``
                           (data, split, command, validation figures with 95 % intervals)
``wbc_init_pbc9.pt``       the earlier 9-class PBC classifier the shipped one is fine-tuned
                           from (``hemoflow.training.wbc`` starts there), card ``.md``
=========================  ===============================================================

The coefficient files hold ``features``, ``mean``, ``std``, ``coef`` and a ``provenance``
record (the data and split it was fitted on and the command that wrote it).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MODELS_DIR", "path", "coefficients", "model_files", "digest"]

#: The folder of the shipped models.
MODELS_DIR = Path(__file__).resolve().parent


def path(name: str, root: str | os.PathLike | None = None) -> Path:
    """The file ``name`` of the model folder ``root`` (default: the shipped one).

    Raises :class:`hemoflow.errors.ModelError` (a ``FileNotFoundError``) when it is missing.
    """
    from hemoflow.errors import ModelError

    p = Path(root or MODELS_DIR) / name
    if not p.is_file():
        raise ModelError(f"model file not found: {p}")
    return p


@functools.lru_cache(maxsize=16)
def _read_coefficients(p: str, mtime_ns: int) -> dict[str, Any]:
    rec = json.loads(Path(p).read_text())
    return {"features": tuple(rec["features"]), "mean": np.asarray(rec["mean"], np.float64),
            "std": np.asarray(rec["std"], np.float64), "coef": np.asarray(rec["coef"], np.float64)}


def coefficients(name: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """``{"features", "mean", "std", "coef"}`` of a fitted linear model (``name`` without
    ``.json``); read once per process and file version."""
    p = path(f"{name}.json", root)
    return _read_coefficients(str(p), p.stat().st_mtime_ns)


#: Suffixes of the files that change a model's output (cards, ``.md``, do not).
MODEL_SUFFIXES = (".pt", ".json", ".npz")


def model_files(root: str | os.PathLike | None = None) -> list[Path]:
    """Every weights or coefficient file of the model folder, sorted by name."""
    base = Path(root or MODELS_DIR)
    return sorted(p for p in base.iterdir() if p.is_file() and p.suffix in MODEL_SUFFIXES)


@functools.lru_cache(maxsize=8)
def _digest(stamp: tuple[tuple[str, int, int], ...], version: str) -> str:
    h = hashlib.sha256(f"hemoflow {version}\n".encode())
    for name, _, _ in stamp:
        p = Path(name)
        h.update(f"{p.name}\n".encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def digest(root: str | os.PathLike | None = None) -> str:
    """SHA-256 over the package version and the name and content of every model file.

    Part of every ledger key: a rerun after an upgrade of any model, or of hemoflow
    itself, recomputes instead of returning stored results. Cached per file version, so
    it costs one stat per file after the first call.
    """
    from hemoflow import __version__

    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in model_files(root))
    return _digest(stamp, __version__)
