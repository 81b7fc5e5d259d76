"""Scale model of hemoflow's tile phase: projected throughput for N workers and what
limits it (compute, the Dask scheduler, or the object store).

Each worker is one core running one tile task at a time. For a tile of ``tile_size``
core pixels with a ``halo``:

- compute:   N * core_MP / t_tile                      (t_tile: CPU s per tile, measured)
- scheduler: sched_rate / tasks_per_tile * core_MP     (sched_rate: tasks/s the scheduler
             and the job runner's client loop sustain; Dask's scheduler handles roughly
             a few thousand tasks/s, ~1 ms of scheduler time per task)
- store:     min(N * worker_mb_s / bytes_per_tile, slides * get_rate / chunks_per_tile) * core_MP
             bytes_per_tile = chunks read (whole Zarr chunks under the halo'd window)
             * chunk bytes * stored/raw ratio; worker_mb_s: each worker's share of its
             node's network (25 Gb/s for 16 workers ~ 190 MB/s); get_rate: GET requests/s
             one prefix serves (S3: 5,500 GET/s per partitioned prefix until it
             repartitions), times the slides read at once (each slide is its own prefix;
             the job runner favours earlier slides, so few are in flight).

Projected rate = min of the three; the smallest names the limit.

Usage::

    python benchmarks/scale_model.py                         # measured defaults (docs/experiments/performance.md)
    python benchmarks/scale_model.py --t-tile 0.45 --tile-size 2048 --sched-rate 3000
    python benchmarks/scale_model.py --tile-size 4096 --t-tile 1.8
    python benchmarks/scale_model.py --measure-scheduler      # local no-op task rate first
"""

from __future__ import annotations

import argparse
import math


def chunks_per_tile(tile_size: int, halo: int, chunk: int = 1024) -> int:
    """Zarr chunks an interior tile's window ``[T - halo, 2T + halo)^2`` touches."""
    start, end = tile_size - halo, 2 * tile_size + halo
    return ((end - 1) // chunk - start // chunk + 1) ** 2


def project(n_workers: int, *, tile_size: int, halo: int, t_tile: float, sched_rate: float,
            tasks_per_tile: float, worker_mb_s: float, get_rate: float, slides: int, stored_ratio: float,
            chunk: int = 1024) -> dict:
    core_mp = tile_size * tile_size / 1e6
    n_chunks = chunks_per_tile(tile_size, halo, chunk)
    tile_mb = n_chunks * 3 * chunk * chunk * stored_ratio / 1e6
    compute = n_workers * core_mp / t_tile
    sched = sched_rate / tasks_per_tile * core_mp
    store = min(n_workers * worker_mb_s / tile_mb, slides * get_rate / n_chunks) * core_mp
    rate = min(compute, sched, store)
    limit = "compute" if rate == compute else ("scheduler" if rate == sched else "store")
    return {"workers": n_workers, "mp_s": rate, "limit": limit, "compute_mp_s": compute, "sched_mp_s": sched,
            "store_mp_s": store, "tasks_s": n_workers / t_tile * tasks_per_tile if limit == "compute" else
            rate / core_mp * tasks_per_tile, "read_mb_s": rate / core_mp * tile_mb,
            "gets_s": rate / core_mp * n_chunks, "slides_per_hour_1gp": rate * 3600 / 1073.7}


def _noop(*args) -> None:
    return None


def measure_scheduler(n_tasks: int = 2000, n_workers: int = 2, payload_kb: float = 0.0, repeat: int = 3) -> float:
    """No-op tasks per second through a local ``distributed`` cluster, submitted one by one
    as the job runner does (``client.submit`` per task, optional payload argument)."""
    import time

    from distributed import Client, LocalCluster, wait

    payload = b"x" * int(payload_kb * 1024)
    best = 0.0
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as c:
        for _ in range(repeat):
            t0 = time.perf_counter()
            futs = [c.submit(_noop, payload, i, pure=False) for i in range(n_tasks)]
            wait(futs)
            best = max(best, n_tasks / (time.perf_counter() - t0))
            del futs
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tile-size", type=int, default=2048)
    ap.add_argument("--halo", type=int, default=96, help="px (the default for 0.25 µm/px slides)")
    ap.add_argument("--t-tile", type=float, default=0.34, help="CPU s per tile task (measured: 2048 px, 1 GP run)")
    ap.add_argument("--sched-rate", type=float, default=3000.0,
                    help="tasks/s a dedicated scheduler sustains (this 2-core shared machine: ~470 measured)")
    ap.add_argument("--tasks-per-tile", type=float, default=1.1, help="run_tile + share of classify/finalize")
    ap.add_argument("--worker-mb-s", type=float, default=190.0,
                    help="store bandwidth per worker, MB/s (25 Gb/s node NIC shared by 16 workers)")
    ap.add_argument("--get-rate", type=float, default=5500.0, help="GET/s per prefix (S3 default partition)")
    ap.add_argument("--slides", type=int, default=1, help="slides read at once (one prefix each)")
    ap.add_argument("--stored-ratio", type=float, default=0.43,
                    help="stored/raw bytes (Blosc-LZ4 on JPEG-decoded H&E ~0.43; synthetic ~1.0)")
    ap.add_argument("--workers", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--measure-scheduler", action="store_true",
                    help="first measure no-op tasks/s on a local cluster (2 workers) and use it")
    args = ap.parse_args(argv)
    if args.measure_scheduler:
        for kb in (0, 15, 60):
            rate = measure_scheduler(payload_kb=kb)
            print(f"local no-op rate, {kb} KB argument per task: {rate:.0f} tasks/s")
            if kb == 15:  # the size of a 1-GP slide's pickled plan
                args.sched_rate = rate
    print(f"tile {args.tile_size} px, halo {args.halo} px, {chunks_per_tile(args.tile_size, args.halo)} chunks/tile, "
          f"t_tile {args.t_tile} s, scheduler {args.sched_rate:.0f} tasks/s, store {args.worker_mb_s:.0f} MB/s per worker "
          f"and {args.get_rate:.0f} GET/s x {args.slides} slide(s), stored/raw {args.stored_ratio}")
    print(f"{'workers':>8} {'MP/s':>9} {'limit':>10} {'compute':>9} {'sched':>9} {'store':>9} {'tasks/s':>8} "
          f"{'MB/s read':>9} {'GET/s':>7} {'1GP slides/h':>12}")
    for n in args.workers:
        r = project(n, tile_size=args.tile_size, halo=args.halo, t_tile=args.t_tile, sched_rate=args.sched_rate,
                    tasks_per_tile=args.tasks_per_tile, worker_mb_s=args.worker_mb_s, get_rate=args.get_rate,
                    slides=args.slides, stored_ratio=args.stored_ratio)
        print(f"{n:>8} {r['mp_s']:>9.0f} {r['limit']:>10} {r['compute_mp_s']:>9.0f} {r['sched_mp_s']:>9.0f} "
              f"{r['store_mp_s']:>9.0f} {r['tasks_s']:>8.0f} {r['read_mb_s']:>9.0f} {r['gets_s']:>7.0f} "
              f"{r['slides_per_hour_1gp']:>12.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
