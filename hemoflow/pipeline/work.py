"""The work list of a job: validated slides with their patient, specimen and pixel size.

:mod:`hemoflow.jobs.manifest` reads and validates manifests into a :class:`Manifest`; the
pipeline runs one. The types live here so the pipeline never imports :mod:`hemoflow.jobs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SlideEntry", "Manifest"]


@dataclass(frozen=True)
class SlideEntry:
    """One validated manifest row."""

    slide: str  # absolute path or URL
    slide_id: str  # unique, filesystem-safe name used for outputs
    patient_id: str
    specimen: str
    mpp: float | None = None
    private: bool = False  # ids are pseudonyms: outputs must not show the source path

    def to_dict(self) -> dict[str, Any]:
        return {
            "slide": self.slide,
            "slide_id": self.slide_id,
            "patient_id": self.patient_id,
            "specimen": self.specimen,
            "mpp": self.mpp,
        }


@dataclass(frozen=True)
class Manifest:
    entries: tuple[SlideEntry, ...]
    source: str = "<memory>"

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries)

    @property
    def patients(self) -> list[str]:
        return sorted({e.patient_id for e in self.entries})
