"""Allocator settings: on by default (HEMOFLOW_MALLOC_TUNE=0 turns them off), applied once
per process on glibc, and in the environment of the workers an embedded cluster spawns."""

import os
import subprocess
import sys

import pytest

CODE = "from hemoflow.kernels._malloc import tune_malloc; a = tune_malloc(); b = tune_malloc(); print(a, b)"


def _run(env_value):
    env = dict(os.environ)
    env.pop("HEMOFLOW_MALLOC_TUNE", None)
    if env_value is not None:
        env["HEMOFLOW_MALLOC_TUNE"] = env_value
    return subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True).stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_default_on_opt_out_and_applied_once_on_glibc():
    import ctypes.util

    assert _run("0") == ["False", "False"]
    for value in (None, "1"):
        on = _run(value)
        assert on[0] == on[1]  # idempotent
        if ctypes.util.find_library("c"):
            assert on == ["True", "True"]


def test_worker_environ(monkeypatch):
    from hemoflow.errors import HemoflowError
    from hemoflow.kernels._malloc import worker_environ

    monkeypatch.delenv("HEMOFLOW_MALLOC_TUNE", raising=False)
    env = worker_environ({"OMP_NUM_THREADS": 1, "MALLOC_TRIM_THRESHOLD_": 65536})
    assert env == {"OMP_NUM_THREADS": 1, "MALLOC_ARENA_MAX": 1, "MALLOC_MMAP_THRESHOLD_": 256 << 20,
                   "MALLOC_TRIM_THRESHOLD_": 512 << 20}
    monkeypatch.setenv("HEMOFLOW_MALLOC_MMAP_MB", "64")
    monkeypatch.setenv("HEMOFLOW_MALLOC_TRIM_MB", "128")
    env = worker_environ({})
    assert env["MALLOC_MMAP_THRESHOLD_"] == 64 << 20 and env["MALLOC_TRIM_THRESHOLD_"] == 128 << 20
    monkeypatch.setenv("HEMOFLOW_MALLOC_TRIM_MB", "lots")
    with pytest.raises(HemoflowError, match="HEMOFLOW_MALLOC_TRIM_MB must be a whole number"):
        worker_environ({})
    monkeypatch.setenv("HEMOFLOW_MALLOC_TUNE", "0")
    monkeypatch.delenv("HEMOFLOW_MALLOC_TRIM_MB")
    assert worker_environ({"MALLOC_TRIM_THRESHOLD_": 65536}) == {"MALLOC_TRIM_THRESHOLD_": 65536}


def test_embedded_cluster_workers_start_with_the_settings(monkeypatch):
    """A real LocalCluster (processes): the worker's environment carries the settings,
    Dask's own pre-spawn variables are kept, a value another cluster left in os.environ does
    not win, and Dask's configuration and os.environ are restored after."""
    import hemoflow

    monkeypatch.delenv("HEMOFLOW_MALLOC_TUNE", raising=False)
    # what a plain LocalCluster earlier in this process leaves behind
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    keys = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")
    with hemoflow.Client(n_workers=1) as hc:
        got = list(hc.dask.run(lambda: {k: os.environ.get(k) for k in keys}).values())[0]
    assert got == {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": str(256 << 20),
                   "MALLOC_TRIM_THRESHOLD_": str(512 << 20), "OMP_NUM_THREADS": "1"}
    import dask

    assert "MALLOC_ARENA_MAX" not in dask.config.get("distributed.nanny.pre-spawn-environ")
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"  # restored
