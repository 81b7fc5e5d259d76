"""Run the exact ``dask`` commands the chart renders, on loopback, with TLS.

The scheduler and GPU-pool worker containers of a TLS release are rendered with the Helm
SDK; their command, arguments and environment are taken verbatim, with only in-cluster
names, ports and mount paths mapped to local ones. The test then checks what the
Kubernetes objects rely on: the probes' ``/health`` endpoints answer, a client with a
certificate from the chart's CA connects over ``tls://``, a plain ``tcp://`` client does
not, and the GPU pool's worker advertises the Dask resource ``GPU=1``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from _require import require_import

# ImportError, or the bundled libhelm_c failing to load: a skip here, a failure in CI
helm = require_import("helm_python", "pip install helm-python-sdk", module=True)

x509 = require_import("cryptography.x509", "cryptography is needed to make test certs", module=True)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "hemoflow"
VALUES = {
    "tls": {"enabled": True, "existingSecret": "hemoflow-tls"},
    "workers": {"pools": {"cpu": {"enabled": False}, "gpu": {"enabled": True}}},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_certs(d: Path) -> None:
    """A CA and one certificate it signs, as cert-manager would put them in the Secret."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    now = dt.datetime.now(dt.UTC)

    def cert(subject, issuer, key, signer, *, ca: bool):
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            b = b.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("hf-hemoflow-scheduler")]), critical=False
            )
        return b.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("hemoflow-test-ca", "hemoflow-test-ca", ca_key, ca_key, ca=True)
    leaf = cert("hemoflow", "hemoflow-test-ca", key, ca_key, ca=False)
    pem = serialization.Encoding.PEM
    (d / "ca.crt").write_bytes(ca.public_bytes(pem))
    (d / "tls.crt").write_bytes(leaf.public_bytes(pem))
    (d / "tls.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _containers() -> tuple[dict, dict, dict]:
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(VALUES, name="hf", namespace="slides")
    docs = [
        d
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
        for d in yaml.safe_load_all(text)
        if d
    ]
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    sched = deps["hf-hemoflow-scheduler"]["spec"]["template"]["spec"]["containers"][0]
    worker = deps["hf-hemoflow-worker-gpu"]["spec"]["template"]["spec"]["containers"][0]
    return cm["data"], sched, worker


def _localize(container: dict, mapping: dict[str, str], pod: str) -> list[str]:
    """Map in-cluster names to local ones and expand ``$(VAR)`` as the kubelet does."""
    defined = {e["name"]: e.get("value") for e in container["env"]}
    defined["POD_NAME"] = pod  # the fieldRef metadata.name
    argv = container["command"] + container["args"]
    out = []
    for a in argv:
        for old, new in mapping.items():
            a = a.replace(old, new)
        a = re.sub(r"\$\((\w+)\)", lambda m: defined.get(m.group(1)) or m.group(0), a)
        out.append(a)
    assert out[0] == "dask"
    return [sys.executable, "-m", "dask", *out[1:]]


def _env(container: dict, config: dict[str, str], tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(config)
    env.update({"HOME": str(tmp), "NUMBA_CACHE_DIR": str(tmp / "numba")})
    env["MPLCONFIGDIR"] = str(tmp / "mpl")
    env.pop("HEMOFLOW_SCRATCH", None)
    for e in container["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
    return env


def _wait_health(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200 and r.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"/health on {port} did not answer within {timeout}s")


def test_rendered_commands_form_a_tls_cluster(tmp_path):
    from distributed import Client
    from distributed.security import Security

    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    _write_certs(tls_dir)
    config, sched_c, worker_c = _containers()

    ports = {name: _free_port() for name in ("sched", "dash", "worker", "nanny", "wdash")}
    mapping = {
        "/etc/hemoflow/tls": str(tls_dir),
        "/scratch": str(tmp_path / "scratch"),
        "hf-hemoflow-scheduler:8786": f"127.0.0.1:{ports['sched']}",
        "--port=8786": f"--port={ports['sched']}",
        "--dashboard-address=:8787": f"--dashboard-address=127.0.0.1:{ports['dash']}",
        "--worker-port=8789": f"--worker-port={ports['worker']}",
        "--nanny-port=8790": f"--nanny-port={ports['nanny']}",
        "--dashboard-address=:8788": f"--dashboard-address=127.0.0.1:{ports['wdash']}",
    }
    sched_argv = _localize(sched_c, mapping, "hf-hemoflow-scheduler-0") + ["--host=127.0.0.1"]
    worker_argv = _localize(worker_c, mapping, "hf-hemoflow-worker-gpu-0") + ["--host=127.0.0.1"]
    assert "--resources" in worker_argv and "--protocol=tls" in sched_argv

    procs = []
    try:
        procs.append(
            subprocess.Popen(
                sched_argv,
                env=_env(sched_c, config, tmp_path),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        _wait_health(ports["dash"], procs[0])  # the scheduler's liveness/readiness probe
        procs.append(
            subprocess.Popen(
                worker_argv,
                env=_env(worker_c, config, tmp_path),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        _wait_health(ports["wdash"], procs[1])  # the worker's probes

        security = Security(
            tls_ca_file=str(tls_dir / "ca.crt"),
            tls_client_cert=str(tls_dir / "tls.crt"),
            tls_client_key=str(tls_dir / "tls.key"),
            require_encryption=True,
        )
        with Client(f"tls://127.0.0.1:{ports['sched']}", security=security, timeout=30) as c:
            c.wait_for_workers(1, timeout=60)
            (info,) = c.scheduler_info()["workers"].values()
            assert info["resources"] == {"GPU": 1}
            assert info["name"] == "hf-hemoflow-worker-gpu-0"  # --name=$(POD_NAME)
            assert c.submit(sum, [1, 2, 3], resources={"GPU": 1}).result(timeout=30) == 6

        with pytest.raises(Exception):  # noqa: B017 - any refusal will do
            Client(f"tcp://127.0.0.1:{ports['sched']}", timeout=3)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
