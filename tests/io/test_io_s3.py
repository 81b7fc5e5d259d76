"""S3 through a real moto server on loopback (fixtures in tests/conftest.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hemoflow.errors import OutputNotWritableError, SlideReadError, StorageError
from hemoflow.io import content_hash, ingest, open_slide, storage


def test_s3_ingest_roundtrip(s3_bucket, ome_pyramid, rgb_image):
    url = f"s3://{s3_bucket}/slides/slide.zarr"
    info = ingest(ome_pyramid, url, chunk=256)
    assert info.url == url and info.n_levels == 3
    slide = open_slide(url)
    assert slide.shape == (700, 900) and slide.mpp == pytest.approx(0.25)
    np.testing.assert_array_equal(slide.read_region(0, 0, 700, 900), rgb_image)
    np.testing.assert_array_equal(slide.read_region(300, 200, 600, 700), rgb_image[300:600, 200:700])
    meta = json.loads(storage.read_bytes(storage.join(url, "zarr.json")))
    assert meta["attributes"]["hemoflow"]["complete"] is True
    assert storage.join(url, "0", "zarr.json") in storage.list_prefix(url)
    # existing image: refused, then replaced
    with pytest.raises(StorageError, match="already exists"):
        ingest(ome_pyramid, url, chunk=256)
    ingest(ome_pyramid, url, chunk=512, overwrite=True)
    assert open_slide(url).array(0).chunks == (3, 512, 512)


def test_s3_incomplete_image_refused(s3_bucket, ome_pyramid):
    url = f"s3://{s3_bucket}/s.zarr"
    ingest(ome_pyramid, url, chunk=256)
    meta = json.loads(storage.read_bytes(storage.join(url, "zarr.json")))
    meta["attributes"] = {"hemoflow": {"complete": False}}  # as during a write
    storage.atomic_write_bytes(storage.join(url, "zarr.json"), json.dumps(meta).encode())
    with pytest.raises(SlideReadError, match="incomplete"):
        open_slide(url)


def test_s3_source_and_hash(s3_bucket, ome_pyramid, rgb_image, tmp_path):
    src = f"s3://{s3_bucket}/in/pyr.ome.tif"
    storage.atomic_write_bytes(src, ome_pyramid.read_bytes())
    assert storage.exists(src)
    assert content_hash(src) == content_hash(ome_pyramid)
    info = ingest(src, tmp_path / "o.zarr", chunk=256)
    np.testing.assert_array_equal(open_slide(info.url).read_region(0, 0, 700, 900), rgb_image)


def test_s3_bytes(s3_bucket):
    url = f"s3://{s3_bucket}/ledger/a.json"
    storage.atomic_write_bytes(url, b"{}")
    assert storage.read_bytes(url) == b"{}"
    assert storage.list_prefix(f"s3://{s3_bucket}/ledger") == [url]
    assert storage.list_prefix(f"s3://{s3_bucket}/none") == []
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(f"s3://{s3_bucket}/nope")


def test_check_writable_missing_bucket(s3_server):
    secret_opts = {"key": "AKIAHEMOFLOWTEST99", "secret": "hf/Secret+Value/0123456789"}
    with pytest.raises(OutputNotWritableError, match="does not exist") as ei:
        storage.check_writable("s3://hf-no-such-bucket-x1/out.zarr", secret_opts)
    msg = str(ei.value)
    assert "hf-no-such-bucket-x1" in msg
    for s in secret_opts.values():
        assert s not in msg


def test_ingest_to_missing_bucket(s3_server, ome_pyramid):
    with pytest.raises(OutputNotWritableError, match="hf-no-such-bucket-x2"):
        ingest(ome_pyramid, "s3://hf-no-such-bucket-x2/o.zarr")


def test_credentials_in_url_never_shown(s3_server, ome_pyramid):
    url = "s3://AKIAURLKEY77:urlSecretPart99@hf-no-such-bucket-x3/o.zarr"
    with pytest.raises(OutputNotWritableError) as ei:
        ingest(ome_pyramid, url)
    msg = str(ei.value)
    assert "urlSecretPart99" not in msg and "AKIAURLKEY77" not in msg
    assert "hf-no-such-bucket-x3" in msg


def test_credentials_in_url_are_used(s3_bucket, ome_pyramid):
    url = f"s3://testing:testing@{s3_bucket}/o.zarr"  # the moto server's credentials
    info = ingest(ome_pyramid, url, chunk=256)
    assert "testing:testing" not in info.url
    assert storage.exists(f"s3://{s3_bucket}/o.zarr/zarr.json")
