import numpy as np
import pytest
from PIL import Image

from hemoflow import synth
from hemoflow.analyze import analyze_image
from hemoflow.errors import SlideNotFoundError, SlideReadError, UnsupportedImageError

#: Reported RBC count / the generator's RBCs - 1 on 384²-640² fields: mean -2.2 %, sd 0.8 % over 36 fields; mean ± 3 sd.
RBC_COUNT_BAND = (-0.047, 0.003)


class _FakeClassifier:
    def predict(self, crops):
        n = len(crops)
        probs = np.tile(np.array([0.7, 0.3], np.float32), (n, 1))
        return ["neutrophil"] * n, probs


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(SlideNotFoundError):
        analyze_image(tmp_path / "nope.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(SlideReadError):
        analyze_image(bad)
    gray = tmp_path / "gray.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(gray)
    with pytest.raises(UnsupportedImageError, match="RGB"):
        analyze_image(gray, mpp=0.25)


def test_png_file_with_classifier(tmp_path):
    rgb, truth = synth.synth_field((384, 384), seed=4, n_wbc=2)
    p = tmp_path / "field.png"
    Image.fromarray(rgb).save(p)
    out = analyze_image(p, mpp=0.25, classifier=_FakeClassifier())
    assert out["image"] == "field" and out["mpp"] == 0.25 and out["mpp_estimated"] is False
    assert out["wbc"] == 2
    assert out["wbc"] + out["rbc_cells"] + out["platelets"] == len(out["cells"])
    # rbc: the reported count (the count_weight sum, not the rows), in the band of tests/stages/test_field.py
    n_rbc = int(np.sum(np.asarray(truth["cls"]) == "rbc"))
    assert RBC_COUNT_BAND[0] <= out["rbc"] / n_rbc - 1 <= RBC_COUNT_BAND[1], (out["rbc"], out["rbc_cells"], n_rbc)
    wbcs = [c for c in out["cells"] if c["cls"] == "wbc"]
    assert all(c["wbc_type"] == "neutrophil" and c["wbc_confidence"] == pytest.approx(0.7) for c in wbcs)
    assert all("wbc_type" not in c for c in out["cells"] if c["cls"] != "wbc")
    assert set(out["cells"][0]) >= {"cls", "y", "x", "area_um2", "circularity", "solidity", "irregular"}


def test_tiff_and_array_input_estimated_mpp(tmp_path):
    import tifffile

    rgb, _ = synth.synth_field((384, 384), seed=5)
    p = tmp_path / "f.tif"
    tifffile.imwrite(p, rgb)
    a = analyze_image(p)
    b = analyze_image(rgb)
    assert a["mpp_estimated"] and b["image"] == "array"
    assert a["rbc"] == b["rbc"] and a["wbc"] == b["wbc"]


def test_shared_mpp_is_the_median_of_the_field_estimates():
    from hemoflow.analyze import estimate_shared_mpp
    from hemoflow.stages import calibrate

    fields = [synth.synth_field((384, 384), mpp=m, seed=20 + i)[0] for i, m in enumerate((0.22, 0.25, 0.28))]
    mpp, n = estimate_shared_mpp(fields)
    singles = sorted(calibrate(f).mpp for f in fields)
    assert n == 3 and mpp == pytest.approx(singles[1])
    assert mpp == pytest.approx(0.25, rel=0.1)


def test_shared_mpp_skips_empty_fields_and_fails_when_all_are_empty():
    from hemoflow.analyze import estimate_shared_mpp
    from hemoflow.errors import HemoflowError

    blank = np.full((128, 128, 3), 235, np.uint8)
    rgb, _ = synth.synth_field((384, 384), mpp=0.25, seed=7)
    mpp, n = estimate_shared_mpp([blank, rgb])
    assert n == 1 and mpp == pytest.approx(0.25, rel=0.1)
    with pytest.raises(HemoflowError, match="pass mpp"):
        estimate_shared_mpp([blank, blank])


@pytest.mark.parametrize("mpp", [0.25, 0.1, 0.5])  # block factor 2 (the planar fast path), 5 and 1
def test_planar_window_gives_the_same_cells_and_crops_as_interleaved(mpp):
    """A Zarr window read without interleaving (a transposed view of planar channels) is
    analysed in place and gives exactly the table and crops of the interleaved copy."""
    from hemoflow import synth
    from hemoflow.stages import analyze_field

    rgb, _ = synth.synth_field((700, 650), mpp=mpp, seed=3, n_wbc=2)
    planar_view = np.moveaxis(np.ascontiguousarray(np.moveaxis(rgb, -1, 0)), 0, -1)
    assert not planar_view.flags.c_contiguous and np.array_equal(planar_view, rgb)
    a = analyze_field(rgb, mpp=mpp)
    b = analyze_field(planar_view, mpp=mpp)
    assert len(a.table["cls"]) > 20 and (a.table["cls"] == "wbc").any()
    assert a.table.keys() == b.table.keys()
    for k in a.table:
        np.testing.assert_array_equal(a.table[k], b.table[k], err_msg=k)
    np.testing.assert_array_equal(a.crops, b.crops)


@pytest.mark.parametrize("mpp, ratio", [(0.25, (2, 1)), (0.2527, (2, 1)), (0.263, (5, 3)), (0.345, (4, 3)),
                                         (0.4, (6, 5))])
def test_scan_pixel_sizes_keep_the_working_scale(mpp, ratio):
    """Scanner pixels a little above 0.25 µm/px (0.2527 is common) are block-averaged by 2
    like 0.25 µm/px, not left at full resolution; pixel sizes that no integer factor brings
    within 10 % of the working pixel (0.263, 0.345 (a 20x scanner), 0.4 µm/px) get a
    ratio p/q. Each counts its red cells within 6 % (at factor 1, 0.345 µm/px lost 23 %)."""
    from hemoflow import synth
    from hemoflow.stages import analyze_field
    from hemoflow.stages.features import rbc_count

    rgb, truth = synth.synth_field((1600, 1600), mpp=mpp, seed=5)
    res = analyze_field(rgb, mpp=mpp)
    assert (res.calibration.downsample, res.calibration.upsample) == ratio
    true_rbc = int(np.sum(np.asarray(truth["cls"]) == "rbc"))
    assert true_rbc > 500
    assert abs(rbc_count(res.table) / true_rbc - 1) < 0.06


def test_block_factor_picks_the_nearest_working_pixel():
    from hemoflow.errors import HemoflowError
    from hemoflow.stages.field import block_factor

    assert [block_factor(m, 0.46) for m in (0.0745, 0.1, 0.2, 0.25, 0.2527, 0.32, 0.33, 0.5, 2.0)] == [
        6, 5, 2, 2, 2, 2, 1, 1, 1]
    assert block_factor(0.23, 0.46) == 2 and block_factor(0.46 / 3, 0.46) == 3  # exact multiples
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(HemoflowError, match="positive and finite"):
            block_factor(bad, 0.46)


def test_working_ratio_keeps_integer_factors_near_the_working_pixel():
    import math

    from hemoflow.errors import HemoflowError
    from hemoflow.stages.field import block_factor, working_ratio

    for mpp in np.geomspace(0.05, 2.0, 400):
        p, q = working_ratio(mpp, 0.46)
        assert p >= 1 and 1 <= q <= 8 and math.gcd(p, q) == 1
        off = abs(math.log(p * mpp / (q * 0.46)))
        f = block_factor(mpp, 0.46)
        if abs(math.log(f * mpp / 0.46)) <= math.log(1.1):
            assert (p, q) == (f, 1)  # the integer factor wherever it is within 10 %
        elif mpp > 0.46:
            assert (p, q) == (1, 1)  # coarse scans are never enlarged
        else:
            assert q > 1
            assert p > q and off <= math.log(1.05) + 1e-12  # within 5 %
    assert working_ratio(0.0745, 0.46) == (6, 1)  # BCCD's pooled estimate: the fitted scale
    with pytest.raises(HemoflowError, match="positive and finite"):
        working_ratio(0.0, 0.46)
