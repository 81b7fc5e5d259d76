"""Job manifests: which slides, whose, what specimen, at what pixel size.

A manifest is a CSV (or a DataFrame / list of dicts) with the columns

``slide``       path or URL of the slide (relative paths resolve against the CSV's folder)
``patient_id``  non-empty, at most 128 printable characters
``specimen``    ``peripheral_blood`` or ``bone_marrow``
``mpp``         optional µm per pixel; empty means "read it from the file"

:func:`load_manifest` checks everything before any work starts and raises one
:class:`~hemoflow.errors.ManifestError` that lists every problem with its row number.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from hemoflow.errors import ManifestError, SlideNotFoundError

__all__ = ["SlideEntry", "Manifest", "load_manifest", "SPECIMENS", "REQUIRED_COLUMNS"]

SPECIMENS = ("peripheral_blood", "bone_marrow")
REQUIRED_COLUMNS = ("slide", "patient_id", "specimen")
MAX_PATIENT_ID = 128
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class SlideEntry:
    """One validated manifest row."""

    slide: str  # absolute path or URL
    slide_id: str  # unique, filesystem-safe name used for outputs
    patient_id: str
    specimen: str
    mpp: float | None = None

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


def _is_url(s: str) -> bool:
    return "://" in s and not s.startswith("file://")


def _normalise(slide: str, base: Path | None) -> str:
    if slide.startswith("file://"):
        slide = slide[len("file://") :]
    if _is_url(slide):
        return slide
    p = Path(slide).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    return str(p.resolve())


def _slide_id(slide: str) -> str:
    name = slide.rstrip("/").rsplit("/", 1)[-1]
    for ext in (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".svs", ".zarr"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    return _SAFE.sub("_", name).strip("._") or "slide"


def _read_rows(manifest: Any) -> tuple[list[dict[str, Any]], list[str], str, Path | None]:
    import pandas as pd

    if isinstance(manifest, Manifest):
        rows = [e.to_dict() for e in manifest.entries]
        return rows, list(rows[0]) if rows else list(REQUIRED_COLUMNS), manifest.source, None
    if isinstance(manifest, (str, os.PathLike)):
        path = Path(manifest)
        if not path.exists():
            raise SlideNotFoundError(f"manifest not found: {path}")
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
        except Exception as exc:  # pandas raises many kinds for malformed CSV
            raise ManifestError(f"cannot parse manifest {path}: {exc}") from None
        return df.to_dict("records"), [str(c).strip() for c in df.columns], str(path), path.parent.resolve()
    if isinstance(manifest, pd.DataFrame):
        df = manifest.astype(object).where(manifest.notna(), "")
        return df.to_dict("records"), [str(c) for c in df.columns], "<DataFrame>", None
    if isinstance(manifest, Iterable):
        rows = [dict(r) for r in manifest]
        cols = sorted({k for r in rows for k in r})
        return rows, cols, "<list>", None
    raise ManifestError(f"a manifest must be a CSV path, a DataFrame or a list of dicts, got {type(manifest).__name__}")


def load_manifest(manifest: Any, *, check_exists: bool = True) -> Manifest:
    """Validate a manifest and return it with absolute slide paths and unique slide ids.

    Raises
    ------
    ManifestError
        Missing columns, empty or duplicate slides, empty / oversized / non-printable
        patient ids, unknown specimen types, non-positive pixel sizes, slides that do not
        exist. All problems are listed, each with its row number (1 = first data row).
    """
    rows, columns, source, base = _read_rows(manifest)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ManifestError(
            f"manifest {source} lacks required column(s) {missing}; it has {columns}. "
            f"Required: {list(REQUIRED_COLUMNS)}, optional: ['mpp']"
        )
    if not rows:
        raise ManifestError(f"manifest {source} has no slides")
    problems: list[str] = []
    seen: dict[str, int] = {}
    entries: list[tuple[str, str, str, float | None]] = []
    for i, row in enumerate(rows, start=1):
        slide_raw = str(row.get("slide", "") or "").strip()
        pid = str(row.get("patient_id", "") or "").strip()
        spec = str(row.get("specimen", "") or "").strip().lower()
        mpp_raw = row.get("mpp", "")
        if not slide_raw:
            problems.append(f"row {i}: empty slide")
            continue
        slide = _normalise(slide_raw, base)
        if slide in seen:
            problems.append(f"row {i}: duplicate slide {slide_raw!r} (also row {seen[slide]})")
        seen.setdefault(slide, i)
        if not pid:
            problems.append(f"row {i}: empty patient_id")
        elif len(pid) > MAX_PATIENT_ID:
            problems.append(f"row {i}: patient_id longer than {MAX_PATIENT_ID} characters")
        elif not pid.isprintable():
            problems.append(f"row {i}: patient_id has non-printable characters")
        if spec not in SPECIMENS:
            problems.append(f"row {i}: unknown specimen {spec!r}; expected one of {list(SPECIMENS)}")
        mpp: float | None = None
        if mpp_raw is not None and str(mpp_raw).strip() not in ("", "nan", "None"):
            try:
                mpp = float(mpp_raw)
            except (TypeError, ValueError):
                mpp = float("nan")
            if not (mpp > 0 and math.isfinite(mpp)):
                problems.append(f"row {i}: mpp must be a positive number, got {mpp_raw!r}")
        entries.append((slide, pid, spec, mpp))
    if check_exists and not problems:
        for i, (slide, *_rest) in enumerate(entries, start=1):
            if not _exists(slide):
                problems.append(f"row {i}: slide not found: {slide}")
    if problems:
        raise ManifestError(f"invalid manifest {source}:\n  " + "\n  ".join(problems))
    ids: dict[str, int] = {}
    out = []
    for slide, pid, spec, mpp in entries:
        sid = _slide_id(slide)
        if sid in ids:
            sid = f"{sid}-{hashlib.sha256(slide.encode()).hexdigest()[:8]}"
        ids[sid] = 1
        out.append(SlideEntry(slide, sid, pid, spec, mpp))
    return Manifest(tuple(out), source)


def _exists(slide: str) -> bool:
    if not _is_url(slide):
        return os.path.exists(slide)
    from hemoflow.io.storage import exists

    return exists(slide)


def manifest_from_mapping(rows: Iterable[Mapping[str, Any]]) -> Manifest:
    """Convenience for the Python API: ``load_manifest(list_of_dicts)``."""
    return load_manifest(list(rows))
