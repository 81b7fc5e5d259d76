"""Whole-slide throughput of hemoflow's tile pipeline, against the I/O floor and a plain
scikit-image implementation, on a local Dask cluster.

One run measures, on the same synthetic OME-Zarr slide:

(a) the I/O floor: read + decode every level-0 chunk and nothing else (one thread);
(b) hemoflow's tile pipeline (read window -> preprocess -> segment -> kernels -> cell
    table -> WBC crops) on ``hemoflow.Client`` clusters of 1 and 2 single-threaded
    workers, driving ``hemoflow.pipeline.tasks.run_tile`` the way the job runner does
    (one task per tile); WBC classification (``tasks.classify_batch``) is timed
    separately, on CPU;
(c) a reference: the same steps written plainly with scikit-image / scipy (green
    channel, gaussian, Otsu, fill holes, remove small objects, distance transform +
    peak_local_max + watershed, regionprops_table, crops), on a sample of tiles, scaled
    up to the slide; once at full resolution and once at hemoflow's working scale (the
    window block-averaged by hemoflow's block factor). Both sides are warmed before
    timing, and both read their windows inside the timer.

The slide is generated once and cached (``--workdir``, default
``~/.cache/hemoflow-bench``): one ``--block`` x ``--block`` field is planned and rendered
by :mod:`hemoflow.synth` and repeated as a mosaic over the slide (rendering a
gigapixel cell by cell takes minutes and is not what is measured), then written as an
OME-Zarr 0.5 pyramid with the io layer's writer (1024-px chunks, Blosc-LZ4).

Prints details as it goes (JSON per measurement; each run also records the CPU time of
every task thread, the steadier figure on a shared machine, and prints a ``cpu-time
basis:`` line) and, last, one line::

    mp_per_s_per_core=... ratio_vs_skimage=... ratio_vs_skimage_same_scale=... ratio_vs_io_floor=... scaling_2_workers=... peak_worker_rss_mb=...

- ``mp_per_s_per_core``: slide megapixels / tile-phase wall time, 1 worker (1 core);
- ``ratio_vs_skimage``: that rate / the scikit-image reference's rate on one core, the
  reference segmenting at full resolution;
- ``ratio_vs_skimage_same_scale``: the same, the reference segmenting at hemoflow's own
  working scale (each window block-averaged by hemoflow's block factor first): the same
  work, so this is the ratio that measures the implementation;
- ``ratio_vs_io_floor``: I/O-floor rate (one thread) / that rate (how far above pure
  read+decode the pipeline is; 1 would mean "as fast as reading");
- ``scaling_2_workers``: tile-phase wall time with 1 worker / with 2 workers;
- ``peak_worker_rss_mb``: largest resident set of any worker process, sampled every
  0.1 s through the whole run (tile phase and classification).

Usage::

    python benchmarks/slide_throughput.py --quick            # 8192^2 slide, < 2 min
    python benchmarks/slide_throughput.py                    # 32768^2 (1.07 GP)
    python benchmarks/slide_throughput.py --size 65536 --subset 64 --workers 1 --stream --pipeline-only
    python benchmarks/slide_throughput.py --granularity 1024 2048 4096 --subset-mp 268
    python benchmarks/slide_throughput.py --quick --s3 --workers 2 --threads-per-worker 2

``--subset N`` processes N tiles drawn uniformly over the slide (memory checks on slides
too large to process here); ``--stream`` frees each tile result once summarised (the
per-task working set alone; a job keeps results until the slide is finalised);
``--pipeline-only`` skips the I/O floor and the reference; ``--granularity`` measures
per-tile time and scheduler overhead for several tile sizes (and a no-op graph of the
same shape); ``--s3`` copies the slide into a moto S3 server on loopback and reads it
from ``s3://``. How to read the figures: ``docs/performance.md``; past runs: ``docs/experiments/performance.md``.
"""

from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import pickle  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MPP = 0.25
CHUNK = 1024


def log(*a) -> None:
    print(*a, flush=True)


# --------------------------------------------------------------------------- the slide


class _MosaicSource:
    """Duck-typed TIFF source for the io layer's OME-Zarr writer: one rendered field
    repeated over the slide (``read_block`` returns ``uint8[h, w, 3]``, axes ``YXS``)."""

    def __init__(self, field: np.ndarray, shape: tuple[int, int], name: str):
        self.field = field
        self.height, self.width = shape
        self.shape = (shape[0], shape[1], 3)
        self.axes = "YXS"
        self.dtype = np.dtype(np.uint8)
        self.path = name

    def read_block(self, y0: int, y1: int, x0: int, x1: int, level: int = 0) -> np.ndarray:
        b = self.field.shape[0]
        ys = np.arange(y0, y1) % b
        xs = np.arange(x0, x1) % b
        if ys[-1] >= ys[0] and xs[-1] >= xs[0]:  # contiguous in the field
            return self.field[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
        return self.field[np.ix_(ys, xs)]


def ensure_slide(workdir: Path, size: int, *, block: int = 8192, seed: int = 0) -> str:
    """Path of the cached ``size`` x ``size`` synthetic OME-Zarr slide (written if absent)."""
    from hemoflow.io import open_slide
    from hemoflow.io.ingest import _codec, _write
    from hemoflow.synth import plan_slide

    block = min(block, size)
    path = workdir / f"synth-{size}-b{block}-s{seed}.ome.zarr"
    if path.exists():
        try:
            s = open_slide(str(path))
            if s.shape == (size, size):
                return str(path)
        except Exception:
            pass
        shutil.rmtree(path, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    plan = plan_slide((block, block), mpp=MPP, seed=seed)
    field = plan.render_region(0, 0, block, block)
    t1 = time.perf_counter()
    src = _MosaicSource(field, (size, size), path.name)
    tmp = Path(f"{path}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    _write(src, str(tmp), [2, 0, 1], ("c", "y", "x"), MPP, CHUNK, None, _codec("lz4"), 2, None)
    os.replace(tmp, path)
    log(f"# slide written: {path} ({size}x{size}, field {block}^2 rendered in {t1 - t0:.1f}s, "
        f"zarr written in {time.perf_counter() - t1:.1f}s, {_du(path) / 2**30:.2f} GiB)")
    return str(path)


def _du(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


# --------------------------------------------------------------------------- (a) I/O floor


def io_floor(url: str, repeat: int = 1) -> dict:
    """Read and decode every level-0 chunk once, one at a time, on one thread."""
    import zarr

    from hemoflow.io import open_slide

    with zarr.config.set({"threading.max_workers": 1, "async.concurrency": 1}):
        slide = open_slide(url)
        arr = slide.array(0)
        h, w = slide.shape
        best_wall = best_cpu = float("inf")
        for _ in range(repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            nbytes = 0
            for y0 in range(0, h, CHUNK):
                for x0 in range(0, w, CHUNK):
                    nbytes += arr[:, y0:y0 + CHUNK, x0:x0 + CHUNK].nbytes
            best_wall = min(best_wall, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
    mp = h * w / 1e6
    return {"mp": mp, "wall_s": best_wall, "cpu_s": best_cpu, "mp_s": mp / best_wall, "mp_s_cpu": mp / best_cpu}


# --------------------------------------------------------------------------- (b) hemoflow


#: SegmentParams overrides from ``--param NAME=VALUE``.
PARAMS: dict = {}


def _parse_param(item: str) -> tuple[str, object]:
    k, sep, v = item.partition("=")
    if not sep or not k:
        raise SystemExit(f"--param expects NAME=VALUE, got {item!r}")
    try:
        return k, (tuple(float(x) for x in v.split(",")) if "," in v else float(v))
    except ValueError:
        return k, v


def make_plan(url: str, tile_size: int, record_to: str | None = None):
    """The SlidePlan ``tasks.prepare_slide`` builds for an already-ingested slide;
    ``record_to``: an output URL where each tile task writes its record (cells + crops),
    as a job does for resume."""
    from hemoflow.io import open_slide
    from hemoflow.jobs.manifest import SlideEntry
    from hemoflow.pipeline import tasks
    from hemoflow.pipeline.tiles import halo_pixels, plan_tiles
    from hemoflow.stages import SegmentParams

    params, crop = SegmentParams(**PARAMS), crop_spec()
    t0 = time.perf_counter()
    slide = open_slide(url)
    h, w = slide.shape
    cal = tasks.slide_calibration(slide, MPP, params)
    try:  # the pipeline's halo margin (trees that have the helper)
        from hemoflow.pipeline.tiles import halo_margin_um

        margin = halo_margin_um(params)
    except ImportError:
        margin = 4.0
    halo = halo_pixels(MPP, max_cell_diameter_um=params.max_cell_diameter_um, margin_um=margin,
                       crop_px=crop.size * crop.mpp / MPP)
    f = int(cal.downsample)
    try:  # windows on the red-cell density grid too (trees that have it)
        from hemoflow.pipeline.tiles import window_align

        f *= window_align(params)
    except ImportError:
        pass
    tiles = plan_tiles((h, w), tasks._round_up(tile_size, f), tasks._round_up(int(np.ceil(halo)), f))
    entry = SlideEntry(slide=url, slide_id="bench", patient_id="p", specimen="blood", mpp=MPP)
    plan = tasks.SlidePlan(entry, "ready", key="bench", zarr_url=url, shape=(h, w), mpp=MPP,
                           mpp_source="manifest", calibration=cal, tiles=tiles,
                           seconds=time.perf_counter() - t0)
    if record_to:
        import dataclasses

        if "out_url" not in {f.name for f in dataclasses.fields(plan)}:
            raise SystemExit("--record-tiles: this tree's SlidePlan has no out_url (no tile records)")
        plan = dataclasses.replace(plan, out_url=record_to, work_key="bench")
    return plan, params, crop


def crop_spec():
    from hemoflow.stages import CropSpec

    try:
        from hemoflow.classify.config import default_io_config

        io = default_io_config()
        return CropSpec(size=io.input_size, mpp=io.mpp)
    except Exception:  # no shipped weights: the default crop geometry
        return CropSpec()


def spread(tiles: list, n: int | None, seed: int = 0) -> list:
    """``n`` tiles drawn uniformly (seeded) over the slide, in tile order (all when ``n``
    is None). A random draw, not a regular stride: a stride can fall in step with the
    mosaic's period and sample the same field position again and again."""
    if not n or n >= len(tiles):
        return list(tiles)
    idx = np.sort(np.random.default_rng(seed).choice(len(tiles), n, replace=False))
    return [tiles[i] for i in idx]


def band(tiles: list, height: int) -> list:
    """The tiles whose core lies in rows ``[0, height)``: the same pixels for any tile
    size that divides ``height``."""
    return [t for t in tiles if t.core[0] < height]


class RssSampler:
    """Samples the resident set of the worker processes every ``interval`` s."""

    def __init__(self, pids: list[int], interval: float = 0.1):
        import psutil

        self.procs = [psutil.Process(p) for p in pids]
        self.interval = interval
        self.peak = {p.pid: 0 for p in self.procs}
        self.base = {p.pid: p.memory_info().rss for p in self.procs}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for p in self.procs:
                try:
                    self.peak[p.pid] = max(self.peak[p.pid], p.memory_info().rss)
                except Exception:
                    pass
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()

    def peak_mb(self) -> float:
        return max(self.peak.values()) / 2**20

    def base_mb(self) -> float:
        return max(self.base.values()) / 2**20


def timed_run_tile(plan, tile, params, crop):
    """``tasks.run_tile``, also recording the task thread's CPU time (``cpu_seconds``):
    on a shared machine CPU time is steadier than wall time."""
    from hemoflow.pipeline import tasks

    c0 = time.thread_time()
    res = tasks.run_tile(plan, tile, params, crop)
    res.cpu_seconds = time.thread_time() - c0
    return res


def timed_classify_batch(tiles, batch_size, model_path):
    """``tasks.classify_batch``, also recording the task thread's CPU time."""
    from hemoflow.pipeline import tasks

    c0 = time.thread_time()
    out = tasks.classify_batch(tiles, batch_size, model_path)
    out["cpu_seconds"] = time.thread_time() - c0
    return out


def _tile_stats(res) -> tuple[float, int, int, int, float]:
    nb = sum(np.asarray(v).nbytes for v in res.table.values()) + res.crops.nbytes
    return res.seconds, res.n_cells, res.n_wbc, nb, getattr(res, "cpu_seconds", float("nan"))


def _noop(plan, tile, params, crop) -> None:
    return None


def _worker_pid() -> int:
    return os.getpid()


def _warm(url: str) -> None:
    """Import and JIT-load everything a tile task uses, on a tiny window."""
    plan, params, crop = make_plan(url, 256)
    from hemoflow.pipeline import tasks

    tasks.run_tile(plan, plan.tiles[len(plan.tiles) // 2], params, crop)


def classifier_path(workdir: Path) -> tuple[str | None, str]:
    """The shipped weights when present, else a randomly initialised network of the same
    architecture saved under ``workdir`` (same cost per crop, meaningless labels)."""
    from hemoflow.classify.config import default_weights_path

    if default_weights_path(".pt").exists():
        return None, "shipped weights"
    p = workdir / "wbc_random_init.pt"
    if not p.exists():
        import torch

        from hemoflow.classify.config import ModelIOConfig
        from hemoflow.classify.model import DEFAULT_ARCH, build_network, save_model
        from hemoflow.schema import BLAST, WBC_TYPES

        torch.manual_seed(0)
        crop = crop_spec()
        io = ModelIOConfig(classes=(*WBC_TYPES, BLAST), input_size=crop.size, mpp=crop.mpp)
        save_model(p, build_network(DEFAULT_ARCH, io.n_classes), io)
    return str(p), "random-init weights (no shipped weights in this tree)"


def run_pipeline(url: str, n_workers: int, *, tile_size: int, subset: int | None = None,
                 threads_per_worker: int = 1, classify: bool = False, noop: bool = False,
                 workdir: Path | None = None, batch_size: int = 512, stream: bool = False,
                 band_px: int | None = None, record_tiles: bool = False) -> dict:
    """Tile phase (and optionally classification) of one slide on a fresh local cluster."""
    import distributed

    import hemoflow
    from hemoflow.pipeline import tasks

    record_to = None
    if record_tiles:
        rec = (workdir or Path(".")) / "tile-records"
        shutil.rmtree(rec, ignore_errors=True)
        rec.mkdir(parents=True)
        record_to = str(rec.resolve())
    plan, params, crop = make_plan(url, tile_size, record_to)
    tiles = band(plan.tiles, band_px) if band_px else spread(plan.tiles, subset)
    core_mp = sum((t.core[2] - t.core[0]) * (t.core[3] - t.core[1]) for t in tiles) / 1e6
    out: dict = {"stream": stream, "record_tiles": record_tiles, "workers": n_workers, "threads": threads_per_worker, "tile_size": tile_size,
                 "n_tiles": len(tiles), "mp": core_mp, "plan_s": plan.seconds,
                 "plan_pickle_kb": len(pickle.dumps(plan)) / 1024}
    with hemoflow.Client(n_workers=n_workers, threads_per_worker=threads_per_worker) as hc:
        c = hc.dask
        pids = list(c.run(_worker_pid).values())
        c.run(_warm, url)
        with RssSampler(pids) as rss:
            out["rss_base_mb"] = rss.base_mb()
            if noop:
                t0 = time.perf_counter()
                futs = [c.submit(_noop, plan, t, params, crop, pure=False) for t in tiles]
                distributed.wait(futs)
                out["noop_wall_s"] = time.perf_counter() - t0
                del futs
            t0 = time.perf_counter()
            futs = [c.submit(timed_run_tile, plan, t, params, crop, pure=False,
                             key=f"tile-bench-{t.index}") for t in tiles]
            if stream:  # keep only per-tile statistics: each result is freed once summarised
                stat_futs = [c.submit(_tile_stats, f, pure=False) for f in futs]
                del futs
                distributed.wait(stat_futs)
                wall = time.perf_counter() - t0
                stats = np.array(c.gather(stat_futs), dtype=np.float64)
            else:  # as the job runner does: tile results stay on the workers until the slide ends
                distributed.wait(futs)
                wall = time.perf_counter() - t0
                errs = [f for f in futs if f.status != "finished"]
                if errs:
                    raise RuntimeError(f"{len(errs)} tile tasks failed: {errs[0].exception()!r}")
                stats = np.array(c.gather(c.map(_tile_stats, futs, pure=False)), dtype=np.float64)
            out["rss_tiles_mb"] = rss.peak_mb()
            out.update(wall_s=wall, task_s=float(stats[:, 0].sum()), task_s_median=float(np.median(stats[:, 0])),
                       cells=int(stats[:, 1].sum()), wbc=int(stats[:, 2].sum()),
                       result_mb=float(stats[:, 3].sum() / 2**20), task_cpu_s=float(stats[:, 4].sum()))
            cores = n_workers * threads_per_worker
            out["mp_s"] = core_mp / wall
            out["mp_s_per_core"] = core_mp / wall / cores
            out["mp_s_per_core_cpu"] = core_mp / out["task_cpu_s"]
            out["cores_obtained"] = out["task_cpu_s"] / wall  # CPU the tasks got, in cores
            out["overhead_frac"] = max(0.0, 1.0 - out["task_s"] / cores / wall)
            if classify and not stream:
                model_path, model_note = classifier_path(workdir or Path("."))
                per_tile = max(1e-9, out["wbc"] / len(tiles))
                group = max(1, min(256, math.ceil(batch_size / per_tile)))
                t0 = time.perf_counter()
                cf = [c.submit(timed_classify_batch, futs[i:i + group], batch_size, model_path, pure=False)
                      for i in range(0, len(futs), group)]
                res = c.gather(cf)
                out["classify_wall_s"] = time.perf_counter() - t0
                out["classify_task_s"] = float(sum(r["seconds"] for r in res))
                out["classify_cpu_s"] = float(sum(r["cpu_seconds"] for r in res))
                out["classify_cells_s_per_core_cpu"] = sum(r["n"] for r in res) / max(1e-9, out["classify_cpu_s"])
                out["classified"] = int(sum(r["n"] for r in res))
                out["classify_cells_s_per_core"] = out["classified"] / max(1e-9, out["classify_task_s"])
                out["classify_model"] = model_note
            futs = None
        out["rss_peak_mb"] = rss.peak_mb()
    return out


# --------------------------------------------------------------------------- (c) scikit-image


def skimage_reference(rgb: np.ndarray, mpp: float, *, downsample: int = 1, crop_size: int = 96,
                      crop_mpp: float = 0.25) -> tuple[dict, list]:
    """Segment, measure and crop one field the plain scikit-image way (one core).

    Cells are dark on a bright background in the green channel; touching cells are split
    with a distance-transform watershed; cells larger than 1.6 typical RBCs (WBCs) are
    cropped, resized to ``crop_size``.
    """
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.measure import label, regionprops_table
    from skimage.morphology import remove_small_objects
    from skimage.segmentation import watershed
    from skimage.transform import resize

    g = rgb[..., 1]
    if downsample > 1:
        f = downsample
        h, w = g.shape[0] // f * f, g.shape[1] // f * f
        g = g[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    px_um = mpp * downsample
    g = gaussian(g.astype(np.float32) / 255.0, sigma=1.0 / downsample)
    mask = g < threshold_otsu(g)
    mask = ndi.binary_fill_holes(mask)
    rbc_d = 7.5 / px_um
    rbc_area = math.pi / 4 * rbc_d**2
    mask = remove_small_objects(mask, max_size=int(0.15 * rbc_area))
    dist = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(dist, min_distance=max(1, int(rbc_d * 0.35)), labels=label(mask), exclude_border=False)
    markers = np.zeros(dist.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    lab = watershed(-dist, markers, mask=mask)
    table = regionprops_table(lab, properties=("label", "area", "centroid", "eccentricity", "solidity", "perimeter"))
    big = np.flatnonzero(table["area"] > 1.6 * rbc_area)
    half = int(round(crop_size * crop_mpp / mpp / 2))
    H, W = rgb.shape[:2]
    crops = []
    for i in big:
        cy, cx = int(table["centroid-0"][i] * downsample), int(table["centroid-1"][i] * downsample)
        win = np.full((2 * half, 2 * half, 3), 255, np.uint8)
        y0, x0 = cy - half, cx - half
        sy0, sx0 = max(0, y0), max(0, x0)
        sy1, sx1 = min(H, y0 + 2 * half), min(W, x0 + 2 * half)
        win[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
        crops.append((resize(win, (crop_size, crop_size), preserve_range=True, anti_aliasing=True)).astype(np.uint8))
    return table, crops


def block_factor(url: str, tile_size: int) -> int:
    """Level-0 pixels per working pixel of hemoflow's plan for this slide (its block
    factor): the scale the same-scale reference segments at."""
    plan, _, _ = make_plan(url, tile_size)
    cal = plan.calibration
    if int(cal.upsample) != 1:
        raise SystemExit(f"working scale {cal.downsample}/{cal.upsample} is not an integer block factor")
    return int(cal.downsample)


def run_skimage(url: str, tile_size: int, n_tiles: int, downsample: int = 1) -> dict:
    """The reference on ``n_tiles`` tile windows spread over the slide; rate per core.

    ``downsample`` > 1 block-averages each window by that factor before segmenting (the
    way hemoflow builds its working image). One untimed call on the first window warms
    imports and caches first, as ``_warm`` does for the pipeline's workers; each window is
    read inside the timer, as a tile task reads its own."""
    from hemoflow.io import open_slide

    plan, _, crop = make_plan(url, tile_size)
    slide = open_slide(url)
    tiles = spread(plan.tiles, n_tiles)
    skimage_reference(slide.read_region(*tiles[0].window), MPP, downsample=downsample,
                      crop_size=crop.size, crop_mpp=crop.mpp)
    mp = cpu = wall = 0.0
    cells = 0
    for t in tiles:
        t0, c0 = time.perf_counter(), time.process_time()
        win = slide.read_region(*t.window)
        table, _ = skimage_reference(win, MPP, downsample=downsample, crop_size=crop.size, crop_mpp=crop.mpp)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        cells += len(table["label"])
        mp += (t.core[2] - t.core[0]) * (t.core[3] - t.core[1]) / 1e6
    return {"n_tiles": len(tiles), "mp": mp, "wall_s": wall, "cpu_s": cpu, "mp_s": mp / wall,
            "mp_s_cpu": mp / cpu, "cells": cells, "downsample": downsample}


# --------------------------------------------------------------------------- S3 (moto)


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
    return proc, endpoint


def copy_to_s3(local: str, bucket: str = "bench") -> str:
    """Upload the slide directory to ``s3://bench/<name>``; return the URL."""
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    root = Path(local)
    files = [p for p in root.rglob("*") if p.is_file()]
    from concurrent.futures import ThreadPoolExecutor

    def put(p: Path) -> None:
        s3.put_object(Bucket=bucket, Key=f"{root.name}/{p.relative_to(root).as_posix()}", Body=p.read_bytes())

    # the group zarr.json (the "complete" marker) last
    first = [p for p in files if p != root / "zarr.json"]
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(put, first))
    put(root / "zarr.json")
    return f"s3://{bucket}/{root.name}"


# --------------------------------------------------------------------------- main


def _fmt(d: dict) -> str:
    return json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="8192^2 slide, fewer samples (< 2 min)")
    ap.add_argument("--size", type=int, default=None, help="slide side in px (default 32768; 8192 with --quick)")
    ap.add_argument("--block", type=int, default=8192, help="side of the rendered field tiled over the slide")
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("HEMOFLOW_BENCH_DIR", "~/.cache/hemoflow-bench")))
    ap.add_argument("--tile-size", type=int, default=None, help="default: JobConfig().tile_size")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads-per-worker", type=int, default=1)
    ap.add_argument("--subset", type=int, default=None, help="process only N tiles spread over the slide")
    ap.add_argument("--subset-mp", type=float, default=None,
                    help="with --granularity: process a full-width band of about this many MP (the same "
                         "pixels for every tile size)")
    ap.add_argument("--skimage-tiles", type=int, default=None, help="tiles for the reference (default 4; 1 quick)")
    ap.add_argument("--no-classify", action="store_true")
    ap.add_argument("--stream", action="store_true",
                    help="free each tile result once summarised (no classification): the per-task "
                         "working set alone, without the results a job keeps until its slide ends")
    ap.add_argument("--granularity", type=int, nargs="*", default=None,
                    help="tile sizes to compare (per-tile time, overhead, no-op graph)")
    ap.add_argument("--record-tiles", action="store_true",
                    help="tile tasks also write their resume record (cells + crops) under --workdir, as a job does")
    ap.add_argument("--pipeline-only", action="store_true",
                    help="skip the I/O floor and the scikit-image reference (memory checks)")
    ap.add_argument("--s3", action="store_true", help="read the slide from a moto S3 server on loopback")
    ap.add_argument("--json", type=Path, default=None, help="also write every measurement here")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="override a SegmentParams field, e.g. rbc_density_model=0 (repeatable)")
    args = ap.parse_args(argv)
    PARAMS.update(_parse_param(p) for p in args.param)

    from hemoflow.config import JobConfig

    size = args.size or (8192 if args.quick else 32768)
    tile_size = args.tile_size or JobConfig().tile_size
    workdir = args.workdir.expanduser()
    report: dict = {"size": size, "gp": size * size / 1e9}
    url = ensure_slide(workdir, size, block=args.block)
    moto = None
    try:
        if args.s3:
            moto, endpoint = start_moto()
            t0 = time.perf_counter()
            url = copy_to_s3(url)
            log(f"# slide uploaded to {url} at {endpoint} in {time.perf_counter() - t0:.1f}s")

        if args.granularity:
            rows = []
            band_px = None
            if args.subset_mp:  # the same pixels for every tile size: a full-width band
                unit = max(args.granularity)
                band_px = max(unit, round(args.subset_mp * 1e6 / size / unit) * unit)
            for ts in args.granularity:
                r = run_pipeline(url, max(args.workers), tile_size=ts, subset=args.subset, band_px=band_px,
                                 noop=True, stream=args.stream,
                                 threads_per_worker=args.threads_per_worker)
                r["task_s_mean"] = r["task_s"] / r["n_tiles"]
                r["noop_overhead_frac"] = r["noop_wall_s"] / r["wall_s"]
                log("granularity " + _fmt(r))
                rows.append(r)
            report["granularity"] = rows
            if args.json:
                args.json.write_text(json.dumps(report, indent=1) + "\n")
            best = min(rows, key=lambda r: r["wall_s"] / r["mp"])
            print(f"best_tile_size={best['tile_size']} mp_per_s_per_core={best['mp_s_per_core']:.2f} "
                  f"overhead={best['overhead_frac']:.3f} task_s_mean={best['task_s_mean']:.2f}")
            return 0

        if args.pipeline_only:
            runs = [run_pipeline(url, n, tile_size=tile_size, subset=args.subset, classify=False,
                                 threads_per_worker=args.threads_per_worker, workdir=workdir, stream=args.stream,
                             record_tiles=args.record_tiles)
                    for n in args.workers]
            for r in runs:
                log("pipeline " + _fmt(r))
            if args.json:
                args.json.write_text(json.dumps({**report, "pipeline": runs}, indent=1) + "\n")
            print(" ".join(f"workers={r['workers']} tiles={r['n_tiles']} mp_per_s_per_core_cpu={r['mp_s_per_core_cpu']:.2f} "
                           f"rss_base_mb={r['rss_base_mb']:.0f} peak_worker_rss_mb={r['rss_peak_mb']:.0f}" for r in runs))
            return 0

        floor = io_floor(url, repeat=1 if (args.quick or args.s3) else 2)
        log("io_floor " + _fmt(floor))
        report["io_floor"] = floor

        runs = {}
        for n in args.workers:
            classify = (not args.no_classify) and n == max(args.workers)
            r = run_pipeline(url, n, tile_size=tile_size, subset=args.subset, classify=classify,
                             threads_per_worker=args.threads_per_worker, workdir=workdir, stream=args.stream,
                             record_tiles=args.record_tiles)
            log("pipeline " + _fmt(r))
            runs[n] = r
        report["pipeline"] = list(runs.values())

        n_ref = args.skimage_tiles or (1 if args.quick else 4)
        ref = run_skimage(url, tile_size, n_ref)
        log("skimage_reference " + _fmt(ref))
        ref_same = run_skimage(url, tile_size, n_ref, downsample=block_factor(url, tile_size))
        log("skimage_reference_same_scale " + _fmt(ref_same))
        report["skimage"] = ref
        report["skimage_same_scale"] = ref_same

        cls = next((r for r in runs.values() if "classified" in r), None)
        if cls:
            log(f"classification (CPU, {cls['classify_model']}): {cls['classified']} WBC crops, "
                f"{cls['classify_cells_s_per_core']:.0f} cells/s per core wall, "
                f"{cls['classify_cells_s_per_core_cpu']:.0f} cells/s per CPU-second "
                f"(wall {cls['classify_wall_s']:.1f}s on {cls['workers']} worker(s))")
        log("classification GPU path: not measured (no GPU in this environment)")
        base = runs[min(runs)]
        cpu_rate = base["mp_s_per_core_cpu"]
        log(f"cpu-time basis: mp_per_s_per_core={cpu_rate:.2f} ratio_vs_skimage={cpu_rate / ref['mp_s_cpu']:.1f} "
            f"ratio_vs_skimage_same_scale={cpu_rate / ref_same['mp_s_cpu']:.1f} "
            f"ratio_vs_io_floor={floor['mp_s_cpu'] / cpu_rate:.1f} cores_obtained="
            + ",".join(f"{r['workers']}w:{r['cores_obtained']:.2f}" for r in runs.values()))
        if args.json:
            args.json.write_text(json.dumps(report, indent=1) + "\n")

        base = runs[min(runs)]
        rate = base["mp_s"] / (base["workers"] * base["threads"])
        scaling = (runs[1]["wall_s"] / runs[2]["wall_s"]) if (1 in runs and 2 in runs) else float("nan")
        peak = max(r["rss_peak_mb"] for r in runs.values())
        print(f"mp_per_s_per_core={rate:.2f} ratio_vs_skimage={rate / ref['mp_s']:.1f} "
              f"ratio_vs_skimage_same_scale={rate / ref_same['mp_s']:.1f} "
              f"ratio_vs_io_floor={floor['mp_s'] / rate:.1f} scaling_2_workers={scaling:.2f} "
              f"peak_worker_rss_mb={peak:.0f}")
        return 0
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait(10)


if __name__ == "__main__":
    raise SystemExit(main())
