"""The red-cell density model: targets, mass per basin, training, shipped weights."""

from __future__ import annotations

import csv
import hashlib

import numpy as np
import pytest
from _require import require
from scipy import ndimage as ndi

from hemoflow.errors import HemoflowError
from hemoflow.kernels._smear import grow_labels, stain_planes
from hemoflow.stages import SegmentParams
from hemoflow.stages import _rbc_density as R
from hemoflow.training import rbc_density as T


def test_density_target_sums_to_the_number_of_centres():
    t = T.density_target([(10.0, 10.0), (0.5, 30.0), (19.5, 39.5)], (20, 40), sigma_px=2.0)
    assert t.shape == (20, 40) and t.dtype == np.float32
    assert t.sum() == pytest.approx(3.0, abs=1e-4)  # each Gaussian renormalised inside the array
    one = T.density_target([(10.0, 10.0)], (20, 40), sigma_px=2.0)
    assert np.unravel_index(np.argmax(one), one.shape) in {(10, 10), (9, 9), (9, 10), (10, 9)}
    assert T.density_target([], (8, 8), 1.0).sum() == 0


def test_grow_labels_gives_each_pixel_a_nearest_label():
    rng = np.random.default_rng(3)
    lab = np.zeros((40, 50), np.int32)
    for k, (y, x) in enumerate(rng.integers(3, 37, size=(6, 2)), start=1):
        lab[y - 2 : y + 3, x - 2 : x + 2] = k
    radius = 4.5
    grown = grow_labels(lab, radius)
    assert np.array_equal(grown[lab > 0], lab[lab > 0])
    dist = {k: ndi.distance_transform_edt(lab != k) for k in range(1, lab.max() + 1) if (lab == k).any()}
    nearest = np.min(np.stack(list(dist.values())), axis=0)
    bg = lab == 0
    # chamfer 3-4 distances: within 6 % of Euclidean
    assert np.all(grown[bg & (nearest <= radius / 1.06)] > 0)
    assert np.all(grown[bg & (nearest > radius * 1.06)] == 0)
    for (y, x) in zip(*np.nonzero(bg & (grown > 0))):
        assert dist[grown[y, x]][y, x] <= nearest[y, x] * 1.12 + 1e-9


def test_basin_mass_splits_the_grid_and_reaches_into_holes():
    lab = np.zeros((16, 16), np.int32)
    lab[:, :8] = 1
    lab[:, 8:] = 2
    lab[5:7, 2:4] = 0  # a hole (pallor) inside basin 1
    dens = np.zeros((4, 4), np.float32)
    dens[1, 0] = 1.6  # grid cell over the hole: 4 of its 16 px are background
    dens[2, 3] = 0.8
    m0 = R.basin_mass(lab, 2, dens)
    assert m0 == pytest.approx([1.6 * 12 / 16, 0.8])
    m1 = R.basin_mass(lab, 2, dens, reach_px=2.0)
    assert m1 == pytest.approx([1.6, 0.8])
    assert R.basin_mass(lab, 0, dens).shape == (0,)


def test_kept_mass_adds_up_the_density_of_the_kept_basins_regions():
    lab = np.zeros((14, 24), np.int32)  # 14 rows: the last grid row has 2 px inside the array
    lab[2:6, 2:6] = 1  # kept
    lab[2:6, 7:11] = 2  # dropped (count 0): its pixels go to the nearest kept basin
    lab[9:13, 2:6] = 3  # kept, 2 parts
    dens = np.zeros((4, 6), np.float32)
    dens[0, 0] = 1.0  # over basin 1
    dens[0, 2] = 0.5  # over basin 2 (dropped) and the background beside it
    dens[3, 0] = 0.4  # the grid row cut by the array's edge, by basin 3: all of it counts
    dens[2, 5] = 0.3  # far from every kept basin
    counts = np.array([1, 0, 2])
    m = R.kept_mass(lab, counts, dens, reach_px=8.0)
    assert m[1] == 0
    assert m[0] == pytest.approx(1.0 + 0.5, abs=1e-6)
    assert m[2] == pytest.approx(0.4, abs=1e-6)
    near = R.kept_mass(lab, counts, dens, reach_px=0.0)  # own pixels only
    assert near[0] == pytest.approx(1.0 * 4 / 16, abs=1e-6)  # its pixels (2-3, 2-3) of grid cell (0, 0)
    wide = R.kept_mass(lab, counts, dens, reach_px=60.0)
    assert wide.sum() == pytest.approx(dens.sum(), abs=1e-5)  # everything, the edge row included
    excl = np.zeros(lab.shape, bool)
    excl[:4, :4] = True  # e.g. a WBC over grid cell (0, 0)
    assert R.kept_mass(lab, counts, dens, reach_px=60.0, exclude=excl)[0] == pytest.approx(wide[0] - 1.0, abs=1e-6)
    assert R.kept_mass(lab, np.zeros(0, int), dens, reach_px=1.0).shape == (0,)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grown_grid_sum_equals_growing_then_summing(seed):
    from hemoflow.kernels._smear import grown_grid_sum, label_grid_sum

    rng = np.random.default_rng(seed)
    lab = np.zeros((45, 62), np.int32)
    n = 9
    for k in range(1, n + 1):
        y, x = rng.integers(0, 40), rng.integers(0, 57)
        lab[y : y + rng.integers(2, 6), x : x + rng.integers(2, 6)] = k
    grid = rng.random((12, 16)).astype(np.float32)
    keep = rng.random(n + 1) < 0.6
    keep[0] = False
    exclude = rng.random(lab.shape) < 0.1
    radius = float(rng.uniform(0, 6))
    masked = np.where(keep[lab], lab, 0).astype(np.int32)
    grown = grow_labels(masked, radius)
    grown[exclude] = 0
    want = label_grid_sum(grown, grid, n, 4)
    got = grown_grid_sum(lab, radius, grid, n, 4, keep=keep, exclude=exclude)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    all_ = grown_grid_sum(lab, radius, grid, n, 4)
    np.testing.assert_allclose(all_, label_grid_sum(grow_labels(lab, radius), grid, n, 4), rtol=1e-12)
    with pytest.raises(ValueError, match="keep"):
        grown_grid_sum(lab, radius, grid, n, 4, keep=keep[:3])
    with pytest.raises(ValueError, match="exclude"):
        grown_grid_sum(lab, radius, grid, n, 4, exclude=exclude[:5])


def test_recalibrated_batchnorm_holds_the_plain_fields_statistics():
    import torch
    torch.set_num_threads(1)
    train, _ = _disc_set(6, seed=4)
    net = T.train_density(train, width=8, epochs=2, batch=4, seed=0, recal_bn=False)
    ods = [od for od, _ in train]
    T.recalibrate_bn(net, ods)
    assert not net.training
    with torch.no_grad():
        first = [net[1](net[0](torch.from_numpy(R.pad4(od))[None])) for od in ods]  # unshuffle, conv
    want = torch.stack([f.mean((0, 2, 3)) for f in first]).mean(0)
    assert torch.allclose(net[2].running_mean, want, atol=1e-5)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    T.recalibrate_bn(net, ods)  # idempotent: no memory of training's last batches
    for k, v in net.state_dict().items():
        if v.dtype.is_floating_point:
            assert torch.allclose(v, before[k], atol=1e-6), k


def test_stain_planes_returns_the_od_planes_on_request():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(13, 10, 3), dtype=np.uint8)
    bg = (240.0, 230.0, 250.0)
    cell, nuc, od = stain_planes(rgb, 3, bg, od=True)
    cell2, nuc2 = stain_planes(rgb, 3, bg)
    assert np.array_equal(cell, cell2) and np.array_equal(nuc, nuc2)
    assert od.shape == (3, 5, 4)
    mean = rgb[:12, :9].reshape(4, 3, 3, 3, 3).mean(axis=(1, 3)).astype(np.float64)
    ref = np.log(np.asarray(bg)[None, None, :] / np.maximum(mean, 1.0))
    assert np.allclose(od[:, :4, :3].transpose(1, 2, 0), ref, atol=1e-5)
    # partial edge blocks average the pixels they hold
    assert od[0, 4, 0] == pytest.approx(np.log(bg[0] / max(rgb[12, :3, 0].mean(), 1.0)), abs=1e-5)


def _disc_set(n, seed, size=48):
    """Toy fields: 0-6 dark discs (7 px) on background, OD planes and their targets."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] + 0.5
    out, counts = [], []
    for _ in range(n):
        k = int(rng.integers(0, 7))
        od = np.zeros((3, size, size), np.float32)
        cs = []
        for _ in range(k):
            y, x = rng.uniform(4, size - 4, 2)
            od[:, (yy - y) ** 2 + (xx - x) ** 2 < 12.25] += np.float32([0.2, 0.5, 0.3])[:, None]
            cs.append((y, x))
        out.append((od, T.density_target(cs, (size, size), 2.0)))
        counts.append(k)
    return out, np.array(counts)


def test_training_is_seeded_and_learns_to_count():
    import torch
    torch.set_num_threads(1)
    train, _ = _disc_set(24, seed=1)
    test, truth = _disc_set(12, seed=2)
    a = T.train_density(train, width=8, epochs=100, batch=8, lr=1e-2, seed=5)
    b = T.train_density(train, width=8, epochs=2, batch=8, seed=5)
    c = T.train_density(train, width=8, epochs=2, batch=8, seed=5)
    for k, v in b.state_dict().items():
        assert torch.equal(v, c.state_dict()[k]), k
    pred = np.array([T.predict_total(a, od) for od, _ in test])
    err = np.abs(pred - truth).mean()
    assert err < 0.5 * np.abs(truth - truth.mean()).mean(), (err, pred.round(2), truth)
    assert np.corrcoef(pred, truth)[0, 1] > 0.9


def test_saved_weights_round_trip_and_missing_file_error(tmp_path):
    train, _ = _disc_set(8, seed=4)
    net = T.train_density(train, width=8, epochs=1, batch=8, seed=0)
    p = tmp_path / "d.pt"
    digest = T.save_density_model(net, p, {"width": 8, "note": "toy"})
    assert digest == hashlib.sha256(p.read_bytes()).hexdigest()
    od = train[0][0]
    got = R.rbc_density(od, path=str(p))
    assert got.shape == (12, 12)
    assert got.sum() == pytest.approx(T.predict_total(net, od), rel=1e-4)  # fused BN == eval BN
    with pytest.raises(HemoflowError, match="rbc_density_model=False"):
        R.load_density_model(str(tmp_path / "missing.pt"))


#: Shipped int8 total / its fp32 copy's - 1 on 512² synthetic fields: mean +0.10 %, sd 0.06 % over 10 seeds; about mean + 5 sd.
INT8_VS_FP32 = 0.004


def test_shipped_int8_network_counts_like_its_fp32_copy():
    """The network analyze_field runs is the shipped file's int8 copy, on the 4-px grid,
    and its count of a field stays within INT8_VS_FP32 of the fp32 network's."""
    import torch

    from hemoflow import synth
    from hemoflow.stages import calibrate

    require("x86" in torch.backends.quantized.supported_engines, "no x86 int8 backend (the product's int8 engine)")
    torch.set_num_threads(1)
    _, qmeta = R.load_density_model()
    fnet, fmeta = R.load_density_model(int8=False)
    assert qmeta["int8"] and not fmeta["int8"]
    assert qmeta["sha256"] == hashlib.sha256(R.WEIGHTS.read_bytes()).hexdigest()
    assert R.WEIGHTS.stat().st_size < 1_000_000
    for seed in (0, 1, 2):
        rgb, _ = synth.synth_field((512, 512), seed=seed)
        cal = calibrate(rgb, mpp=0.25)
        _, _, od = stain_planes(rgb, cal.downsample, cal.background, od=True)
        q = R.rbc_density(od)
        assert q.shape == (od.shape[1] // R.ALIGN, od.shape[2] // R.ALIGN) and (q >= 0).all()
        with torch.inference_mode():
            x = torch.from_numpy(R.pad4(od))[None].contiguous(memory_format=torch.channels_last)
            f = float(fnet(x).sum()) / fmeta["scale"]
        assert abs(q.sum() / f - 1) <= INT8_VS_FP32, (seed, q.sum(), f)


def test_window_alignment_follows_the_density_model():
    from hemoflow.pipeline.tiles import window_align

    assert window_align(SegmentParams()) == R.ALIGN
    assert window_align(SegmentParams(rbc_density_model=False)) == 1
    assert window_align(SegmentParams(rbc_count_model=False)) == 1


@pytest.mark.data
def test_shipped_density_counts_validation_fields(data_dir):
    """The shipped int8 network's own count on the BCCD validation fields (never trained
    on; used for choices)."""
    from hemoflow.analyze import read_image
    from hemoflow.stages import field as F
    from hemoflow.training.splits import in_bccd_validation

    root = data_dir / "bccd"
    require((root / "txl_reannotations").is_dir(), "bccd data with TXL re-annotations not present")
    with open(root / "counts.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if (r.get("rbc_txl") or "").strip()]
    rows = [r for r in rows if in_bccd_validation(r["image"])]
    assert len(rows) >= 20
    params = SegmentParams()
    pred, truth = [], []
    for r in rows:
        rgb = read_image(root / "JPEGImages" / f"{r['image']}.jpg")
        cal = F.calibrate(rgb, params=params, mpp=0.0745)
        _, _, od = stain_planes(rgb, cal.downsample, cal.background, od=True)
        pred.append(float(R.rbc_density(od).sum()))
        truth.append(float(r["rbc_txl"]))
    pred, truth = np.rint(pred), np.array(truth)
    mape = float(np.mean(np.abs(pred - truth) / truth))
    r_ = float(np.corrcoef(pred, truth)[0, 1])
    assert mape < 0.09 and r_ > 0.55, (mape, r_)


def test_expected_weights_share_the_expectation_and_collect_fragments():
    from hemoflow.stages._rbc_count import expected_weights
    from hemoflow.stages.features import rbc_count

    lab = np.zeros((40, 60), np.int32)
    lab[2:12, 2:12] = 1  # a cell
    lab[2:12, 14:16] = 2  # a fragment beside it
    lab[20:30, 2:22] = 3  # a clump of two
    lab[30:32, 50:52] = 4  # a fragment far from everything
    proba = np.array([
        [0.05, 0.90, 0.05, 0.0],
        [0.60, 0.40, 0.00, 0.0],
        [0.00, 0.30, 0.70, 0.0],
        [0.70, 0.30, 0.00, 0.0],
    ])
    counts, weight = expected_weights(proba, lab, reach_px=15.0)
    assert counts.tolist() == [1, 0, 2, 0]
    assert weight[0] == pytest.approx(1.0 + 0.4)  # its own expectation plus the fragment's
    assert weight[1] == 0 and weight[3] == 0
    assert weight[2] == pytest.approx((0.3 + 1.4) / 2)  # shared by the clump's two parts
    table = {"cls": np.array(["rbc", "rbc", "rbc", "wbc"]), "count_weight": np.array([1.4, 0.85, 0.85, 1.0])}
    assert rbc_count(table) == 3  # round(3.1); the far fragment's 0.3 is lost
    assert rbc_count({"cls": table["cls"]}) == 3


def test_int8_copy_tracks_the_fp32_network(tmp_path):
    import torch

    require("x86" in torch.backends.quantized.supported_engines, "no x86 int8 backend (the product's int8 engine)")
    torch.set_num_threads(1)
    train, _ = _disc_set(16, seed=6)
    net = T.train_density(train, width=8, epochs=40, batch=8, lr=1e-2, seed=1)
    p = tmp_path / "q.pt"
    T.save_density_model(net, p, {"width": 8}, int8_state=T.quantize(net, [od for od, _ in train]))
    qnet, meta = R.load_density_model(str(p))
    fnet, fmeta = R.load_density_model(str(p), False)
    assert meta["int8"] and not fmeta["int8"]
    for od, _ in _disc_set(6, seed=9)[0]:
        q = R.rbc_density(od, path=str(p))
        with torch.inference_mode():
            f = float(fnet(torch.from_numpy(R.pad4(od))[None].contiguous(memory_format=torch.channels_last)).sum())
        assert q.sum() == pytest.approx(f / R.TARGET_SCALE, abs=0.15, rel=0.05)


def test_nhwc_layout_gives_the_bytes_of_torchs_int8_graph():
    """The shipped int8 network with its unshuffle and pool on the NHWC kernels gives
    exactly the output of torch's own int8 graph of the same weights."""
    import torch

    require("x86" in torch.backends.quantized.supported_engines, "no x86 int8 backend (the product's int8 engine)")
    torch.set_num_threads(1)
    qnet, meta = R.load_density_model()
    assert meta["int8"]
    kinds = {type(m).__name__ for m in qnet.children()}
    assert {"Unshuffle2", "MaxPool2"} <= kinds and not {"PixelUnshuffle", "MaxPool2d"} & kinds
    net, blob = R.read_weights(R.WEIGHTS)
    with R._quiet():
        torch.backends.quantized.engine = "x86"
        ref = R._int8_shell(R._fuse(net))
        ref.load_state_dict(blob["int8_state"])
    rng = np.random.default_rng(3)
    with torch.inference_mode():
        for shape in ((3, 4, 4), (3, 36, 20), (3, 128, 96)):
            x = torch.from_numpy(rng.random(shape, dtype=np.float32) * 0.8)[None]
            assert torch.equal(qnet(x), ref(x))
        # the byte-wise pool serves unsigned int8 only; signed input takes torch's pool
        pool = next(m for m in qnet.children() if type(m).__name__ == "MaxPool2")
        for dt, zp in ((torch.quint8, 128), (torch.qint8, 0)):
            q = torch.quantize_per_tensor(torch.randn(1, 4, 6, 7), 0.05, zp, dt)
            assert torch.equal(pool(q).int_repr(), torch.nn.functional.max_pool2d(q, 2).int_repr())


def test_mass_count_parameters_are_checked():
    assert SegmentParams(rbc_mass_reach_um=0).rbc_mass_reach_um == 0.0
    with pytest.raises(HemoflowError, match="rbc_mass_reach_um must be >= 0"):
        SegmentParams(rbc_mass_reach_um=-1)
    from hemoflow.training.ablation import AblationParams

    assert AblationParams(rbc_density_count=0).rbc_density_count is False
