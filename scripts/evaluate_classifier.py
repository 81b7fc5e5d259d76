"""Accuracy figures of the WBC classifier and a classical baseline (quoted in the README).

Evaluation set: the PBC originals held out from training (``DATA/pbc``, 30 per class,
the smallest sha256 per class; their 128 px copies in ``pbc_train`` are excluded from
training too). Crops are cut the way the pipeline cuts them (window of
``96 * io.mpp / 0.1`` px around the image centre, resized to 96 px).

Printed: accuracy, macro-F1, per-class recall and confusion matrix for

- the CNN (shipped weights or ``--model``), clean and under capture changes: JPEG q70,
  resized by -15 %/+15 % (true pixel size given, and nominal 0.1 µm/px kept = a 15 %
  pixel-size error);
- the baseline (colour/texture/HOG features + logistic regression), trained on the same
  training cells without augmentation;
- agreement with the truth on synthetic fields (``hemoflow.synth``), when available.

Usage::

    python scripts/evaluate_classifier.py [--data ../shared/data] [--model/--weights path.pt] [--json out.json] [--tta]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hemoflow.classify.baseline import LogisticBaseline  # noqa: E402
from hemoflow.classify.config import PBC_CAMERA_MPP  # noqa: E402
from hemoflow.classify.data import load_images, pbc_holdout, read_labels  # noqa: E402
from hemoflow.classify.evaluation import (  # noqa: E402
    degrade,
    evaluate_pbc,
    pbc_heldout,
    pipeline_crops,
    synthetic_agreement,
)
from hemoflow.classify.metrics import format_metrics  # noqa: E402
from hemoflow.classify.model import load_default_model, load_model  # noqa: E402
from hemoflow.classify.transforms import prepare_cell_image  # noqa: E402

PBC8 = ("basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil", "platelet")
PBC_TRAIN_MPP = PBC_CAMERA_MPP * 360 / 128

CONDITIONS = {
    "clean": ({}, None),
    "jpeg_q70": ({"jpeg_quality": 70}, None),
    "resize_0.85_true_mpp": ({"scale": 0.85}, PBC_CAMERA_MPP / 0.85),
    "resize_1.15_true_mpp": ({"scale": 1.15}, PBC_CAMERA_MPP / 1.15),
    "resize_0.85_nominal_mpp": ({"scale": 0.85}, PBC_CAMERA_MPP),
    "resize_1.15_nominal_mpp": ({"scale": 1.15}, PBC_CAMERA_MPP),
    "jpeg_q70+resize_0.85_true_mpp": ({"jpeg_quality": 70, "scale": 0.85}, PBC_CAMERA_MPP / 0.85),
}


def run_conditions(predict, images, labels, io):
    out = {}
    for name, (kw, mpp) in CONDITIONS.items():
        imgs = [degrade(im, **kw) for im in images] if kw else images
        out[name] = evaluate_pbc(predict, imgs, labels, io, mpp=mpp or PBC_CAMERA_MPP, classes=PBC8)
    return out


def baseline_training_set(data: Path, io):
    """pbc_train minus held-out cells (at 0.28125 µm/px) + the training PBC originals."""
    pbc = read_labels(data / "pbc")
    held = pbc_holdout(pbc)
    tr = read_labels(data / "pbc_train")
    tr = tr[~tr["source_sha256"].isin(held)]
    crops = [prepare_cell_image(im, mpp=PBC_TRAIN_MPP, size=io.input_size, dst_mpp=io.mpp)
             for im in load_images(data / "pbc_train", tr["path"])]
    labels = list(tr["label"])
    orig = pbc[~pbc["sha256"].isin(held)]
    crops += list(pipeline_crops(load_images(data / "pbc", orig["path"]), PBC_CAMERA_MPP, io))
    labels += list(orig["label"])
    return np.stack(crops), labels


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--model", "--weights", dest="model", type=Path, default=None,
                    help="weights (.pt) to evaluate instead of the shipped ones")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--synth-fields", type=int, default=12)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--tta", action="store_true",
                    help="CNN with test-time augmentation (8 flips/turns per crop, as `hemoflow classify` does)")
    args = ap.parse_args(argv)

    clf = load_model(args.model) if args.model else load_default_model()
    print(f"model: {clf}")
    images, labels = pbc_heldout(args.data)
    print(f"held-out PBC originals: {len(images)} cells")
    predict = functools.partial(clf.predict, tta=args.tta)
    results: dict = {"model_sha256": clf.sha256, "tta": args.tta, "cnn": run_conditions(predict, images, labels, clf.io)}
    for name, m in results["cnn"].items():
        print(format_metrics(m, title=f"CNN, {name}") if name == "clean" else
              f"CNN, {name}: accuracy={m['accuracy']:.4f} macro-F1={m['macro_f1']:.4f} "
              f"basophil recall={m['recall'].get('basophil', float('nan')):.3f}")
    if not args.no_baseline:
        t0 = time.perf_counter()
        X, y = baseline_training_set(args.data, clf.io)
        base = LogisticBaseline(classes=PBC8).fit(X, y)
        print(f"baseline trained on {len(y)} cells in {time.perf_counter() - t0:.0f} s")
        results["baseline"] = run_conditions(base.predict, images, labels, clf.io)
        for name, m in results["baseline"].items():
            print(format_metrics(m, title=f"baseline, {name}") if name == "clean" else
                  f"baseline, {name}: accuracy={m['accuracy']:.4f} macro-F1={m['macro_f1']:.4f}")
    if args.synth_fields > 0 and importlib.util.find_spec("hemoflow.synth") is not None:
        uniform = {t: 1.0 for t in ("neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil", "blast")}
        for name, mix in (("normal", "normal"), ("acute_leukaemia", "acute_leukaemia"), ("uniform", uniform)):
            m = synthetic_agreement(clf, n_fields=args.synth_fields, wbc_mix=mix, n_wbc=12, tta=args.tta)
            results[f"synthetic_{name}"] = m
            print(format_metrics(m, title=f"synthetic fields ({name} mix): agreement with truth"))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
