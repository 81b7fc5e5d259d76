"""The ``hemoflow`` command: a thin shell over the Python client.

The CLI owns the console: progress bars on stderr, tables and JSON on stdout. Errors
that come from bad input print one clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from hemoflow.errors import HemoflowError

DEMO_PATIENTS = {
    # patient id: (description, WBC mix of the generator)
    "DEMO-001": ("normal differential",
                 {"neutrophil": 0.56, "lymphocyte": 0.32, "monocyte": 0.07, "eosinophil": 0.04, "basophil": 0.01}),
    "DEMO-002": ("lymphocytosis",
                 {"neutrophil": 0.30, "lymphocyte": 0.60, "monocyte": 0.06, "eosinophil": 0.03, "basophil": 0.01}),
    "DEMO-003": ("blast excess (leukaemia-like)",
                 {"neutrophil": 0.34, "lymphocyte": 0.22, "monocyte": 0.05, "eosinophil": 0.03, "basophil": 0.01,
                  "blast": 0.35}),
}
TYPES = ("neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil", "blast")


class ProgressBar:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, label: str, stream=None, width: int = 30):
        self.label, self.stream, self.width = label, stream or sys.stderr, width
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self._last: object = None
        self._t0 = time.perf_counter()
        self._last_print = 0.0

    def __call__(self, p: dict[str, int]) -> None:
        # Slides and tiles both count, so the bar reaches 100% only when slides are final.
        done = p.get("tiles_done", 0) + p.get("slides_done", 0)
        total = p.get("tiles_total", 0) + p.get("slides_total", 0)
        frac = min(1.0, done / total) if total else 0.0
        n = int(frac * self.width)
        state = (p.get("slides_done"), p.get("tiles_done"), p.get("tiles_total"), p.get("slides_failed"))
        line = (f"{self.label} [{'#' * n}{'.' * (self.width - n)}] {frac * 100:5.1f}% "
                f"slides {p.get('slides_done', 0)}/{p.get('slides_total', 0)} "
                f"tiles {p.get('tiles_done', 0)}/{p.get('tiles_total', 0)} "
                f"cells {p.get('cells', 0):,} failed {p.get('slides_failed', 0)} "
                f"{time.perf_counter() - self._t0:6.1f}s")
        now = time.perf_counter()
        if self.tty:
            self.stream.write("\r" + line)
        elif state != self._last and (now - self._last_print >= 5 or frac >= 1.0):
            self.stream.write(line + "\n")
            self._last_print = now
            self._last = state
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _client(args) -> Any:
    from hemoflow.jobs.client import Client

    if getattr(args, "scheduler", None):
        security = None
        if getattr(args, "tls_ca", None):
            from distributed.security import Security

            security = Security(tls_ca_file=args.tls_ca, tls_client_cert=args.tls_cert,
                                tls_client_key=args.tls_key, require_encryption=True)
        return Client(args.scheduler, security=security)
    return Client(n_workers=args.workers)


def _run_job(client, manifest, out: str, args) -> dict[str, Any]:
    from hemoflow.config import JobConfig

    cfg = JobConfig.from_env(tile_size=getattr(args, "tile_size", None),
                             tta=True if getattr(args, "tta", False) else None)
    job = client.submit(manifest, out, config=cfg)
    bar = ProgressBar(f"job {job.id}")
    try:
        result = job.wait(poll=0.5, callback=bar)
    finally:
        bar.close()
    return result


def _print_failures(result: dict[str, Any]) -> None:
    for f in result["job"]["failures"]:
        print(f"FAILED {f['slide']}: {f['error']}", file=sys.stderr)


# -- commands -------------------------------------------------------------------------
def cmd_run(args) -> int:
    from hemoflow.errors import ManifestError
    from hemoflow.io import storage
    from hemoflow.jobs.manifest import load_manifest, load_prefix_manifest

    src = args.manifest
    if args.patients:
        manifest = load_prefix_manifest(src, args.patients)
    elif src.lower().endswith(".csv"):
        manifest = load_manifest(src)
    else:
        raise ManifestError(f"{storage.redact(src)} is not a .csv manifest; to process every slide under a "
                            "folder or prefix, give the patients table with --patients")
    storage.check_writable(args.out)  # before a cluster starts: fail fast, write nothing
    from hemoflow.config import JobConfig

    cfg = JobConfig.from_env(tile_size=args.tile_size, tta=True if args.tta else None)
    with _client(args) as client:
        job = client.submit(manifest, args.out, config=cfg, model=args.model, job_id=args.job_id,
                            tile_resume=not args.no_tile_records,
                            pseudonymize_key=args.pseudonymize.encode() if args.pseudonymize else None)
        bar = ProgressBar(f"job {job.id}")
        try:
            result = job.wait(poll=0.5, callback=bar)
        finally:
            bar.close()
    _print_patients(result["patients"], truth=None)
    _print_failures(result)
    print(f"outputs: {result['job']['outputs']['patients']}")
    return 0 if not result["job"]["failures"] else 1


def cmd_demo(args) -> int:
    from hemoflow import synth

    out = Path(args.out).resolve()
    slides_dir = out / "slides_in"
    slides_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows, truth = [], {}
    print(f"generating {len(DEMO_PATIENTS) * args.slides_per_patient} synthetic slides of "
          f"{args.size}x{args.size} px in {slides_dir}", file=sys.stderr)
    seed = 1000
    for pid, (_desc, mix) in DEMO_PATIENTS.items():
        for k in range(args.slides_per_patient):
            seed += 1
            path = slides_dir / f"{pid}-S{k + 1}.ome.tif"
            truth_csv = slides_dir / f"{pid}-S{k + 1}.truth.csv"
            tt = _reuse_truth(path, truth_csv, args.size)
            if tt is None:  # (re)generate; a finished earlier demo is reused as is
                tt = synth.write_synthetic_slide(path, shape=(args.size, args.size), mpp=0.25, seed=seed,
                                                 wbc_mix=mix)
                synth.write_truth(truth_csv, tt)
            truth.setdefault(pid, []).append(tt)
            rows.append({"slide": str(path), "patient_id": pid, "specimen": "peripheral_blood", "mpp": ""})
    gen_s = time.perf_counter() - t0
    import pandas as pd

    manifest_path = out / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest_path, index=False)
    print(f"generated in {gen_s:.1f}s; manifest {manifest_path}", file=sys.stderr)
    t1 = time.perf_counter()
    with _client(args) as client:
        result = _run_job(client, str(manifest_path), str(out), args)
    run_s = time.perf_counter() - t1
    _write_demo_report(result, out)
    _print_patients(result["patients"], truth=truth)
    _print_failures(result)
    print(f"\nslides generated in {gen_s:.1f}s, job ran in {run_s:.1f}s "
          f"({result['job']['progress']['tiles_total']} tiles); outputs in {out}")
    return 0 if not result["job"]["failures"] else 1


def _reuse_truth(path: Path, truth_csv: Path, size: int):
    """The truth table of an already generated demo slide of the right size, else None."""
    if not (path.exists() and truth_csv.exists()):
        return None
    import pandas as pd
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            if tuple(tf.series[0].shape[:2]) != (size, size):
                return None
        df = pd.read_csv(truth_csv, keep_default_na=False)
    except Exception:
        return None
    return {c: df[c].to_numpy() for c in df.columns}


def _write_demo_report(result: dict[str, Any], out: Path) -> None:
    try:
        from hemoflow.report.html import write_report_from_results
    except ImportError:
        return
    try:
        paths = write_report_from_results(str(out), out / "report")
        print(f"report: {paths[0] if paths else out / 'report'}", file=sys.stderr)
    except Exception as exc:  # the report is an extra; the job's outputs are already written
        logging.getLogger(__name__).warning("report not written: %s", exc)


def _truth_summary(tables: list) -> dict[str, Any]:
    import numpy as np

    cls = np.concatenate([np.asarray(t["cls"]) for t in tables])
    typ = np.concatenate([np.asarray(t["type"]) for t in tables])
    wbc = int((cls == "wbc").sum())
    return {
        "wbc": wbc, "rbc": int((cls == "rbc").sum()), "platelets": int((cls == "platelet").sum()),
        "diff": {t: 100.0 * float((typ == t).sum()) / max(1, wbc) for t in TYPES},
    }


def _print_patients(patients: list[dict[str, Any]], truth: dict[str, list] | None) -> None:
    hdr = f"{'patient':<10} {'':<9} {'WBC':>6} {'RBC':>7} {'PLT':>5} " + " ".join(f"{t[:5]:>6}" for t in TYPES)
    print(hdr)
    print("-" * len(hdr))
    for p in patients:
        counts = p.get("counts", {})
        diff = p.get("differential", {})
        pct = {t: (diff.get(t, {}) or {}).get("percent") for t in TYPES}
        if pct.get("blast") is None:
            pct["blast"] = (p.get("blast", {}) or {}).get("percent")
        row = f"{p['patient_id']:<10} {'measured':<9} {counts.get('wbc', 0):>6} {counts.get('rbc', 0):>7} " \
              f"{counts.get('platelet', 0):>5} " + " ".join(_fmt(pct[t]) for t in TYPES)
        print(row)
        if truth and p["patient_id"] in truth:
            t = _truth_summary(truth[p["patient_id"]])
            print(f"{'':<10} {'truth':<9} {t['wbc']:>6} {t['rbc']:>7} {t['platelets']:>5} "
                  + " ".join(_fmt(t["diff"][k]) for k in TYPES))


def _fmt(v: float | None) -> str:
    return f"{v:6.1f}" if v is not None else f"{'-':>6}"


def cmd_analyze(args) -> int:
    from hemoflow.analyze import analyze_image, estimate_shared_mpp
    from hemoflow.kernels._malloc import tune_malloc

    tune_malloc()

    mpp, pooled = args.mpp, 0
    if mpp is None and len(args.images) > 1 and not args.mpp_per_image:
        mpp, pooled = estimate_shared_mpp(args.images)
        print(f"pixel size {mpp:.4f} µm/px: median estimate over {pooled} fields "
              "(they are taken to come from one microscope; --mpp-per-image to estimate each alone)",
              file=sys.stderr)
    classifier = None
    if not args.no_classify:
        from hemoflow.classify.model import load_default_model

        classifier = load_default_model()
    results = []
    for img in args.images:
        r = analyze_image(img, mpp=mpp, classifier=classifier, tta=args.tta)
        if pooled:
            r["mpp_estimated"], r["mpp_pooled_over"] = True, pooled
        results.append(r)
    if args.json:
        json.dump(results, sys.stdout, indent=None if len(results) > 1 else 2, default=_json_default)
        print()
    else:
        print(f"{'image':<40} {'WBC':>4} {'RBC':>5} {'PLT':>4}  mpp")
        for r in results:
            wt = ",".join(c.get("wbc_type", "") for c in r["cells"] if c.get("cls") == "wbc")
            if r.get("mpp_pooled_over"):
                est = f" (estimated over {r['mpp_pooled_over']} fields)"
            else:
                est = " (estimated)" if r.get("mpp_estimated") else ""
            print(f"{r['image']:<40} {r['wbc']:>4} {r['rbc']:>5} {r['platelets']:>4}  {r['mpp']:.3f}{est}  {wt}")
    return 0


def _json_default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def cmd_classify(args) -> int:
    from hemoflow.classify.infer import classify_images

    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if total > 512:  # long runs only; stderr, so --json output stays clean
            print(f"classified {done}/{total} images ({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)

    results = classify_images(args.images, mpp=args.mpp, tta=not args.no_tta, progress=progress)
    if args.json:
        json.dump(results, sys.stdout, indent=2, default=_json_default)
        print()
    else:
        for r in results:
            print(f"{r['image']}\t{r['label']}\t{r['probability']:.3f}")
    return 0


def cmd_train(args) -> int:
    from hemoflow.classify.train import train_from_folder

    info = train_from_folder(args.folder, args.out, epochs=args.epochs, seed=args.seed)
    print(json.dumps(info, indent=2, default=_json_default))
    return 0


def cmd_ingest(args) -> int:
    from hemoflow.io import ingest

    info = ingest(args.src, args.dest, mpp=args.mpp, overwrite=args.overwrite)
    print(json.dumps(info.to_dict() if hasattr(info, "to_dict") else vars(info), indent=2, default=str))
    return 0


def cmd_report(args) -> int:
    from hemoflow.report.html import write_report_from_results

    key = args.pseudonymize.encode() if args.pseudonymize else None
    paths = write_report_from_results(args.results, args.out, pseudonymize_key=key)
    for p in paths:
        print(p)
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hemoflow", description="Blood-smear slide processing at archive scale.")
    ap.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = ap.add_subparsers(dest="command", required=True)

    def cluster_opts(p):
        p.add_argument("--workers", type=int, default=None, help="local workers (default: one per core)")
        p.add_argument("--scheduler", default=None, help="connect to this scheduler instead of a local cluster")
        p.add_argument("--tile-size", type=int, default=None, help="tile core size in px")
        p.add_argument("--tta", action="store_true",
                       help="classify WBCs with test-time augmentation (8x the classification compute)")
        p.add_argument("--tls-ca", default=None, help="CA certificate for a tls:// scheduler")
        p.add_argument("--tls-cert", default=None, help="client certificate for a tls:// scheduler")
        p.add_argument("--tls-key", default=None, help="client key for a tls:// scheduler")

    p = sub.add_parser("demo", help="generate a small synthetic archive and run the whole job on it")
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--size", type=int, default=8000, help="slide side in px (default 8000)")
    p.add_argument("--slides-per-patient", type=int, default=2)
    cluster_opts(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="process the slides of a manifest CSV, or of a folder / S3 prefix",
                       description="Process slides; rerunning with the same --out resumes (finished slides "
                                   "and tiles are not redone). S3 endpoint and credentials come from the "
                                   "standard AWS variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...).")
    p.add_argument("manifest", help="CSV with columns slide, patient_id, specimen[, mpp]; or a folder / "
                                    "s3://bucket/prefix whose slides are all processed (needs --patients)")
    p.add_argument("--patients", default=None,
                   help="with a folder or prefix: CSV with columns slide (name or key relative to the prefix), "
                        "patient_id, specimen (optional, default peripheral_blood), mpp (optional)")
    p.add_argument("--out", required=True, help="output folder or s3://bucket/prefix")
    p.add_argument("--model", default=None, help="classifier weights file (default: the shipped model)")
    p.add_argument("--job-id", default=None, help="job id (default: a new random id); give the id of a job whose "
                                                  "client died to take over its output at once")
    p.add_argument("--pseudonymize", metavar="KEY", default=None,
                   help="replace patient and slide ids by a keyed hash in every output")
    p.add_argument("--no-tile-records", action="store_true",
                   help="do not record finished tiles (a rerun then redoes unfinished slides whole)")
    cluster_opts(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("analyze", help="count and classify the cells of microscope fields (JPEG/PNG/TIFF)")
    p.add_argument("images", nargs="+")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--mpp", type=float, default=None,
                       help="µm per pixel (default: estimated from the RBC size; with several images, "
                       "one median estimate for all of them)")
    scale.add_argument("--mpp-per-image", action="store_true",
                       help="with several images, estimate each image's pixel size on its own")
    p.add_argument("--no-classify", action="store_true", help="skip WBC classification")
    p.add_argument("--tta", action="store_true",
                   help="classify WBCs with test-time augmentation (8 flips and quarter turns per crop)")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("classify", help="classify single-cell images (one centred WBC per image)")
    p.add_argument("images", nargs="+")
    p.add_argument("--json", action="store_true")
    p.add_argument("--mpp", type=float, default=None, help="µm per pixel of the images")
    p.add_argument("--no-tta", action="store_true",
                   help="one view per image (default: average over its 8 flips and quarter turns)")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("train", help="train a cell classifier from a folder with labels.csv")
    p.add_argument("folder")
    p.add_argument("--out", required=True, help="weights file to write")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("ingest", help="convert a TIFF / OME-TIFF / SVS slide to OME-Zarr")
    p.add_argument("src")
    p.add_argument("dest", help="folder or s3:// URL of the .ome.zarr to write")
    p.add_argument("--mpp", type=float, default=None)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("report", help="write the HTML per-patient report of a finished job")
    p.add_argument("results", help="the job's output folder or URL")
    p.add_argument("--out", required=True)
    p.add_argument("--pseudonymize", metavar="KEY", default=None, help="replace patient ids by a keyed hash")
    p.set_defaults(func=cmd_report)
    return ap


def _quiet_dask() -> None:
    """Keep Dask's INFO chatter off the console; the CLI shows its own progress.

    Set through the environment so that spawned worker processes inherit it.
    """
    import os

    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    import dask

    dask.config.refresh()
    logging.getLogger("distributed").setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        _quiet_dask()
    try:
        return int(args.func(args) or 0)
    except HemoflowError as exc:
        print(f"hemoflow: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hemoflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
