"""lunarhub.science.terrain.terrain_to_geotiff and terrain_to_zarr: the tile-by-tile routes equal the in-memory pipeline."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rioxarray
import xarray as xr
from rasterio.enums import Compression
from rasterio.transform import from_origin
from support.numerics import assert_products_agree, read_products

from lunarhub.science import terrain
from lunarhub.science.terrain import geotiff, tiles, zarr_store

ALL = ("slope", "aspect", "hillshade", "roughness")


def rough_surface(ny: int, nx: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.cumsum(np.cumsum(rng.normal(scale=3.0, size=(ny, nx)), 0), 1) + rng.normal(size=(ny, nx))


def write_dem(path: Path, z: np.ndarray, *, crs: str | None = "IAU_2015:30110", transform=None,
              nodata: float | None = None) -> Path:
    ny, nx = z.shape
    with rasterio.open(path, "w", driver="GTiff", width=nx, height=ny, count=1, dtype=z.dtype.name, crs=crs,
                       transform=transform or from_origin(1000.0, 50_000.0, 100.0, 100.0), nodata=nodata) as f:
        f.write(z, 1)
    return path


def in_memory(path: Path, **kw) -> dict[str, np.ndarray]:
    dem = rioxarray.open_rasterio(path, mask_and_scale=True).squeeze("band", drop=True).load()
    ds = terrain.terrain_pipeline(dem, **kw)
    return {name: ds[name].values for name in ds.data_vars}


@pytest.fixture
def dem_path(tmp_path: Path) -> Path:
    # 100 x 130 px: tiles of 32 leave ragged 4- and 2-pixel tiles at the bottom/right edges.
    z = rough_surface(100, 130).astype(np.float32)
    z[40:44, 60:63] = -9999.0  # a nodata hole straddling the tile border at column 64
    z[10:20, 90:100] = 123.0    # a flat patch: aspect NaN there
    return write_dem(tmp_path / "dem.tif", z, nodata=-9999.0)


# --- equal to the in-memory pipeline, tile edges included --------------------------------------------

@pytest.mark.parametrize("edges", ["nan", "nearest", "reflect"])
@pytest.mark.parametrize("engine", ["auto", "numpy"])
def test_tiles_agree_with_the_in_memory_pipeline(dem_path: Path, tmp_path: Path, edges: str,
                                                        engine: str) -> None:
    kw = dict(azimuth=300.0, altitude=30.0, roughness_window=5, products=ALL, edges=edges, engine=engine)
    paths = terrain.terrain_to_geotiff(dem_path, tmp_path / "out", tile=32, **kw)
    assert set(paths) == set(ALL) and all(p.name == f"dem_{n}.tif" for n, p in paths.items())
    got, want = read_products(paths), in_memory(dem_path, **kw)
    assert_products_agree(got, want, what=f"geotiff tiles ({engine}, edges={edges})")
    # The hole is NaN (with its halo), not a -9999 m cliff; the rest is finite.
    assert np.isnan(got["slope"][41, 61]) and np.isnan(got["roughness"][38, 58])
    assert np.isfinite(got["slope"][1:-1, 1:-1][:30]).all()
    if edges == "nan":
        assert np.isnan(got["slope"][0]).all() and np.isnan(got["slope"][:, -1]).all()
    else:
        assert np.isfinite(got["slope"][0]).all() and np.isfinite(got["slope"][:, -1]).all()


def test_global_geographic_grid_wraps_across_the_tiles(tmp_path: Path) -> None:
    # 5-degree global lon/lat grid on the lunar sphere: columns wrap at 0/360 degrees, pixel width
    # varies per row; float64 heights stay float64; tile 16 does not divide 36 x 72.
    z = rough_surface(36, 72, seed=2) * 50.0
    path = write_dem(tmp_path / "global.tif", z, crs="IAU_2015:30100", transform=from_origin(0.0, 90.0, 5.0, 5.0))
    kw = dict(products=ALL, edges="nearest")
    paths = terrain.terrain_to_geotiff(path, {n: tmp_path / f"{n}.tif" for n in ALL}, tile=16, **kw)
    got, want = read_products(paths), in_memory(path, **kw)
    for name in ALL:
        assert got[name].dtype == np.float64
    assert_products_agree(got, want, what="tiles of a global grid")
    assert np.isfinite(got["slope"][:, 0]).all()  # the west edge saw its neighbours across 360 degrees


def test_integer_dem_with_nodata_is_decoded_like_open_rasterio(tmp_path: Path) -> None:
    z = (rough_surface(40, 50, seed=5) * 10).astype(np.int16)
    z[5:8, 20:22] = -32768
    path = write_dem(tmp_path / "int.tif", z, nodata=-32768)
    paths = terrain.terrain_to_geotiff(path, tmp_path, tile=16, products=("slope", "roughness"))
    got, want = read_products(paths), in_memory(path, products=("slope", "roughness"))
    for name in got:
        assert got[name].dtype == np.float32
    assert_products_agree(got, want, what="tiles of an int16 DEM")
    assert np.isnan(got["slope"][6, 21])


def test_outputs_are_tiled_compressed_georeferenced_geotiffs(dem_path: Path, tmp_path: Path) -> None:
    paths = terrain.terrain_to_geotiff(dem_path, tmp_path / "out", tile=64)
    with rasterio.open(dem_path) as src:
        crs, transform = src.crs, src.transform
    for name, p in paths.items():
        with rasterio.open(p) as f:
            assert f.profile["tiled"] and f.block_shapes == [(64, 64)]
            assert f.compression == Compression.deflate
            assert f.crs == crs and f.transform == transform and np.isnan(f.nodata)
            assert f.descriptions == (name,) and f.tags(1)["units"]
    assert not list((tmp_path / "out").glob("*.partial"))
    plain = terrain.terrain_to_geotiff(dem_path, tmp_path / "plain", tile=2048, compress=None, products=("slope",))
    with rasterio.open(plain["slope"]) as f:
        assert f.compression is None and f.block_shapes == [(512, 512)]


def test_each_task_reads_only_its_tile_and_halo(dem_path: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Why memory stays flat: what a task holds depends on the tile size, not the DEM's size."""
    shapes = []
    real = tiles._read_with_halo

    def spy(*args, **kw):
        block = real(*args, **kw)
        shapes.append(block.shape)
        return block

    monkeypatch.setattr(tiles, "_read_with_halo", spy)
    terrain.terrain_to_geotiff(dem_path, tmp_path, tile=32, roughness_window=5)
    assert len(shapes) == 4 * 5  # ceil(100/32) x ceil(130/32) independent tiles
    assert max(shapes) == (32 + 4, 32 + 4)


# --- on a dask cluster ---------------------------------------------------------------------------

def test_on_a_local_dask_cluster_equals_no_client(dem_path: Path, tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    kw = dict(roughness_window=3, products=ALL)
    alone = read_products(terrain.terrain_to_geotiff(dem_path, tmp_path / "alone", tile=32, **kw))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        on_cluster = read_products(terrain.terrain_to_geotiff(dem_path, tmp_path / "cluster", tile=32, client=client, **kw))
        # One in flight at a time: still every tile, in whatever order they finish.
        one = read_products(terrain.terrain_to_geotiff(dem_path, tmp_path / "one", tile=48, client=client,
                                              max_in_flight=1, **kw))
        assert not client.who_has()  # every tile's result was released after writing
    want = in_memory(dem_path, **kw)
    assert_products_agree(on_cluster, alone, what="cluster vs no client")
    assert_products_agree(one, want, what="one in flight vs in memory")


def test_a_tile_job_pickles_for_worker_processes(dem_path: Path) -> None:
    dem = tiles._open_band(str(dem_path), 1)
    job = tiles._TileJob(src=str(dem_path), band=1, grid=terrain.grid_of(dem), dtype="<f4",
                         products=("slope",), azimuth=315.0, altitude=45.0, hs_unit=False,
                         roughness_window=3, edges="nan", engine="auto")
    again = pickle.loads(pickle.dumps(job))
    np.testing.assert_array_equal(tiles._terrain_tile(again, 0, 16, 0, 16), tiles._terrain_tile(job, 0, 16, 0, 16))


def test_a_failing_task_leaves_no_partial_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import Client, LocalCluster

    path = write_dem(tmp_path / "dem.tif", rough_surface(40, 40).astype(np.float32))
    out = tmp_path / "out"
    real = geotiff._run_tiles

    def vanish_then_run(*args, **kw):  # the DEM disappears after the caller's checks, before the tasks
        path.unlink()
        return real(*args, **kw)

    monkeypatch.setattr(geotiff, "_run_tiles", vanish_then_run)
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        with pytest.raises(FileNotFoundError, match="filesystem every dask worker can read"):
            terrain.terrain_to_geotiff(path, out, tile=16, client=client)
    assert out.is_dir() and not list(out.iterdir())


# --- bad input: each says what is wrong ----------------------------------------------------------------

def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"DEM file not found: .*nope\.tif"):
        terrain.terrain_to_geotiff(tmp_path / "nope.tif", tmp_path)


def test_dem_without_crs_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = write_dem(tmp_path / "nocrs.tif", rough_surface(20, 20).astype(np.float32), crs=None)
    with pytest.raises(ValueError, match=r"nocrs\.tif has no CRS.*gdal_edit\.py -a_srs IAU_2015:30100"):
        terrain.terrain_to_geotiff(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_tile_smaller_than_the_halo_is_refused(dem_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"tile=16 is smaller than the halo of 17 pixel\(s\).*roughness_window=35"):
        terrain.terrain_to_geotiff(dem_path, tmp_path, tile=16, roughness_window=35)


@pytest.mark.parametrize("tile", [0, 8, 50, 2.5, True])
def test_tile_must_be_a_multiple_of_16(dem_path: Path, tmp_path: Path, tile) -> None:
    with pytest.raises(ValueError, match=rf"tile must be a multiple of 16.*got {tile!r}"):
        terrain.terrain_to_geotiff(dem_path, tmp_path, tile=tile)


def test_unknown_product_is_named(dem_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown product\(s\) 'slop'"):
        terrain.terrain_to_geotiff(dem_path, tmp_path, products=("slop", "hillshade"))
    with pytest.raises(ValueError, match="a product is repeated"):
        terrain.terrain_to_geotiff(dem_path, tmp_path, products=("slope", "slope"))


def test_other_bad_arguments_say_what_is_wrong(dem_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"missing \['roughness'\]; not computed: \['aspect'\]"):
        terrain.terrain_to_geotiff(dem_path, {"slope": tmp_path / "s.tif", "hillshade": tmp_path / "h.tif",
                                              "aspect": tmp_path / "a.tif"})
    with pytest.raises(ValueError, match=r"band=2 does not exist; the file has 1 band"):
        terrain.terrain_to_geotiff(dem_path, tmp_path, band=2)
    with pytest.raises(ValueError, match="is a file"):
        terrain.terrain_to_geotiff(dem_path, dem_path)
    with pytest.raises(ValueError, match="is the DEM itself"):
        terrain.terrain_to_geotiff(dem_path, {"slope": dem_path}, products=("slope",))
    with pytest.raises(ValueError, match="edges must be"):
        terrain.terrain_to_geotiff(dem_path, tmp_path, edges="wrap")
    with pytest.raises(ValueError, match="window must be an odd integer"):
        terrain.terrain_to_geotiff(dem_path, tmp_path, roughness_window=4)


# --- terrain_to_zarr: the same tiles, written into a Zarr store by the tasks themselves -------------

def read_zarr(store: Path) -> dict[str, np.ndarray]:
    ds = xr.open_zarr(store, chunks=None)  # no dask: read here, not on a test's cluster
    return {name: ds[name].values for name in ds.data_vars}


@pytest.mark.parametrize("edges", ["nan", "nearest"])
@pytest.mark.parametrize("engine", ["auto", "numpy"])
def test_zarr_tiles_agree_with_the_in_memory_pipeline(dem_path: Path, tmp_path: Path, edges: str,
                                                             engine: str) -> None:
    # tile 20 (not a multiple of 16: fine for Zarr): 130 columns leave a ragged 10-pixel last column of
    # tiles, and the nodata hole at rows 40:44, columns 60:63 starts exactly on the corner of four tiles.
    kw = dict(azimuth=300.0, altitude=30.0, roughness_window=5, products=ALL, edges=edges, engine=engine)
    store = terrain.terrain_to_zarr(dem_path, tmp_path / "out.zarr", tile=20, **kw)
    assert store == tmp_path / "out.zarr"
    got, want = read_zarr(store), in_memory(dem_path, **kw)
    assert set(got) == set(ALL)
    for name in ALL:
        assert got[name].dtype == np.float32
    assert_products_agree(got, want, what=f"zarr tiles ({engine}, edges={edges})")
    assert np.isnan(got["slope"][39:45, 59:64]).all() and np.isnan(got["roughness"][38, 58])
    assert np.isfinite(got["slope"][30:37, 50:57]).all()
    ds = xr.open_zarr(store)
    assert ds.slope.encoding["chunks"] == (20, 20) and ds.slope.attrs["units"] == "degree"


def test_zarr_hole_on_a_tile_corner_and_global_wrap(tmp_path: Path) -> None:
    # 5-degree global grid (columns wrap at 360 degrees, float64) with a nodata hole on the corner where
    # four 16-pixel tiles meet; 36 x 72 is not a multiple of 16.
    z = rough_surface(36, 72, seed=2) * 50.0
    z[15:17, 31:34] = -9999.0
    path = write_dem(tmp_path / "global.tif", z, crs="IAU_2015:30100", transform=from_origin(0.0, 90.0, 5.0, 5.0),
                     nodata=-9999.0)
    kw = dict(products=ALL, edges="nearest", roughness_window=3)
    got = read_zarr(terrain.terrain_to_zarr(path, tmp_path / "g.zarr", tile=16, **kw))
    want = in_memory(path, **kw)
    for name in ALL:
        assert got[name].dtype == np.float64
    assert_products_agree(got, want, what="tiles of a global grid")
    assert np.isnan(got["slope"][15:17, 31:34]).all() and np.isfinite(got["slope"][:, 0]).all()


def test_zarr_store_carries_the_crs_transform_and_nan_fill(dem_path: Path, tmp_path: Path) -> None:
    store = terrain.terrain_to_zarr(dem_path, tmp_path / "out.zarr", tile=64, compress=False)
    ds = xr.open_zarr(store)
    with rasterio.open(dem_path) as src:
        crs, transform = src.crs, src.transform
    assert ds.rio.crs == crs and ds.slope.rio.crs == crs
    assert ds.rio.transform() == transform
    assert np.isnan(ds.slope.encoding["_FillValue"]) and ds.slope.encoding["compressors"] in (None, ())
    assert set(ds.data_vars) == {"slope", "hillshade", "roughness"} and "spatial_ref" in ds.coords
    assert ds.hillshade.attrs["azimuth"] == "315.0"


def test_zarr_on_a_local_dask_cluster_the_tasks_write_and_return_only_counts(dem_path: Path, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import Client, LocalCluster

    results = []
    real = zarr_store._run_tiles

    def spy(client, task, args, tiles, write, max_in_flight):
        def record(t, result):
            results.append(result)
            write(t, result)
        return real(client, task, args, tiles, record, max_in_flight)

    monkeypatch.setattr(zarr_store, "_run_tiles", spy)
    kw = dict(roughness_window=3, products=ALL)
    alone = read_zarr(terrain.terrain_to_zarr(dem_path, tmp_path / "alone.zarr", tile=32, **kw))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        results.clear()
        on_cluster = read_zarr(terrain.terrain_to_zarr(dem_path, tmp_path / "cluster.zarr", tile=32, client=client,
                                                       **kw))
        assert len(results) == 4 * 5 and all(type(n) is int for n in results) and sum(results) == 100 * 130
        one = read_zarr(terrain.terrain_to_zarr(dem_path, tmp_path / "one.zarr", tile=48, client=client,
                                                max_in_flight=1, **kw))
        assert not client.who_has()
    want = in_memory(dem_path, **kw)
    assert_products_agree(on_cluster, alone, what="cluster vs no client")
    assert_products_agree(one, want, what="one in flight vs in memory")


def test_zarr_existing_store_is_refused_unless_overwrite(dem_path: Path, tmp_path: Path) -> None:
    store = tmp_path / "out.zarr"
    terrain.terrain_to_zarr(dem_path, store, tile=64, products=("slope",))
    with pytest.raises(FileExistsError, match=r"out\.zarr already exists; pass overwrite=True"):
        terrain.terrain_to_zarr(dem_path, store, tile=64)
    terrain.terrain_to_zarr(dem_path, store, tile=64, products=("roughness",), overwrite=True)
    assert list(xr.open_zarr(store).data_vars) == ["roughness"]  # replaced, not merged


def test_zarr_a_failing_task_removes_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_dem(tmp_path / "dem.tif", rough_surface(40, 40).astype(np.float32))
    real = zarr_store._run_tiles

    def vanish_then_run(*args, **kw):  # the DEM disappears after the store is created, before the tasks
        path.unlink()
        return real(*args, **kw)

    monkeypatch.setattr(zarr_store, "_run_tiles", vanish_then_run)
    with pytest.raises(FileNotFoundError, match="filesystem every dask worker can read"):
        terrain.terrain_to_zarr(path, tmp_path / "out.zarr", tile=16)
    assert not (tmp_path / "out.zarr").exists()


def test_zarr_bad_inputs_say_what_is_wrong(dem_path: Path, tmp_path: Path) -> None:
    store = tmp_path / "out.zarr"
    with pytest.raises(FileNotFoundError, match=r"DEM file not found: .*nope\.tif"):
        terrain.terrain_to_zarr(tmp_path / "nope.tif", store)
    nocrs = write_dem(tmp_path / "nocrs.tif", rough_surface(20, 20).astype(np.float32), crs=None)
    with pytest.raises(ValueError, match=r"nocrs\.tif has no CRS.*gdal_edit\.py -a_srs IAU_2015:30100"):
        terrain.terrain_to_zarr(nocrs, store)
    with pytest.raises(ValueError, match=r"tile=16 is smaller than the halo of 17 pixel\(s\).*roughness_window=35"):
        terrain.terrain_to_zarr(dem_path, store, tile=16, roughness_window=35)
    with pytest.raises(ValueError, match=r"tile must be an integer of at least 16 pixels, got 8"):
        terrain.terrain_to_zarr(dem_path, store, tile=8)
    with pytest.raises(ValueError, match=r"unknown product\(s\) 'slop'"):
        terrain.terrain_to_zarr(dem_path, store, products=("slop", "hillshade"))
    with pytest.raises(ValueError, match="is the DEM itself"):
        terrain.terrain_to_zarr(dem_path, dem_path, overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a Zarr store"):
        terrain.terrain_to_zarr(dem_path, tmp_path / "file", overwrite=True)
    with pytest.raises(ValueError, match="band=2 does not exist"):
        terrain.terrain_to_zarr(dem_path, store, band=2)
    assert not store.exists()  # every check ran before anything was written
