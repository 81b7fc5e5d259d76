"""Throughput of the WBC classifier (cells/s), optimised path vs a plain eager baseline.

CPU: 1 and 2 threads x batch sizes; "optimised" = ``WbcClassifier.predict``
(inference_mode + channels_last), "eager" = the same network called under plain autograd
(no inference_mode, NCHW). CUDA (when available): AMP + channels_last vs eager fp32.

Usage::

    python benchmarks/classify.py [--n 2048] [--batches 32 256] [--threads 1 2] [--json out.json]
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
    """Baseline: autograd on, contiguous NCHW, fp32."""
    outs = []
    for i in range(0, len(crops), batch_size):
        x = crops_to_tensor(crops[i : i + batch_size], io).to(device)
        outs.append(torch.softmax(net(x), 1).detach().cpu())
    return torch.cat(outs)


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2048, help="crops per measurement")
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 256])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    base = load_default_model(channels_last=False)
    io = base.io
    crops = np.random.default_rng(0).integers(0, 256, (args.n, io.input_size, io.input_size, 3), dtype=np.uint8)
    rows = []
    for th in args.threads:
        torch.set_num_threads(th)
        for bs in args.batches:
            opt = WbcClassifier(copy.deepcopy(base.network), io, channels_last=True, amp=False)
            eager_net = copy.deepcopy(base.network).eval()
            t_opt = _time(lambda: opt.predict(crops, batch_size=bs), args.repeats)
            t_eag = _time(lambda: eager_predict(eager_net, io, crops, bs, "cpu"), args.repeats)
            rows.append({"device": "cpu", "threads": th, "batch": bs, "optimised_cells_s": round(args.n / t_opt),
                         "eager_cells_s": round(args.n / t_eag), "speedup": round(t_eag / t_opt, 2)})
            print(rows[-1], flush=True)
    if torch.cuda.is_available():
        n = max(args.n, 16384)
        big = np.resize(crops, (n, *crops.shape[1:]))
        for bs in sorted(set(args.batches) | {1024}):
            opt = WbcClassifier(copy.deepcopy(base.network), io, device="cuda")  # AMP + channels_last
            eager_net = copy.deepcopy(base.network).to("cuda").eval()
            t_opt = _time(lambda: opt.predict(big, batch_size=bs), args.repeats)
            t_eag = _time(lambda: eager_predict(eager_net, io, big, bs, "cuda"), args.repeats)
            rows.append({"device": torch.cuda.get_device_name(), "batch": bs, "amp": str(opt.amp_dtype),
                         "optimised_cells_s": round(n / t_opt), "eager_cells_s": round(n / t_eag),
                         "speedup": round(t_eag / t_opt, 2)})
            print(rows[-1], flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
