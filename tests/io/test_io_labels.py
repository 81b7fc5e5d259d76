"""NGFF 0.5 label image of the cells: opens with ome-zarr's reader, values where expected."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _require import require_import
import zarr

from hemoflow.errors import HemoflowError
from hemoflow.io.labels import CLASS_VALUES, write_points_labels

H, W, MPP = 600, 1000, 0.5


def _image(path, levels=3):
    """A minimal OME-Zarr 0.5 RGB image (c, y, x) with ``levels`` levels."""
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    datasets = []
    for i in range(levels):
        a = g.create_array(str(i), shape=(3, H >> i, W >> i), chunks=(3, 256, 256), dtype="uint8",
                           dimension_names=("c", "y", "x"))
        a[:] = 230
        datasets.append({"path": str(i), "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, MPP * 2**i, MPP * 2**i]}]})
    g.attrs["ome"] = {"version": "0.5", "multiscales": [{"name": "slide", "axes": [
        {"name": "c", "type": "channel"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"}], "datasets": datasets}]}
    return g


@pytest.fixture()
def cells():
    return pd.DataFrame({
        "y": [100.0, 110.0, 400.0, 300.0, 599.0],
        "x": [100.0, 112.0, 900.0, 500.0, 0.0],
        "cls": ["rbc", "platelet", "wbc", "wbc", "rbc"],
        "wbc_type": ["", "", "blast", "neutrophil", ""],
        "equivalent_diameter_um": [8.0, 2.0, 12.0, 12.0, 8.0],
        "bbox_y0": [92, 108, 388, 288, 591], "bbox_x0": [92, 110, 888, 488, 0],
        "bbox_y1": [109, 113, 413, 313, 600], "bbox_x1": [109, 115, 913, 513, 9],
    })


def test_opens_with_ome_zarr_reader(tmp_path, cells):
    require_import("ome_zarr", "ome-zarr (test extra) is not installed")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Labels, Reader

    path = tmp_path / "slide.zarr"
    _image(path)
    write_points_labels(path, cells, (H, W), downsample=2, chunk=64)
    nodes = list(Reader(parse_url(str(path)))())
    assert any(n.load(Labels) for n in nodes)
    (label,) = [n for n in nodes if n.load(Label)]
    assert label.metadata["name"] == "cells"
    assert [tuple(d.shape) for d in label.data] == [(300, 500), (150, 250), (75, 125)]
    # Per-instance colours from the class/WBC-type palette, properties per label.
    assert len(label.metadata["color"]) == len(cells)
    assert label.metadata["properties"][3] == {"class": "wbc", "wbc_type": "blast"}
    lvl0 = np.asarray(label.data[0])
    # Every cell's centroid pixel carries its label (table position + 1).
    for i, r in enumerate(cells.itertuples()):
        assert lvl0[int(r.y // 2), int(r.x // 2)] == i + 1
    # The platelet lies on the red cell and is drawn over it.
    assert (lvl0 == 2).sum() > 0 and (lvl0 == 1).sum() > (lvl0 == 2).sum()
    # A disc of 8 µm at 1 µm per label pixel covers about pi * 4^2 pixels.
    assert abs((lvl0 == 1).sum() + (lvl0 == 2).sum() - np.pi * 16) < 12
    np.testing.assert_array_equal(np.asarray(label.data[1]), lvl0[::2, ::2])


def test_validates_against_ngff_models(tmp_path, cells):
    require_import("ome_zarr_models", "ome-zarr-models (test extra) is not installed")
    from ome_zarr_models.v05.image import Image
    from ome_zarr_models.v05.image_label import ImageLabel

    path = tmp_path / "slide.zarr"
    g = _image(path)
    ome = write_points_labels(g, cells, (H, W), mpp=MPP, downsample=1, chunk=128)
    assert zarr.open_group(str(path / "labels"), mode="r").attrs["ome"] == {"version": "0.5", "labels": ["cells"]}
    Image.from_zarr(zarr.open_group(str(path), mode="r"))  # checks labels too (same level count)
    ImageLabel.from_zarr(zarr.open_group(str(path / "labels" / "cells"), mode="r"))
    scale = ome["multiscales"][0]["datasets"][2]["coordinateTransformations"][0]["scale"]
    assert scale == [2.0, 2.0]


def test_chunking_does_not_change_the_image(tmp_path, cells):
    outs = []
    for chunk in (40, 1024):
        path = tmp_path / f"c{chunk}.zarr"
        _image(path, levels=2)
        write_points_labels(path, cells, (H, W), values="class", chunk=chunk)
        outs.append([zarr.open_array(str(path / "labels" / "cells" / str(i)), mode="r")[:] for i in range(2)])
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            np.testing.assert_array_equal(a, b)
    lvl0 = outs[0][0]
    assert set(np.unique(lvl0)) == {0, *CLASS_VALUES.values()}
    assert lvl0[400, 900] == CLASS_VALUES["wbc"]


def test_bbox_shape_and_second_label_kept(tmp_path, cells):
    path = tmp_path / "slide.zarr"
    _image(path, levels=1)
    write_points_labels(path, cells, (H, W), shape_kind="bbox", name="boxes")
    write_points_labels(path, cells, (H, W))
    labels = zarr.open_group(str(path / "labels"), mode="r").attrs["ome"]["labels"]
    assert labels == ["boxes", "cells"]
    box = zarr.open_array(str(path / "labels" / "boxes" / "0"), mode="r")[:]
    assert (box == 3).sum() == 25 * 25


def test_errors(tmp_path, cells):
    path = tmp_path / "plain.zarr"
    zarr.open_group(str(path), mode="w", zarr_format=3)
    with pytest.raises(HemoflowError, match="mpp"):
        write_points_labels(path, cells, (H, W))
    with pytest.raises(HemoflowError, match="downsample"):
        write_points_labels(path, cells, (H, W), mpp=MPP, downsample=1.5)
    with pytest.raises(HemoflowError, match="lack"):
        write_points_labels(path, cells.drop(columns="x"), (H, W), mpp=MPP)


def test_many_cells_skip_per_label_metadata(tmp_path, cells):
    path = tmp_path / "slide.zarr"
    _image(path, levels=1)
    ome = write_points_labels(path, cells, (H, W), max_label_metadata=2)
    assert "colors" not in ome["image-label"] and "properties" not in ome["image-label"]
    assert zarr.open_array(str(path / "labels" / "cells" / "0"), mode="r")[400, 900] == 3
