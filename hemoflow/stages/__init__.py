"""Pure image stages: preprocessing, segmentation, per-cell features, WBC crops.

These functions take numpy arrays and return arrays or cell tables; they import only
numpy, scipy, scikit-image and :mod:`hemoflow.kernels`. :func:`calibrate` measures the
image-global quantities once per slide; :func:`analyze_field` is then local, so tiles
analysed with the same :class:`Calibration` agree with the whole image.
"""

from __future__ import annotations

from hemoflow.stages.crops import CropSpec, crop_cells
from hemoflow.stages.features import irregular_rule, measure_cells
from hemoflow.stages.field import (
    Calibration,
    FieldResult,
    SegmentParams,
    analyze_field,
    calibrate,
)

__all__ = [
    "Calibration",
    "CropSpec",
    "FieldResult",
    "SegmentParams",
    "analyze_field",
    "calibrate",
    "crop_cells",
    "irregular_rule",
    "measure_cells",
]
