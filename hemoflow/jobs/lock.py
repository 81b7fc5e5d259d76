"""One job at a time per output location: ``<out>/job.lock``.

Two jobs writing the same output would interleave their objects (one job's
``cells.parquet`` under the other's ``done.json``). A job therefore takes
``<out>/job.lock`` before writing anything, with a conditional write: ``If-None-Match: *``
on S3 (one PUT that fails when the object exists), ``O_CREAT | O_EXCL`` locally. The lock
records the job id and a heartbeat that the running job refreshes; it is released when the
job ends.

A lock is taken over when it belongs to the same job id (a resubmission after the client
died: :meth:`hemoflow.jobs.client.Client.resume`) or when its heartbeat is older than
``stale_s`` (its job is gone). Stores that ignore conditional writes still work; they just
lose the protection.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from typing import Any

from hemoflow.errors import JobError

log = logging.getLogger(__name__)

__all__ = ["JobLock", "OutputLockedError"]


class OutputLockedError(JobError):
    """Another job is running on the same output location."""


class JobLock:
    """The lock of ``out_url`` for ``job_id``; use :meth:`acquire`, :meth:`start_heartbeat`, :meth:`release`."""

    def __init__(self, out_url: str, job_id: str, *, stale_s: float = 120.0, heartbeat_s: float = 30.0):
        self.url = f"{out_url.rstrip('/')}/job.lock"
        self.job_id = job_id
        self.stale_s = stale_s
        self.heartbeat_s = heartbeat_s
        self.token = secrets.token_hex(8)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self) -> bytes:
        return json.dumps({"job_id": self.job_id, "token": self.token, "host": socket.gethostname(),
                           "pid": os.getpid(), "heartbeat": time.time()}).encode()

    def _create(self) -> bool:
        """Write the lock unless it exists; True when written."""
        from hemoflow.io import storage

        data = self._record()
        if not storage.is_remote(self.url):
            path = os.path.abspath(self.url[len("file://"):] if self.url.startswith("file://") else self.url)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        fs, path = storage.get_fs(self.url)
        try:
            fs.pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
        return True

    def _read(self) -> dict[str, Any] | None:
        from hemoflow.io import storage

        try:
            rec = json.loads(storage.read_bytes(self.url))
        except FileNotFoundError:
            return None
        except ValueError:
            return {}
        return rec if isinstance(rec, dict) else {}

    def _write(self) -> None:
        from hemoflow.io import storage

        storage.atomic_write_bytes(self.url, self._record())

    def acquire(self) -> None:
        """Take the lock or raise :class:`OutputLockedError` naming the job that holds it."""
        from hemoflow.io import storage

        for _ in range(3):
            if self._create():
                return
            cur = self._read()
            if cur is None:  # released meanwhile
                continue
            if cur.get("token") == self.token:  # our own write, its answer lost and retried
                return
            age = time.time() - float(cur.get("heartbeat") or 0)
            if cur.get("job_id") == self.job_id or age > self.stale_s:
                log.info("taking over the lock of %s from job %s (heartbeat %.0fs ago)",
                         storage.redact(self.url), cur.get("job_id"), age)
                self._write()
                return
            raise OutputLockedError(
                f"output {storage.redact(self.url.rsplit('/', 1)[0])} is in use by job {cur.get('job_id')!r} "
                f"(heartbeat {age:.0f}s ago); use another output, wait for that job, or resume it with "
                f"job_id={cur.get('job_id')!r}. A lock whose heartbeat is older than {self.stale_s:.0f}s is "
                "taken over."
            )
        raise OutputLockedError(f"could not take the lock {storage.redact(self.url)}")

    def start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(self.heartbeat_s):
                try:
                    self._write()
                except Exception as exc:  # a store hiccup must not stop the job
                    log.warning("lock heartbeat failed: %s", exc)

        self._thread = threading.Thread(target=beat, name=f"hemoflow-lock-{self.job_id}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat and delete the lock if it is still ours."""
        from hemoflow.io import storage

        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            cur = self._read()
            if cur is not None and cur.get("token") == self.token:
                fs, path = storage.get_fs(self.url)
                fs.rm_file(path)
        except Exception as exc:  # the lock goes stale on its own
            log.warning("could not release %s: %s", storage.redact(self.url), exc)
