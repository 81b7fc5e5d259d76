"""URL handling for local folders, ``file://`` URLs and ``s3://bucket/prefix``.

Every function takes a URL string (or :class:`os.PathLike`) and an optional
``storage_options`` mapping that is passed to fsspec (for S3: ``key``, ``secret``,
``endpoint_url``, ``client_kwargs``, ``anon``...). Without options, S3 access uses the
standard AWS configuration: the ``AWS_*`` environment variables (``AWS_ENDPOINT_URL``
included), ``~/.aws/config`` and instance roles, as botocore resolves them.

Error messages never contain credentials: URLs are shown with any ``user:pass@`` part
and key-like query parameters replaced by ``***``, and known secret values are masked.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import secrets
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hemoflow.errors import OutputNotWritableError, StorageError

__all__ = [
    "is_remote",
    "get_fs",
    "zarr_store",
    "join",
    "check_writable",
    "atomic_write_bytes",
    "read_bytes",
    "exists",
    "list_prefix",
    "open_stream",
    "redact",
]

logger = logging.getLogger(__name__)

_SECRET_QUERY = re.compile(
    r"(?i)([?&](?:[a-z0-9_\-]*(?:key|secret|token|signature|credential|password|sig)[a-z0-9_\-]*)=)[^&#\s]*"
)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/@\s]+@")
_BARE_USERINFO = re.compile(r"(?<![\w/*])[^\s/@'\":]+:[^\s/@'\"]+@")
_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")
_SECRET_OPTS = ("secret", "key", "token", "aws_secret_access_key", "aws_access_key_id",
                "aws_session_token", "password")


def _secret_values(storage_options: Mapping[str, Any] | None = None) -> list[str]:
    vals = [os.environ.get(k, "") for k in _SECRET_ENV]
    if storage_options:
        for k, v in storage_options.items():
            if k in _SECRET_OPTS and isinstance(v, str):
                vals.append(v)
        ck = storage_options.get("client_kwargs") or {}
        for k, v in ck.items():
            if k in _SECRET_OPTS and isinstance(v, str):
                vals.append(v)
    # Very short values (e.g. test placeholders of 1-3 chars) would mask ordinary words.
    return sorted({v for v in vals if len(v) >= 4}, key=len, reverse=True)


def redact(text: object, storage_options: Mapping[str, Any] | None = None) -> str:
    """Return ``str(text)`` with credentials removed.

    Removes ``user:pass@`` from URLs, the values of key-like query parameters
    (``?X-Amz-Signature=...``) and any occurrence of the AWS secrets found in the
    environment or in ``storage_options``.

    >>> redact("s3://AKIA:hunter22@bucket/x?token=abc&n=1")
    's3://***@bucket/x?token=***&n=1'
    """
    s = str(text)
    s = _USERINFO.sub(r"\1***@", s)
    s = _BARE_USERINFO.sub("***@", s)
    s = _SECRET_QUERY.sub(r"\1***", s)
    for v in _secret_values(storage_options):
        s = s.replace(v, "***")
    return s


def _to_str(url: str | os.PathLike[str]) -> str:
    if isinstance(url, os.PathLike):
        return os.fspath(url)
    if not isinstance(url, str):
        raise TypeError(f"expected a URL string or path, got {type(url).__name__}")
    return url


def _scheme(url: str) -> str:
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.\-]*)://", url)
    return m.group(1).lower() if m else ""


def is_remote(url: str | os.PathLike[str]) -> bool:
    """True for object-store URLs (``s3://``), False for local paths and ``file://``."""
    return _scheme(_to_str(url)) not in ("", "file")


def _local_path(url: str) -> str:
    if _scheme(url) == "file":
        return urllib.parse.urlsplit(url).path or "/"
    return url


def _s3_options(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    opts: dict[str, Any] = dict(storage_options or {})
    # botocore reads AWS_ENDPOINT_URL itself; passing it explicitly as well makes the
    # cached filesystem instance follow the variable when it changes in-process.
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint and "endpoint_url" not in opts and "endpoint_url" not in (
        opts.get("client_kwargs") or {}
    ):
        opts["endpoint_url"] = endpoint
    opts.setdefault("use_listings_cache", False)
    retry = s3_retry_settings()
    # botocore's "standard" retry mode: transient errors (connection resets, timeouts,
    # 500/502/503/504, throttling) are retried with exponential backoff and jitter,
    # capped at 20 s between attempts. s3fs adds its own retries on top for read
    # timeouts and truncated bodies.
    cfg = dict(opts.get("config_kwargs") or {})
    cfg.setdefault("retries", {"max_attempts": retry["max_attempts"], "mode": "standard"})
    cfg.setdefault("connect_timeout", retry["connect_timeout"])
    cfg.setdefault("read_timeout", retry["read_timeout"])
    opts["config_kwargs"] = cfg
    return opts


#: Defaults of :func:`s3_retry_settings`, each overridable by an environment variable.
S3_RETRY_DEFAULTS = {
    "max_attempts": ("HEMOFLOW_S3_MAX_ATTEMPTS", 10),
    "s3fs_retries": ("HEMOFLOW_S3_RETRIES", 5),
    "connect_timeout": ("HEMOFLOW_S3_CONNECT_TIMEOUT", 10.0),
    "read_timeout": ("HEMOFLOW_S3_READ_TIMEOUT", 60.0),
}


def s3_retry_settings() -> dict[str, Any]:
    """Retry and timeout settings of S3 clients (bounded: attempts and timeouts are finite).

    ``max_attempts`` (``HEMOFLOW_S3_MAX_ATTEMPTS``, default 10) is botocore's total
    attempts per request in ``standard`` mode; ``s3fs_retries`` (``HEMOFLOW_S3_RETRIES``,
    default 5) are s3fs's own retries around a call; ``connect_timeout`` and
    ``read_timeout`` are in seconds.
    """
    out: dict[str, Any] = {}
    for name, (env, default) in S3_RETRY_DEFAULTS.items():
        raw = os.environ.get(env, "")
        try:
            val = type(default)(raw) if raw else default
        except ValueError:
            val = default
        out[name] = val if val > 0 else default
    return out


def _s3(
    url: str, storage_options: Mapping[str, Any] | None, asynchronous: bool = False
) -> tuple[Any, str]:
    import s3fs

    opts = _s3_options(storage_options)
    path = url.split("://", 1)[1].rstrip("/")
    bucket, sep, rest = path.partition("/")
    if "@" in bucket:  # s3://KEY:SECRET@bucket/...: credentials in the URL
        cred, bucket = bucket.rsplit("@", 1)
        key, _, secret = cred.partition(":")
        opts.setdefault("key", urllib.parse.unquote(key))
        opts.setdefault("secret", urllib.parse.unquote(secret))
        path = bucket + sep + rest
    if asynchronous:
        opts["asynchronous"] = True
    retries = opts.pop("retries", None) or s3_retry_settings()["s3fs_retries"]
    fs = s3fs.S3FileSystem(**opts)
    fs.retries = int(retries)  # s3fs's own retries around each call (a class attribute)
    return fs, path


def get_fs(
    url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> tuple[Any, str]:
    """Return ``(fsspec filesystem, path)`` for ``url``.

    Local paths and ``file://`` URLs give a ``LocalFileSystem`` and an absolute path;
    ``s3://bucket/prefix`` gives an ``s3fs.S3FileSystem`` and ``"bucket/prefix"``.
    """
    u = _to_str(url)
    scheme = _scheme(u)
    if scheme in ("", "file"):
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem(), os.path.abspath(_local_path(u))
    if scheme in ("s3", "s3a"):
        return _s3(u, storage_options)
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(u, **dict(storage_options or {}))
    except (ImportError, ValueError) as e:
        raise StorageError(f"unsupported URL {redact(u)!r}: {redact(e)}") from None
    return fs, path


def zarr_store(
    url: str | os.PathLike[str],
    mode: str = "r",
    storage_options: Mapping[str, Any] | None = None,
) -> Any:
    """Return a zarr v3 store for ``url``: ``LocalStore`` or ``FsspecStore``.

    ``mode`` is ``"r"`` (read only) or ``"w"``/``"a"``/``"r+"`` (writable).
    """
    import zarr.storage

    if mode not in ("r", "r+", "a", "w", "w-"):
        raise ValueError(f"mode must be one of 'r', 'r+', 'a', 'w', 'w-', got {mode!r}")
    read_only = mode == "r"
    u = _to_str(url)
    if not is_remote(u):
        return zarr.storage.LocalStore(os.path.abspath(_local_path(u)), read_only=read_only)
    if _scheme(u) in ("s3", "s3a"):
        fs, path = _s3(u, storage_options, asynchronous=True)
        return zarr.storage.FsspecStore(fs, path=path, read_only=read_only)
    return zarr.storage.FsspecStore.from_url(
        u, storage_options=dict(storage_options or {}), read_only=read_only
    )


def join(url: str | os.PathLike[str], *parts: str) -> str:
    """Join path components onto a URL or local path.

    >>> join("s3://bucket/pre", "a.zarr", "0")
    's3://bucket/pre/a.zarr/0'
    """
    u = _to_str(url)
    clean = [p.strip("/") for p in parts if p and p.strip("/")]
    if _scheme(u) == "":
        return os.path.join(u, *clean)
    base = u.rstrip("/")
    if base.endswith(":/"):  # "s3://" with an empty path
        base += "/"
        return base + posixpath.join(*clean) if clean else base
    return posixpath.join(base, *clean)


def _nearest_existing(path: str) -> str:
    p = Path(path)
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    return str(p)


def check_writable(
    url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> None:
    """Raise :class:`~hemoflow.errors.OutputNotWritableError` unless ``url`` can be written.

    Local: the nearest existing ancestor must be a writable folder (a probe file is
    created and removed there; missing folders below it are not created). S3: a small
    probe object is written under the prefix and deleted, which detects a missing
    bucket, denied access and an unreachable endpoint.
    """
    u = _to_str(url)
    shown = redact(u, storage_options)
    if not is_remote(u):
        path = os.path.abspath(_local_path(u))
        anc = _nearest_existing(path)
        if not os.path.isdir(anc):
            raise OutputNotWritableError(
                f"output {shown!r} is not writable: {anc!r} exists and is not a folder"
            )
        probe = os.path.join(anc, f".hemoflow-probe-{secrets.token_hex(6)}")
        try:
            with open(probe, "xb"):
                pass
            os.unlink(probe)
        except OSError as e:
            raise OutputNotWritableError(
                f"output {shown!r} is not writable: cannot create files in {anc!r} "
                f"({e.strerror or type(e).__name__})"
            ) from None
        return
    fs, path = get_fs(u, storage_options)
    probe = posixpath.join(path, f".hemoflow-probe-{secrets.token_hex(6)}")
    try:
        fs.pipe_file(probe, b"")
        fs.rm_file(probe)
    except FileNotFoundError:
        bucket = path.split("/", 1)[0]
        raise OutputNotWritableError(
            f"output {shown!r} is not writable: bucket {bucket!r} does not exist"
        ) from None
    except PermissionError:
        raise OutputNotWritableError(
            f"output {shown!r} is not writable: access denied (check the credentials "
            "and the bucket policy)"
        ) from None
    except Exception as e:  # endpoint unreachable, bad credentials, ...
        raise OutputNotWritableError(
            f"output {shown!r} is not writable: {type(e).__name__}: "
            f"{redact(e, storage_options)}"
        ) from None


def atomic_write_bytes(
    url: str | os.PathLike[str], data: bytes, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Write ``data`` to ``url`` so that readers see either the old or the new content.

    Local: a temporary file in the same folder, ``fsync``, then ``os.replace``.
    S3: a single PUT, which is atomic per object.
    """
    u = _to_str(url)
    if not is_remote(u):
        path = os.path.abspath(_local_path(u))
        folder = os.path.dirname(path)
        try:
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except PermissionError as e:
            raise OutputNotWritableError(f"cannot write {redact(u)!r}: {e.strerror}") from None
        except OSError as e:
            raise StorageError(f"cannot write {redact(u)!r}: {e.strerror or e}") from None
        return
    fs, path = get_fs(u, storage_options)
    try:
        fs.pipe_file(path, bytes(data))
    except PermissionError:
        raise OutputNotWritableError(f"cannot write {redact(u)!r}: access denied") from None
    except FileNotFoundError:
        raise OutputNotWritableError(
            f"cannot write {redact(u)!r}: bucket does not exist"
        ) from None
    except Exception as e:
        raise StorageError(
            f"cannot write {redact(u)!r}: {type(e).__name__}: {redact(e, storage_options)}"
        ) from None


def read_bytes(
    url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> bytes:
    """Return the whole content of ``url``; ``FileNotFoundError`` when it is missing."""
    u = _to_str(url)
    fs, path = get_fs(u, storage_options)
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file or object: {redact(u)!r}") from None
    except IsADirectoryError:
        raise StorageError(f"{redact(u)!r} is a folder, not a file") from None
    except Exception as e:
        raise StorageError(
            f"cannot read {redact(u)!r}: {type(e).__name__}: {redact(e, storage_options)}"
        ) from None


def open_stream(
    url: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None = None,
    block_size: int = 8 << 20,
) -> Iterator[bytes]:
    """Yield the content of ``url`` in blocks of ``block_size`` bytes (streamed)."""
    u = _to_str(url)
    fs, path = get_fs(u, storage_options)
    try:
        f = fs.open(path, "rb", block_size=block_size) if is_remote(u) else open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file or object: {redact(u)!r}") from None
    with f:
        while True:
            b = f.read(block_size)
            if not b:
                return
            yield b


def exists(url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> bool:
    """True if a file, folder, object or non-empty prefix exists at ``url``."""
    u = _to_str(url)
    fs, path = get_fs(u, storage_options)
    try:
        return bool(fs.exists(path))
    except Exception as e:
        raise StorageError(
            f"cannot check {redact(u)!r}: {type(e).__name__}: {redact(e, storage_options)}"
        ) from None


def list_prefix(
    url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> list[str]:
    """Return the sorted URLs of every file/object below ``url`` (recursive).

    A missing prefix gives an empty list. Returned URLs use the same form as ``url``
    (local path, ``file://`` or ``s3://``).
    """
    u = _to_str(url)
    fs, path = get_fs(u, storage_options)
    try:
        if not fs.exists(path) or fs.isfile(path):
            return []
        found = fs.find(path)
    except FileNotFoundError:
        return []
    except Exception as e:
        raise StorageError(
            f"cannot list {redact(u)!r}: {type(e).__name__}: {redact(e, storage_options)}"
        ) from None
    out = []
    root = path.rstrip("/")
    for p in sorted(found):
        rel = p[len(root):].lstrip("/") if p.startswith(root) else p
        out.append(join(u, rel))
    return out
