"""The CLI contracts: ``analyze --json`` output shape, clear errors on bad input, help on
every option, ``--version`` (more bad inputs in test_cli_errors.py)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from hemoflow import synth
from hemoflow.classify.taxonomy import LABELS, group_of
from hemoflow.cli import build_parser, main


def _hemoflow(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "hemoflow.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.fixture(scope="module")
def field_png(tmp_path_factory):
    rgb, truth = synth.synth_field((700, 900), mpp=0.25, seed=3)
    p = tmp_path_factory.mktemp("f") / "field.png"
    Image.fromarray(rgb).save(p)
    return p, truth


def test_analyze_json_contract(field_png):
    p, truth = field_png
    r = _hemoflow("analyze", str(p), "--json", "--mpp", "0.25")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert isinstance(out, list) and len(out) == 1
    rec = out[0]
    assert rec["image"] == "field"
    for k in ("wbc", "rbc", "rbc_cells", "platelets"):
        assert isinstance(rec[k], int)
    assert isinstance(rec["cells"], list) and len(rec["cells"]) == rec["wbc"] + rec["rbc_cells"] + rec["platelets"]
    # the RBC count is the expected number of red cells: the rounded sum of the weights
    weights = [c["count_weight"] for c in rec["cells"] if c["cls"] == "rbc"]
    assert rec["rbc"] == round(sum(weights)) and abs(rec["rbc"] - rec["rbc_cells"]) <= 0.1 * rec["rbc_cells"] + 1
    cls = np.asarray(truth["cls"])
    assert rec["wbc"] == int((cls == "wbc").sum())
    assert all(c.get("wbc_type") for c in rec["cells"] if c["cls"] == "wbc")


def test_analyze_missing_file(tmp_path):
    r = _hemoflow("analyze", str(tmp_path / "nope.png"), "--json")
    assert r.returncode == 1
    assert "not found" in r.stderr.lower() and "nope.png" in r.stderr
    assert "Traceback" not in r.stderr


def test_analyze_corrupt_file(tmp_path):
    p = tmp_path / "bad.jpg"
    p.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    r = _hemoflow("analyze", str(p), "--json")
    assert r.returncode == 1 and "bad.jpg" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("kind", ["gray", "u16"])
def test_analyze_non_rgb_or_16bit(tmp_path, kind):
    p = tmp_path / f"{kind}.tif"
    if kind == "gray":
        tifffile.imwrite(p, np.zeros((64, 64), np.uint8))
    else:
        tifffile.imwrite(p, np.zeros((64, 64, 3), np.uint16), photometric="rgb")
    r = _hemoflow("analyze", str(p), "--json")
    assert r.returncode == 1 and "Traceback" not in r.stderr and f"{p}: " in r.stderr
    assert ("uint16" in r.stderr) if kind == "u16" else ("RGB" in r.stderr or "shape" in r.stderr)


def test_run_rejects_bad_manifest_and_writes_nothing(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("slide,patient_id\nx.tif,P1\n")
    out = tmp_path / "out"
    r = _hemoflow("run", str(m), "--out", str(out))
    assert r.returncode == 1 and "specimen" in r.stderr
    assert not out.exists()


def test_run_rejects_unwritable_output(tmp_path):
    slide = tmp_path / "s.tif"
    tifffile.imwrite(slide, np.zeros((64, 64, 3), np.uint8), photometric="rgb")
    m = tmp_path / "m.csv"
    m.write_text(f"slide,patient_id,specimen\n{slide},P1,peripheral_blood\n")
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    r = _hemoflow("run", str(m), "--out", str(blocker / "sub"), "--workers", "1")
    assert r.returncode == 1 and "writ" in r.stderr.lower()


def test_analyze_several_images_share_one_estimated_mpp(tmp_path):
    paths = []
    for i in range(2):
        rgb, _ = synth.synth_field((384, 384), mpp=0.25, seed=40 + i)
        paths.append(tmp_path / f"f{i}.png")
        Image.fromarray(rgb).save(paths[-1])
    r = _hemoflow("analyze", *map(str, paths), "--json", "--no-classify")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert "median estimate over 2 fields" in r.stderr
    assert out[0]["mpp"] == out[1]["mpp"] and out[0]["mpp_pooled_over"] == 2 and out[0]["mpp_estimated"]
    r = _hemoflow("analyze", *map(str, paths), "--json", "--no-classify", "--mpp-per-image")
    out = json.loads(r.stdout)
    assert r.returncode == 0 and all("mpp_pooled_over" not in o for o in out)


def test_classify_json_contract(tmp_path):
    """`hemoflow classify --json`: one {"image", "label", "group", "probability", "p_blast", ...} per
    image, in order; test-time augmentation by default, `--no-tta` for one view. Cells are
    cut from a synthetic field around WBCs of known type."""
    rgb, truth = synth.synth_field((768, 768), mpp=0.25, seed=500_001, n_wbc=4)
    wbc = [i for i, c in enumerate(truth["cls"]) if c == "wbc"]
    paths = []
    for k, i in enumerate(wbc[:3]):
        y, x = int(truth["y"][i]), int(truth["x"][i])
        cell = np.pad(rgb, ((80, 80), (80, 80), (0, 0)), mode="edge")[y : y + 160, x : x + 160]
        paths.append(tmp_path / f"cell{k}.png")
        Image.fromarray(cell).save(paths[-1])
    outs = {}
    for flag in ((), ("--no-tta",)):
        r = _hemoflow("classify", *map(str, paths), "--json", "--mpp", "0.25", *flag)
        assert r.returncode == 0, r.stderr
        outs[flag] = out = json.loads(r.stdout)
        assert [o["image"] for o in out] == [str(p) for p in paths]
        for o, i in zip(out, wbc):
            assert set(o) >= {"image", "label", "group", "probability", "p_blast", "probabilities"}
            assert set(o["probabilities"]) == set(LABELS) and o["label"] in LABELS
            assert o["group"] == group_of(o["label"])
            assert o["p_blast"] == pytest.approx(o["probabilities"]["blast"], abs=1e-5)
            assert sum(o["probabilities"].values()) == pytest.approx(1, abs=1e-3)
            assert o["group"] == truth["type"][i]
    assert [o["probabilities"] for o in outs[()]] != [o["probabilities"] for o in outs[("--no-tta",)]]
    r = _hemoflow("classify", str(tmp_path / "missing.png"))
    assert r.returncode != 0 and "not found" in r.stderr


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_every_option_of_every_command_has_help():
    parser = build_parser()
    missing = [f"hemoflow {' '.join(a.option_strings) or a.dest}" for a in parser._actions if not a.help]
    subs = dict(_subparsers(parser))
    assert {"demo", "run", "analyze", "classify", "train", "ingest", "report", "warmup"} <= set(subs)
    helps = {c.dest: c.help for a in parser._actions if isinstance(a, argparse._SubParsersAction)
             for c in a._choices_actions}
    for name, sub in subs.items():
        assert helps.get(name), f"hemoflow {name} has no one-line help"
        missing += [f"hemoflow {name} {'/'.join(a.option_strings) or a.dest}" for a in sub._actions if not a.help]
    assert not missing, f"options without help: {missing}"


def test_version(capsys):
    from hemoflow import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hemoflow {__version__}"


def test_table_headers_carry_units(capsys):
    from hemoflow.console import print_patients

    print_patients([{"patient_id": "P1", "counts": {"wbc": 2, "rbc": 10, "platelet": 1},
                      "differential": {"neutrophil": {"percent": 50.0}, "lymphocyte": {"percent": 50.0}},
                      "morphology": {"rbc": {"area_um2_mean": 41.5}}}], truth=None)
    header, _, row = capsys.readouterr().out.splitlines()[:3]
    assert "neutr%" in header and "blast%" in header and "RBC µm²" in header
    assert row.split()[-1] == "41.5" and "50.0" in row
    # a patient whose slides all failed: its status and dashes, not a row of zeros
    print_patients([{"patient_id": "P2", "status": "failed", "counts": None}], truth=None)
    row = capsys.readouterr().out.splitlines()[2].split()
    assert row[:2] == ["P2", "failed"] and set(row[2:]) == {"-"}


def test_param_values_are_parsed_by_the_field_type():
    from hemoflow.console import UsageError, segment_params
    from hemoflow.stages import SegmentParams

    assert segment_params(None) is None
    p = segment_params([("rbc_density_model", "0"), ("platelet_diameter_um", "1.2,3.5"), ("rbc_diameter_um", "8")])
    assert p == SegmentParams(rbc_density_model=False, platelet_diameter_um=(1.2, 3.5), rbc_diameter_um=8.0)
    for bad in [("rbc_density_model", "perhaps"), ("no_such_key", "1"), ("platelet_diameter_um", "4,1"),
                ("rbc_diameter_um", "big")]:
        with pytest.raises(UsageError, match="--param"):
            segment_params([bad])


def test_no_smear_qc_flag_turns_the_gate_off(monkeypatch):
    from hemoflow.cli import _job_config

    monkeypatch.delenv("HEMOFLOW_SMEAR_QC", raising=False)
    on = build_parser().parse_args(["run", "m.csv", "--out", "o"])
    off = build_parser().parse_args(["run", "m.csv", "--out", "o", "--no-smear-qc"])
    assert _job_config(on).smear_qc is True
    assert _job_config(off).smear_qc is False


def test_progress_bar_counts_rejected_and_failed_slides_as_final():
    import io

    from hemoflow.console import ProgressBar

    out = io.StringIO()
    bar = ProgressBar("job", stream=out)
    bar({"slides_total": 3, "slides_done": 1, "slides_failed": 1, "slides_rejected": 1,
         "tiles_total": 4, "tiles_done": 4, "cells": 10})
    assert "100.0%" in out.getvalue() and "rejected 1" in out.getvalue()
