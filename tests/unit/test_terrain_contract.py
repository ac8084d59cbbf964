"""terrain's numerical contract (docs/terrain.md): every route agrees with the reference within a
bound in ULPs that holds on any CPU, NaN positions and boolean masks exactly — under numpy's default
SIMD dispatch and with its CPU features switched off, so a machine without AVX-512 exercises the
kernels an AVX-512 machine would avoid, and the other way round."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.numerics import TERRAIN_ULPS, assert_products_agree, assert_within_ulps, ulp_distance
from support.terrain_routes import dispatch_settings

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "terrain_routes.py"
SETTINGS = dispatch_settings()


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_every_route_agrees_within_the_contract_whatever_numpy_dispatches(setting: str, tmp_path: Path) -> None:
    disabled = SETTINGS[setting]
    env = {k: v for k, v in os.environ.items() if k not in ("NPY_DISABLE_CPU_FEATURES", "NPY_ENABLE_CPU_FEATURES")}
    if disabled:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(disabled)
    run = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.stdout.strip(), f"no report (exit {run.returncode}):\n{run.stderr[-3000:]}"
    report = json.loads(run.stdout.strip().splitlines()[-1])
    # numpy really ran without the switched-off kernels (else this setting tests nothing new).
    assert [f for f in disabled if report["cpu_features"][f]] == [], report["cpu_features"]
    assert report["have_numba"], "numba is a dependency of lunarhub: both engines must be compared"
    assert run.returncode == 0 and "error" not in report, report.get("error", run.stderr[-3000:])
    worst = report["worst_ulps"]
    for must in ("numpy strips", "numba strips", "numba dask", "numpy dask", "terrain_to_geotiff numpy",
                 "terrain_to_zarr numba", "geographic landing_suitability dask", "single-product"):
        assert any(all(w in route for w in must.split()) for route in worst), f"route {must!r} not compared"
    for route, per_product in worst.items():
        for product, ulps in per_product.items():
            assert ulps <= TERRAIN_ULPS[product], (route, product, ulps)


def test_the_comparison_catches_an_ulp_a_moved_nan_and_a_flipped_mask() -> None:
    a = np.linspace(0.0, 360.0, 50)
    b = a.copy()
    b[7] = np.nextafter(b[7], np.inf)
    assert ulp_distance(a, b).max() == 1
    with pytest.raises(AssertionError, match="differ by more than 0 ULP"):
        assert_within_ulps(b, a, 0, "slope")
    assert_within_ulps(b, a, 1, "aspect")
    c = a.copy()
    c[3] = np.nan
    with pytest.raises(AssertionError, match="NaN positions differ"):
        assert_within_ulps(c, a, 1000, "aspect")
    mask = a > 100
    flipped = mask.copy()
    flipped[0] = True
    with pytest.raises(AssertionError, match="integer/boolean results differ"):
        assert_products_agree({"suitable": flipped}, {"suitable": mask})
    with pytest.raises(TypeError, match="floats of one dtype"):
        ulp_distance(a.astype(np.float32), a)
    # -0.0 and +0.0 are the same value.
    assert ulp_distance(np.array([-0.0]), np.array([0.0]))[0] == 0
