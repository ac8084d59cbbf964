"""Comparing floating-point results with bounds that hold on any CPU (docs/terrain.md, "Numerical contract").

Two code paths (numba vs numpy, strips vs whole, tiles vs in memory, dask chunks vs one block) may
round differently where a transcendental function comes from numpy's SIMD kernels: which kernel runs
depends on the CPU's features and on whether an element falls in a vector's body or tail. So the
tests compare in units in the last place (ULPs) of the result's dtype, with NaN positions exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

# Per product: the largest difference, in ULPs of the output dtype, allowed between any two routes.
# Slope, hillshade, roughness and score are built only from correctly rounded IEEE-754 operations in
# one order, so they come out as the same bits (measured: 0 ULP on every route and dispatch
# setting); the tests still allow 1 ULP, so that none depends on bit-identity across two code
# paths. Aspect calls atan2 (libm in numba, numpy's SIMD kernel or libm in the numpy engine) and
# distance sin/cos/asin: 4 ULPs. Boolean masks are compared exactly (the contract).
TERRAIN_ULPS: dict[str, int] = {
    "slope": 1,
    "hillshade": 1,
    "roughness": 1,
    "aspect": 4,
    "distance": 4,
    "score": 1,
}


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How many representable values of the common dtype lie between ``a`` and ``b`` (finite values).

    numpy's own ULP arithmetic (``assert_array_max_ulp`` returns the distances); -0.0 equals +0.0."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.dtype.kind != "f":
        raise TypeError(f"compare floats of one dtype: {a.dtype} vs {b.dtype}")
    if a.size == 0:
        return np.zeros(0)
    return np.asarray(np.testing.assert_array_max_ulp(a, b, maxulp=np.inf), dtype=np.float64).reshape(a.shape)


def assert_within_ulps(got: np.ndarray, want: np.ndarray, ulps: int, what: str = "") -> None:
    """Same shape and dtype, NaN at exactly the same places, every other value within ``ulps``."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    if got.dtype.kind in "biu":
        bad = got != want
        assert not bad.any(), f"{what}: integer/boolean results differ at {int(bad.sum())} of {bad.size} pixels"
        return
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    moved = nan_g != nan_w
    assert not moved.any(), (f"{what}: NaN positions differ at {int(moved.sum())} pixel(s), "
                             f"first at {tuple(int(i) for i in np.argwhere(moved)[0])}")
    inf_g, inf_w = np.isinf(got), np.isinf(want)
    assert (inf_g == inf_w).all() and (got[inf_g] == want[inf_w]).all(), f"{what}: infinities differ"
    finite = ~(nan_g | inf_g)
    d = ulp_distance(got[finite], want[finite])
    worst = float(d.max()) if d.size else 0.0
    assert worst <= ulps, (f"{what}: {int((d > ulps).sum())} of {d.size} values differ by more than "
                           f"{ulps} ULP (worst {worst:.0f} ULP)")


def assert_products_agree(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray],
                          bounds: Mapping[str, int] = TERRAIN_ULPS, what: str = "") -> dict[str, float]:
    """Every product of ``want`` is in ``got`` and within its bound; returns the worst ULP per product."""
    assert set(got) == set(want), f"{what}: products {sorted(got)} != {sorted(want)}"
    worst = {}
    for name in want:
        g, w = np.asarray(got[name]), np.asarray(want[name])
        assert_within_ulps(g, w, bounds.get(name, 0), f"{what} {name}".strip())
        if g.dtype.kind == "f":
            finite = np.isfinite(w)
            worst[name] = float(ulp_distance(g[finite], w[finite]).max()) if finite.any() else 0.0
    return worst


def read_products(paths: Mapping[str, Path]) -> dict[str, np.ndarray]:
    """product -> band 1 of its GeoTIFF, as the pipeline wrote it."""
    import rasterio

    out = {}
    for name, p in paths.items():
        with rasterio.open(p) as f:
            out[name] = f.read(1)
    return out
