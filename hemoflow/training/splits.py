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

__all__ = ["bccd_split", "in_bccd_validation", "pbc_validation", "in_cell_validation", "cell_split", "CELL_SALTS"]


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


#: Salt of each single-cell collection. The three PBC folders share one: a file name is one
#: cell whichever folder holds it (``pbc_train`` keeps 128-px copies of originals that
#: ``pbc`` and ``pbc_maturation`` hold at full size), so it lands on the same side in all.
CELL_SALTS = {"pbc": "pbc", "pbc_train": "pbc", "pbc_maturation": "pbc", "marrow_mll": "marrow_mll"}


def in_cell_validation(source: str, name: str) -> bool:
    """True for the deterministic ~20 % of a single-cell collection kept out of training:
    first SHA-256 byte of ``"<salt>/<file stem>"`` < 51, with the salt of
    :data:`CELL_SALTS` (``source`` is the folder name: ``pbc``, ``pbc_train``,
    ``pbc_maturation`` or ``marrow_mll``). ``name`` may be a path; only its stem counts.

    >>> in_cell_validation("pbc", "images/ig/MY_1234.jpg") == in_cell_validation("pbc_train", "MY_1234.jpg")
    True
    """
    try:
        salt = CELL_SALTS[source]
    except KeyError:
        raise ValueError(f"unknown cell collection {source!r}; expected one of {', '.join(CELL_SALTS)}") from None
    stem = name.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return hashlib.sha256(f"{salt}/{stem}".encode()).digest()[0] < 51


def cell_split(source: str, name: str) -> str:
    """``"validation"`` or ``"train"`` for one cell image of a single-cell collection."""
    return "validation" if in_cell_validation(source, name) else "train"
