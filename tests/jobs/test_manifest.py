"""Manifest validation: every bad manifest gets a clear error before any work."""

from __future__ import annotations

import pytest

from hemoflow.errors import HemoflowError, ManifestError
from hemoflow.jobs.manifest import load_manifest


@pytest.fixture()
def slides(tmp_path):
    paths = []
    for name in ("a.tif", "b.tif"):
        p = tmp_path / name
        p.write_bytes(b"x")
        paths.append(p)
    return paths


def _csv(tmp_path, text):
    p = tmp_path / "m.csv"
    p.write_text(text)
    return p


def test_valid_manifest_resolves_relative_paths_and_ids(tmp_path, slides):
    m = load_manifest(_csv(tmp_path, "slide,patient_id,specimen,mpp\na.tif,P1,peripheral_blood,0.25\nb.tif,P1,bone_marrow,\n"))
    assert [e.slide for e in m] == [str(slides[0].resolve()), str(slides[1].resolve())]
    assert [e.slide_id for e in m] == ["a", "b"]
    assert [e.mpp for e in m] == [0.25, None]
    assert m.patients == ["P1"]


def test_missing_columns(tmp_path, slides):
    with pytest.raises(ManifestError, match=r"lacks required column\(s\) \['specimen'\]"):
        load_manifest(_csv(tmp_path, "slide,patient_id\na.tif,P1\n"))


def test_duplicate_slides(tmp_path, slides):
    with pytest.raises(ManifestError, match="row 2: duplicate slide"):
        load_manifest(_csv(tmp_path, "slide,patient_id,specimen\na.tif,P1,peripheral_blood\n./a.tif,P2,peripheral_blood\n"))


def test_unknown_specimen(tmp_path, slides):
    with pytest.raises(ManifestError, match="row 1: unknown specimen 'urine'"):
        load_manifest(_csv(tmp_path, "slide,patient_id,specimen\na.tif,P1,urine\n"))


@pytest.mark.parametrize("pid,msg", [("", "empty patient_id"), ("x" * 129, "longer than 128")])
def test_bad_patient_id(tmp_path, slides, pid, msg):
    with pytest.raises(ManifestError, match=msg):
        load_manifest([{"slide": str(slides[0]), "patient_id": pid, "specimen": "peripheral_blood"}])


@pytest.mark.parametrize("mpp", ["0", "-1", "abc", "inf"])
def test_bad_mpp(tmp_path, slides, mpp):
    with pytest.raises(ManifestError, match="mpp must be a positive number"):
        load_manifest(_csv(tmp_path, f"slide,patient_id,specimen,mpp\na.tif,P1,peripheral_blood,{mpp}\n"))


def test_missing_slide_file(tmp_path):
    with pytest.raises(ManifestError, match="slide not found"):
        load_manifest(_csv(tmp_path, "slide,patient_id,specimen\nnope.tif,P1,peripheral_blood\n"))


def test_all_problems_listed_and_catchable_as_valueerror(tmp_path, slides):
    with pytest.raises(ValueError) as ei:
        load_manifest(_csv(tmp_path, "slide,patient_id,specimen\na.tif,,blood\n,P2,bone_marrow\n"))
    text = str(ei.value)
    assert "row 1: empty patient_id" in text and "row 1: unknown specimen" in text and "row 2: empty slide" in text
    assert isinstance(ei.value, HemoflowError)


def test_missing_manifest_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_manifest(tmp_path / "nope.csv")


def test_empty_manifest(tmp_path):
    with pytest.raises(ManifestError, match="no slides"):
        load_manifest(_csv(tmp_path, "slide,patient_id,specimen\n"))
