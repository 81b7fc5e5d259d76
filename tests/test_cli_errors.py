"""Every bad input gets one line, ``hemoflow: error: <file>: <problem>``, no traceback, and
the documented exit status (docs/cli.md): 1 error, 2 usage, 3 partial.

The inputs are real files written by tifffile and PIL; the CLI runs in this process
(``main([...])``) or, where the whole process's stderr matters, as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from _require import require

from hemoflow import synth
from hemoflow.cli import EXIT_ERROR, EXIT_PARTIAL, EXIT_USAGE, main


@pytest.fixture(autouse=True)
def _restore_environ():
    # main() sets DASK_LOGGING__* for the worker processes it may start
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str, *needles: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("hemoflow: error: ")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (96, 96), dtype=np.uint8)).save(d / "grey.png")
    tifffile.imwrite(d / "u16.tif", rng.integers(0, 65535, (96, 96, 3), dtype=np.uint16), photometric="rgb")
    tifffile.imwrite(d / "int8_5d.ome.tif", rng.integers(-100, 100, (1, 3, 5, 64, 80), dtype=np.int8), ome=True,
                     metadata={"axes": "TCZYX"})
    rgb, truth = synth.synth_field((384, 384), mpp=0.25, seed=7, n_wbc=1)
    Image.fromarray(rgb).save(d / "field.png")
    tifffile.imwrite(d / "good.tif", rgb, photometric="rgb", tile=(128, 128), compression="zlib")
    raw = (d / "good.tif").read_bytes()
    (d / "truncated.tif").write_bytes(raw[: len(raw) // 2])
    with tifffile.TiffFile(d / "good.tif") as tf:
        off, n = tf.pages[0].dataoffsets[1], tf.pages[0].databytecounts[1]
    broken = bytearray(raw)
    broken[off : off + n] = b"\0" * n  # a tile that does not inflate
    (d / "bad_tile.tif").write_bytes(bytes(broken))
    bad_ifd = bytearray(raw)
    bad_ifd[4:8] = b"\xff\xff\xff\x0f"  # first-page offset past the end: tifffile logs a warning
    (d / "bad_ifd.tif").write_bytes(bytes(bad_ifd))
    i = int(np.flatnonzero(np.asarray(truth["cls"]) == "wbc")[0])
    y, x = int(truth["y"][i]), int(truth["x"][i])
    cell = np.pad(rgb, ((80, 80), (80, 80), (0, 0)), mode="edge")[y : y + 160, x : x + 160]
    Image.fromarray(cell).save(d / "cell.png")
    return d


# -- usage errors (exit 2) -------------------------------------------------------------
@pytest.mark.parametrize("args,flag", [
    (("ingest", "x.tif", "y.zarr", "--mpp", "-0.5"), "--mpp"),
    (("classify", "x.png", "--mpp", "-1"), "--mpp"),
    (("analyze", "x.png", "--mpp", "0"), "--mpp"),
    (("demo", "--size", "-5"), "--size"),
    (("run", "m.csv", "--out", "o", "--workers", "0"), "--workers"),
    (("analyze", "x.png", "--param", "rbc_density_modle=0"), "--param rbc_density_modle"),
    (("analyze", "x.png", "--param", "rbc_density_model=maybe"), "--param rbc_density_model"),
    (("analyze", "x.png", "--param", "rbc_diameter_um=-3"), "rbc_diameter_um"),
    (("analyze", "x.png", "--param", "novalue"), "KEY=VALUE"),
])
def test_usage_errors_name_the_flag(capsys, args, flag):
    code, out, err = _cli(capsys, *args)
    assert code == EXIT_USAGE, err
    _one_error_line(err, flag)
    assert out == ""


def test_run_of_a_folder_needs_patients(capsys, files, tmp_path):
    code, _, err = _cli(capsys, "run", files, "--out", tmp_path / "o")
    assert code == EXIT_USAGE
    _one_error_line(err, str(files), "--patients")
    assert not (tmp_path / "o").exists()


# -- ingest ------------------------------------------------------------------------------
def test_ingest_refuses_what_run_would_refuse(capsys, files, tmp_path):
    dest = tmp_path / "o.zarr"
    code, out, err = _cli(capsys, "ingest", files / "int8_5d.ome.tif", dest)
    assert code == EXIT_ERROR
    _one_error_line(err, "int8_5d.ome.tif: ", "8-bit RGB", "int8")
    assert not dest.exists() and out == ""
    # the same rule as the job's reader: a stored copy of the image is refused there too
    code, out, _ = _cli(capsys, "ingest", files / "int8_5d.ome.tif", dest, "--any-layout")
    assert code == 0 and json.loads(out)["dtype"] == "int8"
    from hemoflow.errors import UnsupportedImageError
    from hemoflow.io import open_slide

    with pytest.raises(UnsupportedImageError, match="int8"):
        open_slide(str(dest)).require_rgb8()


@pytest.mark.data
def test_ingest_refuses_the_real_5d_ome_tiff(capsys, tmp_path, data_dir):
    src = data_dir / "slides" / "multi-channel-z-series.ome.tif"
    require(src.exists(), f"{src} not present")
    code, _, err = _cli(capsys, "ingest", src, tmp_path / "o.zarr")
    assert code == EXIT_ERROR
    _one_error_line(err, "multi-channel-z-series.ome.tif: ", "int8")


def test_ingest_existing_output_names_the_flag(capsys, files, tmp_path):
    dest = tmp_path / "o.zarr"
    assert _cli(capsys, "ingest", files / "good.tif", dest)[0] == 0
    code, _, err = _cli(capsys, "ingest", files / "good.tif", dest)
    assert code == EXIT_ERROR
    line = _one_error_line(err, str(dest), "--overwrite")
    assert "overwrite=True" not in line
    assert _cli(capsys, "ingest", files / "good.tif", dest, "--overwrite")[0] == 0


def test_ingest_truncated_slide(capsys, files, tmp_path):
    code, _, err = _cli(capsys, "ingest", files / "truncated.tif", tmp_path / "o.zarr")
    assert code == EXIT_ERROR
    _one_error_line(err, "truncated.tif", "truncated")


# -- demo output ---------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["proc", "file"])
def test_demo_out_not_writable(capsys, tmp_path, where):
    if where == "proc":
        require(os.path.isdir("/proc"), "no /proc on this system")
        out = "/proc/hemoflow-demo"
    else:
        out = tmp_path / "a-file"
        out.write_text("x")
    code, _, err = _cli(capsys, "demo", "--out", out, "--size", "512")
    assert code == EXIT_ERROR
    _one_error_line(err, str(out))
    assert not (tmp_path / "a-file" / "slides_in").exists()


# -- classify ------------------------------------------------------------------------------
@pytest.mark.parametrize("name,problem", [("grey.png", "greyscale"), ("u16.tif", "uint16"),
                                          ("missing.png", "not found"), ("truncated.tif", "cannot read")])
def test_classify_refuses_bad_images(capsys, files, name, problem):
    code, out, err = _cli(capsys, "classify", files / name, "--json")
    assert code == EXIT_ERROR
    _one_error_line(err, f"{files / name}: ", problem)
    assert json.loads(out) == []


def test_classify_batch_reports_each_bad_image_and_goes_on(capsys, files):
    imgs = [files / "grey.png", files / "cell.png", files / "u16.tif", files / "bad_tile.tif"]
    code, out, err = _cli(capsys, "classify", *imgs, "--json", "--mpp", "0.25", "--no-tta")
    assert code == EXIT_PARTIAL, err
    errors = [ln for ln in err.splitlines() if ln.startswith("hemoflow: error: ")]
    assert sorted(e.split(": ")[2] for e in errors) == sorted(str(p) for p in imgs if p.name != "cell.png")
    assert "Traceback" not in err
    assert [r["image"] for r in json.loads(out)] == [str(files / "cell.png")]


def test_classify_without_mpp_reports_undecodable_images_and_goes_on(capsys, files):
    """Without --mpp every image is read once to measure its scale: a file that decodes
    badly is reported there, once, and the others are classified."""
    imgs = [files / "cell.png", files / "bad_tile.tif", files / "truncated.tif"]
    code, out, err = _cli(capsys, "classify", *imgs, "--json", "--no-tta")
    assert code == EXIT_PARTIAL, err
    errors = [ln for ln in err.splitlines() if ln.startswith("hemoflow: error: ")]
    assert sorted(e.split(": ")[2] for e in errors) == sorted(str(p) for p in imgs[1:]) and "Traceback" not in err
    assert [r["image"] for r in json.loads(out)] == [str(files / "cell.png")]


def test_classify_pools_the_pixel_size_of_same_size_images(capsys, tmp_path):
    """Images of one size share one estimated pixel size (said on stderr); --mpp-per-image
    measures each alone."""
    rgb, _ = synth.synth_field((768, 768), mpp=0.25, seed=11, n_wbc=12)
    paths = []
    for i in range(9):  # nine 100-px windows of one field: one camera, one pixel size
        y, x = 60 + (i // 3) * 220, 60 + (i % 3) * 220
        paths.append(tmp_path / f"w{i}.png")
        Image.fromarray(rgb[y : y + 100, x : x + 100]).save(paths[-1])
    code, out, err = _cli(capsys, "classify", *paths, "--json", "--no-tta")
    assert code == 0, err
    res = json.loads(out)
    assert {r["mpp_source"] for r in res} == {"pooled"} and len({r["mpp"] for r in res}) == 1
    assert f"for 9 images of one size" in err and "--mpp-per-image" in err
    code, out, err = _cli(capsys, "classify", *paths, "--json", "--no-tta", "--mpp-per-image")
    assert code == 0 and "pooled" not in {r["mpp_source"] for r in json.loads(out)} and "of one size" not in err


# -- analyze -------------------------------------------------------------------------------
def test_analyze_batch_reports_each_bad_image_and_goes_on(capsys, files):
    imgs = [files / "grey.png", files / "field.png", files / "u16.tif", files / "missing.png"]
    code, out, err = _cli(capsys, "analyze", *imgs, "--json", "--no-classify")
    assert code == EXIT_PARTIAL, err
    errors = [ln for ln in err.splitlines() if ln.startswith("hemoflow: error: ")]
    assert len(errors) == 3 and "Traceback" not in err
    for e, (p, problem) in zip(errors, [(imgs[0], "greyscale"), (imgs[2], "uint16"), (imgs[3], "not found")]):
        assert e.startswith(f"hemoflow: error: {p}: ") and problem in e, e
    res = json.loads(out)
    assert [r["image"] for r in res] == ["field"] and res[0]["wbc"] >= 1


def test_analyze_all_bad_is_an_error(capsys, files):
    code, out, err = _cli(capsys, "analyze", files / "grey.png", files / "u16.tif", "--json", "--no-classify")
    assert code == EXIT_ERROR and json.loads(out) == []
    assert err.count("hemoflow: error: ") == 2


# -- a job with broken slides (real LocalCluster, as a process) ------------------------------
@pytest.mark.slow
def test_run_with_corrupt_slides_is_partial_and_quiet(files, tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("slide,patient_id,specimen,mpp\n"
                 f"{files / 'good.tif'},P1,peripheral_blood,0.25\n"
                 f"{files / 'bad_tile.tif'},P2,peripheral_blood,0.25\n"
                 f"{files / 'bad_ifd.tif'},P3,peripheral_blood,0.25\n")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "hemoflow.cli", "run", str(m), "--out", str(out), "--workers", "1",
                        "--tile-size", "1024"], capture_output=True, text=True, timeout=600)
    assert r.returncode == EXIT_PARTIAL, r.stderr
    assert "Traceback" not in r.stderr and "tifffile" not in r.stderr and "WARNING" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("hemoflow: error: ")]
    assert len(errors) == 2, r.stderr
    assert errors[0].startswith(f"hemoflow: error: {files / 'bad_tile.tif'}: ")
    assert errors[1].startswith(f"hemoflow: error: {files / 'bad_ifd.tif'}: ")
    job = json.loads((out / "job.json").read_text())
    assert job["status"] == "partial" and len(job["failures"]) == 2
    assert f"job: {job['seconds']:.1f}s" in r.stdout


@pytest.mark.slow
def test_locked_output_names_the_cli_flag(capsys, files, tmp_path):
    from hemoflow.jobs.lock import JobLock

    out = tmp_path / "out"
    out.mkdir()
    lock = JobLock(str(out), "other-job")
    lock.acquire()
    m = tmp_path / "m.csv"
    m.write_text(f"slide,patient_id,specimen\n{files / 'good.tif'},P1,peripheral_blood\n")
    try:
        code, _, err = _cli(capsys, "run", m, "--out", out, "--workers", "1")
    finally:
        lock.release()
    assert code == EXIT_ERROR
    line = _one_error_line(err, "other-job", "--job-id")
    assert "job_id=" not in line


def test_train_refuses_an_unwritable_output_before_training(tmp_path):
    from hemoflow.cli import main

    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "missing" / "w.pt")]) == 1
