"""A folder or S3 prefix of slides plus a patients table: listing, matching, and every bad
input refused with a clear error before anything is written."""

from __future__ import annotations

import pytest

from hemoflow.cli import main
from hemoflow.errors import ManifestError
from hemoflow.jobs.manifest import list_slides, load_prefix_manifest


@pytest.fixture()
def folder(tmp_path):
    d = tmp_path / "archive"
    for rel in ("a.tif", "sub/b.svs", "sub/deep/c.ome.tiff", ".hidden.tif", "notes.txt"):
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    z = d / "z.ome.zarr" / "0"
    z.mkdir(parents=True)
    (d / "z.ome.zarr" / "zarr.json").write_text("{}")
    (z / "zarr.json").write_text("{}")
    return d


def _csv(tmp_path, text: str):
    p = tmp_path / "patients.csv"
    p.write_text(text)
    return p


def test_listing_finds_slides_and_zarr_roots(folder):
    assert list_slides(str(folder)) == ["a.tif", "sub/b.svs", "sub/deep/c.ome.tiff", "z.ome.zarr"]


def test_rows_match_by_name_stem_or_key_with_defaults(folder, tmp_path):
    csv = _csv(tmp_path, "slide,patient_id,specimen,mpp\na.tif,P1,,\nsub/b.svs,P1,bone_marrow,0.25\n"
                         "c,P2,,\nz.ome.zarr,P3,,\n")
    m = load_prefix_manifest(folder, csv)
    got = {e.slide_id: (e.slide, e.patient_id, e.specimen, e.mpp) for e in m}
    assert got == {
        "a": (f"{folder}/a.tif", "P1", "peripheral_blood", None),
        "b": (f"{folder}/sub/b.svs", "P1", "bone_marrow", 0.25),
        "c": (f"{folder}/sub/deep/c.ome.tiff", "P2", "peripheral_blood", None),
        "z": (f"{folder}/z.ome.zarr", "P3", "peripheral_blood", None),
    }


_ALL = "a.tif,P1\nsub/b.svs,P1\nc,P2\nz.ome.zarr,P3\n"

BAD = {
    "duplicate": ("a.tif,P1\na,P2\nsub/b.svs,P1\nc,P2\nz.ome.zarr,P3\n", "row 2: duplicate slide 'a'"),
    "missing": (_ALL + "nope.tif,P4\n", "row 5: slide 'nope.tif' not found under"),
    "dotdot": (_ALL + "sub/../../etc/x.tif,P4\n", "contains '..' and would leave the prefix"),
    "absolute": (_ALL + "/etc/a.tif,P4\n", "is absolute"),
    "url": (_ALL + "s3://other/a.tif,P4\n", "is absolute"),
    "empty_patient": ("a.tif,\nsub/b.svs,P1\nc,P2\nz.ome.zarr,P3\n", "row 1: empty patient_id"),
    "long_patient": ("a.tif," + "x" * 129 + "\nsub/b.svs,P1\nc,P2\nz.ome.zarr,P3\n", "longer than 128"),
    "unlisted": ("a.tif,P1\n", "3 slide(s) under"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_patients_table_is_refused_by_the_cli_before_any_write(folder, tmp_path, capsys, case):
    body, msg = BAD[case]
    csv = _csv(tmp_path, "slide,patient_id\n" + body)
    out = tmp_path / "out"
    assert main(["run", str(folder), "--patients", str(csv), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert msg in err, err
    assert not out.exists()


@pytest.mark.parametrize("column,value,msg", [
    ("specimen", "urine", "unknown specimen 'urine'"),
    ("mpp", "0", "mpp must be a positive number"),
    ("mpp", "-0.5", "mpp must be a positive number"),
])
def test_bad_values(folder, tmp_path, column, value, msg):
    rows = [r.split(",") for r in _ALL.strip().split("\n")]
    text = f"slide,patient_id,{column}\n" + "".join(f"{s},{p},{value if i == 0 else ''}\n"
                                                    for i, (s, p) in enumerate(rows))
    with pytest.raises(ManifestError, match=msg):
        load_prefix_manifest(folder, _csv(tmp_path, text))


def test_ambiguous_name_needs_the_key(tmp_path):
    d = tmp_path / "arch"
    for rel in ("x/s.tif", "y/s.tif"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(b"x")
    with pytest.raises(ManifestError, match="ambiguous"):
        load_prefix_manifest(d, [{"slide": "s.tif", "patient_id": "P"}])
    m = load_prefix_manifest(d, [{"slide": "x/s.tif", "patient_id": "P"}, {"slide": "y/s.tif", "patient_id": "Q"}])
    assert len({e.slide_id for e in m}) == 2


def test_empty_or_missing_prefix(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no slides"):
        load_prefix_manifest(tmp_path / "empty", [{"slide": "a.tif", "patient_id": "P"}])
    with pytest.raises(ManifestError, match="does not exist"):
        load_prefix_manifest(tmp_path / "nope", [{"slide": "a.tif", "patient_id": "P"}])


def test_prefix_without_patients_table_is_refused(folder, tmp_path, capsys):
    assert main(["run", str(folder), "--out", str(tmp_path / "out")]) == 2
    assert "--patients" in capsys.readouterr().err


# -- the same on S3 ------------------------------------------------------------------------
@pytest.fixture()
def s3_archive(s3_bucket):
    from hemoflow.io import storage

    for rel in ("a.tif", "sub/b.svs"):
        storage.atomic_write_bytes(f"s3://{s3_bucket}/archive/{rel}", b"x")
    return f"s3://{s3_bucket}"


def _objects(bucket_url: str) -> list[str]:
    from hemoflow.io import storage

    return storage.list_prefix(bucket_url)


def test_s3_prefix_manifest(s3_archive, tmp_path):
    m = load_prefix_manifest(f"{s3_archive}/archive/", [{"slide": "a.tif", "patient_id": "P1"},
                                                         {"slide": "sub/b.svs", "patient_id": "P2"}])
    assert [e.slide for e in m] == [f"{s3_archive}/archive/a.tif", f"{s3_archive}/archive/sub/b.svs"]


@pytest.mark.parametrize("body,msg", [
    ("a.tif,P1\nsub/b.svs,P1\nmissing.svs,P2\n", "row 3: slide 'missing.svs' not found under s3://"),
    ("a.tif,P1\nsub/b.svs,P1\n../a.tif,P2\n", "would leave the prefix"),
    ("a.tif,P1\nsub/b.svs,P1\nsub/b.svs,P2\n", "row 3: duplicate slide"),
])
def test_s3_bad_patients_table_writes_nothing(s3_archive, tmp_path, capsys, body, msg):
    before = _objects(s3_archive)
    csv = _csv(tmp_path, "slide,patient_id\n" + body)
    assert main(["run", f"{s3_archive}/archive/", "--patients", str(csv), "--out", f"{s3_archive}/out/"]) == 1
    assert msg in capsys.readouterr().err
    assert _objects(s3_archive) == before


def test_s3_csv_manifest_with_missing_object_writes_nothing(s3_archive, tmp_path, capsys):
    before = _objects(s3_archive)
    csv = _csv(tmp_path, f"slide,patient_id,specimen\n{s3_archive}/archive/a.tif,P1,peripheral_blood\n"
                         f"{s3_archive}/archive/gone.svs,P2,peripheral_blood\n")
    assert main(["run", str(csv), "--out", f"{s3_archive}/out/"]) == 1
    assert "row 2: slide not found" in capsys.readouterr().err
    assert _objects(s3_archive) == before
