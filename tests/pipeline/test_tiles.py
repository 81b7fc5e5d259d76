"""Tile grid and ownership: literal cases, and exact partition of any image."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hemoflow.pipeline.tiles import concat_tables, own_cells, plan_tiles


def test_plan_literal():
    tiles = plan_tiles((5, 7), 4, 2)
    assert [t.core for t in tiles] == [(0, 0, 4, 4), (0, 4, 4, 7), (4, 0, 5, 4), (4, 4, 5, 7)]
    assert tiles[3].window == (2, 2, 5, 7)
    assert tiles[0].window == (0, 0, 5, 6)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 300), w=st.integers(1, 300), size=st.integers(1, 120), halo=st.integers(0, 40))
def test_cores_partition_the_image(h, w, size, halo):
    cover = np.zeros((h, w), np.int32)
    for t in plan_tiles((h, w), size, halo):
        y0, x0, y1, x1 = t.core
        cover[y0:y1, x0:x1] += 1
        wy0, wx0, wy1, wx1 = t.window
        assert wy0 <= y0 and wx0 <= x0 and wy1 >= y1 and wx1 >= x1
        assert wy0 >= 0 and wx0 >= 0 and wy1 <= h and wx1 <= w
    assert (cover == 1).all()


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 50), pts=st.lists(st.tuples(st.floats(0, 99.999), st.floats(0, 99.999)), max_size=40))
def test_every_centroid_has_exactly_one_owner(size, pts):
    tiles = plan_tiles((100, 100), size, 5)
    owners = np.zeros(len(pts), np.int32)
    for t in tiles:
        table = {"y": np.array([p[0] for p in pts]) - t.window[0], "x": np.array([p[1] for p in pts]) - t.window[1]}
        if len(pts):
            owners += own_cells(table, t)
    assert (owners == 1).all()


def test_concat_tables():
    a = {"y": np.array([1.0]), "cls": np.array(["rbc"])}
    b = {"y": np.array([2.0, 3.0]), "cls": np.array(["wbc", "rbc"])}
    out = concat_tables([a, {}, b])
    assert out["y"].tolist() == [1.0, 2.0, 3.0] and out["cls"].tolist() == ["rbc", "wbc", "rbc"]
    assert concat_tables([]) == {}


def test_align_rounds_tile_and_halo_up():
    tiles = plan_tiles((20, 20), 5, 3, align=2)
    assert tiles[0].core == (0, 0, 6, 6) and tiles[1].core == (0, 6, 6, 12)
    assert all(t.window[0] % 2 == 0 and t.window[1] % 2 == 0 for t in tiles)
    assert tiles[5].core == (6, 6, 12, 12) and tiles[5].window == (2, 2, 16, 16)
