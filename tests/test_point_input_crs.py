"""One rule for point input in every supported coordinate system, at every point endpoint: the
point is checked in its own system (degrees: lon/lat ranges; projected: the CRS's area of use),
converted, and the WGS84 result checked. GET and POST /grids/locate, POST /incidents and the batch
import then give the same grid as the WGS84 point."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyproj
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.crs import wgs84_to_bd09, wgs84_to_gcj02
from tests.conftest import WHEN, make_client, report_incident


def _pyproj(code: int):
    tr = pyproj.Transformer.from_crs(4326, code, always_xy=True)
    return lambda x, y: tr.transform(x, y)


# Every kind of system the service accepts: the two no-op datums, the two web-map shifts, the local
# Gauss-Kruger zone (metres) and a UTM zone (metres).
SYSTEMS = {
    "wgs84": lambda x, y: (x, y),
    "cgcs2000": lambda x, y: (x, y),
    "gcj02": wgs84_to_gcj02,
    "bd09": wgs84_to_bd09,
    "EPSG:4546": _pyproj(4546),
    "EPSG:32649": _pyproj(32649),
}


@pytest.fixture(scope="module")
def points(engine):
    """Interior points of grids spread over the town, with their group grid by the WGS84 rule."""
    from gis.db import transaction
    from gis.grids.store import current_grids

    with transaction(engine) as s:
        groups = current_grids(s, level=4)
    picked = groups.iloc[np.linspace(0, len(groups) - 1, 6).astype(int)]
    pts = np.array([[p.x, p.y] for p in picked.geometry.representative_point()])
    return pts, picked["code"].tolist()


def converted(name: str, pts: np.ndarray) -> list[tuple[float, float]]:
    x, y = SYSTEMS[name](pts[:, 0], pts[:, 1])
    return list(
        zip(np.asarray(x, dtype=float).tolist(), np.asarray(y, dtype=float).tolist(), strict=True)
    )


@pytest.mark.parametrize("crs", SYSTEMS)
def test_locate_get_and_post_give_the_wgs84_grid_in_every_system(client, points, crs):
    pts, codes = points
    given = converted(crs, pts)
    for (x, y), code in zip(given, codes, strict=True):
        r = client.get("/grids/locate", params={"lon": x, "lat": y, "crs": crs})
        assert r.status_code == 200, (crs, r.text)
        assert r.json()["grids"]["4"]["code"] == code
    r = client.post(
        "/grids/locate", json={"crs": crs, "points": [{"lon": x, "lat": y} for x, y in given]}
    )
    assert r.status_code == 200, (crs, r.text)
    assert [a["answer"]["grids"]["4"]["code"] for a in r.json()] == codes


def test_intake_and_batch_import_give_the_wgs84_grid_in_every_system(
    scratch_db_url, accounts, points
):
    pts, codes = points
    with make_client(scratch_db_url, "admin") as admin:
        for crs in SYSTEMS:
            for (x, y), code in zip(converted(crs, pts), codes, strict=True):
                r = report_incident(admin, x, y, crs=crs)
                assert r.status_code == 201, (crs, r.text)
                assert r.json()["group_code"] == code, crs
                assert r.json()["input_crs"] == crs
            given = np.array(converted(crs, pts))
            frame = pd.DataFrame(
                {
                    "category": "environment",
                    "description": "批量",
                    "occurred_at": WHEN,
                    "lon": given[:, 0],
                    "lat": given[:, 1],
                    "external_id": [f"{crs}-{i}" for i in range(len(given))],
                }
            )
            r = admin.post(
                "/incidents/import",
                files={"file": ("pts.csv", frame.to_csv(index=False).encode())},
                data={"crs": crs},
            )
            assert r.status_code == 200 and r.json()["created"] == len(given), (crs, r.text)
    eng = create_engine(scratch_db_url, poolclass=NullPool)
    with eng.connect() as c:
        stored = dict(
            c.execute(
                text("SELECT external_id, group_code FROM incident WHERE external_id LIKE '%-_'")
            ).all()
        )
    eng.dispose()
    for crs in SYSTEMS:
        assert [stored[f"{crs}-{i}"] for i in range(len(codes))] == codes, crs


@pytest.mark.parametrize(
    "crs, x, y, field, kind",
    [
        # Metres far outside the Gauss-Kruger zone's area of use (and far outside any lon range).
        ("EPSG:4546", 9_000_000.0, 3_650_000.0, "lon", "outside_crs_area"),
        ("EPSG:4546", 520_000.0, 90_000_000.0, "lat", "outside_crs_area"),
        ("EPSG:32649", -5_000_000.0, 3_650_000.0, "lon", "outside_crs_area"),
        # Degrees are still held to the lon/lat ranges, before conversion.
        ("gcj02", 200.0, 33.0, "lon", "out_of_range"),
        ("wgs84", 112.2, 95.0, "lat", "out_of_range"),
        ("bd09", 33.0, 112.2, "lon", "swapped_lonlat"),
    ],
)
def test_bad_points_are_refused_naming_the_field_at_every_endpoint(client, crs, x, y, field, kind):
    r = client.get("/grids/locate", params={"lon": x, "lat": y, "crs": crs})
    assert r.status_code == 422, r.text
    (err,) = r.json()["errors"]
    assert err["loc"] == ["query", field] and err["type"] == kind, err
    r = (
        client.post(
            "/grids/locate",
            json={"crs": crs, "points": [{"lon": 112.2, "lat": 33.0}, {"lon": x, "lat": y}]},
        )
        if crs in ("wgs84", "gcj02", "bd09")
        else client.post("/grids/locate", json={"crs": crs, "points": [{"lon": x, "lat": y}]})
    )
    assert r.status_code == 422, r.text
    err = r.json()["errors"][0]
    assert err["loc"][-1] == field and err["type"] == kind, err
    r = report_incident(client, x, y, description="x", crs=crs)
    assert r.status_code == 422, r.text
    err = r.json()["errors"][0]
    assert err["loc"] == ["body", field] and err["type"] == kind, err
