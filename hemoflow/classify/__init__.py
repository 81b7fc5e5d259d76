"""WBC classification: a compact CNN, its I/O contract, training and batched inference.

Importing this package does not import torch; the torch-backed names load on first use.

- :class:`ModelIOConfig`, :func:`default_io_config` (``config``, no torch)
- :class:`WbcClassifier`, :func:`load_model`, :func:`load_default_model` (``model``)
- :func:`classify_crops`, :func:`classify_images`, :func:`get_worker_model`,
  :class:`ModelPlugin` (``infer``)
- :func:`train_from_folder` (``train``)
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
    "train_from_folder": "hemoflow.classify.train",
}

__all__ = ["ModelIOConfig", "default_io_config", *sorted(_LAZY)]

if TYPE_CHECKING:  # pragma: no cover
    from hemoflow.classify.infer import ModelPlugin, classify_crops, classify_images, get_worker_model
    from hemoflow.classify.model import WbcClassifier, WbcNet, load_default_model, load_model, save_model
    from hemoflow.classify.train import train_from_folder


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'hemoflow.classify' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)
