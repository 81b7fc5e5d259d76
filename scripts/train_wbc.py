"""Train the shipped WBC classifier (hemoflow/classify/weights/wbc_default.pt).

Data (see hemoflow/classify/weights/MODEL_CARD.md):
- ``DATA/pbc_train``: 7,924 PBC cells at 128 px (0.28125 µm/px: 360 px originals at
  ~0.1 µm/px centre-cropped and resized to 128), minus the held-out cells below;
- ``DATA/pbc``: PBC originals at ~0.1 µm/px (a second capture path of the same cells), minus
  a fixed 20 % (30 per class, smallest sha256) held out for validation;
- synthetic WBCs cut from ``hemoflow.synth.synth_field`` fields (adds the class "blast"),
  when that module is available and ``--synth-fields`` > 0;
- with ``--bccd DIR``: the WBCs hemoflow finds on the dev fields of a BCCD-layout folder,
  labelled with their Kaggle type (another microscope and stain; the validation quarter
  of the fields is a validation source, never trained on).

Usage::

    python scripts/train_wbc.py --data ../shared/data --epochs 16 --samples-per-epoch 4000 \
        --synth-fields 160 --seed 0 --threads 2 --workers 1 --od-scale 0.15 --od-shift 0.03

Continue training existing weights with ``--init W.pt`` (e.g. ``--epochs 6 --lr 1e-3``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hemoflow.classify.config import PBC_CAMERA_MPP, default_weights_path  # noqa: E402
from hemoflow.classify.data import (  # noqa: E402
    CellSource,
    folder_sha256,
    load_images,
    pbc_holdout,
    read_labels,
    synthetic_source,
)
from hemoflow.classify.metrics import format_metrics  # noqa: E402
from hemoflow.classify.model import DEFAULT_ARCH, load_model  # noqa: E402
from hemoflow.classify.train import train_from_folder  # noqa: E402
from hemoflow.classify.transforms import AugmentParams  # noqa: E402

PBC_CLASSES = ("basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil", "platelet")
SYNTH_TYPES = ("neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil", "blast")
#: pbc_train: 360 px side (~0.1 µm/px) centre-cropped and resized to 128 px.
PBC_TRAIN_MPP = PBC_CAMERA_MPP * 360 / 128


def pbc_sources(data: Path, *, weight_originals: float):
    """(held-out sha256 set, training originals, validation originals)."""
    pbc = data / "pbc"
    df = read_labels(pbc)
    held = pbc_holdout(df)
    is_val = df["sha256"].isin(held).to_numpy()
    imgs = load_images(pbc, df["path"])
    sha = folder_sha256(pbc)
    train = CellSource("pbc_originals", [im for im, v in zip(imgs, is_val) if not v],
                       list(df["label"][~is_val]), PBC_CAMERA_MPP, weight_originals, sha)
    val = CellSource("pbc_holdout_originals", [im for im, v in zip(imgs, is_val) if v],
                     list(df["label"][is_val]), PBC_CAMERA_MPP, 1.0, sha,
                     {"rule": "per class, the 30 smallest sha256 of pbc/labels.csv"})
    return held, train, val


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=default_weights_path(".pt"))
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1, help="augmentation worker processes")
    ap.add_argument("--io-mpp", type=float, default=0.3)
    ap.add_argument("--samples-per-epoch", type=int, default=4000)
    ap.add_argument("--weight-originals", type=float, default=0.35)
    ap.add_argument("--synth-fields", type=int, default=160, help="synthetic fields of 8 WBCs (0: no synthetic data)")
    ap.add_argument("--synth-weight", type=float, default=0.5)
    ap.add_argument("--od-scale", type=float, default=0.15, help="stain jitter: per-channel OD scale +-")
    ap.add_argument("--od-shift", type=float, default=0.03, help="stain jitter: per-channel OD shift +-")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--init", type=Path, default=None,
                    help="continue training from these weights (same classes and architecture)")
    ap.add_argument("--epoch-offset", type=int, default=None,
                    help="number the epochs from here (default: the epochs already done by --init, else 0)")
    ap.add_argument("--no-blast", action="store_true", help="do not add the class 'blast'")
    ap.add_argument("--bccd", type=Path, default=None,
                    help="also train on the WBCs of this BCCD-layout folder's dev fields (Kaggle type labels; "
                    "the validation quarter becomes a validation source); default DATA/bccd when present")
    ap.add_argument("--no-bccd", action="store_true", help="do not train on BCCD cells")
    ap.add_argument("--bccd-weight", type=float, default=0.5)
    ap.add_argument("--widths", type=int, nargs=4, default=[32, 48, 96, 192],
                    help="channels of the stem and the 3 residual stages")
    ap.add_argument("--stem-convs", type=int, choices=(1, 2), default=2, help="convolutions in the stem")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    t0 = time.perf_counter()
    held, train_orig, val = pbc_sources(args.data, weight_originals=args.weight_originals)
    extra = [train_orig]
    val_sources = [val]
    classes = list(PBC_CLASSES)
    if args.synth_fields > 0:
        kw = {"wbc_mix": {t: 1.0 for t in SYNTH_TYPES}, "n_wbc": 8}
        synth_train = synthetic_source(n_fields=args.synth_fields, seed=10_000, io_mpp=args.io_mpp,
                                       weight=args.synth_weight, synth_kwargs=kw)
        synth_val = synthetic_source(n_fields=max(4, args.synth_fields // 8), seed=90_000, io_mpp=args.io_mpp,
                                     synth_kwargs=kw)
        synth_val.name = "synthetic_val"
        print(f"synthetic: {len(synth_train)} train / {len(synth_val)} val WBCs "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        extra.append(synth_train)
        val_sources.append(synth_val)
        if not args.no_blast:
            classes.append("blast")
    arch = {**DEFAULT_ARCH, "widths": list(args.widths), "stem_convs": args.stem_convs}
    if args.bccd is None and not args.no_bccd and (args.data / "bccd" / "counts.csv").exists():
        args.bccd = args.data / "bccd"
    if args.no_bccd:
        args.bccd = None
    if args.bccd is not None and not (args.bccd / "counts.csv").exists():
        ap.error(f"--bccd {args.bccd}: not a BCCD-layout folder (counts.csv is missing)")
    if args.bccd is not None:
        from hemoflow.analyze import estimate_shared_mpp
        from hemoflow.classify.data import bccd_source

        bmpp, nb = estimate_shared_mpp(sorted((args.bccd / "JPEGImages").glob("*.jpg")))
        bccd_train = bccd_source(args.bccd, mpp=bmpp, split="train", weight=args.bccd_weight)
        bccd_val = bccd_source(args.bccd, mpp=bmpp, split="validation")
        print(f"BCCD at {bmpp:.4f} um/px (pooled over {nb} fields): {len(bccd_train)} train / "
              f"{len(bccd_val)} val WBCs ({time.perf_counter() - t0:.0f} s)", flush=True)
        extra.append(bccd_train)
        val_sources.append(bccd_val)
    init_kw = {}
    if args.init is not None:
        init = load_model(args.init)
        done = init.metadata["training"]
        offset = args.epoch_offset if args.epoch_offset is not None else int(done.get("epoch_offset", 0)) + int(done["epochs"])
        init_kw = {"init_state": init.network.state_dict(), "epoch_offset": offset}
        arch = json.loads(args.init.with_suffix(".json").read_text())["arch"]  # continue the same network
        print(f"continuing from {args.init} (sha256 {init.sha256[:16]}...), epochs numbered from {offset}")
    elif args.epoch_offset:
        init_kw = {"epoch_offset": args.epoch_offset}
    train_from_folder(
        args.data / "pbc_train", args.out, epochs=args.epochs, seed=args.seed, mpp=PBC_TRAIN_MPP,
        io_mpp=args.io_mpp, classes=classes, exclude=held, extra_sources=extra, val_sources=val_sources,
        threads=args.threads, num_workers=args.workers, samples_per_epoch=args.samples_per_epoch, progress=True,
        augment=AugmentParams(od_scale=args.od_scale, od_shift=args.od_shift), lr=args.lr, arch=arch, **init_kw,
    )
    wall = time.perf_counter() - t0
    clf = load_model(args.out)
    if args.init is not None:
        if clf.io != init.io:
            print(f"warning: I/O config differs from the initial weights: {clf.io} vs {init.io}")
    for name, m in clf.metadata["validation"].items():
        print(format_metrics(m, title=f"validation: {name}"))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, sha256 {clf.sha256[:16]}...) "
          f"in {wall:.0f} s; training {clf.metadata['training']['wall_s']} s")
    side = json.loads(args.out.with_suffix(".json").read_text())
    side["script_wall_s"] = round(wall, 1)
    if args.init is not None:
        side["training"]["init_sha256"] = init.sha256
    args.out.with_suffix(".json").write_text(json.dumps(side, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
