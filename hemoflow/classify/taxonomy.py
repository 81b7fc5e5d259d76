"""The white-cell taxonomy: the labels the classifier emits and the group each belongs to.

``label`` is the finest class the model reports; ``group`` is the class of the peripheral
differential, so the five-type differential and the 8-class PBC comparison keep working:
band and segmented neutrophils are ``neutrophil``; promyelocytes, myelocytes and
metamyelocytes are ``ig`` (immature granulocytes); every other label is its own group.
The erythroid stages are one class, ``erythroblast``: no staged erythroid data exists here.
"""

from __future__ import annotations

__all__ = ["LABELS", "GROUPS", "MYELOID_SERIES", "IG_LABELS", "REJECT", "group_of"]

#: The myeloid maturation series, least to most mature.
MYELOID_SERIES: tuple[str, ...] = (
    "blast", "promyelocyte", "myelocyte", "metamyelocyte", "band_neutrophil", "segmented_neutrophil",
)
#: Immature granulocytes (the ``ig`` group).
IG_LABELS: tuple[str, ...] = ("promyelocyte", "myelocyte", "metamyelocyte")
#: The reject class: cells the model cannot place (its own class or the confidence rule).
REJECT = "not_identifiable"
#: Every label the classifier and the cell table use, in a fixed order.
LABELS: tuple[str, ...] = MYELOID_SERIES + (
    "lymphocyte", "monocyte", "eosinophil", "basophil", "erythroblast", "platelet", REJECT,
)

_GROUP = {**{lab: lab for lab in LABELS}, **{lab: "ig" for lab in IG_LABELS},
          "band_neutrophil": "neutrophil", "segmented_neutrophil": "neutrophil"}
#: Every group, in a fixed order.
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(_GROUP[lab] for lab in LABELS))


def group_of(label: str) -> str:
    """The differential group of a label (``""`` stays ``""``: an unclassified cell).

    >>> group_of("band_neutrophil"), group_of("myelocyte"), group_of("blast")
    ('neutrophil', 'ig', 'blast')
    """
    if label == "":
        return ""
    try:
        return _GROUP[label]
    except KeyError:
        raise ValueError(f"unknown cell label {label!r}; expected one of {', '.join(LABELS)}") from None
