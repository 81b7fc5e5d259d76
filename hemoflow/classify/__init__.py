"""WBC classification: a compact CNN, its I/O contract and batched inference (training
lives in :mod:`hemoflow.training`, which this package never imports).

Importing this package does not import torch; the torch-backed names load on first use.

- :class:`ModelIOConfig`, :func:`default_io_config` (``config``, no torch)
- :class:`WbcClassifier`, :func:`load_model`, :func:`load_default_model` (``model``)
- :func:`classify_crops`, :func:`crop_columns`, :func:`classify_images`,
  :func:`get_worker_model`, :class:`ModelPlugin` (``infer``)
- :func:`estimate_cell_mpp` (``scale``), the labels and groups (``taxonomy``)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hemoflow.classify.config import ModelIOConfig, default_io_config

_LAZY = {
    "WbcClassifier": "hemoflow.classify.model",
    "WbcNet": "hemoflow.classify.model",
    "load_model": "hemoflow.classify.model",
    "load_default_model": "hemoflow.classify.model",
    "save_model": "hemoflow.classify.model",
    "classify_crops": "hemoflow.classify.infer",
    "classify_images": "hemoflow.classify.infer",
    "get_worker_model": "hemoflow.classify.infer",
    "ModelPlugin": "hemoflow.classify.infer",
    "crop_columns": "hemoflow.classify.infer",
    "estimate_cell_mpp": "hemoflow.classify.scale",
}

__all__ = ["ModelIOConfig", "default_io_config", *sorted(_LAZY)]

if TYPE_CHECKING:  # pragma: no cover
    from hemoflow.classify.infer import ModelPlugin, classify_crops, classify_images, crop_columns, get_worker_model
    from hemoflow.classify.model import WbcClassifier, WbcNet, load_default_model, load_model, save_model
    from hemoflow.classify.scale import estimate_cell_mpp


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'hemoflow.classify' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)
