"""The Python client: start or connect to a cluster, submit jobs, follow and collect them.

>>> import hemoflow                                        # doctest: +SKIP
>>> with hemoflow.Client() as client:                      # embedded LocalCluster
...     job = client.submit("manifest.csv", out="results/")
...     job.progress()                                     # {'slides_done': 1, ...}
...     result = job.result()                              # {'job', 'slides', 'patients'}
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from hemoflow.config import JobConfig
from hemoflow.errors import JobError
from hemoflow.jobs.manifest import Manifest, load_manifest

log = logging.getLogger(__name__)

__all__ = ["Client", "Job"]


def _normalize_out(out: Any) -> str:
    """Absolute local path (workers may run elsewhere in the tree) or the URL unchanged."""
    s = os.fspath(out)
    if s.startswith("file://"):
        s = s[len("file://"):]
    if "://" in s:
        return s.rstrip("/")
    return str(Path(s).expanduser().resolve())


def _classifier_sha256(p: Path) -> str:
    """SHA-256 of a classifier: its weights and the JSON metadata beside them (labels, I/O
    settings and decision rules live there, so a change to either changes the answer)."""
    import hashlib

    h = hashlib.sha256(p.read_bytes())
    meta = p.with_suffix(".json")
    if meta.is_file():
        h.update(hashlib.sha256(meta.read_bytes()).digest())
    return h.hexdigest()


def _model_io_and_sha(path: str):
    """I/O settings and SHA-256 of a weights file (its JSON metadata sits beside it)."""
    from hemoflow.classify.config import ModelIOConfig, read_metadata
    from hemoflow.errors import ModelError

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model weights not found: {p}")
    meta = read_metadata(p.with_suffix(".json"))
    return ModelIOConfig.from_dict(meta["io"]), _classifier_sha256(p)


def _pseudonymized(m: Manifest, key: bytes) -> Manifest:
    """The manifest with patient and slide ids replaced by keyed pseudonyms."""
    import dataclasses

    from hemoflow.pseudonym import pseudonymize

    entries = tuple(
        dataclasses.replace(e, patient_id=pseudonymize(e.patient_id, key),
                            slide_id=pseudonymize(e.slide_id, key, prefix="S-"), private=True)
        for e in m.entries
    )
    return Manifest(entries, m.source)


def _default_model_sha256() -> str:
    """SHA-256 of the shipped classifier (part of every ledger key), without importing torch."""
    from hemoflow.classify.config import default_weights_path

    path = default_weights_path()
    return _classifier_sha256(path) if path.exists() else "missing"


class Job:
    """A submitted job. ``submit`` returns it at once; the work runs in the background."""

    def __init__(self, runner, client: "Client"):
        self._runner = runner
        self._client = client
        self._result: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"hemoflow-job-{runner.job_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._runner.run()
        except BaseException as exc:  # surfaced by result()
            self._error = exc

    @property
    def id(self) -> str:
        return self._runner.job_id

    @property
    def out(self) -> str:
        return self._runner.out_url

    def progress(self) -> dict[str, int]:
        """Slides and tiles done out of total, cells found so far, WBCs classified."""
        return self._runner.progress()

    def done(self) -> bool:
        return not self._thread.is_alive()

    def cancel(self) -> None:
        """Stop submitting work and cancel what is queued; finished slides stay recorded."""
        self._runner.cancel()

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the job; return ``{"job": ..., "slides": [...], "patients": [...]}``.

        Failed slides are listed in ``result["job"]["failures"]`` with their reason; the
        job raises only when it could not run at all.
        """
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"job {self.id} still running after {timeout}s")
        if self._error is not None:
            raise JobError(f"job {self.id} failed: {type(self._error).__name__}: {self._error}") from self._error
        assert self._result is not None
        return self._result

    def wait(self, poll: float = 0.5, callback=None) -> dict[str, Any]:
        """Wait, calling ``callback(progress)`` every ``poll`` seconds (progress bars)."""
        while not self.done():
            if callback is not None:
                callback(self.progress())
            time.sleep(poll)
        if callback is not None:
            callback(self.progress())
        return self.result()


class Client:
    """Start an embedded ``LocalCluster`` (default) or connect to a running scheduler.

    Parameters
    ----------
    address : str, optional
        Scheduler address (``tcp://host:8786``, ``tls://host:8786``) or a
        ``distributed`` cluster object. ``None`` starts a local cluster of processes.
    n_workers, threads_per_worker : int, optional
        Size of the embedded cluster (default: one single-threaded worker per core).
    security : distributed.security.Security, optional
        TLS settings when connecting to a TLS scheduler.
    """

    def __init__(self, address: Any = None, *, n_workers: int | None = None, threads_per_worker: int = 1,
                 processes: bool = True, security: Any = None, memory_limit: str | None = "auto",
                 dashboard_address: str | None = ":0"):
        from distributed import Client as DaskClient
        from distributed import LocalCluster

        self.cluster = None
        if address is None:
            from hemoflow.kernels._malloc import spawn_environ

            n = n_workers or max(1, os.cpu_count() or 1)
            # worker processes start with hemoflow's allocator settings (see _malloc)
            with spawn_environ():
                self.cluster = LocalCluster(n_workers=n, threads_per_worker=threads_per_worker, processes=processes,
                                            memory_limit=memory_limit, dashboard_address=dashboard_address)
            self.dask = DaskClient(self.cluster)
        elif isinstance(address, str):
            self.dask = DaskClient(address, security=security)
        else:
            self.dask = DaskClient(address)
        self._register_plugins()
        self._jobs: list[Job] = []

    def _register_plugins(self) -> None:
        from hemoflow.pipeline.plugins import KernelWarmup

        self.dask.register_plugin(KernelWarmup())
        from hemoflow.classify.config import default_weights_path
        from hemoflow.classify.infer import ModelPlugin

        if default_weights_path(".pt").exists():
            self.dask.register_plugin(ModelPlugin())

    def submit(self, manifest: Any, out: str, *, config: JobConfig | None = None, params: Any = None,
               crop: Any = None, model: str | os.PathLike | None = None, job_id: str | None = None,
               patients: Any = None, tile_resume: bool = True, pseudonymize_key: bytes | None = None) -> Job:
        """Validate ``manifest`` and the output location, then start the job.

        ``manifest`` is a manifest (CSV path or URL, DataFrame, list of dicts,
        :class:`~hemoflow.jobs.manifest.Manifest`), or, with ``patients``, a folder or
        ``s3://`` prefix whose slides are listed and matched to the patients table
        (:func:`~hemoflow.jobs.manifest.load_prefix_manifest`).

        ``model`` is a weights file (default: the shipped classifier); it must be
        readable at the same path on every worker.

        ``pseudonymize_key`` replaces every patient id and slide id by a keyed hash
        (HMAC-SHA256) before any work, so cell tables, summaries, GeoJSON, the report and
        the output paths carry pseudonyms only; ``job.json`` alone keeps the source paths,
        which a resubmission needs.

        Work already recorded under ``out`` with the same keys is not redone: finished
        slides are reused whole and, with ``tile_resume`` (default), finished tiles of
        unfinished slides too. Submitting again after a crash (of a worker, the client or
        the whole cluster) therefore resumes the job; ``job_id`` keeps its id.

        Raises :class:`~hemoflow.errors.ManifestError`,
        :class:`~hemoflow.errors.OutputNotWritableError` or
        :class:`~hemoflow.errors.ModelError` before anything is written, and
        :class:`~hemoflow.jobs.lock.OutputLockedError` when another job is running on ``out``.
        """
        from hemoflow.classify.config import default_io_config
        from hemoflow.io import storage
        from hemoflow.pipeline.graph import JobRunner
        from hemoflow.stages import CropSpec, SegmentParams

        if patients is not None:
            from hemoflow.jobs.manifest import load_prefix_manifest

            m = load_prefix_manifest(manifest, patients)
        else:
            m = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
        if pseudonymize_key is not None:
            m = _pseudonymized(m, pseudonymize_key)
        out = _normalize_out(out)
        storage.check_writable(out)
        if model is not None:
            model_path = str(Path(model).expanduser().resolve())
            io, model_sha = _model_io_and_sha(model_path)
        else:
            model_path, io, model_sha = None, default_io_config(), _default_model_sha256()
        runner = JobRunner(
            self.dask, m, out,
            config=config or JobConfig.from_env(),
            params=params or SegmentParams(),
            crop=crop or CropSpec(size=io.input_size, mpp=io.mpp),
            model_sha=model_sha,
            model_path=model_path,
            job_id=job_id,
            tile_resume=tile_resume,
        )
        from hemoflow.jobs.lock import JobLock

        runner.lock = JobLock(out, runner.job_id)
        runner.lock.acquire()  # one job per output; raises OutputLockedError naming the holder
        job = Job(runner, self)
        self._jobs.append(job)
        return job

    def resume(self, out: str, *, job_id: str | None = None) -> Job:
        """Submit again the job recorded in ``out/job.json`` (same manifest, parameters
        and model), e.g. after the process that submitted it died. It resumes from the
        ledger: only unfinished work is done. ``job_id`` guards against resuming a
        different job than intended.

        Raises :class:`~hemoflow.errors.JobError` when ``out`` holds no job record or a
        different job.
        """
        import json

        from hemoflow.io import storage
        from hemoflow.stages import CropSpec, SegmentParams

        out = _normalize_out(out)
        try:
            rec = json.loads(storage.read_bytes(f"{out}/job.json"))
        except FileNotFoundError:
            raise JobError(f"no job recorded in {storage.redact(out)} (job.json missing)") from None
        except ValueError as exc:
            raise JobError(f"job record {storage.redact(out)}/job.json is unreadable: {exc}") from None
        if "manifest" not in rec:
            raise JobError(f"job record {storage.redact(out)}/job.json predates resumable jobs")
        if job_id is not None and rec.get("job_id") != job_id:
            raise JobError(f"{storage.redact(out)} holds job {rec.get('job_id')!r}, not {job_id!r}")
        rows = [{k: ("" if v is None else v) for k, v in r.items() if k != "slide_id"} for r in rec["manifest"]]
        try:
            config = JobConfig.from_dict(rec["config"])
            params = SegmentParams.from_dict(rec["params"])
            crop = CropSpec.from_dict(rec["crop"])
        except (TypeError, ValueError, KeyError) as exc:  # written by another hemoflow version
            raise JobError(f"job record {storage.redact(out)}/job.json has settings this version cannot use "
                           f"({type(exc).__name__}: {exc}); submit the job again with its manifest") from None
        return self.submit(rows, out, config=config, params=params, crop=crop, model=rec.get("model_path"),
                           job_id=rec["job_id"], tile_resume=bool(rec.get("tile_resume", True)))

    def close(self) -> None:
        for j in self._jobs:
            if not j.done():
                j.cancel()
        self.dask.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
