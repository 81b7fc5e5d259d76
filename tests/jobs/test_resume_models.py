"""Exact resume across upgrades: a rerun into the same output recomputes whatever a
changed model or parameter could change, and reuses everything else.

The jobs run in a subprocess against a private view of the installed package: every module
is a link to the real one (so the Numba cache is shared), but ``hemoflow/models`` is a copy
that the test edits in place, as an upgrade of the package would. Each run starts its own
``LocalCluster`` with worker processes, so every worker loads the models from disk afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SIZE, TILE = 1536, 1024  # 4 tiles of one small slide

_DRIVER = textwrap.dedent('''
    import json, sys

    def main():
        import hemoflow
        from hemoflow.config import JobConfig
        from hemoflow.stages import SegmentParams

        manifest, out, model, params = sys.argv[1:5]
        with hemoflow.Client(n_workers=1) as client:
            job = client.submit(manifest, out, config=JobConfig(tile_size=int(sys.argv[5])),
                                params=SegmentParams.from_dict(json.loads(params)),
                                model=model or None)
            res = job.result(timeout=600)
        print("RESULT " + json.dumps({"progress": res["job"]["progress"], "status": res["job"]["status"],
                                      "slides": res["slides"]}, default=str))

    if __name__ == "__main__":
        main()
''')


def _package_view(dest: Path) -> Path:
    """``dest/hemoflow``: links to every part of the real package except a copied ``models``."""
    import hemoflow

    real = Path(hemoflow.__file__).resolve().parent
    pkg = dest / "hemoflow"
    pkg.mkdir(parents=True)
    for child in real.iterdir():
        if child.name == "models":
            shutil.copytree(child, pkg / "models", ignore=shutil.ignore_patterns("__pycache__"))
        elif child.name != "__pycache__":
            (pkg / child.name).symlink_to(child)
    return dest


@pytest.fixture(scope="module")
def upgrade_env(tmp_path_factory):
    from hemoflow import synth
    from hemoflow.classify.config import default_weights_path

    base = tmp_path_factory.mktemp("upgrade")
    view = _package_view(base / "site")
    synth.write_synthetic_slide(base / "s1.ome.tif", shape=(SIZE, SIZE), mpp=0.25, seed=41)
    (base / "manifest.csv").write_text("slide,patient_id,specimen\ns1.ome.tif,P1,peripheral_blood\n")
    weights = base / "classifier.pt"  # an explicit classifier, edited in place later
    shutil.copy(default_weights_path(), weights)
    shutil.copy(default_weights_path().with_suffix(".json"), weights.with_suffix(".json"))
    (base / "driver.py").write_text(_DRIVER)
    return {"base": base, "view": view, "out": base / "out", "model": weights}


def _run(env: dict, params: dict | None = None) -> dict:
    e = dict(os.environ, PYTHONPATH=str(env["view"]))
    proc = subprocess.run(
        [sys.executable, str(env["base"] / "driver.py"), str(env["base"] / "manifest.csv"), str(env["out"]),
         str(env["model"]), json.dumps(params or {}), str(TILE)],
        cwd=env["base"], env=e, capture_output=True, text=True, timeout=600,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    res = json.loads(lines[-1][len("RESULT "):])
    assert res["status"] == "ok", json.dumps(res)[-3000:]
    return res


def _rbc(res: dict) -> int:
    (slide,) = res["slides"]
    return int(slide["counts"]["rbc"])


def _wbc_types(res: dict) -> dict:
    (slide,) = res["slides"]
    return slide["counts"]["wbc_types"]


def _counts(res: dict) -> tuple[int, int, int]:
    p = res["progress"]
    return p["tiles_computed"], p["tiles_resumed"], p["slides_skipped"]


def test_upgrades_recompute_what_they_change(upgrade_env):
    import torch

    env = upgrade_env
    first = _run(env)
    n_tiles = first["progress"]["tiles_computed"]
    assert n_tiles == 4 and _rbc(first) > 500

    # Nothing changed: the finished slide is reused whole.
    again = _run(env)
    assert _counts(again) == (0, 0, 1)
    assert _rbc(again) == _rbc(first)

    # A new red-cell density network (here: one whose density is scaled by 1/2, as a
    # retrained one with another output scale would be): every tile is recomputed.
    density = env["view"] / "hemoflow" / "models" / "rbc_density.pt"
    blob = torch.load(density, map_location="cpu", weights_only=True)
    blob["meta"]["scale"] = float(blob["meta"]["scale"]) * 2.0
    torch.save(blob, density)
    upgraded = _run(env)
    assert _counts(upgraded) == (n_tiles, 0, 0)
    assert _rbc(upgraded) < 0.75 * _rbc(first)  # the halved density is what users get

    # A new classifier: the slide is reclassified from its stored tiles, no pixel reread.
    blob = torch.load(env["model"], map_location="cpu", weights_only=True)
    sd = blob["state_dict"]
    head = [k for k, v in sd.items() if k.endswith("bias") and v.ndim == 1][-1]
    sd[head] = sd[head] + torch.linspace(-6.0, 6.0, sd[head].numel())
    torch.save(blob, env["model"])
    side = json.loads(env["model"].with_suffix(".json").read_text())  # as a retraining rewrites it
    side["sha256"] = hashlib.sha256(env["model"].read_bytes()).hexdigest()
    env["model"].with_suffix(".json").write_text(json.dumps(side))
    reclassified = _run(env)
    assert _counts(reclassified) == (0, n_tiles, 0)
    assert _rbc(reclassified) == _rbc(upgraded)
    assert _wbc_types(reclassified) != _wbc_types(upgraded)

    # A changed parameter recomputes the tiles.
    reparam = _run(env, {"irregular_min_solidity": 0.85})
    assert _counts(reparam) == (n_tiles, 0, 0)
