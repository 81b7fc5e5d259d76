"""Local/file:// URL handling, atomic writes, writability checks, redaction."""

from __future__ import annotations

import os

import pytest

from hemoflow.errors import OutputNotWritableError, StorageError
from hemoflow.io import storage


def test_join():
    assert storage.join("s3://bucket/pre", "a.zarr", "0") == "s3://bucket/pre/a.zarr/0"
    assert storage.join("s3://bucket/pre/", "/a/") == "s3://bucket/pre/a"
    assert storage.join("s3://bucket", "x") == "s3://bucket/x"
    assert storage.join("file:///tmp/x", "y") == "file:///tmp/x/y"
    assert storage.join("/tmp/x", "y", "z") == os.path.join("/tmp/x", "y", "z")


def test_is_remote():
    assert storage.is_remote("s3://b/k")
    assert not storage.is_remote("/tmp/x") and not storage.is_remote("file:///tmp/x")
    assert not storage.is_remote("relative/dir")


def test_get_fs_local(tmp_path):
    fs, path = storage.get_fs(f"file://{tmp_path}/a")
    assert path == f"{tmp_path}/a" and fs.protocol[0] in ("file", "local")
    fs2, path2 = storage.get_fs(tmp_path / "a")
    assert path2 == path


def test_zarr_store_kinds(tmp_path):
    import zarr.storage

    st = storage.zarr_store(tmp_path / "x.zarr", "w")
    assert isinstance(st, zarr.storage.LocalStore) and not st.read_only
    assert storage.zarr_store(f"file://{tmp_path}/x.zarr", "r").read_only
    with pytest.raises(ValueError):
        storage.zarr_store(tmp_path, "q")


def test_local_bytes_roundtrip(tmp_path):
    url = str(tmp_path / "sub" / "dir" / "f.json")
    assert not storage.exists(url)
    storage.atomic_write_bytes(url, b"one")
    storage.atomic_write_bytes(url, b"two")
    assert storage.read_bytes(url) == b"two"
    assert storage.exists(url)
    storage.atomic_write_bytes(storage.join(str(tmp_path), "sub", "g"), b"3")
    assert storage.list_prefix(str(tmp_path / "sub")) == [
        storage.join(str(tmp_path / "sub"), "dir", "f.json"),
        storage.join(str(tmp_path / "sub"), "g"),
    ]
    assert storage.list_prefix(str(tmp_path / "nothing")) == []
    assert os.listdir(tmp_path / "sub" / "dir") == ["f.json"]  # no temp files left
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(str(tmp_path / "missing"))


def test_check_writable_ok(tmp_path):
    storage.check_writable(tmp_path / "new" / "deeper" / "out.zarr")
    assert os.listdir(tmp_path) == []  # probe removed, nothing created


def test_check_writable_under_a_file(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(OutputNotWritableError, match="not a folder") as ei:
        storage.check_writable(f / "sub" / "out.zarr")
    assert isinstance(ei.value, PermissionError) and isinstance(ei.value, StorageError)
    with pytest.raises(StorageError):
        storage.atomic_write_bytes(str(f / "sub" / "x"), b"1")


def test_redact():
    assert storage.redact("s3://AKIA1:s3cr3tvalue@bucket/x") == "s3://***@bucket/x"
    s = storage.redact("https://h/p?X-Amz-Signature=abc123&X-Amz-Credential=AKIA%2F&n=1")
    assert "abc123" not in s and "AKIA" not in s and "n=1" in s
    opts = {"key": "AKIAEXAMPLE1234", "secret": "wJalrXUtnFEMI/K7MDENG"}
    assert storage.redact("bad key AKIAEXAMPLE1234 / wJalrXUtnFEMI/K7MDENG", opts) == "bad key *** / ***"


def test_secret_from_env_redacted(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "verysecretvalue42")
    assert "verysecretvalue42" not in storage.redact("error: verysecretvalue42 rejected")
