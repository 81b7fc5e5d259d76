"""Job manifests: which slides, whose, what specimen, at what pixel size.

A manifest is a CSV (or a DataFrame / list of dicts) with the columns

``slide``       path or URL of the slide (relative paths resolve against the CSV's folder)
``patient_id``  non-empty, at most 128 printable characters
``specimen``    ``peripheral_blood`` or ``bone_marrow``
``mpp``         optional µm per pixel; empty means "read it from the file"

:func:`load_manifest` checks everything before any work starts and raises one
:class:`~hemoflow.errors.ManifestError` that lists every problem with its row number.

:func:`load_prefix_manifest` builds the same manifest from a folder or object-store
prefix (``s3://bucket/archive/``) whose slides are listed, and a patients CSV that maps
each slide (its name, or its key relative to the prefix) to a patient; there the
``specimen`` column is optional (default ``peripheral_blood``).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from hemoflow.errors import ManifestError, SlideNotFoundError
from hemoflow.pipeline.work import Manifest, SlideEntry

__all__ = ["SlideEntry", "Manifest", "load_manifest", "load_prefix_manifest", "list_slides", "SPECIMENS",
           "REQUIRED_COLUMNS", "SLIDE_SUFFIXES"]

SPECIMENS = ("peripheral_blood", "bone_marrow")
REQUIRED_COLUMNS = ("slide", "patient_id", "specimen")
MAX_PATIENT_ID = 128
#: File names (lower case) recognised as slides when a prefix is listed.
SLIDE_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".svs")
ZARR_SUFFIX = ".ome.zarr"
DEFAULT_SPECIMEN = "peripheral_blood"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


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
    if isinstance(manifest, str) and _is_url(manifest):
        import io

        from hemoflow.io import storage

        try:
            data = storage.read_bytes(manifest)
        except FileNotFoundError:
            raise SlideNotFoundError(f"manifest not found: {storage.redact(manifest)}") from None
        try:
            df = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, skipinitialspace=True)
        except Exception as exc:
            raise ManifestError(f"cannot parse manifest {storage.redact(manifest)}: {exc}") from None
        return df.to_dict("records"), [str(c).strip() for c in df.columns], storage.redact(manifest), None
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


# -- a prefix of slides + a patients CSV ----------------------------------------------------
def list_slides(prefix: str) -> list[str]:
    """Keys (relative to ``prefix``, ``/``-separated, sorted) of the slides below it.

    Slides are files ending in one of :data:`SLIDE_SUFFIXES` and ``.ome.zarr`` folders
    (listed once, by their root). ``prefix`` is a local folder, ``file://`` or ``s3://`` URL.
    """
    from hemoflow.io import storage

    root = prefix.rstrip("/")
    keys: set[str] = set()
    for url in storage.list_prefix(root):
        rel = url[len(root):].lstrip("/").replace(os.sep, "/") if url.startswith(root) else url
        parts = rel.split("/")
        zarr_at = next((i for i, part in enumerate(parts) if part.lower().endswith(ZARR_SUFFIX)), None)
        if zarr_at is not None:
            if zarr_at < len(parts) - 1:  # an object inside the image: the root is the slide
                keys.add("/".join(parts[: zarr_at + 1]))
            continue
        if parts[-1].lower().endswith(SLIDE_SUFFIXES) and not parts[-1].startswith("."):
            keys.add(rel)
    return sorted(keys)


def _prefix_exists(root: str, shown: str) -> bool:
    """Whether ``root`` exists, with a clear error when the store refuses or cannot be reached."""
    from hemoflow.errors import StorageError
    from hemoflow.io import storage

    fs, path = storage.get_fs(root)
    try:
        return bool(fs.exists(path))
    except PermissionError:
        raise StorageError(
            f"access denied to {shown}: check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
            "or AWS_PROFILE) and the bucket policy"
        ) from None
    except Exception as exc:  # endpoint unreachable, ...
        raise StorageError(f"cannot reach {shown}: {type(exc).__name__}: {storage.redact(exc)}") from None


def _check_key(raw: str) -> tuple[str | None, str]:
    """Normalised relative key of a patients-CSV slide, or (None, why it is refused)."""
    import posixpath

    s = raw.replace("\\", "/")
    if "://" in s or s.startswith("/") or re.match(r"^[A-Za-z]:", s):
        return None, "is absolute; give a name or a key relative to the prefix"
    if any(part == ".." for part in s.split("/")):
        return None, "contains '..' and would leave the prefix"
    key = posixpath.normpath(s)
    if key in (".", ""):
        return None, "is empty"
    return key, ""


def load_prefix_manifest(prefix: str | os.PathLike, patients: Any, *, allow_unlisted: bool = False) -> Manifest:
    """Manifest of every slide under ``prefix``, with patients from a CSV.

    Parameters
    ----------
    prefix : str
        Folder or ``s3://bucket/prefix``; slides are listed recursively (see :func:`list_slides`).
    patients : path, URL, DataFrame or list of dicts
        Columns ``slide`` (a slide's name, e.g. ``A12.svs``, or its key relative to the
        prefix, e.g. ``2024/A12.svs``), ``patient_id``, optional ``specimen`` (default
        ``peripheral_blood``) and ``mpp``.
    allow_unlisted : bool
        Process only the slides the CSV names even when others lie under the prefix.
        By default such slides are an error, so that none is silently left out.

    Raises
    ------
    ManifestError
        Nothing to process, a row whose slide is absolute, contains ``..``, matches no
        slide or several, two rows for one slide, slides without a row, and every check
        of :func:`load_manifest`. All problems are listed at once.
    """
    from hemoflow.io import storage

    root = os.fspath(prefix)
    if root.startswith("file://"):
        root = root[len("file://"):]
    if not _is_url(root):
        root = str(Path(root).expanduser().resolve())
    root = root.rstrip("/")
    shown = storage.redact(root)
    if not _prefix_exists(root, shown):
        raise ManifestError(f"slide prefix {shown} does not exist")
    keys = list_slides(root)
    if not keys:
        raise ManifestError(f"no slides ({', '.join(SLIDE_SUFFIXES + (ZARR_SUFFIX,))}) under {shown}")
    rows, columns, source, _base = _read_rows(patients)
    need = ("slide", "patient_id")
    missing = [c for c in need if c not in columns]
    if missing:
        raise ManifestError(
            f"patients table {source} lacks required column(s) {missing}; it has {columns}. "
            "Required: ['slide', 'patient_id'], optional: ['specimen', 'mpp']"
        )
    if not rows:
        raise ManifestError(f"patients table {source} has no rows")
    by_name: dict[str, list[str]] = {}
    for k in keys:
        name = k.rsplit("/", 1)[-1]
        by_name.setdefault(name, []).append(k)
        by_name.setdefault(_slide_id(k), []).append(k)
    problems: list[str] = []
    chosen: dict[str, int] = {}
    out_rows: list[dict[str, Any]] = []
    for i, row in enumerate(rows, start=1):
        raw = str(row.get("slide", "") or "").strip()
        if not raw:
            problems.append(f"row {i}: empty slide")
            continue
        key, why = _check_key(raw)
        if key is None:
            problems.append(f"row {i}: slide {raw!r} {why}")
            continue
        if key in keys:
            match = [key]
        else:
            match = sorted(set(by_name.get(key, [])))
        if not match:
            problems.append(f"row {i}: slide {raw!r} not found under {shown}")
            continue
        if len(match) > 1:
            problems.append(f"row {i}: slide {raw!r} is ambiguous under {shown}: {match[:5]}; give its relative key")
            continue
        k = match[0]
        if k in chosen:
            problems.append(f"row {i}: duplicate slide {raw!r} (also row {chosen[k]})")
            continue
        chosen[k] = i
        spec = str(row.get("specimen", "") or "").strip() or DEFAULT_SPECIMEN
        out_rows.append({"slide": f"{root}/{k}", "patient_id": row.get("patient_id", ""),
                         "specimen": spec, "mpp": row.get("mpp", "")})
    unlisted = [k for k in keys if k not in chosen]
    if unlisted and not allow_unlisted:
        more = f" and {len(unlisted) - 10} more" if len(unlisted) > 10 else ""
        problems.append(f"{len(unlisted)} slide(s) under {shown} have no row in {source}: "
                        f"{unlisted[:10]}{more}")
    if problems:
        raise ManifestError(f"invalid manifest {source} for {shown}:\n  " + "\n  ".join(problems))
    try:
        m = load_manifest(out_rows, check_exists=False)
    except ManifestError as exc:  # row numbers are those of the patients table
        raise ManifestError(str(exc).replace("<list>", f"{source} for {shown}", 1)) from None
    return Manifest(m.entries, f"{shown} + {source}")
