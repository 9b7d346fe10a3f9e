"""The sample town and the flood model give the same answer on every machine (issue 11, item 18).

Two fresh processes build the town, condition its DEM, flood it at 3 m and polygonise the extent:
one as this machine runs, one as a machine without AVX2/AVX-512 would (numpy's SIMD dispatch off,
so exp/tanh take other code paths), with another hash seed and one thread. Every fingerprint must
match. The README's household counts are asserted against the model on the test database.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fingerprint(workdir: str) -> dict:
    """Digests of the DEM, the conditioned HAND, the houses, the 3 m extent and the houses in it."""
    import numpy as np
    import pyproj
    import shapely
    from shapely.geometry import MultiLineString

    from gis.flood import dem as flood_dem
    from gis.flood import hydrology
    from gis.flood import stages as flood_stages
    from gis.sample_town import generate_sample_town, write_dem

    def digest(b: bytes) -> str:
        return hashlib.sha256(b).hexdigest()[:16]

    town = generate_sample_town()
    dem = flood_dem.read_dem(write_dem(town, Path(workdir) / "dem.tif"))
    rivers = MultiLineString([p for g in town.rivers.geometry for p in shapely.get_parts(g)])
    cond = flood_dem._condition(dem, rivers, flood_dem.DEFAULT_BURN_DEPTH_M, None)
    depth = hydrology.fluvial_depth(cond.hand, cond.drain, 3.0)
    wet_cells = flood_stages._polygonise(np.isfinite(depth), dem.transform)
    extent = flood_stages._to_wgs84_multipolygon(wet_cells, dem.crs)
    xy = np.array([[p.x, p.y] for p in town.households.geometry])
    metric = pyproj.CRS.from_wkt(dem.crs.to_wkt())
    tr = pyproj.Transformer.from_crs("EPSG:4326", metric, always_xy=True)
    x, y = tr.transform(xy[:, 0], xy[:, 1])
    wet = np.flatnonzero(np.isfinite(hydrology.sample(depth, dem.transform, x, y)))
    return {
        "dem": digest(np.ascontiguousarray(dem.data).tobytes()),
        "hand": digest(np.ascontiguousarray(cond.hand).tobytes()),
        "houses": digest(xy.tobytes()),
        "extent": digest(shapely.to_wkb(extent)),
        "wet_houses": len(wet), "wet": digest(wet.tobytes()),
    }


def _run(tmp_path: Path, name: str, env: dict) -> dict:
    work = tmp_path / name
    work.mkdir()
    code = ("import json, sys; from tests.test_flood_determinism import fingerprint; "
            "print(json.dumps(fingerprint(sys.argv[1])))")
    out = subprocess.run([sys.executable, "-c", code, str(work)], cwd=ROOT,
                         env={**os.environ, **env}, capture_output=True, text=True, timeout=600,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_two_processes_and_two_simd_paths_give_identical_extents_and_households(tmp_path):
    from numpy._core._multiarray_umath import __cpu_dispatch__

    here = _run(tmp_path, "native", {"PYTHONHASHSEED": "1"})
    other = _run(tmp_path, "baseline", {
        "PYTHONHASHSEED": "2", "NPY_DISABLE_CPU_FEATURES": " ".join(__cpu_dispatch__),
        "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
    })
    assert here == other
    assert here["wet_houses"] > 0


def _readme_counts() -> tuple[int, int]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    named = re.search(r"reproduces the flood night on the sample town: (\d+)\s+households", text)
    at_3m = re.search(r"3 m reaches (\d+) households", text)
    assert named and at_3m, "the README states the 2023-09-23 and 3 m counts"
    return int(named.group(1)), int(at_3m.group(1))


def test_the_readme_counts_are_what_the_model_gives(session):
    from gis.flood import stages as flood_stages
    from gis.flood.finder import flooded_households

    named, at_3m = _readme_counts()
    night_extent = flood_stages.named_scenario(session, "2023-09-23", stored_only=True)
    night = flooded_households(session, None, night_extent, with_shelters=False, with_members=False)
    three = flooded_households(session, None, flood_stages.stored_scenario(session, 3.0),
                               with_shelters=False, with_members=False)
    assert (len(night.households), len(three.households)) == (named, at_3m)


def test_no_house_sits_on_a_dem_cell_edge(sample_town):
    # On an edge, which cell holds a house (flooded or not) rests on a transform's last bits.
    import numpy as np
    import pyproj

    from gis.sample_town import DEM_CELL

    t = sample_town.dem_transform
    tr = pyproj.Transformer.from_crs("EPSG:4326", sample_town.dem_crs, always_xy=True)
    x, y = tr.transform(sample_town.households.geometry.x.to_numpy(),
                        sample_town.households.geometry.y.to_numpy())
    for pos in ((np.asarray(x) - t.c) / DEM_CELL, (t.f - np.asarray(y)) / DEM_CELL):
        assert (np.abs(pos - np.round(pos)) * DEM_CELL).min() > 0.002
