"""Job-level parameters as frozen dataclasses, with ``HEMOFLOW_*`` environment overrides.

Stage-level tunables (thresholds, sizes) live beside their stage
(:class:`hemoflow.stages.SegmentParams`); this module holds what the pipeline needs to
plan and run a job.

>>> from hemoflow.config import JobConfig
>>> JobConfig(tile_size=1024).tile_size
1024
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Mapping

from hemoflow.errors import HemoflowError

__all__ = ["JobConfig", "parse_bool", "parse_positive_int", "parse_positive_float"]


def parse_positive_int(name: str, value: Any) -> int:
    """Return ``value`` as an int > 0 or raise :class:`HemoflowError` naming ``name``."""
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise HemoflowError(f"{name} must be a positive integer, got {value!r}") from None
    if out <= 0 or (isinstance(value, float) and value != out):
        raise HemoflowError(f"{name} must be a positive integer, got {value!r}")
    return out


def parse_bool(name: str, value: Any) -> bool:
    """Return ``value`` as a bool (``True``/``False``, 0/1, or a string such as "1", "true",
    "no") or raise :class:`HemoflowError`."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("1", "true", "yes", "on"):
            return True
        if v in ("0", "false", "no", "off"):
            return False
    raise HemoflowError(f"{name} must be true or false, got {value!r}")


def parse_positive_float(name: str, value: Any) -> float:
    """Return ``value`` as a finite float > 0 or raise :class:`HemoflowError`."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise HemoflowError(f"{name} must be a positive number, got {value!r}") from None
    if not (out > 0 and out < float("inf")):
        raise HemoflowError(f"{name} must be a positive number, got {value!r}")
    return out


@dataclass(frozen=True)
class JobConfig:
    """How a job cuts slides into tasks and batches the classifier.

    Parameters
    ----------
    tile_size : int
        Side of a tile's core in level-0 pixels. Chosen by measurement
        (``docs/experiments/performance.md``): at 4096 the scheduler's overhead per task is a fraction
        of a percent and the halo adds about a tenth of the pixels; larger tiles cost no
        less per pixel and hold more memory.
    halo_um : float or None
        Halo around each core, in µm. ``None`` derives it from the segmentation
        parameters (largest cell diameter plus filter margins) and the crop window.
    batch_size : int
        Target number of WBC crops per classification task; crops from several tiles and
        slides are pooled until this many are waiting.
    chunk : int
        Zarr chunk side used at ingest.
    tta : bool
        Classify each WBC crop with test-time augmentation (softmax averaged over its 8
        flips and quarter turns): 8x the classification compute. Off by default for jobs
        (throughput); ``hemoflow classify`` uses it by default.
    smear_qc : bool
        Check each slide is a stained blood smear before counting it
        (:func:`hemoflow.stages.qc.smear_qc`, ``docs/qc.md``); a slide that is not is
        ``"rejected"`` with the reason, not counted.
    """

    tile_size: int = 4096
    halo_um: float | None = None
    batch_size: int = 512
    chunk: int = 1024
    tta: bool = False
    smear_qc: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "tta", parse_bool("tta", self.tta))
        object.__setattr__(self, "smear_qc", parse_bool("smear_qc", self.smear_qc))
        object.__setattr__(self, "tile_size", parse_positive_int("tile_size", self.tile_size))
        object.__setattr__(self, "batch_size", parse_positive_int("batch_size", self.batch_size))
        object.__setattr__(self, "chunk", parse_positive_int("chunk", self.chunk))
        if self.halo_um is not None:
            object.__setattr__(self, "halo_um", parse_positive_float("halo_um", self.halo_um))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "JobConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise HemoflowError(f"unknown JobConfig fields: {sorted(unknown)}")
        return cls(**dict(data))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "JobConfig":
        """Defaults, then ``HEMOFLOW_TILE_SIZE`` / ``HEMOFLOW_HALO_UM`` /
        ``HEMOFLOW_BATCH_SIZE`` / ``HEMOFLOW_CHUNK`` / ``HEMOFLOW_TTA`` / ``HEMOFLOW_SMEAR_QC``, then explicit
        ``overrides``."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            key = "HEMOFLOW_" + f.name.upper()
            if key in env and env[key] != "":
                values[f.name] = env[key]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)
