"""A small synthetic patient (cells + thumbnail) for the report tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

MPP = 0.25  # µm per level-0 pixel
SHAPE = (4000, 6000)  # level-0 (H, W)
DOWNSAMPLE = 8.0


def make_cells(slide: str = "slide-A", patient: str = "patient-001", *, seed: int = 0, n_rbc: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    H, W = SHAPE
    rows = []

    def add(cls: str, n: int, diam_um: float, wbc_types=None):
        for i in range(n):
            d = diam_um * rng.uniform(0.8, 1.2)
            r_px = d / 2 / MPP
            y, x = rng.uniform(r_px, H - r_px), rng.uniform(r_px, W - r_px)
            area = np.pi * (d / 2) ** 2
            rows.append(
                dict(
                    y=y, x=x, cls=cls, area_px=int(round(area / MPP**2)), area_um2=area,
                    perimeter_um=np.pi * d, equivalent_diameter_um=d, circularity=1.0, solidity=1.0,
                    eccentricity=0.1, irregular=bool(rng.random() < 0.1),
                    bbox_y0=int(y - r_px), bbox_x0=int(x - r_px), bbox_y1=int(y + r_px) + 1, bbox_x1=int(x + r_px) + 1,
                    wbc_type=(wbc_types[i] if wbc_types is not None else ""),
                    wbc_confidence=(0.9 if wbc_types is not None else np.nan),
                    slide=slide, patient_id=patient, y_um=y * MPP, x_um=x * MPP,
                )
            )

    add("rbc", n_rbc, 7.5)
    types = ["neutrophil"] * 30 + ["lymphocyte"] * 12 + ["monocyte"] * 3 + ["eosinophil"] * 2 + ["blast"] * 3
    add("wbc", len(types), 12.0, types)
    add("platelet", 40, 2.5)
    return pd.DataFrame(rows)


def make_thumbnail(cells: pd.DataFrame) -> tuple[np.ndarray, float]:
    H, W = SHAPE
    h, w = int(H / DOWNSAMPLE), int(W / DOWNSAMPLE)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (238, 226, 230)
    yy, xx = np.mgrid[0:h, 0:w]
    colors = {"rbc": (214, 120, 140), "wbc": (110, 70, 160), "platelet": (150, 100, 170)}
    for r in cells.itertuples():
        cy, cx = r.y / DOWNSAMPLE, r.x / DOWNSAMPLE
        rad = r.equivalent_diameter_um / 2 / MPP / DOWNSAMPLE
        y0, y1 = max(int(cy - rad - 1), 0), min(int(cy + rad + 2), h)
        x0, x1 = max(int(cx - rad - 1), 0), min(int(cx + rad + 2), w)
        m = (yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2 <= rad**2
        img[y0:y1, x0:x1][m] = colors[r.cls]
    return img, DOWNSAMPLE
