"""Fault tolerance on a real cluster and a real object store: a worker killed with SIGKILL
mid-job, and an object store that resets connections, answers 500/503 and is slow."""

from __future__ import annotations

import os
import signal
import time


def _wait_for(job, n_tiles: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while job.progress()["tiles_done"] < n_tiles:
        assert not job.done(), job.result()
        assert time.monotonic() < deadline, job.progress()
        time.sleep(0.05)


def test_worker_killed_mid_job_gives_identical_results(jt, hf_client, clean_run, archive, job_model, bucket,
                                                      record_property):
    out = f"s3://{bucket}/worker-killed"
    prefix, patients = archive
    pids = hf_client.dask.run(os.getpid)
    job = hf_client.submit(prefix, out, patients=str(patients), config=jt.job_config(), model=job_model)
    _wait_for(job, 3)
    deadline = time.monotonic() + 30
    while True:  # kill a worker that is running a task of the job
        busy = hf_client.dask.run_on_scheduler(
            lambda dask_scheduler: {a: len(ws.processing) for a, ws in dask_scheduler.workers.items()})
        victim = max(busy, key=busy.get)
        if busy[victim] or time.monotonic() > deadline or job.done():
            break
        time.sleep(0.02)
    os.kill(pids[victim], signal.SIGKILL)
    res = job.result(timeout=300)
    p = res["job"]["progress"]
    record_property("worker_kill", {"killed_while_running": busy[victim], **p})
    print(f"\nworker kill: {busy[victim]} task(s) running on the killed worker; progress {p}")
    assert res["job"]["status"] == "ok", res["job"]["failures"]
    assert p["slides_done"] == len(jt.SLIDES) and p["slides_failed"] == 0
    jt.assert_same_result(clean_run[1], res)
    rows = jt.assert_same_cells(clean_run[0], out)
    assert sum(rows.values()) == sum(s["counts"]["cells"] for s in clean_run[1]["slides"])


def test_store_faults_are_retried_with_identical_results(jt, hf_client, clean_run, archive, job_model, bucket,
                                                        fault_proxy, record_property):
    out = f"s3://{bucket}/store-faults"
    fault_proxy.reset_stats()
    fault_proxy.enable(rate=0.08, seed=20261126, max_faults=120)
    t0 = time.perf_counter()
    try:
        res = jt.run_job(hf_client, archive, out, job_model)
    finally:
        fault_proxy.disable()
    stats = fault_proxy.stats()
    record_property("store_faults", stats)
    print(f"\nstore faults: {stats}; job {time.perf_counter() - t0:.1f}s (clean {clean_run[1]['job']['seconds']}s)")
    assert stats["faults_total"] >= 10, stats
    assert stats["retries"] >= stats["faults_total"] - stats["faults"].get("delay", 0) - 2, stats
    assert res["job"]["status"] == "ok", res["job"]["failures"]
    jt.assert_same_result(clean_run[1], res)
    jt.assert_same_cells(clean_run[0], out)
