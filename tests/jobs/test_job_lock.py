"""The per-output job lock: conditional create, takeover by the same job or when stale."""

from __future__ import annotations

import json
import time

import pytest

from hemoflow.jobs.lock import JobLock, OutputLockedError


@pytest.fixture(params=["local", "s3"])
def out(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "out")
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/out"


def test_one_job_per_output(out):
    from hemoflow.io import storage

    a = JobLock(out, "job-a")
    a.acquire()
    with pytest.raises(OutputLockedError, match="in use by job 'job-a'"):
        JobLock(out, "job-b").acquire()
    JobLock(out, "job-a").acquire()  # the same job (resubmitted) takes it over
    a.release()  # no longer ours: left alone
    assert json.loads(storage.read_bytes(f"{out}/job.lock"))["job_id"] == "job-a"


def test_stale_lock_is_taken_over_and_released(out):
    from hemoflow.io import storage

    JobLock(out, "dead-job").acquire()
    with pytest.raises(OutputLockedError):
        JobLock(out, "new-job", stale_s=60).acquire()
    time.sleep(0.2)
    b = JobLock(out, "new-job", stale_s=0.1)
    b.acquire()
    assert json.loads(storage.read_bytes(f"{out}/job.lock"))["job_id"] == "new-job"
    b.start_heartbeat()
    b.release()
    assert not storage.exists(f"{out}/job.lock")
