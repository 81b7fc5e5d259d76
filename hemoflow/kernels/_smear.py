"""The smear kernels' former home, kept so existing imports keep working.

The kernels live by concern: :mod:`._stain` (stain planes), :mod:`._distance` (chamfer
distance), :mod:`._watershed` (watershed, seeded growth), :mod:`._morphology` (disk
erosion and dilation), :mod:`._labelops` (label-image utilities) and :mod:`._growth`
(labels grown into the background, density per label). New code imports from those.
"""

from __future__ import annotations

from ._distance import chamfer_distance
from ._growth import grow_labels, grown_grid_sum, label_grid_sum
from ._labelops import (
    bbox_slices,
    label_bboxes,
    label_max,
    label_pixels,
    label_sizes,
    label_sources,
    lut_gather,
    overlay_labels,
    renumber_raster,
    ring_sums,
)
from ._morphology import dilate_disk, disk_offsets, erode_disk
from ._stain import binomial3, stain_planes
from ._watershed import _dt_watershed, _flood_order, dt_watershed, paint_nearest, select_seeds

__all__ = [
    "bbox_slices", "binomial3", "chamfer_distance", "dilate_disk", "disk_offsets", "dt_watershed", "erode_disk",
    "grow_labels", "grown_grid_sum", "label_bboxes", "label_grid_sum", "label_max", "label_pixels", "label_sizes",
    "label_sources", "lut_gather", "overlay_labels", "paint_nearest", "renumber_raster", "ring_sums", "select_seeds",
    "stain_planes", "_dt_watershed", "_flood_order",
]
