"""tune_malloc: off by default, applied once per process on glibc with HEMOFLOW_MALLOC_TUNE=1."""

import subprocess
import sys

import pytest

CODE = "from hemoflow.kernels._malloc import tune_malloc; a = tune_malloc(); b = tune_malloc(); print(a, b)"


def _run(env_value):
    import os

    env = dict(os.environ)
    env.pop("HEMOFLOW_MALLOC_TUNE", None)
    if env_value is not None:
        env["HEMOFLOW_MALLOC_TUNE"] = env_value
    return subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True).stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_opt_in_and_applied_once_on_glibc():
    import ctypes.util

    assert _run(None) == ["False", "False"]
    assert _run("0") == ["False", "False"]
    on = _run("1")
    assert on[0] == on[1]  # idempotent
    if ctypes.util.find_library("c"):
        assert on == ["True", "True"]
