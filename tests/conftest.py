"""Fixtures shared by the whole suite.

- ``data_dir``: the real data in ``../shared/data`` (or ``$HEMOFLOW_DATA``); tests that
  need it are skipped with a clear reason when it is absent (they fail under ``CI=true``:
  see ``_require.require``).
- ``s3_server``: a real moto S3 server on loopback (a separate process), with the AWS
  variables pointed at it for the duration of the test session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _require import require

REPO = Path(__file__).resolve().parents[1]


def _find_data_dir() -> Path | None:
    env = os.environ.get("HEMOFLOW_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = _find_data_dir()
    require(d is not None, "real data not found: set HEMOFLOW_DATA or place it at ../shared/data")
    return d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """Start ``moto_server`` on 127.0.0.1 and yield its endpoint URL.

    Sets AWS_ENDPOINT_URL / credentials in ``os.environ`` so boto3 and s3fs (and the
    Dask worker processes spawned afterwards) talk to it.
    """
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("moto server exited at start")
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("moto server did not start within 30 s")
    try:
        with pytest.MonkeyPatch.context() as mp:  # restores the variables afterwards
            for k, v in {
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
            }.items():
                mp.setenv(k, v)
            yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture()
def s3_bucket(s3_server, request):
    """A fresh, empty bucket on the moto server; yields its name."""
    import boto3

    name = "hf-" + request.node.name.lower().replace("_", "-")[:40].strip("-") + f"-{os.getpid()}"
    name = "".join(ch for ch in name if ch.isalnum() or ch == "-")[:60]
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name
