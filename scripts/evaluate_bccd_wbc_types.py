"""Agreement of hemoflow's WBC types with the Kaggle labels on BCCD fields.

Runs the same code path as ``hemoflow analyze`` (segmentation + the shipped classifier)
on every BCCD field that has a single-type label in ``counts.csv`` (``wbc_type_kaggle``;
fields labelled with two types are skipped) and exactly one detected WBC, and prints the
agreement and the confusion matrix. BCCD is another microscope and stain than the PBC
cells the model was trained on, so this measures domain transfer.

Agreement is given per split of :mod:`hemoflow.training.splits`, with its 95 % Wilson
interval: ``train`` (the fields whose WBCs a model trained with ``scripts/train_wbc.py
--bccd``, such as the shipped one, was trained on) and ``validation`` (never trained on; the
shipped run was chosen among others by its agreement there). Only the validation figure
describes cells the model did not learn from; the pooled figure includes training cells.
``--results PATH`` adds the validation figure to a results file (schema in
``docs/results/README.md``).

The pixel size is estimated once for the folder (the median of the per-field estimates,
as ``hemoflow analyze`` does with several images); ``--mpp`` gives it, ``--mpp-per-image``
estimates each field alone.

Usage: python scripts/evaluate_bccd_wbc_types.py ../shared/data/bccd [--limit N]
       [--mpp UM_PER_PX | --mpp-per-image] [--tta] [--results RESULTS_JSON]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from collections import Counter
from pathlib import Path

import pandas as pd


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of the proportion k / n."""
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--mpp", type=float, default=None)
    ap.add_argument("--mpp-per-image", action="store_true")
    ap.add_argument("--model", type=Path, default=None, help="weights file (default: the shipped model)")
    ap.add_argument("--tta", action="store_true", help="test-time augmentation (8 flips/turns per crop)")
    ap.add_argument("--results", type=Path, default=None, metavar="RESULTS_JSON",
                    help="add the validation agreement to a results file (the default run only)")
    args = ap.parse_args(argv)
    if args.results and (args.limit or args.mpp or args.mpp_per_image or args.model or args.tta):
        ap.error("--results records the default run (shipped model, one view per crop, all fields) only")
    if not (args.data_dir / "counts.csv").exists():
        ap.error(f"{args.data_dir} is not a BCCD-layout folder (counts.csv is missing)")
    if args.model is not None and not args.model.is_file():
        ap.error(f"--model {args.model}: no such weights file")

    from hemoflow.analyze import analyze_image, estimate_shared_mpp
    from hemoflow.classify.config import default_weights_path
    from hemoflow.classify.model import load_default_model

    counts = pd.read_csv(args.data_dir / "counts.csv", dtype=str, keep_default_na=False)
    counts = counts[counts["wbc_type_kaggle"].str.fullmatch(r"[A-Z]+")]
    if args.limit:
        counts = counts.head(args.limit)
    mpp = args.mpp
    if mpp is None and not args.mpp_per_image:
        mpp, n = estimate_shared_mpp(sorted((args.data_dir / "JPEGImages").glob("*.jpg")))
        print(f"pixel size {mpp:.4f} um/px (median estimate over {n} fields)")
    if args.model is not None:
        from hemoflow.classify.model import load_model

        clf = load_model(args.model)
    else:
        clf = load_default_model()
    from hemoflow.classify.taxonomy import LABELS, group_of
    from hemoflow.training.splits import bccd_split

    pairs, skipped, part = [], Counter(), []
    for row in counts.itertuples():
        res = analyze_image(args.data_dir / "JPEGImages" / f"{row.image}.jpg", classifier=clf, mpp=mpp, tta=args.tta)
        wbcs = [c for c in res["cells"] if c["cls"] == "wbc"]
        if len(wbcs) != 1:
            skipped[f"{len(wbcs)} WBC detected"] += 1
            continue
        pred = wbcs[0]["wbc_type"]  # compared through the differential group (band/segmented -> neutrophil)
        pairs.append((row.wbc_type_kaggle.lower(), group_of(pred) if pred in LABELS else pred))
        part.append(bccd_split(row.image))
    if not pairs:
        print("no field with one detected WBC", file=sys.stderr)
        return 1
    agree = sum(t == p for t, p in pairs)
    print(f"BCCD WBC type agreement with wbc_type_kaggle, all fields (includes training cells): "
          f"{agree}/{len(pairs)} = {100 * agree / len(pairs):.1f}% (skipped: {dict(skipped)})")
    per_split = {}
    for name, note in (("train", "trained on"), ("validation", "never trained on; used to choose the run")):
        sub = [pr for pr, s in zip(pairs, part) if s == name]
        if sub:
            a = sum(t == p for t, p in sub)
            lo, hi = wilson(a, len(sub))
            per_split[name] = (a, len(sub), lo, hi)
            print(f"  {name} ({note}): {a}/{len(sub)} = {100 * a / len(sub):.1f}% "
                  f"[95 % CI {100 * lo:.1f}-{100 * hi:.1f}%]")
    wpath = args.model or default_weights_path(".pt")
    model = f"{Path(wpath).name}@{hashlib.sha256(Path(wpath).read_bytes()).hexdigest()[:12]}"
    print(f"model: {model}{' (tta)' if args.tta else ''}")
    if args.results and "validation" in per_split:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from results_table import upsert

        a, n, lo, hi = per_split["validation"]
        upsert(args.results, [{
            "name": "BCCD WBC type agreement with Kaggle labels (validation)",
            "value": round(100 * a / n, 4), "ci_low": round(100 * lo, 4), "ci_high": round(100 * hi, 4),
            "unit": "%", "digits": 1, "n": n,
            "data": "BCCD validation fields (hemoflow.training.splits) with one Kaggle type and one detected WBC; "
                    "another microscope and stain than PBC",
            "kind": "validation", "model": model,
            "command": "python scripts/evaluate_bccd_wbc_types.py ../shared/data/bccd",
        }])
        print(f"validation record written to {args.results}")
    truth = sorted({t for t, _ in pairs})
    preds = sorted({p for _, p in pairs})
    print("rows = Kaggle label, columns = hemoflow")
    print(f"{'':<12}" + "".join(f"{p[:8]:>9}" for p in preds))
    cm = Counter(pairs)
    for t in truth:
        print(f"{t:<12}" + "".join(f"{cm[(t, p)]:>9}" for p in preds))
        n = sum(cm[(t, p)] for p in preds)
        print(f"{'':<12}recall {100 * cm[(t, t)] / n:.1f}% of {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
