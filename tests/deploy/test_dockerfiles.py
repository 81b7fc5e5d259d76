"""Structural checks of the container images (no Docker engine needed).

The Dockerfiles are parsed into stages and instructions and checked for the
properties the chart relies on: multi-stage build, numeric non-root user matching the
chart, a HEALTHCHECK, the right torch build, and a build context that contains every
file the build copies. The health-check script itself is run against a local server.
"""

from __future__ import annotations

import fnmatch
import http.server
import json
import re
import socket
import subprocess
import sys
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "deploy" / "docker"
VALUES = REPO / "deploy" / "helm" / "hemoflow" / "values.yaml"
IMAGES = ("cpu", "gpu")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Return (global ARG defaults, stages). Handles comments and line continuations."""
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # comment lines inside a continuation are dropped by Docker too
        if line.endswith("\\"):
            buf += line[:-1].rstrip() + " "
            continue
        logical.append(buf + line)
        buf = ""
    assert not buf, "dangling line continuation"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, flags=re.I)
            assert m, f"cannot parse FROM {args!r}"
            stages.append(Stage(base=m.group(1), name=m.group(2)))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede the first FROM, got {keyword}"
            name, _, default = args.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append((keyword, args))
    return global_args, stages


def expand(value: str, args: dict[str, str]) -> str:
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), value
    )


def load(image: str) -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile((DOCKER / f"Dockerfile.{image}").read_text())


def stage_args(stage: Stage, global_args: dict[str, str]) -> dict[str, str]:
    args = dict(global_args)
    for a in stage.all("ARG"):
        name, _, default = a.partition("=")
        args[name] = default
    return args


def copy_sources(stage: Stage) -> list[tuple[str, str]]:
    """(source, destination) of COPY/ADD from the build context (not --from)."""
    out = []
    for kind in ("COPY", "ADD"):
        for args in stage.all(kind):
            parts = args.split()
            if any(p.startswith("--from=") for p in parts):
                continue
            parts = [p for p in parts if not p.startswith("--")]
            *sources, dest = parts
            out.extend((s.rstrip("/"), dest) for s in sources)
    return out


def torch_pin() -> str:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if re.match(r"torch\b", d)]
    return pin.split("==")[1]


@pytest.fixture(scope="module")
def chart_ids() -> tuple[int, int]:
    values = yaml.safe_load(VALUES.read_text())
    psc, csc = values["podSecurityContext"], values["containerSecurityContext"]
    assert psc["runAsUser"] == csc["runAsUser"]
    return psc["runAsUser"], psc["runAsGroup"]


@pytest.mark.parametrize("image", IMAGES)
def test_multistage_builder_to_runtime(image):
    global_args, stages = load(image)
    assert len(stages) >= 2
    assert stages[0].name == "builder" and stages[-1].name == "runtime"
    assert stages[0].base.split(":")[0] == stages[-1].base.split(":")[0]  # same OS and Python
    for stage in stages:
        base = expand(stage.base, global_args)
        assert ":" in base and not base.endswith(":latest"), f"unpinned base image {base}"
        assert "$" not in base, f"undefined ARG in {stage.base}"
    runtime = stages[-1]
    assert "--from=builder /opt/venv /opt/venv" in runtime.all("COPY")
    assert not any("pip install" in r for r in runtime.all("RUN")), "runtime stage must not build"
    assert any("pip install" in r and " ." in r for r in stages[0].all("RUN"))


@pytest.mark.parametrize("image", IMAGES)
def test_runtime_runs_as_numeric_non_root_user(image, chart_ids):
    _, stages = load(image)
    runtime = stages[-1]
    users = runtime.all("USER")
    assert users, "no USER in the runtime stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric, non-root UID"
    assert gid.isdigit() and int(gid) != 0
    assert (int(uid), int(gid)) == chart_ids, "image and chart disagree on the UID/GID"
    # the user is created with that UID and owns the scratch directory
    assert any(
        f"--uid {uid}" in r and f"chown {uid}:{gid} /scratch" in r for r in runtime.all("RUN")
    )
    # nothing after USER switches back to root
    keywords = [kw for kw, _ in runtime.instructions]
    assert "RUN" not in keywords[keywords.index("USER") :]


@pytest.mark.parametrize("image", IMAGES)
def test_healthcheck_and_exec_form_entrypoint(image):
    _, stages = load(image)
    runtime = stages[-1]
    (hc,) = runtime.all("HEALTHCHECK")
    opts, _, cmd = hc.partition(" CMD ")
    assert {"--interval", "--timeout", "--retries"} <= {o.split("=")[0] for o in opts.split()}
    argv = json.loads(cmd)
    assert argv[0] == "python"
    dests = {dest for src, dest in copy_sources(runtime) if src == "deploy/docker/healthcheck.py"}
    assert argv[1] in dests, "HEALTHCHECK runs a script the image does not contain"
    for kw in ("ENTRYPOINT", "CMD"):
        (value,) = runtime.all(kw)
        assert isinstance(json.loads(value), list), f"{kw} must use the exec form"
    assert json.loads(runtime.all("CMD")[0])[0] == "dask"
    env = " ".join(runtime.all("ENV"))
    assert "HEMOFLOW_SCRATCH=/scratch" in env and "PATH=/opt/venv/bin:$PATH" in env


def test_cpu_image_installs_cpu_torch():
    global_args, stages = load("cpu")
    runs = " ".join(stages[0].all("RUN"))
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs
    assert f'"torch=={torch_pin()}+cpu"' in runs
    assert stages[-1].base.startswith("python:")


def test_gpu_image_installs_cuda_torch():
    global_args, stages = load("gpu")
    builder, runtime = stages[0], stages[-1]
    args = stage_args(builder, global_args)
    assert re.fullmatch(r"cu\d{3}", args["TORCH_CUDA"])
    runs = " ".join(builder.all("RUN"))
    assert "https://download.pytorch.org/whl/${TORCH_CUDA}" in runs
    assert f'"torch=={torch_pin()}+${{TORCH_CUDA}}"' in runs
    # the package install is held to the CUDA build and the result is checked
    assert "pip install --constraint /tmp/torch-constraint.txt ." in runs
    assert "torch.version.cuda" in runs
    env = " ".join(runtime.all("ENV"))
    assert "NVIDIA_VISIBLE_DEVICES=all" in env
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in env
    assert "HEMOFLOW_DEVICE=cuda" in env


def test_one_python_for_the_whole_cluster():
    """Dask pickles functions between processes: every image runs the same Python."""
    bases = set()
    for image in IMAGES:
        global_args, stages = load(image)
        bases |= {expand(stage.base, global_args) for stage in stages}
    assert len(bases) == 1, bases
    (base,) = bases
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(x) for x in requires.removeprefix(">=").split("."))
    version = tuple(int(x) for x in re.match(r"python:(\d+\.\d+)", base).group(1).split("."))
    assert version >= minimum


def _ignore_rules(image: str) -> list[str]:
    text = (DOCKER / f"Dockerfile.{image}.dockerignore").read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _included(path: str, rules: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    included = True
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule[1:] if negate else rule
        if fnmatch.fnmatchcase(path, pattern) or path.startswith(pattern.rstrip("/") + "/"):
            included = negate
    return included


def test_dockerignore_files_agree():
    assert _ignore_rules("cpu") == _ignore_rules("gpu")
    assert _ignore_rules("cpu")[0] == "*", "the ignore file is an allow-list"


@pytest.mark.parametrize("image", IMAGES)
def test_build_context_contains_what_is_copied(image):
    _, stages = load(image)
    rules = _ignore_rules(image)
    readme = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["readme"]
    sources = {src for stage in stages for src, _ in copy_sources(stage)}
    assert {"pyproject.toml", readme, "hemoflow", "deploy/docker/healthcheck.py"} <= sources
    for src in sources:
        assert _included(src, rules), f"{src} is copied but excluded from the build context"
    for src in sources - {readme}:  # README.md belongs to the project root docs
        assert (REPO / src).exists(), src
    assert not _included("tests/conftest.py", rules) and not _included(".venv/bin/python", rules)
    assert not _included("hemoflow/__pycache__/x.pyc", rules)


class _Health(http.server.BaseHTTPRequestHandler):
    body = b"ok"

    def do_GET(self):  # noqa: N802 (http.server API)
        status = 200 if self.path == "/health" else 404
        self.send_response(status)
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthcheck(ports: str) -> int:
    env = {"HEMOFLOW_HEALTH_PORTS": ports, "PATH": "/usr/bin:/bin"}
    script = DOCKER / "healthcheck.py"
    return subprocess.run([sys.executable, str(script)], env=env, timeout=30).returncode


def test_healthcheck_script():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        dead = _unused_port()
        assert _healthcheck(f"{dead},{port}") == 0  # worker-style: the second port answers
        assert _healthcheck(str(dead)) == 1
    finally:
        server.shutdown()
        server.server_close()
