"""lunarhub.science.terrain against a loop-based reference, dask against numpy, and against gdaldem."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401
import xarray as xr
from rasterio.crs import CRS
from support.numerics import TERRAIN_ULPS, assert_products_agree, assert_within_ulps

from lunarhub.science import terrain
from lunarhub.science import terrain_reference as ref
from lunarhub.science.terrain import blocks, kernel
from lunarhub.science.terrain_io import read_pds3_dem

R = 1_737_400.0
LOLA_LABEL = Path(__file__).resolve().parents[1] / "data" / "lola" / "LDEM_4.LBL"


def projected_dem(z: np.ndarray, res: float = 100.0, crs: str = "IAU_2015:30110") -> xr.DataArray:
    ny, nx = z.shape
    x = 1000.0 + res * (np.arange(nx) + 0.5)
    y = 50_000.0 - res * (np.arange(ny) + 0.5)
    return xr.DataArray(z, dims=("y", "x"), coords={"y": y, "x": x}, attrs={"units": "m"}).rio.write_crs(crs)


def geographic_dem(z: np.ndarray, lat_top: float, lon_left: float, res_deg: float) -> xr.DataArray:
    ny, nx = z.shape
    lon = lon_left + res_deg * (np.arange(nx) + 0.5)
    lat = lat_top - res_deg * (np.arange(ny) + 0.5)
    return xr.DataArray(z, dims=("y", "x"), coords={"y": lat, "x": lon}).rio.write_crs("IAU_2015:30100")


def rough_surface(ny: int, nx: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Random walk in 2-D: smooth enough for meaningful slopes, irregular enough to catch index errors.
    return np.cumsum(np.cumsum(rng.normal(scale=3.0, size=(ny, nx)), 0), 1) + rng.normal(size=(ny, nx))


def interior(a: np.ndarray, r: int = 1) -> np.ndarray:
    return np.asarray(a)[r:-r, r:-r]


# --- library == reference -----------------------------------------------------------------

Z = rough_surface(23, 31)


@pytest.fixture(params=["numpy", "dask"])
def backend(request):
    # 23x31 in 6x8 chunks: 4x4 chunks with ragged edges, so halos cross many chunk borders.
    return (lambda d: d) if request.param == "numpy" else (lambda d: d.chunk({"y": 6, "x": 8}))


def test_slope_aspect_hillshade_match_reference_projected(backend):
    dem = backend(projected_dem(Z, res=100.0))
    dx = np.full(Z.shape[0], 100.0)
    np.testing.assert_allclose(terrain.slope(dem).values, ref.slope(Z, dx, 100.0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(terrain.aspect(dem).values, ref.aspect(Z, dx, 100.0), rtol=1e-10, atol=1e-9)
    hs = terrain.hillshade(dem, azimuth=300.0, altitude=30.0).values
    np.testing.assert_allclose(hs, ref.hillshade(Z, dx, 100.0, 300.0, 30.0), rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize("window", [3, 5])
def test_roughness_matches_reference(backend, window):
    dem = backend(projected_dem(Z))
    np.testing.assert_allclose(terrain.roughness(dem, window).values, ref.roughness_range(Z, window), atol=1e-9)
    np.testing.assert_allclose(terrain.roughness(dem, window, method="tri").values, ref.tri_riley(Z, window),
                               atol=1e-9)


def test_geographic_grid_matches_reference_with_per_row_pixel_width(backend):
    # 0.05 deg pixels from 70N down to ~68.9N: pixel width changes by ~5% over the grid.
    res = 0.05
    dem = backend(geographic_dem(Z * 10, lat_top=70.0, lon_left=10.0, res_deg=res))
    lat = 70.0 - res * (np.arange(Z.shape[0]) + 0.5)
    dx = R * np.cos(np.radians(lat)) * math.radians(res)
    dy = R * math.radians(res)
    np.testing.assert_allclose(terrain.slope(dem).values, ref.slope(Z * 10, dx, dy), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(terrain.aspect(dem).values, ref.aspect(Z * 10, dx, dy), atol=1e-8)


def test_dask_equals_numpy_and_stays_lazy():
    z = rough_surface(40, 50, seed=3)
    dem = projected_dem(z)
    lazy = terrain.slope(dem.chunk({"y": 7, "x": 9}))
    assert lazy.chunks == ((7,) * 5 + (5,), (9,) * 5 + (5,))
    assert not isinstance(lazy.data, np.ndarray)  # not computed yet
    assert_within_ulps(lazy.values, terrain.slope(dem).values, TERRAIN_ULPS["slope"], "slope, dask vs numpy")


def test_outputs_keep_coords_crs_and_say_units():
    dem = projected_dem(Z, crs="IAU_2015:30110")
    dem.attrs["mission"] = "LRO"
    out = terrain.slope(dem)
    assert out.rio.crs == CRS.from_string("IAU_2015:30110")
    np.testing.assert_array_equal(out.x, dem.x)
    np.testing.assert_array_equal(out.y, dem.y)
    assert out.attrs["units"] == "degree" and out.attrs["mission"] == "LRO"
    assert terrain.roughness(dem).attrs["units"] == "m"


def test_edges_are_nan_by_default_and_filled_on_request():
    dem = projected_dem(Z)
    s = terrain.slope(dem).values
    assert np.isnan(s[0]).all() and np.isnan(s[:, -1]).all() and not np.isnan(interior(s)).any()
    near = terrain.slope(dem, edges="nearest")
    assert not np.isnan(near.values).any()
    near_dask = terrain.slope(dem.chunk({"y": 5, "x": 5}), edges="nearest")
    np.testing.assert_allclose(near_dask.values, near.values, rtol=1e-12)
    np.testing.assert_allclose(interior(near.values), interior(s), rtol=1e-12)


# --- the fused one-pass pipeline -----------------------------------------------------------------

ALL = ("slope", "hillshade", "roughness", "aspect")


@pytest.mark.parametrize("engine", ["numba", "numpy"])
def test_pipeline_matches_reference_and_the_single_functions(backend, engine):
    if engine == "numba" and not terrain.HAVE_NUMBA:
        pytest.fail("numba is a dependency of lunarhub: pip install -e .")
    res = 0.05
    z = Z * 10
    dem = backend(geographic_dem(z, lat_top=70.0, lon_left=10.0, res_deg=res))
    lat = 70.0 - res * (np.arange(Z.shape[0]) + 0.5)
    dx = R * np.cos(np.radians(lat)) * math.radians(res)
    dy = R * math.radians(res)
    ds = terrain.terrain_pipeline(dem, azimuth=300.0, altitude=30.0, roughness_window=5, products=ALL,
                                  engine=engine)
    assert list(ds.data_vars) == list(ALL) and ds.rio.crs == CRS.from_string("IAU_2015:30100")
    np.testing.assert_allclose(ds.slope.values, ref.slope(z, dx, dy), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ds.aspect.values, ref.aspect(z, dx, dy), atol=1e-8)
    np.testing.assert_allclose(ds.hillshade.values, ref.hillshade(z, dx, dy, 300.0, 30.0), rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(ds.roughness.values, ref.roughness_range(z, 5), atol=1e-9)
    # Each variable is what the single-product function gives (halo 2 here, 1 there), within the contract.
    assert_products_agree({"slope": ds.slope.values, "hillshade": ds.hillshade.values,
                           "roughness": ds.roughness.values},
                          {"slope": terrain.slope(dem).values, "hillshade": terrain.hillshade(dem, 300.0, 30.0).values,
                           "roughness": terrain.roughness(dem, 5).values}, what=f"{engine} pipeline vs functions")
    assert ds.hillshade.attrs["azimuth"] == "300.0" and ds.roughness.attrs["units"] == "m"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("edges", ["nan", "nearest"])
def test_numba_and_numpy_engines_agree_within_the_contract(dtype, edges):
    # docs/terrain.md, "Numerical contract": exact where only IEEE basic operations run, aspect within
    # TERRAIN_ULPS (atan2 is libm in numba, numpy's CPU-dependent SIMD kernel in the numpy engine).
    if not terrain.HAVE_NUMBA:
        pytest.fail("numba is a dependency of lunarhub: pip install -e .")
    z = (rough_surface(37, 45, seed=11) * 20).astype(dtype)
    z[10, 12] = np.nan  # nodata: NaN in every window that touches it
    z[20:24, 30:35] = z[20, 30]  # a flat patch: aspect NaN, slope 0
    dem = projected_dem(z, res=30.0)
    a = terrain.terrain_pipeline(dem, products=ALL, edges=edges, engine="numba")
    b = terrain.terrain_pipeline(dem, products=ALL, edges=edges, engine="numpy")
    for name in ALL:
        assert a[name].dtype == dtype
    assert_products_agree({n: a[n].values for n in ALL}, {n: b[n].values for n in ALL}, what="numba vs numpy")
    assert np.isnan(a.roughness.values[9:12, 11:14]).all()
    assert (a.slope.values[21:23, 31:34] == 0).all() and np.isnan(a.aspect.values[21:23, 31:34]).all()


def test_pipeline_is_one_lazy_task_per_chunk():
    dem = projected_dem(rough_surface(40, 50, seed=3)).chunk({"y": 16, "x": 20})
    ds = terrain.terrain_pipeline(dem)
    assert all(not isinstance(v.data, np.ndarray) for v in ds.data_vars.values())
    layers = {k: v for k, v in ds.slope.data.dask.layers.items() if k.startswith("lunarhub-")}
    assert len(layers) == 1  # one kernel layer shared by all three products...
    (kernel,) = layers.values()
    assert len(kernel) == 3 * 3  # ...with one task per DEM chunk (3 x 3 chunks)
    assert ds.hillshade.data.name.startswith("getitem") and ds.slope.data.dask is not None
    assert_within_ulps(ds.compute().roughness.values, terrain.terrain_pipeline(dem.compute()).roughness.values,
                       TERRAIN_ULPS["roughness"], "roughness, dask vs numpy")


def test_pipeline_without_numba_falls_back_to_numpy(monkeypatch):
    dem = projected_dem(Z)
    expected = terrain.terrain_pipeline(dem, engine="numpy")
    monkeypatch.setattr(kernel, "HAVE_NUMBA", False)
    np.testing.assert_array_equal(terrain.terrain_pipeline(dem).slope.values, expected.slope.values)
    with pytest.raises(ValueError, match="numba is not installed"):
        terrain.terrain_pipeline(dem, engine="numba")
    with pytest.raises(ValueError, match="products must be distinct"):
        terrain.terrain_pipeline(dem, products=("slope", "curvature"))


def test_numpy_results_are_freed_without_the_cyclic_gc():
    # A worker looping over chunks must not keep old results alive until a gc run.
    import gc
    import weakref

    dem = projected_dem(Z)
    gc.disable()
    try:
        refs = [weakref.ref(terrain.terrain_pipeline(dem)), weakref.ref(terrain.slope(dem))]
        assert all(r() is None for r in refs)
    finally:
        gc.enable()


def test_numpy_input_is_processed_in_strips(monkeypatch):
    # Strips of 4 rows: halos between strips must give the same result as one block.
    z = rough_surface(23, 31, seed=2)
    whole = terrain.terrain_pipeline(projected_dem(z), products=ALL, roughness_window=5)
    monkeypatch.setattr(blocks, "_NUMPY_STRIP_ROWS", 4)
    monkeypatch.setattr(blocks, "_COMPILED_STRIP_PIXELS", 4 * 31)
    for engine in ("auto", "numpy"):
        strips = terrain.terrain_pipeline(projected_dem(z), products=ALL, roughness_window=5, engine=engine)
        assert_products_agree({n: strips[n].values for n in ALL}, {n: whole[n].values for n in ALL},
                              what=f"{engine} strips vs whole")
        np.testing.assert_allclose(terrain.roughness(projected_dem(z), 5, method="tri").values,
                                   ref.tri_riley(z, 5), atol=1e-9)


# --- geographic grids: pixel width shrinks with cos(lat) --------------------------------------

@pytest.mark.parametrize("lat0", [0.0, 60.0])
def test_east_west_tilted_plane_has_the_same_slope_at_any_latitude(backend, lat0):
    # Heights rise 0.1 m per metre walked east along the parallel lat0 (5.71 deg slope);
    # z depends on longitude only, so on the row at lat0 Horn's gradient is exact.
    res, ny, nx = 0.01, 11, 16
    lat_top = lat0 + res * ny / 2
    lon = 20.0 + res * (np.arange(nx) + 0.5)
    z = np.tile(0.1 * R * math.cos(math.radians(lat0)) * np.radians(lon - 20.0), (ny, 1))
    dem = backend(geographic_dem(z, lat_top=lat_top, lon_left=20.0, res_deg=res))
    s = terrain.slope(dem)
    assert float(s.y[5]) == pytest.approx(lat0)
    np.testing.assert_allclose(s.values[5, 1:-1], math.degrees(math.atan(0.1)), atol=1e-9)
    # Other rows: the same height step over a pixel that is cos(lat0)/cos(lat) as wide.
    lat = s.y.values[1:-1, None]
    expected = np.degrees(np.arctan(0.1 * math.cos(math.radians(lat0)) / np.cos(np.radians(lat))))
    np.testing.assert_allclose(interior(s.values), np.broadcast_to(expected, (ny - 2, nx - 2)), atol=1e-9)
    # Downhill is west everywhere.
    np.testing.assert_allclose(interior(terrain.aspect(dem).values), 270.0, atol=1e-9)
    if lat0 == 60.0:
        # Equatorial pixel widths (R*dlon) would halve the gradient: make sure that is not what we do.
        assert abs(float(s[5, 5]) - math.degrees(math.atan(0.05))) > 2.5


def test_global_geographic_grid_wraps_in_longitude():
    lon_px = 36
    z = rough_surface(10, lon_px, seed=5)
    dem = geographic_dem(z, lat_top=50.0, lon_left=0.0, res_deg=360.0 / lon_px)
    s = terrain.slope(dem).values
    assert not np.isnan(s[1:-1]).any()  # columns 0 and 35 see each other
    rolled = terrain.slope(geographic_dem(np.roll(z, 7, axis=1), 50.0, 0.0, 360.0 / lon_px)).values
    np.testing.assert_allclose(np.roll(s, 7, axis=1)[1:-1], rolled[1:-1], rtol=1e-12)
    np.testing.assert_allclose(terrain.slope(dem.chunk({"y": 4, "x": 10})).values, s, rtol=1e-12, equal_nan=True)


# --- landing suitability -------------------------------------------------------------------

def test_landing_suitability_combines_slope_roughness_and_distance(backend):
    res = 0.02
    z = rough_surface(20, 24, seed=7) * 5
    dem = backend(geographic_dem(z, lat_top=-45.0, lon_left=177.4, res_deg=res))
    target = (177.6, -45.2)
    ds = terrain.landing_suitability(dem, target, max_slope=5.0, max_roughness=40.0, max_distance_km=8.0)
    lat = -45.0 - res * (np.arange(20) + 0.5)
    lon = 177.4 + res * (np.arange(24) + 0.5)
    dist = np.array([[ref.great_circle_km(lo, la, *target) for lo in lon] for la in lat])
    np.testing.assert_allclose(ds.distance.values, dist, atol=0.05)
    dx = R * np.cos(np.radians(lat)) * math.radians(res)
    s = ref.slope(z, dx, R * math.radians(res))
    rough = ref.roughness_range(z)
    with np.errstate(invalid="ignore"):
        expected = (s <= 5.0) & (rough <= 40.0) & (dist <= 8.0)
        # The reference and the library round differently (libm vs our atan): the mask comparison means
        # something only where no pixel sits within rounding of a threshold, which this data satisfies.
        borderline = (np.abs(s - 5.0) < 1e-9) | (np.abs(rough - 40.0) < 1e-9) | (np.abs(dist - 8.0) < 1e-9)
    assert not borderline.any()
    np.testing.assert_array_equal(ds.suitable.values, expected)
    assert 0 < expected.sum() < expected.size  # the thresholds actually discriminate here
    assert (ds.score.values[~expected] == 0).all() and (ds.score.values[expected] > 0).all()
    assert ds.rio.crs == CRS.from_string("IAU_2015:30100")


def test_distance_on_a_projected_grid_uses_the_lunar_sphere():
    dem = projected_dem(np.zeros((5, 6)), res=1000.0)
    d = terrain.distance_to(dem, target=(0.0, 0.0)).values
    # Equirectangular on the sphere: x = R*lon, y = R*lat (radians).
    x = 1000.0 + 1000.0 * (np.arange(6) + 0.5)
    y = 50_000.0 - 1000.0 * (np.arange(5) + 0.5)
    expected = [[ref.great_circle_km(math.degrees(xi / R), math.degrees(yi / R), 0, 0) for xi in x] for yi in y]
    np.testing.assert_allclose(d, expected, atol=0.01)


# --- bad input -------------------------------------------------------------------------------

def test_dem_without_crs_is_refused_with_the_fix():
    dem = xr.DataArray(Z, dims=("y", "x"), coords={"y": np.arange(23.0)[::-1], "x": np.arange(31.0)})
    for fn in (terrain.slope, terrain.hillshade, terrain.roughness):
        with pytest.raises(ValueError, match=r"no CRS.*write_crs\(\"IAU_2015:30100\"\)"):
            fn(dem)


def test_chunks_smaller_than_the_halo_are_refused_with_the_fix():
    # A chunk of one row is enough for a 3x3 kernel (halo 1)...
    assert terrain.slope(projected_dem(Z).chunk({"y": 1, "x": 8})).shape == Z.shape
    # ...but not for a 5x5 window (halo 2): the error names the chunk, the minimum and the fix.
    small = projected_dem(Z).chunk({"y": 6, "x": (8, 8, 8, 1, 6)})
    with pytest.raises(ValueError, match=r"halo of 2 pixel\(s\).*chunk of 1 pixel\(s\) along 'x'.*at least 2.*dem.chunk"):
        terrain.roughness(small, window=5)


def test_non_2d_input_is_refused_but_a_single_band_is_accepted():
    two_bands = xr.concat([projected_dem(Z), projected_dem(Z)], dim="band")
    with pytest.raises(ValueError, match=r"must be 2-D.*3-D"):
        terrain.slope(two_bands)
    one_band = projected_dem(Z).expand_dims(band=[1])
    np.testing.assert_array_equal(terrain.slope(one_band).values, terrain.slope(projected_dem(Z)).values)
    with pytest.raises(ValueError, match="odd integer"):
        terrain.roughness(projected_dem(Z), window=4)


# --- against gdaldem (Debian gdal-bin) ---------------------------------------------------------

def _gdaldem(*args: str) -> None:
    exe = shutil.which("gdaldem")
    if exe is None:
        pytest.fail("gdaldem not found: install GDAL's command-line tools with `apt-get install gdal-bin`")
    subprocess.run([exe, *args, "-q"], check=True, capture_output=True)


def test_matches_gdaldem_on_a_projected_lunar_grid(tmp_path):
    # A real terrain patch: LOLA heights, written as float32 on a 500 m equirectangular grid.
    lola = read_pds3_dem(str(LOLA_LABEL))
    z = lola.isel(y=slice(300, 360), x=slice(700, 780)).values.astype(np.float32)
    dem = projected_dem(z, res=500.0)
    src = tmp_path / "dem.tif"
    dem.rio.to_raster(src)
    for cmd in ("slope", "hillshade", "roughness", "aspect"):
        _gdaldem(cmd, str(src), str(tmp_path / f"{cmd}.tif"))

    def read(name):
        with rasterio.open(tmp_path / f"{name}.tif") as f:
            return interior(f.read(1).astype(np.float64))

    np.testing.assert_allclose(interior(terrain.slope(dem).values), read("slope"), atol=2e-3)
    np.testing.assert_allclose(interior(terrain.roughness(dem).values), read("roughness"), atol=1e-3)
    asp_gdal, asp = read("aspect"), interior(terrain.aspect(dem).values)
    diff = np.abs((asp - asp_gdal + 180) % 360 - 180)
    assert diff.max() < 1e-2
    # gdaldem rounds hillshade into a Byte and uses a fast approximate 1/sqrt: allow 1 grey level.
    hs = interior(terrain.hillshade(dem).values)
    assert np.abs(hs - read("hillshade")).max() <= 1.0
    assert hs.std() > 10  # the patch has real relief, so this comparison means something


# --- the real LOLA DEM ---------------------------------------------------------------------------

def test_real_lola_dem_gives_plausible_terrain():
    dem = read_pds3_dem(str(LOLA_LABEL), chunks={"y": 180, "x": 360})
    assert dem.shape == (720, 1440) and dem.rio.crs == CRS.from_string("IAU_2015:30100")
    assert float(dem.min()) == pytest.approx(-8878.5) and float(dem.max()) == pytest.approx(10504.0)
    s = terrain.slope(dem).compute()
    assert not np.isnan(s.values[1:-1]).any()  # periodic in longitude, NaN only at the poles' rows
    mid = s.sel(y=slice(60, -60)).values
    # 7.6 km pixels smooth the Moon: typical slopes of a few degrees, crater walls up to ~30.
    assert 1.0 < np.median(mid) < 6.0
    assert 10.0 < np.percentile(mid, 99.9) < 40.0
    # Chang'e-4 (Von Karman crater floor, 177.6E 45.5S) is flat at this resolution.
    site = terrain.landing_suitability(dem, (177.59, -45.44), max_slope=5.0, max_distance_km=60.0)
    near = site.suitable.sel(x=slice(175, 180), y=slice(-43, -48)).values
    assert near.any()
    site = site.compute()
    assert (site.distance.values[site.suitable.values] <= 60.0).all()
    # A 60 km disc holds ~280 pixels of 7.58 km x 5.36 km at 45S; most of the crater floor qualifies.
    assert 100 < int(site.suitable.sum()) <= 300
