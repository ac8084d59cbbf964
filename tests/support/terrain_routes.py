"""Every route through lunarhub.science.terrain on the same DEMs, compared against one reference within the
numerical contract (docs/terrain.md). Run in-process by the unit tests, and as a script in a
subprocess under numpy's CPU-feature switches (``NPY_DISABLE_CPU_FEATURES``), since numpy picks its
SIMD kernels once, at import:

    python tests/support/terrain_routes.py OUT_DIR   # prints a JSON report; exit 1 if a bound is broken
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import rasterio
import rioxarray
import xarray as xr
from rasterio.transform import from_origin

if __package__ in (None, ""):  # run as a script: make `support` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lunarhub.science import terrain  # noqa: E402
from lunarhub.science.terrain import blocks, landing  # noqa: E402
from support.numerics import assert_products_agree, read_products  # noqa: E402

ALL = ("slope", "aspect", "hillshade", "roughness")


def rough_surface(ny: int, nx: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.cumsum(np.cumsum(rng.normal(scale=3.0, size=(ny, nx)), 0), 1) + rng.normal(size=(ny, nx))


def dems() -> Iterator[tuple[str, xr.DataArray]]:
    """Projected and geographic DEMs in float32 and float64, each with a NaN hole and a flat patch."""
    for dtype in (np.float32, np.float64):
        z = (rough_surface(37, 45, seed=11) * 20).astype(dtype)
        z[10, 12] = np.nan  # nodata: NaN in every window that touches it
        z[20:24, 30:35] = z[20, 30]  # flat: aspect NaN, slope 0
        ny, nx = z.shape
        x = 1000.0 + 30.0 * (np.arange(nx) + 0.5)
        y = 50_000.0 - 30.0 * (np.arange(ny) + 0.5)
        yield (f"projected-{np.dtype(dtype).name}",
               xr.DataArray(z, dims=("y", "x"), coords={"y": y, "x": x}).rio.write_crs("IAU_2015:30110"))
        # 0.05 degree pixels from 70N: the pixel width changes from row to row.
        lon = 10.0 + 0.05 * (np.arange(nx) + 0.5)
        lat = 70.0 - 0.05 * (np.arange(ny) + 0.5)
        yield (f"geographic-{np.dtype(dtype).name}",
               xr.DataArray(z * 10, dims=("y", "x"), coords={"y": lat, "x": lon}).rio.write_crs("IAU_2015:30100"))


@contextmanager
def strips_of(rows: int, nx: int) -> Iterator[None]:
    """Process numpy DEMs in strips of ``rows`` rows on both engines."""
    saved = blocks._NUMPY_STRIP_ROWS, blocks._COMPILED_STRIP_PIXELS
    blocks._NUMPY_STRIP_ROWS, blocks._COMPILED_STRIP_PIXELS = rows, rows * nx
    try:
        yield
    finally:
        blocks._NUMPY_STRIP_ROWS, blocks._COMPILED_STRIP_PIXELS = saved


def _values(ds: xr.Dataset) -> dict[str, np.ndarray]:
    return {name: np.asarray(ds[name].values) for name in ds.data_vars}


def _whole(dem: xr.DataArray, engine: str, kw: dict) -> dict[str, np.ndarray]:
    return _values(terrain.terrain_pipeline(dem, engine=engine, **kw))


def _chunked(dem: xr.DataArray, engine: str, kw: dict, chunks: dict[str, int]) -> dict[str, np.ndarray]:
    return _values(terrain.terrain_pipeline(dem.chunk(chunks), engine=engine, **kw).compute())


def _strips(dem: xr.DataArray, engine: str, kw: dict, rows: int) -> dict[str, np.ndarray]:
    with strips_of(rows, dem.shape[1]):
        return _values(terrain.terrain_pipeline(dem, engine=engine, **kw))


def _single_products(dem: xr.DataArray, edges: str) -> dict[str, np.ndarray]:
    """One product at a time: the public functions (engine "auto"), the same kernel with other halos."""
    return {"slope": terrain.slope(dem, edges=edges).values, "aspect": terrain.aspect(dem, edges=edges).values,
            "hillshade": terrain.hillshade(dem, 300.0, 30.0, edges=edges).values,
            "roughness": terrain.roughness(dem, 5, edges=edges).values}


def _write_tif(path: Path, dem: xr.DataArray) -> Path:
    z = dem.values
    a = float(dem.x[1] - dem.x[0])
    with rasterio.open(path, "w", driver="GTiff", width=z.shape[1], height=z.shape[0], count=1,
                       dtype=z.dtype.name, crs=str(dem.rio.crs),
                       transform=from_origin(float(dem.x[0]) - a / 2, float(dem.y[0]) + a / 2, a, a),
                       nodata=np.nan) as f:
        f.write(z, 1)
    return path


def compare_routes(out_dir: Path) -> dict[str, dict[str, float]]:
    """Compare every route with the reference (numba on the whole array; numpy without numba).

    Raises AssertionError naming the route and product when a bound is broken; returns the worst
    ULP difference seen per route and product."""
    engines = ("numba", "numpy") if terrain.HAVE_NUMBA else ("numpy",)
    ref_engine = engines[0]
    worst: dict[str, dict[str, float]] = {}

    def check(route: str, got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
        worst[route] = assert_products_agree(got, want, what=route)

    for case, dem in dems():
        for edges in ("nan", "nearest"):
            kw: dict = dict(products=ALL, edges=edges, roughness_window=5, azimuth=300.0, altitude=30.0)
            want = _values(terrain.terrain_pipeline(dem, engine=ref_engine, **kw))
            routes: dict[str, Callable[[], dict[str, np.ndarray]]] = {}
            for engine in engines:
                routes[f"{engine} whole"] = partial(_whole, dem, engine, kw)
                routes[f"{engine} dask 7x8 chunks"] = partial(_chunked, dem, engine, kw, {"y": 7, "x": 8})
                routes[f"{engine} dask 11x13 chunks"] = partial(_chunked, dem, engine, kw, {"y": 11, "x": 13})
                routes[f"{engine} strips of 4 rows"] = partial(_strips, dem, engine, kw, 4)
            routes["single-product functions"] = partial(_single_products, dem, edges)
            if edges == "nan":  # the file routes read nodata as NaN; their own tests cover the other edges
                src = _write_tif(out_dir / f"{case}.tif", dem)
                file_dem = rioxarray.open_rasterio(src, mask_and_scale=True).squeeze("band", drop=True).load()
                want_file = _values(terrain.terrain_pipeline(file_dem, engine=ref_engine, **kw))
                for engine in engines:
                    tifs = terrain.terrain_to_geotiff(src, out_dir / f"{case}-{engine}", tile=16, engine=engine, **kw)
                    check(f"{case} terrain_to_geotiff {engine} tile 16", read_products(tifs), want_file)
                    for tile in (20,):  # GeoTIFF blocks are multiples of 16; Zarr chunks need not be
                        store = terrain.terrain_to_zarr(src, out_dir / f"{case}-{engine}-{tile}.zarr", tile=tile,
                                                        engine=engine, **kw)
                        check(f"{case} terrain_to_zarr {engine} tile {tile}",
                              _values(xr.open_zarr(store, chunks=None).load()), want_file)
            for route, run in routes.items():
                check(f"{case} edges={edges} {route}", run(), want)

        # Landing masks: identical on every route; distance and score within their bounds.
        grid = terrain.grid_of(dem)
        lon, lat = landing._lonlat(grid, np.array([18]), np.array([20]))
        target = (float(lon[0, 0]), float(lat[0, 0]))
        reach = float(np.median(terrain.distance_to(dem, target).values))
        limits = dict(max_slope=float(np.nanmedian(want_slope := terrain.slope(dem).values)),
                      max_roughness=60.0, max_distance_km=reach)
        del want_slope
        want = _values(terrain.landing_suitability(dem, target, **limits))
        assert 0 < want["suitable"].sum() < want["suitable"].size, f"{case}: thresholds do not discriminate"
        for chunks in ({"y": 7, "x": 8}, {"y": 11, "x": 13}):
            got = _values(terrain.landing_suitability(dem.chunk(chunks), target, **limits).compute())
            check(f"{case} landing_suitability dask {chunks['y']}x{chunks['x']}", got, want)
    return worst


def cpu_features() -> dict[str, bool]:
    """numpy's dispatchable CPU features (widest last) and whether this process uses each."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return {name: bool(__cpu_features__.get(name)) for name in __cpu_dispatch__}


def dispatch_settings() -> dict[str, list[str]]:
    """The ``NPY_DISABLE_CPU_FEATURES`` settings worth running on this CPU: numpy's default, without
    its widest kernels (e.g. no AVX-512 on an AVX-512 machine), and baseline only (no dispatched
    SIMD kernel at all). Settings that would disable nothing are left out, so none repeats another."""
    active = [name for name, on in cpu_features().items() if on]
    settings: dict[str, list[str]] = {"default": []}
    if len(active) > 1:
        settings[f"without {active[-1]}"] = active[-1:]
    if active:
        settings["baseline only"] = active
    return settings


def main(argv: list[str]) -> int:
    import dask

    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"numpy": np.__version__, "cpu_features": cpu_features(), "have_numba": terrain.HAVE_NUMBA}
    try:
        # One thread: a chunk's result does not depend on which thread computes it, and on these
        # tiny chunks the threaded scheduler's hand-offs cost a third of the run (tests/unit/
        # test_terrain.py computes the dask routes on the threaded scheduler).
        with dask.config.set(scheduler="synchronous"):
            report["worst_ulps"] = compare_routes(out)
    except AssertionError as exc:
        report["error"] = str(exc)
        print(json.dumps(report))
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
