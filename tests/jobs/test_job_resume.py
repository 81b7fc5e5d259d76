"""Resume: a job interrupted mid-slide (cancelled, or its client process killed) is
submitted again and redoes exactly the tiles that have no record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

_CLIENT = textwrap.dedent('''
    import os, signal, sys, time

    def main():
        import hemoflow
        from hemoflow.config import JobConfig

        address, prefix, patients, out, model, n = sys.argv[1:]
        client = hemoflow.Client(address)
        job = client.submit(prefix, out, patients=patients, config=JobConfig(tile_size=int(os.environ["TILE"])),
                            model=model, job_id="crashed-client")
        deadline = time.monotonic() + 120
        while job.progress()["tiles_done"] < int(n) and time.monotonic() < deadline:
            time.sleep(0.02)
        print("tiles_done", job.progress()["tiles_done"], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # the client process dies mid-job

    if __name__ == "__main__":
        main()
''')


def _expected(jt, out: str) -> tuple[int, int, int]:
    """(tiles to compute, tiles to read back, slides to skip) for a resubmission now."""
    stored, done = jt.tile_records(out), jt.done_slides(out)
    open_slides = [s for s in jt.SLIDES if s not in done]
    return (sum(jt.TILES_PER_SLIDE - stored[s] for s in open_slides), sum(stored[s] for s in open_slides), len(done))


def _check_resumed(jt, res: dict, expected: tuple[int, int, int], clean_run) -> None:
    p = res["job"]["progress"]
    compute, reuse, skip = expected
    total = len(jt.SLIDES) * jt.TILES_PER_SLIDE
    assert 0 < compute < total, expected  # interrupted mid-job, some tiles were recorded
    assert (p["tiles_computed"], p["tiles_resumed"], p["slides_skipped"]) == (compute, reuse, skip), p
    jt.assert_same_result(clean_run[1], res)


def test_cancelled_job_resubmitted_redoes_only_missing_tiles(jt, hf_client, clean_run, archive, job_model, bucket,
                                                            record_property):
    out = f"s3://{bucket}/interrupted"
    prefix, patients = archive
    job = hf_client.submit(prefix, out, patients=str(patients), config=jt.job_config(), model=job_model)
    deadline = time.monotonic() + 120
    while job.progress()["tiles_done"] < 5:
        assert time.monotonic() < deadline and not job.done()
        time.sleep(0.02)
    job.cancel()
    assert job.result(timeout=120)["job"]["status"] == "cancelled"
    jt.wait_idle(hf_client)
    expected = _expected(jt, out)
    res = jt.run_job(hf_client, archive, out, job_model)
    record_property("resume_after_cancel", {"expected": expected, **res["job"]["progress"]})
    print(f"\nresume after cancel: (compute, reuse, skip) = {expected}; progress {res['job']['progress']}")
    _check_resumed(jt, res, expected, clean_run)
    jt.assert_same_cells(clean_run[0], out)


def test_client_process_killed_then_job_resumed_by_id(jt, hf_client, clean_run, archive, job_model, bucket,
                                                     tmp_path, record_property):
    from hemoflow.io import storage

    out = f"s3://{bucket}/client-killed"
    prefix, patients = archive
    script = tmp_path / "client.py"
    script.write_text(_CLIENT)
    address = hf_client.dask.scheduler.address
    env = dict(os.environ, TILE=str(jt.TILE))
    proc = subprocess.run([sys.executable, str(script), address, prefix, str(patients), out, str(job_model), "4"],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert "tiles_done" in proc.stdout
    assert json.loads(storage.read_bytes(f"{out}/job.json"))["status"] == "running"
    jt.wait_idle(hf_client)
    expected = _expected(jt, out)
    res = hf_client.resume(out, job_id="crashed-client").result(timeout=300)
    record_property("resume_after_client_kill", {"expected": expected, **res["job"]["progress"]})
    print(f"\nresume after client kill: (compute, reuse, skip) = {expected}; progress {res['job']['progress']}")
    assert res["job"]["job_id"] == "crashed-client"
    _check_resumed(jt, res, expected, clean_run)
    jt.assert_same_cells(clean_run[0], out)
    assert json.loads(storage.read_bytes(f"{out}/job.json"))["status"] == "ok"
