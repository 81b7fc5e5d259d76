"""The ledger of finished slides: resume and exactly-once outputs.

Each finished slide leaves ``<out>/slides/<slide_id>/done.json``, written *last* and
atomically, after the slide's ``cells.parquet``. It records the slide's key: a hash of
the slide's content hash, the processing parameters and the model's hash. A rerun that
finds a marker with the same key skips the slide and reuses its outputs; a different key
(new parameters, new model, changed file) reprocesses it; no marker (a crash before the
end) redoes it. A reader never sees a half-written output because every output object is
written whole (temp file + rename locally, a single PUT on S3).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["slide_key", "Ledger"]


def slide_key(content_hash: str, params: dict[str, Any], model_sha: str) -> str:
    """Stable key of one slide's processing: content + parameters + model."""
    blob = json.dumps({"content": content_hash, "params": params, "model": model_sha}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class Ledger:
    """Done-markers under an output URL (local folder or ``s3://``)."""

    def __init__(self, out_url: str):
        self.out_url = out_url.rstrip("/")

    def marker_url(self, slide_id: str) -> str:
        return f"{self.out_url}/slides/{slide_id}/done.json"

    def lookup(self, slide_id: str, key: str) -> dict[str, Any] | None:
        """The recorded entry for ``slide_id`` if it was finished with ``key``, else None."""
        from hemoflow.io import storage

        url = self.marker_url(slide_id)
        if not storage.exists(url):
            return None
        try:
            rec = json.loads(storage.read_bytes(url))
        except (ValueError, OSError):
            return None
        return rec if rec.get("key") == key else None

    def record(self, slide_id: str, key: str, summary: dict[str, Any]) -> None:
        from hemoflow.io import storage

        data = json.dumps({"key": key, "slide_id": slide_id, "summary": summary}, sort_keys=True, default=str)
        storage.atomic_write_bytes(self.marker_url(slide_id), data.encode())
