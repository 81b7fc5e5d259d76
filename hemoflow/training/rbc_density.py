""""""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

from hemoflow.stages import _rbc_density as R

__all__ = ["density_target", "train_density", "recalibrate_bn", "quantize", "save_density_model", "predict_total",
           "main"]


def density_target(centres, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Training target on the working grid ``shape``: a unit Gaussian per (y, x) centre,
    each normalised inside the array so the target sums to the number of centres."""
    h, w = shape
    yy = np.arange(h, dtype=np.float64)[:, None] + 0.5
    xx = np.arange(w, dtype=np.float64)[None, :] + 0.5
    out = np.zeros((h, w), np.float64)
    for y, x in centres:
        g = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2.0 * sigma_px**2))
        s = g.sum()
        if s > 0:
            out += g / s
    return out.astype(np.float32)


def train_density(samples, *, width: int = 16, stem: int | None = None, epochs: int = 40, batch: int = 8,
                  lr: float = 2e-3, seed: int = 0, scale_range: tuple[float, float] = (0.8, 1.25),
                  recal_bn: bool = True, progress=None):
    """Train the density network on ``samples`` = list of ``(od float32[3, h, w], target
    float32[h, w])`` of one shape each (h, w multiples of 4). Seeded; returns the net.
    With ``recal_bn`` the BatchNorm statistics are re-estimated on the unaugmented samples
    at the end (:func:`recalibrate_bn`).

    Augmentation: flips, per-channel and global OD gain (stain strength, 0.85-1.15 each)
    and a random rescale in ``scale_range`` (pixel-size error; the target is resampled
    and renormalised, so the count is unchanged).
    """
    import math

    import torch
    import torch.nn.functional as tf

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = R.build_net(width, stem)
    opt = torch.optim.AdamW(net.parameters(), lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(samples) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    scale = R.TARGET_SCALE  # density values are ~0.01-0.1; scale them for the MSE
    net.train()
    for ep in range(epochs):
        order = rng.permutation(len(samples))
        total = 0.0
        for i in range(0, len(samples), batch):
            xs, ys = [], []
            for j in order[i : i + batch]:
                x, y = samples[j]
                if rng.random() < 0.5:
                    x, y = x[:, :, ::-1], y[:, ::-1]
                if rng.random() < 0.5:
                    x, y = x[:, ::-1], y[::-1]
                gain = rng.uniform(0.85, 1.15, (3, 1, 1)) * rng.uniform(0.85, 1.15)
                xs.append(np.ascontiguousarray(x * gain.astype(np.float32)))
                ys.append(np.ascontiguousarray(y))
            x = torch.from_numpy(np.stack(xs))
            y = torch.from_numpy(np.stack(ys)) * scale
            s = rng.uniform(*scale_range)
            hh = max(R.ALIGN, int(round(x.shape[2] * s / R.ALIGN)) * R.ALIGN)
            ww = max(R.ALIGN, int(round(x.shape[3] * s / R.ALIGN)) * R.ALIGN)
            if (hh, ww) != tuple(x.shape[2:]):
                x = tf.interpolate(x, size=(hh, ww), mode="bilinear", align_corners=False)
                tot = y.sum((1, 2), keepdim=True)
                y = tf.interpolate(y[:, None], size=(hh, ww), mode="bilinear", align_corners=False)[:, 0]
                y = y * tot / y.sum((1, 2), keepdim=True).clamp_min(1e-6)
            y = tf.avg_pool2d(y[:, None], R.ALIGN)[:, 0] * (R.ALIGN * R.ALIGN)
            p = net(x)[:, 0]
            loss = tf.mse_loss(p, y) + 0.01 * tf.l1_loss(p.sum((1, 2)), y.sum((1, 2))) / scale
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(xs)
        if progress is not None:
            progress(ep + 1, epochs, total / len(samples))
    if recal_bn:
        recalibrate_bn(net, [x for x, _ in samples])
    net.eval()
    return net


def recalibrate_bn(net, ods) -> None:
    """Re-estimate the BatchNorm statistics of ``net`` on unaugmented OD planes ``ods``
    (an equal-weight average over the fields, no gradient; ``net`` ends in eval mode).

    Training leaves exponential averages over augmented (rescaled, gain-changed) batches,
    dominated by the last steps; inference sees plain fields. Without this the networks'
    counts were biased by -0.9 (5-fold CV) and varied by run; with it -0.1.
    """
    import torch

    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    with torch.no_grad():
        for od in ods:
            net(torch.from_numpy(R.pad4(od))[None])
    for m in bns:
        m.momentum = 0.1
    net.eval()


def save_density_model(net, path, meta: dict, int8_state: dict | None = None) -> str:
    """Write ``{"state_dict", "meta"[, "int8_state"]}`` (loads with ``weights_only=True``);
    returns the sha256."""
    import io

    import torch

    buf = io.BytesIO()
    blob = {"state_dict": net.state_dict(), "meta": {"scale": R.TARGET_SCALE, **meta}}
    if int8_state is not None:
        blob["int8_state"] = int8_state
    torch.save(blob, buf)
    data = buf.getvalue()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data)
    R.load_density_model.cache_clear()
    return hashlib.sha256(data).hexdigest()


def predict_total(net, od: np.ndarray) -> float:
    """Density summed over a field (the net's own count; for evaluation)."""
    import torch

    with torch.inference_mode():
        return float(net(torch.from_numpy(R.pad4(od))[None]).sum()) / R.TARGET_SCALE


def quantize(net, ods) -> dict:
    """int8 state of ``net`` calibrated on OD planes ``ods`` (post-training static
    quantisation, x86 backend, BatchNorm folded first); stored beside the fp32 weights."""
    import torch

    with R._quiet():
        from torch.ao.quantization.quantize_fx import convert_fx

        prep = R._prepare(R._fuse(net))
        with torch.inference_mode():
            for od in ods:
                prep(torch.from_numpy(R.pad4(od))[None])
        return dict(convert_fx(prep).state_dict())


# --------------------------------------------------------------------------- command line


def _bccd_samples(root: Path, names: list[str], mpp: float, params, sigma_um: float) -> dict:
    """``{name: (od, target, working µm/px)}`` of the named BCCD fields (one size)."""
    from hemoflow.analyze import read_image
    from hemoflow.errors import HemoflowError
    from hemoflow.training.fitting import txl_centres

    def sample(name):
        rgb = read_image(root / "JPEGImages" / f"{name}.jpg")
        return _field_sample(rgb, mpp, params, lambda f: txl_centres(root, name, 1, rgb.shape[:2], f), sigma_um)

    data = {n: sample(n) for n in names}
    shapes = {v[0].shape for v in data.values()}
    if len(shapes) != 1:
        raise HemoflowError(f"fields of one size expected, got {sorted(shapes)}")
    return data


def _meta(args, work_mpp: float, mpp: float, fit_names: list[str], data: dict) -> dict:
    """The provenance stored with the weights."""
    return {"width": args.width, "stem": args.stem, "epochs": args.epochs, "sigma_um": args.sigma_um, "seed": args.seed,
            "bn_recalibrated": True, "input": "fields zero-padded to the grid",
            "work_mpp": round(work_mpp, 5), "pixel_size_um": round(mpp, 5), "grid": R.ALIGN,
            "fitting_images": len(fit_names), "synthetic_fields": args.synthetic,
            "data_sha256": hashlib.sha256("\n".join(fit_names).encode()
                                          + b"".join(data[n][1].tobytes() for n in fit_names)).hexdigest()[:16],
            "source": "BCCD development fields, TXL-PBC RBC boxes (MIT)"}


def _cross_validate(args, fit, fit_names: list[str], data: dict, truth: dict, meta: dict) -> dict:
    """K-fold cross-validation on the fitting images (``fit(names, seed)`` trains one
    network); with ``--folds-dir`` the fold networks and ``folds.json`` are kept."""
    folds = np.arange(len(fit_names)) % args.cv
    pred = np.zeros(len(fit_names))
    for k in range(args.cv):
        print(f"fold {k + 1}/{args.cv}", flush=True)
        net = fit([n for n, f in zip(fit_names, folds) if f != k], args.seed + k)
        if args.folds_dir is not None:
            save_density_model(net, args.folds_dir / f"fold{k}.pt", {**meta, "fold": k})
        for i in np.flatnonzero(folds == k):
            pred[i] = predict_total(net, data[fit_names[i]][0])
    if args.folds_dir is not None:
        import json

        (args.folds_dir / "folds.json").write_text(json.dumps(
            {n: f"fold{int(f)}.pt" for n, f in zip(fit_names, folds)}, indent=0))
    return _score(f"{args.cv}-fold CV on the fitting images", pred, [truth[n] for n in fit_names])


def _score(tag: str, pred, truth) -> dict:
    p = np.rint(np.asarray(pred, float))
    t = np.asarray(truth, float)
    out = {
        "n": int(len(t)),
        "mape_pct": round(float(np.mean(np.abs(p - t) / t) * 100), 2),
        "mae": round(float(np.mean(np.abs(p - t))), 3),
        "r": round(float(np.corrcoef(p, t)[0, 1]), 3) if len(t) > 2 else float("nan"),
        "bias": round(float(np.mean(np.asarray(pred, float) - t)), 3),
    }
    print(f"{tag}: n={out['n']} MAPE {out['mape_pct']:.2f}% MAE {out['mae']:.2f} r {out['r']:.3f} "
          f"bias {out['bias']:+.2f} (density sum vs rbc_txl)", flush=True)
    return out


def _field_sample(rgb, mpp: float, params, centres_of, sigma_um: float):
    """``(od, target, working µm/px)`` of one field as the network sees it in ``hemoflow
    analyze``: the pipeline's calibration and stain planes, zero-padded to the grid (the
    padding is background, OD 0); ``centres_of(f)`` gives the cell centres in working px
    at block factor ``f``."""
    from hemoflow.kernels._stain import stain_planes
    from hemoflow.stages.calibration import calibrate

    cal = calibrate(rgb, params=params, mpp=mpp)
    f = cal.work_scale
    _, _, od = stain_planes(rgb, cal.downsample, cal.background, od=True, upsample=cal.upsample)
    od = R.pad4(od)
    return od, density_target(centres_of(f), od.shape[1:], sigma_um / (mpp * f)), mpp * f


def _synthetic(n: int, od_shape, params, sigma_um: float) -> list:
    """``n`` synthetic fields (:func:`hemoflow.synth.synth_field` at 0.25 µm/px, seeds
    ``0..n-1``, red-cell cover 0.2-0.55) prepared like the BCCD fields, at the working
    shape ``od_shape``: ``[(od, target)]``. They keep the network's counts true on the
    generator's cells (the demo and the synthetic tests) without taking BCCD fields' place."""
    from hemoflow import synth
    from hemoflow.stages.calibration import block_factor

    out = []
    mpp = 0.25
    f = block_factor(mpp, params.work_mpp)
    shape = (od_shape[1] * f, od_shape[2] * f)
    for seed in range(n):
        cover = 0.2 + 0.35 * ((seed * 0.618034) % 1.0)
        rgb, truth = synth.synth_field(shape, mpp=mpp, seed=seed, rbc_density=cover)
        rbc = np.asarray(truth["cls"]) == "rbc"
        # pixel-index centroids -> continuous coordinates (pixel i spans [i, i + 1)), working px
        yx = np.stack([np.asarray(truth["y"])[rbc], np.asarray(truth["x"])[rbc]], axis=1) + 0.5
        out.append(_field_sample(rgb, mpp, params, lambda fw, yx=yx: yx / fw, sigma_um)[:2])
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="weights file (default: the shipped one)")
    ap.add_argument("--cv", type=int, default=0, help="K-fold cross-validation first (0: none)")
    ap.add_argument("--folds-dir", type=Path, default=None,
                    help="with --cv: keep the fold models there, with folds.json (image -> the model that did "
                    "not see it), for `python -m hemoflow.training.rbc_count DATA --density-folds DIR`")
    ap.add_argument("--epochs", type=int, default=120)
    ap.add_argument("--width", type=int, default=24, help="half the channels of the second stage")
    ap.add_argument("--stem", type=int, default=16, help="channels of the first stage")
    ap.add_argument("--sigma-um", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synthetic", type=int, default=64,
                    help="synthetic fields (hemoflow.synth, 0.25 um/px, seeds 0..N-1) added to every training set")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--mpp", type=float, default=None, help="pixel size (default: pooled estimate)")
    ap.add_argument("--quantize-only", action="store_true",
                    help="no training: add the int8 copy (calibrated on the fitting fields) to the weights at --out")
    return ap


def main(argv=None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.width < 1 or args.stem < 1 or args.epochs < 1:
        ap.error("--width, --stem and --epochs must be >= 1")
    if args.synthetic < 0:
        ap.error("--synthetic must be >= 0")
    if args.folds_dir is not None and args.cv < 2:
        ap.error("--folds-dir needs --cv K (K >= 2)")

    import torch

    from hemoflow.stages import SegmentParams
    from hemoflow.training.fitting import fitting_names, pooled_mpp

    root = args.data_dir
    if not (root / "txl_reannotations").is_dir() or not (root / "counts.csv").is_file():
        raise SystemExit(f"{root} is not a BCCD-layout folder with counts.csv and txl_reannotations/")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or R.WEIGHTS
    if args.quantize_only and not out.is_file():
        ap.error(f"--quantize-only needs existing weights at {out}")
    with open(root / "counts.csv", newline="") as fh:
        truth = {r["image"]: int(float(r["rbc_txl"])) for r in csv.DictReader(fh) if (r.get("rbc_txl") or "").strip()}
    fit_names = fitting_names(root, "rbc_txl")
    hold_names = sorted(set(truth) - set(fit_names))
    mpp = args.mpp if args.mpp is not None else pooled_mpp(root)
    params = SegmentParams()
    print(f"pixel size {mpp:.5f} um/px; {len(fit_names)} fitting images, {len(hold_names)} validation", flush=True)

    t0 = time.time()
    data = _bccd_samples(root, sorted(truth), mpp, params, args.sigma_um)
    shapes = {v[0].shape for v in data.values()}
    work_mpp = next(iter(data.values()))[2]
    od_shape = next(iter(data.values()))[0].shape
    synth_data = _synthetic(args.synthetic, od_shape, params, args.sigma_um)
    # int8 calibration: the fitting fields and the synthetic ones
    calib = [data[n][0] for n in fit_names] + [x for x, _ in synth_data]
    print(f"prepared {len(data)} fields {shapes.pop()} at {work_mpp:.4f} um/px in {time.time() - t0:.0f} s", flush=True)

    if args.quantize_only:
        net, blob = R.read_weights(out)
        meta = {k: v for k, v in blob["meta"].items() if k != "scale"}
        meta["int8_calibration_images"] = len(calib)
        digest = save_density_model(net, out, meta, int8_state=quantize(net, calib))
        print(f"added the int8 copy to {out} (sha256 {digest[:12]})")
        return 0

    def fit(names, seed):
        def progress(ep, n, loss):
            if ep % 10 == 0 or ep == n:
                print(f"  epoch {ep}/{n} loss {loss:.4f} ({time.time() - t0:.0f} s)", flush=True)

        return train_density([data[n][:2] for n in names] + synth_data, width=args.width, stem=args.stem,
                               epochs=args.epochs, seed=seed, progress=progress)

    meta = _meta(args, work_mpp, mpp, fit_names, data)
    if args.cv > 1:
        meta["cv"] = _cross_validate(args, fit, fit_names, data, truth, meta)
    print("final model on all fitting images", flush=True)
    net = fit(fit_names, args.seed)
    meta["fit"] = _score("fitting images (trained on)", [predict_total(net, data[n][0]) for n in fit_names],
                         [truth[n] for n in fit_names])
    if hold_names:
        meta["validation"] = _score("validation (never trained on; used for choices)",
                                    [predict_total(net, data[n][0]) for n in hold_names],
                                    [truth[n] for n in hold_names])
    # int8 copy for inference (several times faster on CPU)
    int8_state = quantize(net, calib)
    meta["int8_calibration_images"] = len(calib)
    digest = save_density_model(net, out, meta, int8_state=int8_state)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB, sha256 {digest[:12]}) in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
