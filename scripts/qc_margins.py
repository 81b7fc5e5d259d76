"""Margins of the blood-smear QC gate (:func:`hemoflow.stages.qc.smear_qc`) on real data.

Runs the gate on every image it can find, as the pipeline does (on the slide's
calibration sample, with the slide's pixel size), and prints, per check, how far the
worst accepted smear and the most smear-like non-smear lie from the threshold:

- every BCCD field in ``<data>/bccd/JPEGImages`` (real Romanowsky smears; must all be
  accepted), at the pooled pixel size of the set (:func:`hemoflow.analyze.estimate_shared_mpp`);
- synthetic smears of :mod:`hemoflow.synth`, several seeds, pixel sizes and red-cell
  densities (must all be accepted);
- the demo's slides (``hemoflow demo``: seeds, mixes, size and pixel size as the demo
  makes them), rendered only where the calibration sample reads them;
- every RGB slide in ``<data>/slides`` (H&E tissue: must all be rejected), at the pixel
  size from the file or, without one, as the pipeline estimates it, and at a sweep of
  pixel sizes so the verdict does not hang on the estimate.

Usage::

    python scripts/qc_margins.py [--data ../shared/data] [--json margins.json]

Exit status 0 when every smear is accepted and every non-smear rejected, else 1.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from hemoflow.stages.qc import QCParams, smear_qc

P = QCParams()
# (measure, threshold, "min" | "max", label): a smear must have measure >= (min) or <= (max)
CHECKS = [
    ("foreground_fraction", P.foreground[0], "min", "stained foreground, share of sample"),
    ("foreground_fraction", P.foreground[1], "max", "stained foreground, share of sample"),
    ("sheet_fraction", P.max_sheet_fraction, "max", f"foreground in masses > {P.sheet_rbc_areas:g} red cells"),
    ("foreground_od", P.max_foreground_od, "max", "median optical density of foreground"),
    ("cell_fraction", P.min_cell_fraction, "min", "compact cell-sized basins, share of foreground"),
    ("rbc_diameter_um", P.rbc_diameter_um[0], "min", "median round-cell diameter (um)"),
    ("rbc_diameter_um", P.rbc_diameter_um[1], "max", "median round-cell diameter (um)"),
    ("round_cells_per_1000um2", P.cells_per_1000um2[0], "min", "round cells per 1000 um2 of foreground"),
    ("round_cells_per_1000um2", P.cells_per_1000um2[1], "max", "round cells per 1000 um2 of foreground"),
]

SIZED = ("rbc_diameter_um", "round_cells_per_1000um2")


class _Rendered:
    """A synthetic slide plan that reads like a slide (shape, read_region)."""

    def __init__(self, plan):
        self.plan = plan
        self.shape = plan.shape

    def read_region(self, y0, x0, y1, x1):
        return self.plan.render_region(y0, x0, y1, x1)


def bccd(data: Path):
    from hemoflow.analyze import estimate_shared_mpp, read_image

    paths = sorted((data / "bccd" / "JPEGImages").glob("*.jpg"))
    if not paths:
        return
    mpp, n = estimate_shared_mpp(paths)
    print(f"BCCD: {len(paths)} fields, pooled pixel size {mpp:.4f} um/px from {n} fields", file=sys.stderr)
    for p in paths:
        yield "bccd", p.stem, read_image(p), mpp


def synthetic(seeds: int):
    from hemoflow import synth

    for s in range(seeds):
        yield "synth", f"seed{s} 0.25um/px d0.38", synth.synth_field((2048, 2048), mpp=0.25, seed=s)[0], 0.25
    for s, mpp, dens in ((100, 0.345, 0.38), (101, 0.5, 0.38), (102, 0.25, 0.15), (103, 0.25, 0.55),
                         (104, 0.1, 0.38), (105, 0.5, 0.15)):
        size = int(384 / mpp) // 16 * 16  # a 384 um square field
        rgb = synth.synth_field((size, size), mpp=mpp, seed=s, rbc_density=dens)[0]
        yield "synth", f"seed{s} {mpp}um/px d{dens}", rgb, mpp


def demo(size: int, per_patient: int):
    from hemoflow import synth
    from hemoflow.demo import DEMO_PATIENTS  # the demo's own mixes
    from hemoflow.pipeline.tasks import calibration_sample

    seed = 1000
    for pid, (_desc, mix) in DEMO_PATIENTS.items():
        for k in range(per_patient):
            seed += 1
            plan = synth.plan_slide((size, size), mpp=0.25, seed=seed, wbc_mix=mix)
            yield "demo", f"{pid}-S{k + 1}", calibration_sample(_Rendered(plan)), 0.25


def slides(data: Path, sweep: tuple[float, ...]):
    import tempfile

    from hemoflow.io import ingest, open_slide
    from hemoflow.pipeline.tasks import _MPP_PROBE, calibration_sample
    from hemoflow.stages import analyze_field

    for p in sorted((data / "slides").iterdir()):
        if p.suffix.lower() not in (".svs", ".tif", ".tiff", ".ndpi"):
            continue
        with tempfile.TemporaryDirectory() as td:
            try:  # as the pipeline does: ingest to OME-Zarr, then read the sample from it
                ingest(str(p), f"{td}/image.ome.zarr")
                slide = open_slide(f"{td}/image.ome.zarr")
                slide.require_rgb8()
            except Exception as exc:  # the pipeline fails such a slide before the gate
                print(f"{p.name}: fails before the gate: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            sample = calibration_sample(slide)
            mpp, how = slide.mpp, "file"
            if not mpp:
                h, w = slide.shape
                r = _MPP_PROBE // 2
                probe = slide.read_region(max(0, h // 2 - r), max(0, w // 2 - r), min(h, h // 2 + r),
                                          min(w, w // 2 + r))
                try:
                    mpp, how = analyze_field(probe).mpp, "estimated"
                except Exception as exc:
                    print(f"{p.name}: pixel size not estimable ({exc}); gate run without one", file=sys.stderr)
                    mpp, how = None, "none"
        yield "non-smear", f"{p.name} ({how} {mpp and round(mpp, 3)} um/px)", sample, mpp
        for m in sweep:
            yield "non-smear", f"{p.name} (at {m} um/px)", sample, m


def margins(rows: list[dict]) -> list[dict]:
    out = []
    for measure, thr, kind, label in CHECKS:
        sign = 1.0 if kind == "min" else -1.0

        def margin(r):
            v = r["measures"].get(measure)
            if measure in SIZED and r["measures"].get("n_round_cells", 0) < P.min_cells_for_size:
                return None  # too few single cells to judge sizes: the gate skips the check
            return None if v is None or not math.isfinite(v) else sign * (v - thr)

        smears = [(margin(r), r) for r in rows if r["group"] != "non-smear" and margin(r) is not None]
        others = [(margin(r), r) for r in rows if r["group"] == "non-smear" and margin(r) is not None]
        worst = min(smears, key=lambda t: t[0]) if smears else None
        # the non-smear most like a smear on this measure (largest margin: positive passes)
        near = max(others, key=lambda t: t[0]) if others else None
        out.append({
            "check": f"{label} {'>=' if kind == 'min' else '<='} {thr:g}", "measure": measure, "threshold": thr,
            "worst_smear": worst and {"name": worst[1]["name"], "value": worst[1]["measures"][measure],
                                      "margin": worst[0]},
            "nearest_non_smear": near and {"name": near[1]["name"], "value": near[1]["measures"][measure],
                                           "margin": near[0]},
        })
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = Path(__file__).resolve().parents[1]
    ap.add_argument("--data", type=Path, default=here.parent / "shared" / "data", help="real data folder")
    ap.add_argument("--seeds", type=int, default=8, help="synthetic smears at 0.25 um/px (default 8)")
    ap.add_argument("--demo-size", type=int, default=8000, help="demo slide side in px (default 8000, the demo's)")
    ap.add_argument("--demo-per-patient", type=int, default=2, help="demo slides per patient (default 2)")
    ap.add_argument("--json", type=Path, help="write every verdict and the margins here")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = []
    sources = [synthetic(args.seeds), demo(args.demo_size, args.demo_per_patient), bccd(args.data),
               slides(args.data, (0.25, 0.5, 1.0, 2.0))]
    for src in sources:
        for group, name, rgb, mpp in src:
            r = smear_qc(rgb, mpp=mpp)
            rows.append({"group": group, "name": name, "mpp": mpp, "ok": r.ok, "reason": r.reason,
                         "measures": r.measures})
    by = {}
    for r in rows:
        g = by.setdefault(r["group"], [0, 0])
        g[0] += 1
        g[1] += r["ok"]
    print("\n| group | images | accepted | rejected |\n|---|---|---|---|")
    for g, (n, ok) in by.items():
        print(f"| {g} | {n} | {ok} | {n - ok} |")
    bad = [r for r in rows if r["ok"] == (r["group"] == "non-smear")]
    for r in bad:
        print(f"WRONG: {r['group']} {r['name']}: {r['reason']}")
    print("\nnon-smears:")
    for r in rows:
        if r["group"] == "non-smear":
            print(f"  {r['name']}: {'ACCEPTED' if r['ok'] else 'rejected'}: {r['reason']}")
    table = margins(rows)
    print("\n| check | worst accepted smear | margin | most smear-like non-smear | margin |\n|---|---|---|---|---|")
    for m in table:
        w, n = m["worst_smear"], m["nearest_non_smear"]
        ws = f"{w['value']:.3g} ({w['name']}) | {w['margin']:+.3g}" if w else "– | –"
        ns = f"{n['value']:.3g} ({n['name']}) | {n['margin']:+.3g}" if n else "– | –"
        print(f"| {m['check']} | {ws} | {ns} |")
    print(f"\n{len(rows)} images in {time.perf_counter() - t0:.0f} s; "
          f"{'all verdicts right' if not bad else f'{len(bad)} wrong verdicts'}")
    if args.json:
        args.json.write_text(json.dumps({"params": P.to_dict(), "margins": table, "rows": rows}, indent=1,
                                        default=lambda o: None))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
