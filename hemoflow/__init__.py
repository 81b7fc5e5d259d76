"""hemoflow: distributed, high-throughput blood-smear slide processing.

Public API (imported lazily, so ``import hemoflow`` has no side effects and is fast):

- :class:`hemoflow.Client` – start or connect to a Dask cluster and submit jobs.
- :class:`hemoflow.Job` – a submitted job: ``progress()``, ``cancel()``, ``result()``.
- :func:`hemoflow.analyze_image` – count and classify the cells of one microscope field.
- :func:`hemoflow.ingest` – convert a TIFF / OME-TIFF / SVS slide to an OME-Zarr pyramid.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Client": "hemoflow.jobs.client",
    "Job": "hemoflow.jobs.client",
    "analyze_image": "hemoflow.analyze",
    "ingest": "hemoflow.io.ingest",
    "HemoflowError": "hemoflow.errors",
}

__all__ = sorted(_LAZY) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from hemoflow.analyze import analyze_image
    from hemoflow.errors import HemoflowError
    from hemoflow.io.ingest import ingest
    from hemoflow.jobs.client import Client, Job


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'hemoflow' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)
