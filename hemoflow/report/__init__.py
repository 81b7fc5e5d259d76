"""Outputs for people and viewers: the HTML report, QC overlays, GeoJSON, NGFF labels.

Imported lazily (``zarr`` is only loaded when :func:`write_points_labels` is used):

- :func:`write_report`, :func:`pseudonymize` (:mod:`hemoflow.report.html`)
- :func:`draw_cells` (:mod:`hemoflow.report.overlays`)
- :func:`cells_to_geojson`, :func:`write_geojson`, :func:`geojson_to_cells`
  (:mod:`hemoflow.report.geojson`)
- :func:`write_points_labels` (:mod:`hemoflow.report.labels`)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "write_report": "hemoflow.report.html",
    "pseudonymize": "hemoflow.report.html",
    "draw_cells": "hemoflow.report.overlays",
    "cells_to_geojson": "hemoflow.report.geojson",
    "write_geojson": "hemoflow.report.geojson",
    "geojson_to_cells": "hemoflow.report.geojson",
    "write_points_labels": "hemoflow.report.labels",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from hemoflow.report.geojson import cells_to_geojson, geojson_to_cells, write_geojson
    from hemoflow.report.html import pseudonymize, write_report
    from hemoflow.report.labels import write_points_labels
    from hemoflow.report.overlays import draw_cells


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'hemoflow.report' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)
