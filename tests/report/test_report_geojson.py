"""GeoJSON detections: structurally valid (RFC 7946 + QuPath's object layout) and round-trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from hemoflow.errors import HemoflowError
from hemoflow.report.geojson import cells_to_geojson, geojson_to_cells, write_geojson

from report_synth import MPP


def _position(p):
    assert isinstance(p, list) and len(p) in (2, 3), p
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in p), p


def _signed_area(ring):
    r = np.asarray(ring, float)
    return 0.5 * float(np.sum(r[:-1, 0] * r[1:, 1] - r[1:, 0] * r[:-1, 1]))


def validate_feature_collection(fc: dict) -> None:
    """A small structural validator of RFC 7946 FeatureCollections (geometry types used
    here) and of the properties QuPath reads for detections."""
    assert fc["type"] == "FeatureCollection"
    assert isinstance(fc["features"], list)
    for f in fc["features"]:
        assert f["type"] == "Feature"
        assert set(f) <= {"type", "geometry", "properties", "id", "bbox"}
        g = f["geometry"]
        if g["type"] == "Point":
            _position(g["coordinates"])
        elif g["type"] == "Polygon":
            rings = g["coordinates"]
            assert isinstance(rings, list) and rings
            for ring in rings:
                assert len(ring) >= 4, "a linear ring has at least 4 positions"
                for p in ring:
                    _position(p)
                assert ring[0] == ring[-1], "a linear ring is closed"
            assert _signed_area(rings[0]) > 0, "exterior ring counter-clockwise (right-hand rule)"
        else:
            raise AssertionError(f"unexpected geometry {g['type']}")
        props = f["properties"]
        assert props["objectType"] == "detection"
        cl = props["classification"]
        assert isinstance(cl["name"], str) and cl["name"]
        assert len(cl["color"]) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in cl["color"])
        assert isinstance(props["measurements"], dict)
        assert all(isinstance(v, float) and math.isfinite(v) for v in props["measurements"].values())
    json.dumps(fc, allow_nan=False)


@pytest.fixture()
def cells(patient_cells):
    return patient_cells[patient_cells["slide"] == "slide-A"].reset_index(drop=True)


@pytest.mark.parametrize("geometry", ["circle", "bbox", "point"])
def test_valid_geojson(cells, geometry):
    fc = cells_to_geojson(cells, mpp=MPP, geometry=geometry)
    assert len(fc["features"]) == len(cells)
    validate_feature_collection(fc)


@pytest.mark.parametrize("geometry", ["circle", "bbox", "point"])
def test_round_trip_centroids_and_classes(cells, geometry, tmp_path):
    fc = cells_to_geojson(cells, mpp=MPP, geometry=geometry)
    path = tmp_path / "cells.geojson"
    path.write_text(json.dumps(fc))
    back = geojson_to_cells(path)
    np.testing.assert_array_equal(back["y"].to_numpy(), cells["y"].to_numpy())
    np.testing.assert_array_equal(back["x"].to_numpy(), cells["x"].to_numpy())
    assert back["cls"].tolist() == cells["cls"].tolist()
    expect_wt = np.where(cells["cls"] == "wbc", cells["wbc_type"], "")
    assert back["wbc_type"].tolist() == expect_wt.tolist()


def test_geometry_alone_gives_centroids(cells):
    fc = cells_to_geojson(cells, mpp=MPP, geometry="circle")
    for f in fc["features"]:
        del f["properties"]["measurements"]
    back = geojson_to_cells(fc)
    np.testing.assert_allclose(back["y"], cells["y"], atol=1e-9)
    np.testing.assert_allclose(back["x"], cells["x"], atol=1e-9)


def test_circle_radius_and_bbox_corners():
    cells = pd.DataFrame(
        {"y": [100.0], "x": [200.0], "cls": ["wbc"], "wbc_type": ["blast"], "equivalent_diameter_um": [10.0],
         "bbox_y0": [80], "bbox_x0": [180], "bbox_y1": [121], "bbox_x1": [221], "area_um2": [78.5]}
    )
    f = cells_to_geojson(cells, mpp=0.5, n_vertices=8)["features"][0]
    ring = np.asarray(f["geometry"]["coordinates"][0])
    assert len(ring) == 9
    np.testing.assert_allclose(np.hypot(ring[:, 0] - 200, ring[:, 1] - 100), 10.0)  # 5 µm / 0.5
    p = f["properties"]
    assert p["classification"]["name"] == "wbc: blast"
    assert p["measurements"]["Area µm^2"] == 78.5
    assert p["measurements"]["Centroid X µm"] == 100.0
    box = cells_to_geojson(cells, mpp=0.5, geometry="bbox")["features"][0]["geometry"]["coordinates"][0]
    assert box[0] == [180.0, 80.0] and box[2] == [221.0, 121.0]


def test_streamed_file_equals_collection(cells, tmp_path):
    path = write_geojson(cells, tmp_path / "a.geojson", mpp=MPP)
    assert json.loads(path.read_text(encoding="utf-8")) == cells_to_geojson(cells, mpp=MPP)


def test_empty_and_errors(cells):
    fc = cells_to_geojson(cells.iloc[:0], mpp=MPP)
    assert fc == {"type": "FeatureCollection", "features": []}
    assert len(geojson_to_cells(fc)) == 0
    with pytest.raises(HemoflowError, match="mpp"):
        cells_to_geojson(cells, mpp=0)
    with pytest.raises(HemoflowError, match="geometry"):
        cells_to_geojson(cells, mpp=MPP, geometry="hexagon")
    with pytest.raises(HemoflowError, match="lack"):
        cells_to_geojson(cells.drop(columns="cls"), mpp=MPP)
