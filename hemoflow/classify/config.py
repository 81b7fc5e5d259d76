"""I/O settings of a WBC classifier, readable without importing torch.

A :class:`ModelIOConfig` says what a network expects: its class names, the side of the
square input crop, the pixel size (µm/px) the crop is sampled at, and the per-channel
normalisation. The pipeline cuts each WBC as a window of ``input_size * io.mpp / slide_mpp``
slide pixels around its centroid and resizes it to ``input_size``, so every model sees
the same field of view in µm whatever the scanner.

>>> from hemoflow.classify.config import ModelIOConfig
>>> io = ModelIOConfig(classes=("a", "b"), mpp=0.3)
>>> io.input_size, io.field_of_view_um
(96, 28.8)
>>> ModelIOConfig.from_dict(io.to_dict()) == io
True
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from hemoflow.errors import ModelError

__all__ = [
    "ModelIOConfig",
    "default_io_config",
    "default_weights_path",
    "DEFAULT_WEIGHTS",
    "PBC_CAMERA_MPP",
    "parse_classes",
]

#: The shipped classifier: ``wbc_classifier.pt`` and its provenance sidecar ``.json`` in
#: :mod:`hemoflow.models`.
DEFAULT_WEIGHTS = "wbc_classifier"

#: Pixel size of the PBC dataset images (CellaVision DM96), measured from the median
#: equivalent diameter of isolated background RBCs (~76 px for a ~7.5 µm RBC).
PBC_CAMERA_MPP = 0.1


def parse_classes(classes: Any) -> tuple[str, ...]:
    """Return ``classes`` as a tuple of unique, non-empty strings or raise ModelError."""
    if isinstance(classes, str) or not hasattr(classes, "__iter__"):
        raise ModelError(f"classes must be a sequence of names, got {classes!r}")
    out = tuple(classes)
    if len(out) < 2:
        raise ModelError(f"a classifier needs at least 2 classes, got {out!r}")
    for c in out:
        if not isinstance(c, str) or not c:
            raise ModelError(f"class names must be non-empty strings, got {c!r}")
    if len(set(out)) != len(out):
        raise ModelError(f"class names must be unique, got {out!r}")
    return out


def _parse_triplet(name: str, value: Any) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ModelError(f"{name} must be 3 numbers (R, G, B), got {value!r}") from None
    if len(out) != 3 or not all(math.isfinite(v) for v in out):
        raise ModelError(f"{name} must be 3 finite numbers (R, G, B), got {value!r}")
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class ModelIOConfig:
    """Input/output contract of a WBC classifier.

    Parameters
    ----------
    classes : tuple of str
        Output class names, in the order of the network's logits.
    input_size : int
        Side of the square RGB crop the network takes, in px.
    mpp : float
        Pixel size of that crop in µm/px; the crop covers ``input_size * mpp`` µm.
    mean, std : tuple of 3 floats
        Per-channel normalisation applied to crops scaled to [0, 1].
    """

    classes: tuple[str, ...]
    input_size: int = 96
    mpp: float = 0.3
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", parse_classes(self.classes))
        size = self.input_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 8:
            raise ModelError(f"input_size must be an integer >= 8, got {size!r}")
        try:
            mpp = float(self.mpp)
        except (TypeError, ValueError):
            raise ModelError(f"mpp must be a positive number, got {self.mpp!r}") from None
        if not (0 < mpp < float("inf")):
            raise ModelError(f"mpp must be a positive number, got {self.mpp!r}")
        object.__setattr__(self, "mpp", mpp)
        object.__setattr__(self, "mean", _parse_triplet("mean", self.mean))
        std = _parse_triplet("std", self.std)
        if min(std) <= 0:
            raise ModelError(f"std must be positive, got {std!r}")
        object.__setattr__(self, "std", std)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def field_of_view_um(self) -> float:
        """Side of the crop in µm."""
        return round(self.input_size * self.mpp, 6)

    def window_px(self, slide_mpp: float) -> float:
        """Side, in slide pixels, of the window that is resized to ``input_size``."""
        return self.input_size * self.mpp / float(slide_mpp)

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "input_size": self.input_size,
            "mpp": self.mpp,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelIOConfig":
        if not isinstance(d, Mapping):
            raise ModelError(f"model I/O config must be a mapping, got {type(d).__name__}")
        missing = {"classes", "input_size", "mpp", "mean", "std"} - set(d)
        if missing:
            raise ModelError(f"model I/O config lacks {sorted(missing)}")
        return cls(
            classes=tuple(d["classes"]),
            input_size=d["input_size"],
            mpp=d["mpp"],
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
        )


def default_weights_path(suffix: str = ".pt") -> Path:
    """Path of the shipped weights (``.pt``) or their provenance sidecar (``.json``)."""
    from hemoflow import models

    return models.path(DEFAULT_WEIGHTS + suffix)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Read a weights metadata JSON file; raise ModelError when missing or invalid."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"model metadata not found: {p}") from None
    except OSError as e:
        raise ModelError(f"cannot read model metadata {p}: {e}") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise ModelError(f"model metadata {p} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or "io" not in meta:
        raise ModelError(f"model metadata {p} has no 'io' section")
    return meta


def default_io_config() -> ModelIOConfig:
    """I/O settings of the shipped classifier, read from its JSON (no torch import).

    >>> io = default_io_config()
    >>> io.input_size
    80
    """
    return ModelIOConfig.from_dict(read_metadata(default_weights_path(".json"))["io"])
