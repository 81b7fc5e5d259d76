"""The ``hemoflow`` command: a thin shell over the Python client.

The CLI owns the console: progress on stderr, tables and JSON on stdout. A bad input
prints one line, ``hemoflow: error: <file>: <problem>``, and no traceback.

Exit status (``docs/cli.md``):

====  ==========================================================================
0     everything asked for was done
1     error: nothing useful was produced (bad input file, unwritable output,
      every slide or image failed)
2     usage: the command line is wrong (unknown option, bad option value)
3     partial: the job or batch finished, but some slides or images failed or
      were rejected (each is reported on stderr and, for jobs, in ``slides.json``)
130   interrupted (Ctrl-C)
====  ==========================================================================
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from hemoflow import cli_parser
from hemoflow.cli_parser import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from hemoflow.console import (
    UsageError,
    json_default,
    print_fields,
    print_patients,
    segment_params,
)
from hemoflow.errors import HemoflowError


#: Python argument names in library messages -> the CLI flags that set them.
_FLAG_WORDS = (("overwrite=True", "--overwrite"), ("job_id=", "--job-id "), ("pass mpp", "pass --mpp"),
               ("set rbc_density_model=False", "pass --param rbc_density_model=0"))


def _error(msg: Any) -> None:
    text = str(msg)
    for py, flag in _FLAG_WORDS:
        text = text.replace(py, flag)
    print(f"hemoflow: error: {text}", file=sys.stderr, flush=True)


def _batch_status(n_ok: int, n_bad: int) -> int:
    """Exit status of a batch: 0 all good, 3 some bad, 1 none good."""
    if not n_bad:
        return EXIT_OK
    return EXIT_PARTIAL if n_ok else EXIT_ERROR


# -- jobs -----------------------------------------------------------------------------
def _client(args) -> Any:
    from hemoflow.console import Heartbeat
    from hemoflow.jobs.client import Client

    if getattr(args, "scheduler", None):
        security = None
        if getattr(args, "tls_ca", None):
            from distributed.security import Security

            security = Security(tls_ca_file=args.tls_ca, tls_client_cert=args.tls_cert,
                                tls_client_key=args.tls_key, require_encryption=True)
        with Heartbeat(f"connecting to {args.scheduler}"):
            return Client(args.scheduler, security=security)
    _warm_local()
    import os

    n = args.workers or max(1, os.cpu_count() or 1)
    with Heartbeat(f"starting {n} local worker{'s' if n > 1 else ''} (each loads the kernels and the classifier)") as hb:
        client = Client(n_workers=n)
    client.start_seconds = hb.seconds
    return client


def _warm_local() -> None:
    """Compile the kernels here, with a message, when the cache lacks them; the local
    workers then load them from the cache instead of each compiling them in silence."""
    from hemoflow.console import kernels_cached, warm_kernels

    if not kernels_cached():
        warm_kernels()


def _job_config(args) -> Any:
    from hemoflow.config import JobConfig

    return JobConfig.from_env(tile_size=args.tile_size, tta=True if args.tta else None,
                              smear_qc=False if getattr(args, "no_smear_qc", False) else None)


def _wait(job) -> dict[str, Any]:
    from hemoflow.console import ProgressBar

    bar = ProgressBar(f"job {job.id}")
    try:
        return job.wait(poll=0.5, callback=bar)
    finally:
        bar.close()


def _report_slides(result: dict[str, Any]) -> int:
    """Print one line per failed or rejected slide; return the job's exit status."""
    seen, bad = set(), 0
    for row in result.get("slides", []):
        status = row.get("status")
        if status in ("failed", "rejected"):
            seen.add(row.get("slide_id"))
            bad += 1
            reason = row.get("reason") or row.get("error") or "not processed"
            word = "rejected" if status == "rejected" else "failed"
            _error(f"{row.get('slide', row.get('slide_id'))}: {word}: {reason}")
    for f in result["job"].get("failures", []):
        if f.get("slide_id") not in seen:
            bad += 1
            _error(f"{f['slide']}: failed: {f['error']}")
    return _batch_status(len(result.get("slides", [])) - bad, bad)


def cmd_run(args) -> int:
    from hemoflow.io import storage
    from hemoflow.jobs.manifest import load_manifest, load_prefix_manifest

    src = args.manifest
    if args.patients:
        manifest = load_prefix_manifest(src, args.patients)
    elif src.lower().endswith(".csv"):
        manifest = load_manifest(src)
    else:
        raise UsageError(f"{storage.redact(src)}: not a .csv manifest; to process every slide under a "
                         "folder or prefix, give the patients table with --patients")
    storage.check_writable(args.out)  # before a cluster starts: fail fast, write nothing
    params, cfg = segment_params(args.param), _job_config(args)
    with _client(args) as client:
        job = client.submit(manifest, args.out, config=cfg, params=params, model=args.model, job_id=args.job_id,
                            tile_resume=not args.no_tile_records,
                            pseudonymize_key=args.pseudonymize.encode() if args.pseudonymize else None)
        result = _wait(job)
    print_patients(result["patients"], truth=None)
    print(f"job: {result['job']['seconds']:.1f}s (job.json); outputs: {result['job']['outputs']['patients']}")
    return _report_slides(result)


def cmd_demo(args) -> int:
    from hemoflow import demo
    from hemoflow.console import Heartbeat

    t0 = time.perf_counter()
    params = segment_params(args.param)
    out = demo.check_out(args.out)
    n = len(demo.DEMO_PATIENTS) * args.slides_per_patient

    def progress(done: int, total: int, path: Path, reused: bool) -> None:
        what = "reused" if reused else "written"
        print(f"  slide {done}/{total} {what}: {path.name} ({time.perf_counter() - t0:.0f}s)", file=sys.stderr,
              flush=True)

    with Heartbeat(f"writing {n} synthetic slides of {args.size}x{args.size} px to {out / 'slides_in'}"):
        slides = demo.write_demo_slides(out, size=args.size, slides_per_patient=args.slides_per_patient,
                                        progress=progress)
    t1 = time.perf_counter()
    with _client(args) as client:
        start_s = getattr(client, "start_seconds", time.perf_counter() - t1)
        job = client.submit(str(slides.manifest), str(out), config=_job_config(args), params=params)
        result = _wait(job)
    with Heartbeat("writing the HTML report") as hb:
        index = demo.write_demo_report(out)
    report_s = hb.seconds
    print_patients(result["patients"], truth=slides.truth)
    status = _report_slides(result)
    jb = result["job"]
    print(f"\nslides: {slides.seconds:.1f}s ({slides.written} written, {slides.reused} reused); "
          f"cluster start: {start_s:.1f}s; job: {jb['seconds']:.1f}s ({jb['progress']['tiles_total']} tiles, "
          f"as in job.json); report: {report_s:.1f}s; total {time.perf_counter() - t0:.1f}s")
    print(f"outputs in {out}" + (f"; report {index}" if index else ""))
    return status


# -- single images --------------------------------------------------------------------
def cmd_analyze(args) -> int:
    from hemoflow.analyze import analyze_image, estimate_shared_mpp
    from hemoflow.io.validate import read_rgb8
    from hemoflow.kernels._malloc import tune_malloc

    tune_malloc()
    params = segment_params(args.param)
    _warm_local()  # analysing a field calls every kernel: compile them with a message, not in silence
    kw = {"params": params} if params is not None else {}
    mpp, pooled = args.mpp, 0
    if mpp is None and len(args.images) > 1 and not args.mpp_per_image:
        try:
            mpp, pooled = estimate_shared_mpp(args.images, **kw)
        except HemoflowError:
            mpp, pooled = None, 0  # no field had a measurable red cell: each image is estimated (and reported) alone
        else:
            print(f"pixel size {mpp:.4f} µm/px: median estimate over {pooled} fields "
                  "(they are taken to come from one microscope; --mpp-per-image to estimate each alone)",
                  file=sys.stderr)
    classifier = None
    if not args.no_classify:
        from hemoflow.classify.model import load_default_model

        classifier = load_default_model()
    results, bad = [], 0
    for img in args.images:
        try:
            r = analyze_image(read_rgb8(img), name=Path(img).stem, mpp=mpp, classifier=classifier, tta=args.tta,
                              **kw)
        except HemoflowError as e:
            bad += 1
            _error(e if str(e).startswith(str(img)) else f"{img}: {e}")
            continue
        if pooled:
            r["mpp_estimated"], r["mpp_pooled_over"] = True, pooled
        results.append(r)
    if args.json:
        json.dump(results, sys.stdout, indent=None if len(results) > 1 else 2, default=json_default)
        print()
    else:
        print_fields(results)
    return _batch_status(len(results), bad)


_CLASSIFY_CHUNK = 512


def _say_pooled(scales) -> None:
    pooled = [m for m, r in scales if r == "pooled"]
    for value in sorted(set(pooled)):
        n = pooled.count(value)
        print(f"pixel size {value:.4f} µm/px for {n} images of one size (the median estimate: they are taken to "
              "come from one camera; --mpp-per-image to estimate each alone)", file=sys.stderr)


def cmd_classify(args) -> int:
    from hemoflow.classify.infer import classify_images, estimate_scales
    from hemoflow.io.validate import probe_image

    t0 = time.perf_counter()
    good, bad = [], 0
    for img in args.images:
        try:
            probe_image(img)
        except HemoflowError as e:
            bad += 1
            _error(e)
        else:
            good.append(img)

    def progress(done: int, total: int) -> None:
        if total > 512:  # long runs only; stderr, so --json output stays clean
            print(f"classified {done}/{total} images ({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)

    scales = None
    if args.mpp is None:
        def unreadable(img, e) -> None:
            nonlocal bad
            bad += 1
            _error(e)

        def measured(done: int, total: int) -> None:
            if total > 512:
                print(f"measured the pixel size of {done}/{total} images ({time.perf_counter() - t0:.0f}s)",
                      file=sys.stderr, flush=True)

        est = estimate_scales(good, pool=not args.mpp_per_image, on_error=unreadable, progress=measured)
        good, scales = [g for g, e in zip(good, est) if e is not None], [e for e in est if e is not None]
        _say_pooled(scales)
    results = []
    for i in range(0, len(good), _CLASSIFY_CHUNK):
        part = good[i : i + _CLASSIFY_CHUNK]
        part_scales = None if scales is None else scales[i : i + _CLASSIFY_CHUNK]
        try:
            results += classify_images(part, mpp=args.mpp, scales=part_scales, tta=not args.no_tta)
        except HemoflowError:  # a file that passed the header check but does not decode: find it
            for j, img in enumerate(part):
                try:
                    results += classify_images([img], mpp=args.mpp, tta=not args.no_tta,
                                               scales=None if part_scales is None else [part_scales[j]])
                except HemoflowError as e:
                    bad += 1
                    _error(e)
        progress(len(results) + bad, len(good))
    if args.json:
        json.dump(results, sys.stdout, indent=2, default=json_default)
        print()
    elif results:
        print("image\tWBC type\tprobability")
        for r in results:
            print(f"{r['image']}\t{r['label']}\t{r['probability']:.3f}")
    return _batch_status(len(results), bad)


# -- other commands -------------------------------------------------------------------
def cmd_train(args) -> int:
    from hemoflow.errors import OutputNotWritableError
    from hemoflow.training.wbc import main as train_main

    # Checked before the half hour of training, not after it.
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise OutputNotWritableError(f"{args.out}: cannot write the weights there (no writable folder {folder})")

    argv = ["--data", args.data, "--out", args.out, "--steps", args.steps, "--seed", str(args.seed),
            "--threads", str(args.threads)]
    if args.cache:
        argv += ["--cache", args.cache]
    return train_main(argv)


def cmd_ingest(args) -> int:
    from hemoflow.errors import StorageError
    from hemoflow.io import ingest, storage
    from hemoflow.io.validate import check_slide_rgb8, quiet_tifffile

    if not args.any_layout:
        check_slide_rgb8(args.src)
    if not args.overwrite and storage.exists(args.dest):
        raise StorageError(f"{storage.redact(args.dest)}: already exists; pass --overwrite to replace it")
    with quiet_tifffile():
        info = ingest(args.src, args.dest, mpp=args.mpp, overwrite=args.overwrite)
    print(json.dumps(info.to_dict(), indent=2, default=str))
    return EXIT_OK


def cmd_report(args) -> int:
    from hemoflow.report.html import write_report_from_results

    key = args.pseudonymize.encode() if args.pseudonymize else None
    paths = write_report_from_results(args.results, args.out, pseudonymize_key=key)
    for p in paths:
        print(p)
    return EXIT_OK


def cmd_warmup(args) -> int:
    from hemoflow.console import warm_kernels

    seconds = warm_kernels()
    print(f"kernels ready in {seconds:.1f}s")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The ``hemoflow`` parser (:mod:`hemoflow.cli_parser`), each command bound to its ``cmd_*`` function."""
    return cli_parser.build_parser({"demo": cmd_demo, "run": cmd_run, "analyze": cmd_analyze,
                                    "classify": cmd_classify, "train": cmd_train, "ingest": cmd_ingest,
                                    "report": cmd_report, "warmup": cmd_warmup})


class _DropSlideFailures(logging.Filter):
    """The CLI reports each failed or rejected slide itself, once, at the end of the job."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("slide %s failed", "slide %s rejected"))


def _quiet_console() -> None:
    """Keep Dask's INFO chatter and tifffile's warnings about broken files off the
    console; the CLI shows its own progress and one line per failed slide.

    Set through the environment so that spawned worker processes inherit it.
    """
    import os

    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    os.environ.setdefault("DASK_LOGGING__TIFFFILE", "critical")
    import dask

    dask.config.refresh()
    logging.getLogger("distributed").setLevel(logging.ERROR)
    logging.getLogger("tifffile").setLevel(logging.CRITICAL)
    logging.getLogger("hemoflow.pipeline.graph").addFilter(_DropSlideFailures())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors
        return int(e.code or 0) if not isinstance(e.code, str) else EXIT_USAGE
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        _quiet_console()
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        _error(exc)
        return EXIT_USAGE
    except HemoflowError as exc:
        logging.getLogger(__name__).debug("error", exc_info=True)
        _error(exc)
        return EXIT_ERROR
    except OSError as exc:  # a file the command itself opens (not wrapped by the library)
        logging.getLogger(__name__).debug("error", exc_info=True)
        _error(f"{exc.filename}: {exc.strerror}" if exc.filename else exc)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("hemoflow: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
