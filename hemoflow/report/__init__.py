"""Outputs for people and viewers: the HTML report, QC overlays, GeoJSON.

Imported lazily. The NGFF labels written into a slide's image Zarr are :mod:`hemoflow.io`'s
(:func:`hemoflow.io.labels.write_points_labels`): this layer writes only its own files.

- :func:`write_report` (:mod:`hemoflow.report.html`), :func:`pseudonymize` (:mod:`hemoflow.pseudonym`)
- :func:`draw_cells` (:mod:`hemoflow.report.overlays`)
- :func:`cells_to_geojson`, :func:`write_geojson`, :func:`geojson_to_cells`
  (:mod:`hemoflow.report.geojson`)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "write_report": "hemoflow.report.html",
    "pseudonymize": "hemoflow.pseudonym",
    "draw_cells": "hemoflow.report.overlays",
    "cells_to_geojson": "hemoflow.report.geojson",
    "write_geojson": "hemoflow.report.geojson",
    "geojson_to_cells": "hemoflow.report.geojson",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from hemoflow.report.geojson import cells_to_geojson, geojson_to_cells, write_geojson
    from hemoflow.pseudonym import pseudonymize
    from hemoflow.report.html import write_report
    from hemoflow.report.overlays import draw_cells


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'hemoflow.report' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)
