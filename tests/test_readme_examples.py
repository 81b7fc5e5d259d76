"""The documentation's examples run as written.

A fenced code block preceded by the line ``<!-- example: run -->`` in README.md or
docs/*.md is extracted and run in a scratch folder: ``python`` blocks as a script file
(``python example.py``, so the ``__main__`` guard of a client example matters), ``bash``
/ ``shell`` / ``console`` blocks with ``bash -e``, with ``hemoflow`` on PATH running this
tree. The scratch folder holds what the examples name:

- ``manifest.csv``: one small synthetic slide (``slides/S1.ome.tif``) of patient ``P1``;
- ``field.png``: a small synthetic smear field; ``grey.png``: a greyscale image.

``examples/client.py`` runs on the same tiny manifest.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- example: run -->"
_FENCE = re.compile(r"^```(\w*)\s*$")


def extract_examples(text: str) -> list[tuple[str, str, int]]:
    """``(language, code, line)`` of every fenced block right after a :data:`MARK` line
    (blank lines between them allowed)."""
    lines = text.splitlines()
    out, i = [], 0
    while i < len(lines):
        if lines[i].strip() == MARK:
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            m = _FENCE.match(lines[j].strip()) if j < len(lines) else None
            if m is None:
                raise AssertionError(f"line {i + 1}: {MARK} is not followed by a fenced code block")
            k = j + 1
            while k < len(lines) and lines[k].strip() != "```":
                k += 1
            out.append((m.group(1).lower(), "\n".join(lines[j + 1 : k]) + "\n", j + 1))
            i = k
        i += 1
    return out


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _examples() -> list:
    params = []
    for doc in _documents():
        if doc.exists():
            for lang, code, line in extract_examples(doc.read_text(encoding="utf-8")):
                params.append(pytest.param(lang, code, id=f"{doc.relative_to(ROOT)}:{line}"))
    return params


def test_extract_examples():
    text = f"intro\n{MARK}\n\n```python\nprint(1)\n```\n```bash\nnot marked\n```\n{MARK}\n```bash\necho hi\n```\n"
    assert extract_examples(text) == [("python", "print(1)\n", 4), ("bash", "echo hi\n", 11)]
    with pytest.raises(AssertionError, match="not followed"):
        extract_examples(f"{MARK}\ntext\n")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    from hemoflow import synth

    d = tmp_path_factory.mktemp("examples")
    (d / "slides").mkdir()
    synth.write_synthetic_slide(d / "slides" / "S1.ome.tif", shape=(768, 768), mpp=0.25, seed=11, tile=256,
                                min_level_size=256)
    (d / "manifest.csv").write_text("slide,patient_id,specimen\nslides/S1.ome.tif,P1,peripheral_blood\n")
    rgb, _ = synth.synth_field((384, 384), mpp=0.25, seed=12, n_wbc=1)
    Image.fromarray(rgb).save(d / "field.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(d / "grey.png")
    bin_dir = d / "_bin"
    bin_dir.mkdir()
    shim = bin_dir / "hemoflow"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m hemoflow.cli "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return d


def _env(scratch: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{scratch / '_bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


@pytest.mark.parametrize("lang,code", _examples())
def test_documented_example_runs(scratch, tmp_path, lang, code):
    work = tmp_path / "w"
    subprocess.run(["cp", "-r", f"{scratch}/.", str(work)], check=True)
    if lang in ("python", "py"):
        (work / "example.py").write_text(code)
        cmd = [sys.executable, "example.py"]
    elif lang in ("bash", "sh", "shell", "console"):
        cmd = ["bash", "-e", "-c", code]
    else:
        pytest.fail(f"marked example in language {lang!r}: only python and shell blocks can run")
    r = subprocess.run(cmd, cwd=work, env=_env(scratch), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{code}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"


def test_client_script_runs_as_a_file(scratch, tmp_path):
    work = tmp_path / "w"
    subprocess.run(["cp", "-r", f"{scratch}/.", str(work)], check=True)
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "client.py"), "manifest.csv", "results"], cwd=work,
                       env=_env(scratch), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    job = json.loads((work / "results" / "job.json").read_text())
    assert job["status"] == "ok" and job["progress"]["slides_done"] == 1
    assert "P1 {" in r.stdout and "job status: ok" in r.stdout
