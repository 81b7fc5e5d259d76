"""Agreement of hemoflow's WBC types with the Kaggle labels on BCCD fields.

Runs the same code path as ``hemoflow analyze`` (segmentation + the shipped classifier)
on every BCCD field that has a single-type label in ``counts.csv`` (``wbc_type_kaggle``;
fields labelled with two types are skipped) and exactly one detected WBC, and prints the
agreement and the confusion matrix. BCCD is another microscope and stain than the PBC
cells the model was trained on, so this measures domain transfer.

Agreement is also given for the dev fields and for the self-holdout quarter (the fields a
model trained with ``scripts/train_wbc.py --bccd`` never saw).

The pixel size is estimated once for the folder (the median of the per-field estimates,
as ``hemoflow analyze`` does with several images); ``--mpp`` gives it, ``--mpp-per-image``
estimates each field alone.

Usage: python scripts/evaluate_bccd_wbc_types.py ../shared/data/bccd [--limit N]
       [--mpp UM_PER_PX | --mpp-per-image] [--tta]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import pandas as pd


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--mpp", type=float, default=None)
    ap.add_argument("--mpp-per-image", action="store_true")
    ap.add_argument("--model", type=Path, default=None, help="weights file (default: the shipped model)")
    ap.add_argument("--tta", action="store_true", help="test-time augmentation (8 flips/turns per crop)")
    args = ap.parse_args(argv)
    if not (args.data_dir / "counts.csv").exists():
        ap.error(f"{args.data_dir} is not a BCCD-layout folder (counts.csv is missing)")
    if args.model is not None and not args.model.is_file():
        ap.error(f"--model {args.model}: no such weights file")

    from hemoflow.analyze import analyze_image, estimate_shared_mpp
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
    from hemoflow.training.splits import in_bccd_validation as bccd_self_holdout

    pairs, skipped, part = [], Counter(), []
    for row in counts.itertuples():
        res = analyze_image(args.data_dir / "JPEGImages" / f"{row.image}.jpg", classifier=clf, mpp=mpp, tta=args.tta)
        wbcs = [c for c in res["cells"] if c["cls"] == "wbc"]
        if len(wbcs) != 1:
            skipped[f"{len(wbcs)} WBC detected"] += 1
            continue
        pred = wbcs[0]["wbc_type"]  # compared through the differential group (band/segmented -> neutrophil)
        pairs.append((row.wbc_type_kaggle.lower(), group_of(pred) if pred in LABELS else pred))
        part.append(bccd_self_holdout(row.image))
    if not pairs:
        print("no field with one detected WBC", file=sys.stderr)
        return 1
    agree = sum(t == p for t, p in pairs)
    print(f"BCCD WBC type agreement with wbc_type_kaggle: {agree}/{len(pairs)} = {100 * agree / len(pairs):.1f}% "
          f"(skipped: {dict(skipped)})")
    for name, sel in (("dev", False), ("self-holdout", True)):
        sub = [pr for pr, h in zip(pairs, part) if h == sel]
        if sub:
            a = sum(t == p for t, p in sub)
            print(f"  {name}: {a}/{len(sub)} = {100 * a / len(sub):.1f}%")
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
