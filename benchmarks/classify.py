"""Throughput of the WBC classifier (cells/s), optimised path vs a plain eager baseline.

Three parts, all in one run:

* **cpu** -- 1 and 2 threads x batch sizes; "optimised" = ``WbcClassifier.predict``
  (channels_last, bounded CPU passes), "eager" = the same network in plain NCHW. Both run
  under ``torch.inference_mode()``: the ratio measures the layout and batching, not the
  cost of recording autograd, which no inference path pays.
* **cuda** (when a GPU is present) -- batch-size sweep of ``WbcClassifier.predict`` on CUDA
  (uint8 crops uploaded from pinned memory, normalised on the GPU, AMP + channels_last,
  logits back in one transfer) against the eager fp32 baseline (float crops made on the
  host, one synchronous transfer per batch), on distinct random crops.
* **worker** (``--worker``) -- end to end on a Dask worker: a ``LocalCluster`` with one
  process worker (offering the resource ``GPU`` when CUDA is present, with the
  :class:`~hemoflow.classify.infer.ModelPlugin`), tile results holding crops are scattered
  to it, and the pipeline's own ``classify_batch`` task classifies them; cells/s from
  submit to result, per batch size and crops per task.

Usage::

    python benchmarks/classify.py [--n 2048] [--batches 32 256] [--threads 1 2]
        [--gpu-n 65536] [--gpu-batches 256 1024 4096 16384] [--worker] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hemoflow.classify.model import WbcClassifier, crops_to_tensor, load_default_model  # noqa: E402


def eager_predict(net, io, crops, batch_size, device):
    """Baseline: inference mode, contiguous NCHW, fp32, float tensors made on the host."""
    outs = []
    with torch.inference_mode():
        for i in range(0, len(crops), batch_size):
            x = crops_to_tensor(crops[i : i + batch_size], io).to(device)
            outs.append(torch.softmax(net(x), 1).cpu())
    return torch.cat(outs)


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def _crops(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def bench_cpu(base, args) -> list[dict]:
    io = base.io
    crops = _crops(args.n, io.input_size)
    rows = []
    for th in args.threads:
        torch.set_num_threads(th)
        for bs in args.batches:
            opt = WbcClassifier(copy.deepcopy(base.network), io, channels_last=True, amp=False)
            eager_net = copy.deepcopy(base.network).eval()
            t_opt = _time(lambda: opt.predict(crops, batch_size=bs), args.repeats)
            t_eag = _time(lambda: eager_predict(eager_net, io, crops, bs, "cpu"), args.repeats)
            # the optimised path runs at most opt.cpu_batch crops per pass on CPU
            rows.append({"part": "cpu", "threads": th, "batch": bs, "forward_batch": min(bs, opt.cpu_batch),
                         "optimised_cells_s": round(args.n / t_opt),
                         "eager_cells_s": round(args.n / t_eag), "speedup": round(t_eag / t_opt, 2)})
            print(rows[-1], flush=True)
    return rows


def bench_cuda(base, args) -> list[dict]:
    io = base.io
    n = args.gpu_n
    crops = _crops(n, io.input_size, seed=1)
    opt = WbcClassifier(copy.deepcopy(base.network), io, device="cuda")  # AMP + channels_last
    eager_net = copy.deepcopy(base.network).to("cuda").eval()
    # agreement of the optimised (bf16/fp16) path with the fp32 baseline on the same crops
    k = min(n, 4096)
    p_opt = opt.predict(crops[:k], batch_size=1024)[1]
    p_ref = eager_predict(eager_net, io, crops[:k], 1024, "cuda").numpy()
    agree = float((p_opt.argmax(1) == p_ref.argmax(1)).mean())
    max_dp = float(np.abs(p_opt - p_ref).max())
    rows = []
    for bs in args.gpu_batches:
        t_opt = _time(lambda: opt.predict(crops, batch_size=bs), args.repeats)
        t_eag = _time(lambda: eager_predict(eager_net, io, crops, bs, "cuda"), args.repeats)
        rows.append({"part": "cuda", "device": torch.cuda.get_device_name(), "batch": bs, "n": n,
                     "amp": str(opt.amp_dtype), "optimised_cells_s": round(n / t_opt),
                     "eager_cells_s": round(n / t_eag), "speedup": round(t_eag / t_opt, 2),
                     "label_agreement_vs_fp32": round(agree, 4), "max_prob_diff_vs_fp32": round(max_dp, 4)})
        print(rows[-1], flush=True)
    rows[-1]["peak_gpu_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    # test-time augmentation (8 flips/turns per crop) at the largest batch
    bs = max(args.gpu_batches)
    t_tta = _time(lambda: opt.predict(crops, batch_size=bs, tta=True), args.repeats)
    rows.append({"part": "cuda-tta", "device": torch.cuda.get_device_name(), "batch": bs, "n": n,
                 "optimised_cells_s": round(n / t_tta)})
    print(rows[-1], flush=True)
    return rows


def bench_worker(args) -> list[dict]:
    """classify_batch on a Dask worker, crops already in the worker's memory."""
    from distributed import Client, LocalCluster

    from hemoflow.classify.infer import ModelPlugin
    from hemoflow.pipeline.tasks import TileResult, classify_batch

    cuda = torch.cuda.is_available()
    resources = {"GPU": 1} if cuda else {}
    rows = []
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, resources=resources,
                      dashboard_address=None, memory_limit=0) as cluster, Client(cluster) as client:
        client.register_plugin(ModelPlugin())
        size = load_default_model().io.input_size
        for per_task in args.worker_cells:
            per_tile = max(1, per_task // args.worker_tiles_per_task)
            n_tasks = max(2, args.worker_total // (per_tile * args.worker_tiles_per_task))
            tiles = [TileResult("s", i, {}, _crops(per_tile, size, seed=i), 0.0)
                     for i in range(n_tasks * args.worker_tiles_per_task)]
            futs = client.scatter(tiles)  # tile results live on the worker, as in a job
            groups = [futs[i : i + args.worker_tiles_per_task] for i in range(0, len(futs), args.worker_tiles_per_task)]
            for bs in args.worker_batches:
                if bs > 4 * per_task:
                    continue
                kw = {"resources": resources, "pure": False}
                client.gather(client.submit(classify_batch, groups[0], bs, **kw))  # warm-up
                t0 = time.perf_counter()
                res = client.gather([client.submit(classify_batch, g, bs, **kw) for g in groups])
                wall = time.perf_counter() - t0
                cells = sum(r["n"] for r in res)
                inside = sum(r["seconds"] for r in res)
                rows.append({"part": "worker", "device": torch.cuda.get_device_name() if cuda else "cpu",
                             "cells_per_task": per_tile * args.worker_tiles_per_task, "batch": bs, "tasks": len(groups),
                             "cells": cells, "cells_s": round(cells / wall), "cells_s_in_task": round(cells / inside)})
                print(rows[-1], flush=True)
            client.cancel(futs)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2048, help="crops per CPU measurement")
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 256])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--no-cpu", action="store_true", help="skip the CPU part")
    ap.add_argument("--gpu-n", type=int, default=65536, help="crops per CUDA measurement")
    ap.add_argument("--gpu-batches", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    ap.add_argument("--worker", action="store_true", help="also measure classify_batch on a Dask worker")
    ap.add_argument("--worker-cells", type=int, nargs="+", default=[512, 4096, 32768],
                    help="crops per classify task (pooled from several tiles)")
    ap.add_argument("--worker-batches", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--worker-tiles-per-task", type=int, default=8)
    ap.add_argument("--worker-total", type=int, default=65536, help="crops per worker measurement (approx.)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    base = load_default_model(channels_last=False)
    rows = [] if args.no_cpu else bench_cpu(base, args)
    if torch.cuda.is_available():
        rows += bench_cuda(base, args)
    else:
        print("cuda: not measured (no GPU in this environment)", flush=True)
    if args.worker:
        rows += bench_worker(args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
