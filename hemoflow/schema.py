"""Names shared by every layer: cell classes, WBC types, the cell-table columns and the cells' colours.

A cell table is a ``dict[str, numpy.ndarray]`` of equal-length 1-D columns (like
``skimage.measure.regionprops_table``); the pipeline turns it into a pandas/arrow table
at the edges. Coordinates are in level-0 pixels of the image they came from
(``y`` = row, ``x`` = column, float64 centroids).
"""

from __future__ import annotations

# Broad cell classes found by segmentation.
CELL_CLASSES: tuple[str, ...] = ("rbc", "wbc", "platelet")

# The five mature WBC types of the peripheral differential, plus blasts.
WBC_TYPES: tuple[str, ...] = (
    "neutrophil",
    "lymphocyte",
    "monocyte",
    "eosinophil",
    "basophil",
)
BLAST = "blast"

# Reference ranges of the differential, in percent of WBCs (peripheral blood, adults).
DIFFERENTIAL_REFERENCE: dict[str, tuple[float, float]] = {
    "neutrophil": (40.0, 60.0),
    "lymphocyte": (20.0, 40.0),
    "monocyte": (2.0, 8.0),
    "eosinophil": (1.0, 4.0),
    "basophil": (0.5, 1.0),
}

# Columns every stage-level cell table carries, with their numpy dtype kind.
CELL_COLUMNS: dict[str, str] = {
    "y": "f8",  # centroid row, px
    "x": "f8",  # centroid column, px
    "cls": "U",  # one of CELL_CLASSES
    "area_px": "i8",
    "area_um2": "f8",
    "perimeter_um": "f8",
    "equivalent_diameter_um": "f8",
    "circularity": "f8",  # 4*pi*A/P^2, 1 for a disc
    "solidity": "f8",
    "eccentricity": "f8",
    "irregular": "?",  # documented rule in hemoflow.stages.features
    "bbox_y0": "i8",
    "bbox_x0": "i8",
    "bbox_y1": "i8",
    "bbox_x1": "i8",
    # How many cells the row stands for in counts: 1 except for RBCs, where it is the
    # red-cell density mass of the row's basin and the background around it (with the
    # density network; without it, the basin's expected cell count under the count model),
    # shared by the basin's parts (see hemoflow.stages.field, "Counting").
    "count_weight": "f8",
}

# Added by classification (rows with cls != "wbc" hold "" and nan). ``wbc_type`` is one
# of hemoflow.classify.taxonomy.LABELS (``not_identifiable`` when the model abstains),
# ``group`` its differential group (band and segmented -> neutrophil; promyelocyte,
# myelocyte, metamyelocyte -> ig; every other label its own), ``p_blast`` the model's
# probability of ``blast``.
CLASS_COLUMNS: dict[str, str] = {
    "wbc_type": "U",
    "wbc_confidence": "f8",
    "group": "U",
    "p_blast": "f8",
}

# Added by the pipeline.
SLIDE_COLUMNS: dict[str, str] = {
    "slide": "U",
    "patient_id": "U",
    "y_um": "f8",
    "x_um": "f8",
}


#: Outline colours per cell class, chosen to stand out on a Romanowsky-stained smear.
CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    "rbc": (0, 150, 230),
    "wbc": (255, 150, 0),
    "platelet": (0, 170, 70),
}

#: Colours of the classifier's WBC labels (QuPath classes, legends).
WBC_TYPE_COLORS: dict[str, tuple[int, int, int]] = {
    "neutrophil": (255, 150, 0),
    "lymphocyte": (120, 80, 220),
    "monocyte": (150, 100, 50),
    "eosinophil": (240, 60, 60),
    "basophil": (40, 40, 160),
    "blast": (230, 0, 230),
    "ig": (255, 210, 0),
    "erythroblast": (160, 0, 40),
    "platelet": (0, 170, 70),
}

def cell_color(cls: str, wbc_type: str = "") -> tuple[int, int, int]:
    """Colour of a cell: its WBC label's colour for classified WBCs, else its class colour."""
    if cls == "wbc" and wbc_type in WBC_TYPE_COLORS:
        return WBC_TYPE_COLORS[wbc_type]
    return CLASS_COLORS.get(cls, (128, 128, 128))
