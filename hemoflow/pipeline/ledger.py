"""The ledger of finished work: resume and exactly-once outputs.

Three kinds of record live under ``<out>/slides/<slide_id>/``, each one object written
whole (temp file + rename locally, a single PUT on S3), so a reader sees it complete or
not at all:

``done.json``
    Written *last*, after the slide's ``cells.parquet``. It records the slide's key: a
    hash of the slide's content hash, the processing parameters and the model's hash. A
    rerun that finds a marker with the same key skips the slide and reuses its outputs; a
    different key (new parameters, new model, changed file) reprocesses it; no marker (a
    crash before the end) redoes it.
``plan.json``
    The prepared slide (ingested image, pixel size, calibration, tile grid) under its
    *work key*: content hash and the parameters that shape tile results, but not the
    model. A rerun with the same work key skips ingest and calibration.
``tiles/<index>.npz``
    One finished tile: its owned cells (columns with their exact dtypes) and WBC crops,
    under a tile key derived from the work key and the tile's window. A job that stops
    mid-slide redoes only the tiles without a record; a new model reclassifies stored
    tiles without reading a pixel.

Keys change with anything that changes the answer, so stale records are never reused;
records of other keys are simply overwritten.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["slide_key", "work_key", "tile_key", "Ledger"]

_KEY_FIELD = "__key__"
_CROPS_FIELD = "__crops__"
_COL_PREFIX = "col:"


def _hash(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def slide_key(content_hash: str, params: dict[str, Any], model_sha: str) -> str:
    """Stable key of one slide's processing: content + parameters + model."""
    return _hash({"content": content_hash, "params": params, "model": model_sha})


def work_key(content_hash: str, params: dict[str, Any]) -> str:
    """Key of what tile results depend on: content + segmentation/crop/tiling parameters."""
    return _hash({"content": content_hash, "tile-params": params})


def tile_key(work: str, index: int, window: tuple[int, int, int, int]) -> str:
    """Key of one tile's result within a prepared slide."""
    return _hash({"work": work, "index": int(index), "window": [int(v) for v in window]})


class Ledger:
    """Records of finished work under an output URL (local folder or ``s3://``)."""

    def __init__(self, out_url: str):
        self.out_url = out_url.rstrip("/")

    # -- slides ------------------------------------------------------------------
    def slide_url(self, slide_id: str) -> str:
        return f"{self.out_url}/slides/{slide_id}"

    def marker_url(self, slide_id: str) -> str:
        return f"{self.slide_url(slide_id)}/done.json"

    def _read_json(self, url: str) -> dict[str, Any] | None:
        from hemoflow.io import storage

        try:
            rec = json.loads(storage.read_bytes(url))
        except FileNotFoundError:
            return None
        except ValueError:  # a foreign or damaged record: not ours, redo the work
            return None
        return rec if isinstance(rec, dict) else None

    def lookup(self, slide_id: str, key: str) -> dict[str, Any] | None:
        """The recorded entry for ``slide_id`` if it was finished with ``key``, else None."""
        rec = self._read_json(self.marker_url(slide_id))
        return rec if rec is not None and rec.get("key") == key else None

    def record(self, slide_id: str, key: str, summary: dict[str, Any]) -> None:
        from hemoflow.io import storage

        data = json.dumps({"key": key, "slide_id": slide_id, "summary": summary}, sort_keys=True, default=str)
        storage.atomic_write_bytes(self.marker_url(slide_id), data.encode())

    # -- prepared slides ---------------------------------------------------------
    def plan_url(self, slide_id: str) -> str:
        return f"{self.slide_url(slide_id)}/plan.json"

    def lookup_plan(self, slide_id: str, key: str) -> dict[str, Any] | None:
        rec = self._read_json(self.plan_url(slide_id))
        return rec if rec is not None and rec.get("key") == key else None

    def record_plan(self, slide_id: str, key: str, plan: dict[str, Any]) -> None:
        from hemoflow.io import storage

        data = json.dumps({"key": key, **plan}, sort_keys=True)
        storage.atomic_write_bytes(self.plan_url(slide_id), data.encode())

    # -- tiles -------------------------------------------------------------------
    def tile_url(self, slide_id: str, index: int) -> str:
        return f"{self.slide_url(slide_id)}/tiles/{int(index)}.npz"

    def stored_tiles(self, slide_id: str) -> frozenset[int]:
        """Indices of the tiles with a record (of any key): one listing per slide."""
        from hemoflow.io import storage

        found = set()
        for url in storage.list_prefix(f"{self.slide_url(slide_id)}/tiles"):
            name = url.rsplit("/", 1)[-1]
            stem, _, ext = name.partition(".")
            if ext == "npz" and stem.isdigit():
                found.add(int(stem))
        return frozenset(found)

    def record_tile(self, slide_id: str, index: int, key: str, table: dict[str, np.ndarray],
                    crops: np.ndarray) -> int:
        """Write one tile's cells and crops as a single object; return its size in bytes."""
        from hemoflow.io import storage

        arrays: dict[str, np.ndarray] = {_KEY_FIELD: np.array(key), _CROPS_FIELD: np.ascontiguousarray(crops)}
        for name, col in table.items():
            a = np.asarray(col)
            if a.dtype == object:  # strings: stored as fixed-width unicode, read back as object
                a = a.astype(str)
                name = f"{name}:object"
            arrays[_COL_PREFIX + name] = a
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        data = buf.getvalue()
        storage.atomic_write_bytes(self.tile_url(slide_id, index), data)
        return len(data)

    def lookup_tile(self, slide_id: str, index: int, key: str) -> tuple[dict[str, np.ndarray], np.ndarray] | None:
        """``(table, crops)`` of a tile finished with ``key``, else None."""
        from hemoflow.io import storage

        try:
            data = storage.read_bytes(self.tile_url(slide_id, index))
        except FileNotFoundError:
            return None
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                if str(z[_KEY_FIELD]) != key:
                    return None
                crops = z[_CROPS_FIELD]
                table: dict[str, np.ndarray] = {}
                for name in z.files:
                    if not name.startswith(_COL_PREFIX):
                        continue
                    col = name[len(_COL_PREFIX):]
                    a = z[name]
                    if col.endswith(":object"):
                        col, a = col[: -len(":object")], a.astype(object)
                    table[col] = a
        except (ValueError, OSError, KeyError) as exc:  # damaged record: redo the tile
            log.warning("ignoring unreadable tile record %s: %s", self.tile_url(slide_id, index), exc)
            return None
        return table, crops
