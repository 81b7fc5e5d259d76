"""Jobs whose slides and outputs all live on S3 (moto's server on loopback, through the
transparent proxy), run on a real cluster of worker processes."""

from __future__ import annotations

import json
import threading

import pytest



def test_prefix_job_writes_every_output_to_s3(jt, clean_run):
    from hemoflow.io import storage

    out, result = clean_run
    assert result["job"]["status"] == "ok", result["job"]["failures"]
    p = result["job"]["progress"]
    assert p["tiles_total"] == p["tiles_computed"] == len(jt.SLIDES) * jt.TILES_PER_SLIDE
    assert [r["slide_id"] for r in result["slides"]] == list(jt.SLIDES)
    assert [q["patient_id"] for q in result["patients"]] == sorted(set(jt.SLIDES.values()))
    keys = set(jt.list_keys(out))
    for name in ("job.json", "slides.json", "patients.json", "slides.csv", "patients.csv"):
        assert f"{out}/{name}" in keys
    for sid in jt.SLIDES:
        for name in ("cells.parquet", "cells.geojson", "done.json", "plan.json", "image.ome.zarr/zarr.json"):
            assert f"{out}/slides/{sid}/{name}" in keys, name
    assert jt.tile_records(out) == {sid: jt.TILES_PER_SLIDE for sid in jt.SLIDES}
    job = json.loads(storage.read_bytes(f"{out}/job.json"))
    assert job["status"] == "ok" and job["job_id"] == result["job"]["job_id"]
    assert not [k for k in keys if ".tmp" in k]


def test_rerun_of_finished_job_does_no_image_work(jt, hf_client, clean_run, archive, job_model):
    out, first = clean_run
    again = jt.run_job(hf_client, archive, out, job_model)
    p = again["job"]["progress"]
    assert p["slides_skipped"] == len(jt.SLIDES)
    assert p["tiles_total"] == p["tiles_done"] == 0
    jt.assert_same_result(first, again)


def _copy_prefix(s3_server, bucket: str, src: str, dst: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=src + "/"):
        for o in page.get("Contents", []):
            s3.copy_object(Bucket=bucket, Key=dst + o["Key"][len(src):], CopySource={"Bucket": bucket, "Key": o["Key"]})


def test_new_model_reclassifies_without_image_work_and_new_params_redo_tiles(
        jt, hf_client, clean_run, archive, bucket, s3_server, tmp_path):
    import boto3

    from hemoflow.stages import SegmentParams

    _copy_prefix(s3_server, bucket, "clean", "changed")
    out = f"s3://{bucket}/changed"
    s3 = boto3.client("s3", endpoint_url=s3_server)
    image_meta = {sid: s3.head_object(Bucket=bucket, Key=f"changed/slides/{sid}/image.ome.zarr/zarr.json")["ETag"]
                  for sid in jt.SLIDES}
    other = jt.make_model(tmp_path / "other.pt", seed=1)
    res = jt.run_job(hf_client, archive, out, other)
    p = res["job"]["progress"]
    assert res["job"]["status"] == "ok"
    # the model touches classification only: every tile comes back from the ledger
    assert p["slides_skipped"] == 0 and p["tiles_total"] == len(jt.SLIDES) * jt.TILES_PER_SLIDE
    assert p["tiles_resumed"] == p["tiles_total"] and p["tiles_computed"] == 0
    for sid in jt.SLIDES:  # and the image was not ingested again
        assert s3.head_object(Bucket=bucket, Key=f"changed/slides/{sid}/image.ome.zarr/zarr.json")["ETag"] \
            == image_meta[sid]
    assert res["job"]["model_sha256"] != clean_run[1]["job"]["model_sha256"]

    params = SegmentParams.from_dict({**SegmentParams().to_dict(), "max_cell_diameter_um": 26.0})
    assert params != SegmentParams()
    res2 = hf_client.submit(archive[0], out, patients=str(archive[1]), config=jt.job_config(), model=other,
                            params=params).result(timeout=300)
    p2 = res2["job"]["progress"]
    assert res2["job"]["status"] == "ok"
    assert p2["tiles_computed"] == len(jt.SLIDES) * jt.TILES_PER_SLIDE and p2["tiles_resumed"] == 0


def test_two_jobs_at_once_keep_their_outputs_apart(jt, hf_client, clean_run, archive, job_model, bucket):
    outs = [f"s3://{bucket}/concurrent-a", f"s3://{bucket}/concurrent-b"]
    prefix, patients = archive
    jobs = [hf_client.submit(prefix, o, patients=str(patients), config=jt.job_config(), model=job_model) for o in outs]
    assert jobs[0].id != jobs[1].id
    seen = set()

    def watch():  # keys of both jobs' tasks carry their job id
        for _ in range(50):
            for k in hf_client.dask.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks)):
                seen.add(str(k))
            if all(j.done() for j in jobs):
                return
            threading.Event().wait(0.1)

    t = threading.Thread(target=watch)
    t.start()
    results = [j.result(timeout=300) for j in jobs]
    t.join()
    for out, res in zip(outs, results):
        assert res["job"]["progress"]["tiles_computed"] == len(jt.SLIDES) * jt.TILES_PER_SLIDE
        jt.assert_same_result(clean_run[1], res)
        jt.assert_same_cells(clean_run[0], out)
        assert all(k.startswith(out + "/") for k in jt.list_keys(out))
    a_keys = {k[len(outs[0]):] for k in jt.list_keys(outs[0])}
    b_keys = {k[len(outs[1]):] for k in jt.list_keys(outs[1])}
    assert a_keys == b_keys  # each job wrote its own full set, nothing into the other's prefix
    ours = [k for k in seen if jobs[0].id in k or jobs[1].id in k]
    assert ours and not [k for k in ours if jobs[0].id in k and jobs[1].id in k]


def test_cancel_stops_the_job_and_records_it(jt, hf_client, archive, job_model, bucket):
    from hemoflow.io import storage

    out = f"s3://{bucket}/cancelled"
    prefix, patients = archive
    job = hf_client.submit(prefix, out, patients=str(patients), config=jt.job_config(), model=job_model)
    job.cancel()
    res = job.result(timeout=120)
    assert res["job"]["status"] == "cancelled"
    assert json.loads(storage.read_bytes(f"{out}/job.json"))["status"] == "cancelled"
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(f"{out}/slides.json")


def test_bad_slide_fails_alone_and_is_reported(jt, hf_client, archive, job_model, bucket, local_slides):
    from hemoflow.io import storage

    src = f"s3://{bucket}/with-bad"
    storage.atomic_write_bytes(f"{src}/s0.ome.tif", (local_slides / "s0.ome.tif").read_bytes())
    storage.atomic_write_bytes(f"{src}/broken.tif", b"II*\x00" + b"\x00" * 64)
    patients = [{"slide": "s0.ome.tif", "patient_id": "P1"}, {"slide": "broken.tif", "patient_id": "P9"}]
    out = f"s3://{bucket}/with-bad-out"
    res = hf_client.submit(src, out, patients=patients, config=jt.job_config(), model=job_model).result(timeout=300)
    assert res["job"]["status"] == "partial"
    failures = {f["slide_id"]: f["error"] for f in res["job"]["failures"]}
    assert list(failures) == ["broken"] and "SlideReadError" in failures["broken"]
    job = json.loads(storage.read_bytes(f"{out}/job.json"))
    assert [f["slide_id"] for f in job["failures"]] == ["broken"]
    slides = {r["slide_id"]: r for r in res["slides"]}
    assert slides["s0"]["status"] == "ok" and slides["broken"]["status"] == "failed"


def test_second_job_on_the_same_output_is_refused_while_the_first_runs(jt, hf_client, archive, job_model, bucket):
    from hemoflow.io import storage
    from hemoflow.jobs.lock import OutputLockedError

    out = f"s3://{bucket}/locked"
    prefix, patients = archive
    first = hf_client.submit(prefix, out, patients=str(patients), config=jt.job_config(), model=job_model)
    try:
        assert storage.exists(f"{out}/job.lock")
        with pytest.raises(OutputLockedError, match=f"in use by job '{first.id}'"):
            hf_client.submit(prefix, out, patients=str(patients), config=jt.job_config(), model=job_model)
    finally:
        first.cancel()
        first.result(timeout=120)
    assert not storage.exists(f"{out}/job.lock")  # released at the end
