"""The ``hemoflow`` command line's parser: its commands, options and help texts.

The functions that run the commands live in :mod:`hemoflow.cli`, which passes them in.
"""

from __future__ import annotations

import argparse
from typing import Callable, Mapping

from hemoflow.console import key_value, positive_float, positive_int

__all__ = ["build_parser", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_PARTIAL", "EXIT_INTERRUPTED"]

#: Exit statuses of the ``hemoflow`` command (``docs/cli.md``).
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line (exit status 2)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"hemoflow: error: {message} (see `{self.prog} --help`)\n")


def _cluster_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="local worker processes (default: one per core)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="connect to this Dask scheduler (tcp:// or tls://) instead of starting local workers")
    p.add_argument("--tile-size", type=positive_int, default=None, metavar="PX",
                   help="tile core side in level-0 px (default 4096, or $HEMOFLOW_TILE_SIZE)")
    p.add_argument("--tta", action="store_true",
                   help="classify WBCs with test-time augmentation (8x the classification compute)")
    _segmentation_options(p, "expert segmentation parameter (a field of hemoflow.stages.SegmentParams), e.g. "
                             "rbc_density_model=0; repeatable; see docs/cli.md")
    p.add_argument("--tls-ca", default=None, metavar="FILE", help="CA certificate for a tls:// scheduler")
    p.add_argument("--tls-cert", default=None, metavar="FILE", help="client certificate for a tls:// scheduler")
    p.add_argument("--tls-key", default=None, metavar="FILE", help="client key for a tls:// scheduler")


def build_parser(commands: Mapping[str, Callable[[argparse.Namespace], int]]) -> argparse.ArgumentParser:
    """The ``hemoflow`` parser; ``commands`` maps each command name to the function that runs it
    (``args.func``)."""
    from hemoflow import __version__

    ap = _Parser(prog="hemoflow", description="Blood-smear slide processing at archive scale. "
                 "Exit status: 0 ok, 1 error, 2 usage, 3 partial (some slides or images failed or were rejected), "
                 "130 interrupted; see docs/cli.md.")
    ap.add_argument("--version", action="version", version=f"hemoflow {__version__}",
                    help="print the version and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="log debug messages (and tracebacks)")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND",
                           help="what to do; `hemoflow COMMAND --help` lists its options")
    _add_job_commands(sub, commands)
    _add_image_commands(sub, commands)
    _add_other_commands(sub, commands)
    return ap


def _add_job_commands(sub, commands) -> None:
    p = sub.add_parser("demo", help="generate a small synthetic archive and run the whole job on it",
                       description="Write 3 patients x N synthetic slides with ground truth, process them on "
                                   "local workers, write the report, and print measured vs true counts.")
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--size", type=positive_int, default=8000, metavar="PX",
                   help="slide side in px (default 8000)")
    p.add_argument("--slides-per-patient", type=positive_int, default=2, metavar="N",
                   help="slides per patient (default 2)")
    _cluster_opts(p)
    p.set_defaults(func=commands["demo"])

    p = sub.add_parser("run", help="process the slides of a manifest CSV, or of a folder / S3 prefix",
                       description="Process slides; rerunning with the same --out resumes (finished slides "
                                   "and tiles are not redone). S3 endpoint and credentials come from the "
                                   "standard AWS variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...).")
    p.add_argument("manifest", help="CSV with columns slide, patient_id, specimen[, mpp]; or a folder / "
                                    "s3://bucket/prefix whose slides are all processed (needs --patients)")
    p.add_argument("--patients", default=None, metavar="CSV",
                   help="with a folder or prefix: CSV with columns slide (name or key relative to the prefix), "
                        "patient_id, specimen (optional, default peripheral_blood), mpp (optional)")
    p.add_argument("--out", required=True, metavar="URL", help="output folder or s3://bucket/prefix")
    p.add_argument("--model", default=None, metavar="FILE",
                   help="classifier weights file (default: the shipped model)")
    p.add_argument("--job-id", default=None, metavar="ID",
                   help="job id (default: a new random id); give the id of a job whose "
                        "client died to take over its output at once")
    p.add_argument("--pseudonymize", metavar="KEY", default=None,
                   help="replace patient and slide ids by a keyed hash in every output")
    p.add_argument("--no-tile-records", action="store_true",
                   help="do not record finished tiles (a rerun then redoes unfinished slides whole)")
    _cluster_opts(p)
    p.set_defaults(func=commands["run"])


def _segmentation_options(p, param_help: str) -> None:
    p.add_argument("--no-smear-qc", action="store_true",
                   help="count every slide, without the blood-smear QC gate that rejects tissue sections and "
                        "other non-smears (see docs/qc.md)")
    p.add_argument("--param", type=key_value, action="append", default=None, metavar="KEY=VALUE", help=param_help)


def _scale_options(p, mpp_help: str, per_image_help: str) -> None:
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--mpp", type=positive_float, default=None, metavar="UM", help=mpp_help)
    scale.add_argument("--mpp-per-image", action="store_true", help=per_image_help)


def _add_image_commands(sub, commands) -> None:
    p = sub.add_parser("analyze", help="count and classify the cells of microscope fields (JPEG/PNG/TIFF)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="8-bit RGB JPEG, PNG or TIFF fields")
    p.add_argument("--json", action="store_true", help="print a JSON list (one record per image)")
    _scale_options(p, "µm per pixel (default: estimated from the RBC size; with several images, one median "
                      "estimate for all of them)",
                   "with several images, estimate each image's pixel size on its own")
    p.add_argument("--no-classify", action="store_true", help="skip WBC classification")
    p.add_argument("--tta", action="store_true",
                   help="classify WBCs with test-time augmentation (8 flips and quarter turns per crop)")
    _segmentation_options(p, "expert segmentation parameter (a field of hemoflow.stages.SegmentParams); repeatable")
    p.set_defaults(func=commands["analyze"])

    p = sub.add_parser("classify", help="classify single-cell images (one centred WBC per image)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="8-bit RGB JPEG, PNG or TIFF images, one cell each")
    p.add_argument("--json", action="store_true",
                   help='print a JSON list of {"image", "label", "probability", "probabilities"}')
    _scale_options(p, "µm per pixel of the images (default: estimated from each image's red cells, or its white "
                      "cell's size; images of one size share the median estimate)",
                   "estimate each image's pixel size on its own, not one per image size")
    p.add_argument("--no-tta", action="store_true",
                   help="one view per image (default: average over its 8 flips and quarter turns)")
    p.set_defaults(func=commands["classify"])


def _add_other_commands(sub, commands) -> None:
    p = sub.add_parser("train", help="train the 13-label WBC classifier from ../shared/data (reproduces the shipped model)")
    p.add_argument("--data", default="../shared/data", metavar="DIR",
                   help="folder holding pbc/, pbc_train/, pbc_maturation/, marrow_mll/ and bccd/ (default ../shared/data)")
    p.add_argument("--out", required=True, metavar="FILE", help="weights file to write (a .json sidecar is written beside it)")
    p.add_argument("--cache", default=None, metavar="DIR", help="folder for the preprocessed crops, reused by later runs")
    p.add_argument("--steps", default="1000,6000,6000", metavar="N,N,...",
                   help="batches per training round, comma-separated (default 1000,6000,6000: the shipped model's recipe)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--threads", type=positive_int, default=2, metavar="N", help="torch CPU threads (default 2)")
    p.set_defaults(func=commands["train"])

    p = sub.add_parser("ingest", help="convert a TIFF / OME-TIFF / SVS slide to OME-Zarr")
    p.add_argument("src", help="slide file (local path or s3:// URL)")
    p.add_argument("dest", help="folder or s3:// URL of the .ome.zarr to write")
    p.add_argument("--mpp", type=positive_float, default=None, metavar="UM",
                   help="pixel size in µm per pixel (default: read from the file)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing image at DEST")
    p.add_argument("--any-layout", action="store_true",
                   help="also store images hemoflow cannot process (greyscale, 16-bit, multichannel or z stacks)")
    p.set_defaults(func=commands["ingest"])

    p = sub.add_parser("report", help="write the HTML per-patient report of a finished job")
    p.add_argument("results", help="the job's output folder or URL")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the report to")
    p.add_argument("--pseudonymize", metavar="KEY", default=None, help="replace patient ids by a keyed hash")
    p.set_defaults(func=commands["report"])

    p = sub.add_parser("warmup", help="compile the Numba kernels now (scripts/setup.sh runs this), "
                                      "so that the first job starts computing at once")
    p.set_defaults(func=commands["warmup"])
