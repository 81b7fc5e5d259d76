"""The one definition of every data split used for fitting, choosing and scoring.

Every script and test that needs to know whether an image was trained on, used for
choices (validation), or never touched calls one of these functions, so the kinds of data
behind a figure cannot drift apart between scripts.

Kinds
-----
``train``
    fitted on.
``validation``
    used for choices (models, parameters, thresholds), never fitted on. A set a choice was
    made by is validation, however it was split.
``test``
    touched by nothing in this repository (the held-out images kept outside
    ``shared/data``; no function here can name them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["bccd_split", "in_bccd_validation", "pbc_validation"]


def in_bccd_validation(image: str) -> bool:
    """True for the deterministic ~25 % of BCCD development fields kept out of fitting
    (first SHA-256 byte of the image name < 64). They were used for choices, so figures on
    them are validation figures."""
    return hashlib.sha256(image.encode()).digest()[0] < 64


def bccd_split(image: str) -> str:
    """``"validation"`` or ``"train"`` for one BCCD development field name."""
    return "validation" if in_bccd_validation(image) else "train"


def pbc_validation(labels: Iterable[tuple[str, str]], *, per_class: int = 30) -> set[str]:
    """sha256 of the PBC originals kept out of training: per class, the ``per_class``
    cells with the smallest sha256 (a fixed 20 % of the 150-per-class development subset).

    ``labels`` yields ``(label, sha256)`` pairs.
    """
    by_class: dict[str, list[str]] = {}
    for label, sha in labels:
        by_class.setdefault(label, []).append(sha)
    held: set[str] = set()
    for shas in by_class.values():
        held.update(sorted(shas)[:per_class])
    return held
