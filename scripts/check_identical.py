#!/usr/bin/env python
"""Fingerprints of hemoflow's outputs, to show that a refactoring changed no answer.

    python scripts/check_identical.py --out BEFORE.json [--data DIR] [--skip bccd,tiled,job,demo]
    python scripts/check_identical.py --compare BEFORE.json AFTER.json

Each fingerprint is the SHA-256 of a canonical, sorted dump of the outputs:

``bccd``
    per-field results of :func:`hemoflow.analyze.analyze_image` on every BCCD development
    field in ``DATA/bccd`` (counts, pixel size and every cell record), with one pixel size
    for the folder, the median estimate, as ``scripts/evaluate_counts.py`` does. The counts
    themselves are kept too, so a comparison names the fields that changed.
``tiled``
    the cell tables and WBC crops of :func:`hemoflow.pipeline.tiles.analyze_tiled` on a
    synthetic field, for three tile sizes and the whole image.
``job``
    a tiled synthetic slide through a real job (``LocalCluster`` of processes, small
    tiles): its ``cells.parquet`` and the slide and patient summaries.
``demo``
    a demo-sized job (the three demo patients, one small slide each, the shipped WBC
    classifier): the cell tables with their WBC types and the patient table.

Times, job ids, paths (the image's Zarr URL included) and dates are left out of the
summaries before hashing.
``--compare`` prints, per fingerprint, ``same`` or what differs, and exits 1 when anything
differs.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEMO_MIX = {
    "DEMO-001": {"neutrophil": 0.56, "lymphocyte": 0.32, "monocyte": 0.07, "eosinophil": 0.04, "basophil": 0.01},
    "DEMO-002": {"neutrophil": 0.30, "lymphocyte": 0.60, "monocyte": 0.06, "eosinophil": 0.03, "basophil": 0.01},
    "DEMO-003": {"neutrophil": 0.34, "lymphocyte": 0.22, "monocyte": 0.05, "eosinophil": 0.03, "basophil": 0.01,
                 "blast": 0.35},
}
# summary keys that record when, where or how long, not what was found
VOLATILE = {"seconds", "started", "finished", "job_id", "out", "outputs", "path", "slide", "source", "elapsed_s",
            "time", "times", "created", "tiles_per_s", "cells_per_s", "wall_s", "hemoflow_version", "host",
            "tile_seconds", "image"}


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=_jsonable).encode()).hexdigest()


def _jsonable(o):
    if isinstance(o, np.ndarray):
        return {"dtype": str(o.dtype), "shape": list(o.shape), "sha": hashlib.sha256(np.ascontiguousarray(o)
                                                                                    .tobytes()).hexdigest()}
    if isinstance(o, np.generic):
        return o.item()
    return repr(o)


def _strip(o):
    if isinstance(o, dict):
        return {k: _strip(v) for k, v in o.items() if k not in VOLATILE}
    if isinstance(o, list):
        return [_strip(v) for v in o]
    return o


def _table_fp(table) -> dict:
    """Per-column hashes of a cell table, rows sorted by (y, x, cls)."""
    cols = {k: np.asarray(v) for k, v in table.items()}
    order = np.lexsort((cols["cls"].astype(str), cols["x"], cols["y"])) if len(cols.get("y", [])) else []
    out = {k: hashlib.sha256(np.ascontiguousarray(v[order]).tobytes() if v.dtype.kind != "O"
                             else json.dumps([repr(x) for x in v[order]]).encode()).hexdigest()
           for k, v in sorted(cols.items())}
    out["_rows"] = int(len(order))
    return out


# -- (a) BCCD per-field counts -------------------------------------------------------
def bccd(data: Path) -> dict:
    from hemoflow.analyze import analyze_image, estimate_shared_mpp, read_image

    d = data / "bccd"
    with open(d / "counts.csv", newline="") as fh:
        names = sorted(r["image"] for r in csv.DictReader(fh))
    paths = [d / "JPEGImages" / f"{n}.jpg" for n in names]
    mpp, _ = estimate_shared_mpp(read_image(p) for p in paths)
    counts, cells = {}, {}
    for n, p in zip(names, paths):
        r = analyze_image(p, mpp=mpp)
        counts[n] = [r["wbc"], r["rbc"], r["platelets"], r["rbc_cells"]]
        cells[n] = _sha(r["cells"])
    return {"mpp": mpp, "n_fields": len(names), "counts": counts, "counts_sha": _sha(counts),
            "cells_sha": _sha(cells), "cells": cells}


# -- (b) tiles of one synthetic field ------------------------------------------------
def tiled() -> dict:
    from hemoflow import stages, synth
    from hemoflow.pipeline.tiles import analyze_tiled, halo_margin_um, halo_pixels

    mpp, shape = 0.25, (1200, 1400)
    rgb, _ = synth.synth_field(shape, mpp=mpp, seed=7)
    params, crop = stages.SegmentParams(), stages.CropSpec()
    cal = stages.calibrate(rgb, params=params)
    halo = halo_pixels(mpp, max_cell_diameter_um=params.max_cell_diameter_um, margin_um=halo_margin_um(params),
                       crop_px=crop.size * crop.mpp / mpp)
    out = {"halo": int(halo)}
    for ts in (256, 384, 700, max(shape)):
        table, crops = analyze_tiled(rgb, tile_size=ts, halo=halo, mpp=mpp, calibration=cal, params=params,
                                     crop=crop)
        out[f"tile{ts}"] = {"table": _table_fp(table), "crops": _jsonable(np.asarray(crops))}
    return out


# -- (c) jobs on a real cluster ------------------------------------------------------
def _job(slides: list[tuple[str, dict]], tmp: Path, *, size: int, tile_size: int) -> dict:
    import pandas as pd

    import hemoflow
    from hemoflow import synth
    from hemoflow.config import JobConfig

    rows = []
    for k, (pid, mix) in enumerate(slides):
        p = tmp / f"{pid}-S{k + 1}.ome.tif"
        synth.write_synthetic_slide(p, shape=(size, size), mpp=0.25, seed=1001 + k, wbc_mix=mix)
        rows.append({"slide": str(p), "patient_id": pid, "specimen": "peripheral_blood", "mpp": ""})
    manifest = tmp / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    out = tmp / "out"
    with hemoflow.Client(n_workers=2, threads_per_worker=1) as client:
        res = client.submit(str(manifest), str(out), config=JobConfig.from_env(tile_size=tile_size)).result()
    fp = {"failures": res["job"]["failures"], "tiles_total": res["job"]["progress"]["tiles_total"]}
    for pq in sorted(out.rglob("cells.parquet")):
        df = pd.read_parquet(pq)
        fp[f"cells:{pq.parent.name}"] = _table_fp({c: df[c].to_numpy() for c in df.columns})
    fp["slides"] = _sha(_strip(res["slides"]))
    fp["slides_table"] = _strip(res["slides"])
    fp["patients"] = _sha(_strip(res["patients"]))
    fp["patients_table"] = _strip(res["patients"])
    return fp


def job() -> dict:
    with tempfile.TemporaryDirectory() as t:
        return _job([("P1", DEMO_MIX["DEMO-001"])], Path(t), size=2048, tile_size=512)


def demo() -> dict:
    with tempfile.TemporaryDirectory() as t:
        return _job(list(DEMO_MIX.items()), Path(t), size=1600, tile_size=1024)


def compare(a: dict, b: dict, path: str = "") -> list[str]:
    diffs = []
    for k in sorted(set(a) | set(b)):
        where = f"{path}/{k}" if path else k
        if k not in a or k not in b:
            diffs.append(f"{where}: only in {'after' if k not in a else 'before'}")
        elif isinstance(a[k], dict) and isinstance(b[k], dict):
            diffs += compare(a[k], b[k], where)
        elif a[k] != b[k]:
            diffs.append(f"{where}: {str(a[k])[:80]} != {str(b[k])[:80]}")
    return diffs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--skip", default="", help="comma-separated parts to leave out: bccd,tiled,job,demo")
    args = ap.parse_args(argv)
    if args.compare:
        a, b = (json.loads(p.read_text()) for p in args.compare)
        diffs = compare(a, b)
        for part in sorted(set(a) | set(b)):
            n = sum(d.startswith(part) for d in diffs)
            print(f"{part}: {'same' if n == 0 else f'{n} differences'}")
        for d in diffs[:50]:
            print("  " + d)
        return 1 if diffs else 0
    if args.out is None:
        ap.error("give --out FILE.json or --compare A.json B.json")
    skip = {s for s in args.skip.split(",") if s}
    parts = {"bccd": lambda: bccd(args.data), "tiled": tiled, "job": job, "demo": demo}
    result = {}
    for name, fn in parts.items():
        if name not in skip:
            print(f"{name} ...", file=sys.stderr, flush=True)
            result[name] = fn()
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
