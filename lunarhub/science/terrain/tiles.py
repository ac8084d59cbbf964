"""A DEM file cut into tiles, each an independent task that reads its own window plus the halo from the
file: what :func:`terrain_to_geotiff` and :func:`terrain_to_zarr` share."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np
import rioxarray
import xarray as xr

from lunarhub.science.terrain.blocks import _NUMPY_PAD
from lunarhub.science.terrain.grid import Grid, _drop_accessor, _work_dtype, grid_of
from lunarhub.science.terrain.kernel import _check_products, _check_window, _engine_fn, _fused_block_fn, _halo
from lunarhub.science.terrain.products import _product_attrs

if TYPE_CHECKING:
    import rasterio
    from distributed import Client, Future

Tile = tuple[int, int, int, int]  # rows r0:r1, columns c0:c1

@dataclass(frozen=True)
class _TileJob:
    """What a tile task needs (pickled to dask workers): no closures, no open files."""

    src: str
    band: int
    grid: Grid
    dtype: str
    products: tuple[str, ...]
    azimuth: float
    altitude: float
    hs_unit: bool
    roughness_window: int
    edges: str
    engine: str


def _is_local(path: str) -> bool:
    return "://" not in path and not path.startswith("/vsi")


def _open_band(src: str, band: int) -> xr.DataArray:
    """Band ``band`` (1-based) of a raster, lazily, decoded as ``open_rasterio(mask_and_scale=True)``
    decodes it (nodata -> NaN, scale/offset applied): reading a window reads only that window."""
    arr = rioxarray.open_rasterio(src, mask_and_scale=True, lock=False, cache=False)
    if not isinstance(arr, xr.DataArray):
        raise ValueError(f"{src}: has subdatasets, not one raster; open the one you mean (e.g. 'NETCDF:file:var')")
    if "band" in arr.dims:
        n = arr.sizes["band"]
        if not 1 <= band <= n:
            raise ValueError(f"{src}: band={band} does not exist; the file has {n} band(s) (1..{n})")
        arr = arr.isel(band=band - 1, drop=True)
    _drop_accessor(arr)
    return arr


def _pad_sides(z: np.ndarray, widths: tuple[int, int], axis: int, edges: str) -> np.ndarray:
    if widths == (0, 0):
        return z
    pad = [(0, 0), (0, 0)]
    pad[axis] = widths
    if edges == "nan":
        return np.pad(z, pad, mode="constant", constant_values=np.nan)
    return np.pad(z, pad, mode=_NUMPY_PAD[edges])


def _read_with_halo(dem: xr.DataArray, r0: int, r1: int, c0: int, c1: int, depth: int, edges: str,
                    wraps_x: bool, dtype: np.dtype) -> np.ndarray:
    """Rows r0:r1, columns c0:c1 of ``dem`` plus ``depth`` pixels all round, read from the file.

    Outside the DEM the halo follows the same rules as :func:`_apply` (``edges``; columns wrap
    around on a 360-degree geographic grid), so every tile sees what the in-memory run sees."""
    ny, nx = dem.shape
    lo_r, hi_r, lo_c, hi_c = r0 - depth, r1 + depth, c0 - depth, c1 + depth
    rows = slice(max(lo_r, 0), min(hi_r, ny))

    def read(c_lo: int, c_hi: int) -> np.ndarray:
        return np.asarray(dem[rows, c_lo:c_hi].values, dtype=dtype)

    z = read(max(lo_c, 0), min(hi_c, nx))
    if wraps_x:
        parts = ([read(nx + lo_c, nx)] if lo_c < 0 else []) + [z] + ([read(0, hi_c - nx)] if hi_c > nx else [])
        z = np.concatenate(parts, axis=1) if len(parts) > 1 else z
    else:
        z = _pad_sides(z, (max(0, -lo_c), max(0, hi_c - nx)), 1, edges)
    return _pad_sides(z, (max(0, -lo_r), max(0, hi_r - ny)), 0, edges)


def _terrain_tile(job: _TileJob, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """One tile task: read rows r0:r1, cols c0:c1 plus the halo, return ``(len(products), rows, cols)``."""
    if _is_local(job.src) and not os.path.exists(job.src):
        import socket

        raise FileNotFoundError(f"{job.src}: not found on {socket.gethostname()}; the DEM must be on a "
                                "filesystem every dask worker can read")
    dtype = np.dtype(job.dtype)
    depth = _halo(job.products, job.roughness_window)
    with _gdal_env():
        block = _read_with_halo(_open_band(job.src, job.band), r0, r1, c0, c1, depth, job.edges,
                                job.grid.wraps_x, dtype)
    fn = _fused_block_fn(job.products, job.grid, dtype, azimuth=job.azimuth, altitude=job.altitude,
                         hs_unit=job.hs_unit, roughness_window=job.roughness_window,
                         kernel=_engine_fn(job.engine))  # type: ignore[arg-type]
    out = np.empty((len(job.products), r1 - r0, c1 - c0), dtype)
    fn(block, r0, out)
    return out


def _gdal_env() -> rasterio.Env:
    """GDAL's block cache defaults to 5% of RAM per process and keeps tiles nobody rereads;
    keep it small unless GDAL_CACHEMAX says otherwise."""
    import rasterio

    return rasterio.Env() if "GDAL_CACHEMAX" in os.environ else rasterio.Env(GDAL_CACHEMAX=64)


@dataclass(frozen=True)
class _TilePlan:
    """A checked DEM file cut into tiles: what :func:`terrain_to_geotiff` and :func:`terrain_to_zarr` share."""

    src: str
    dem: xr.DataArray  # lazy: coordinates and attributes only
    dtype: np.dtype
    job: _TileJob
    tiles: list[tuple[int, int, int, int]]
    attrs: dict[str, dict[str, Any]]


def _plan_tiles(src: str | os.PathLike[str], *, azimuth: float, altitude: float, roughness_window: int,
                products: Sequence[str], hillshade_scale: str, edges: str, engine: str, band: int, tile: int,
                max_in_flight: int | None, tile_multiple: int) -> _TilePlan:
    """Check the arguments of a file-to-file route and open the DEM lazily, before any task runs."""
    products = _check_products(products)
    _check_window(roughness_window)
    _engine_fn(engine)  # type: ignore[arg-type]
    if hillshade_scale not in ("byte", "unit"):
        raise ValueError(f"hillshade_scale must be 'byte' or 'unit', got {hillshade_scale!r}")
    if edges not in ("nan", "nearest", "reflect"):
        raise ValueError(f"edges must be 'nan', 'nearest' or 'reflect', got {edges!r}")
    depth = _halo(products, roughness_window)
    if isinstance(tile, bool) or not isinstance(tile, int | np.integer) or tile < 16 or tile % tile_multiple:
        raise ValueError((f"tile must be a multiple of {tile_multiple} pixels (GeoTIFF blocks are), at least 16"
                          if tile_multiple > 1 else "tile must be an integer of at least 16 pixels") + f", got {tile!r}")
    if tile < depth:
        raise ValueError(
            f"tile={tile} is smaller than the halo of {depth} pixel(s) that roughness_window={roughness_window} "
            f"needs on each side: every task would read more halo than tile. Use tile >= {depth} "
            "(the default 2048 suits any window)")
    if max_in_flight is not None and (not isinstance(max_in_flight, int) or max_in_flight < 1):
        raise ValueError(f"max_in_flight must be a positive integer, got {max_in_flight!r}")
    src = os.fspath(src)
    if _is_local(src) and not os.path.isfile(src):
        raise FileNotFoundError(f"DEM file not found: {src}" + (" (a directory)" if os.path.isdir(src) else ""))

    dem = _open_band(src, band)
    if dem.rio.crs is None:
        raise ValueError(
            f"{src} has no CRS, so the metric pixel size is unknown. Set it in the file, e.g. "
            f"`gdal_edit.py -a_srs IAU_2015:30100 {src}` for a lunar lon/lat grid or IAU_2015:30110 "
            "for lunar equirectangular metres (or open it with rioxarray and use terrain_pipeline "
            "after dem.rio.write_crs(...))")
    grid = grid_of(dem)
    dtype = _work_dtype(dem)
    ny, nx = dem.shape
    job = _TileJob(src=src, band=band, grid=grid, dtype=dtype.str, products=products, azimuth=float(azimuth),
                   altitude=float(altitude), hs_unit=hillshade_scale == "unit",
                   roughness_window=int(roughness_window), edges=edges, engine=engine)
    tiles = [(r0, min(ny, r0 + tile), c0, min(nx, c0 + tile))
             for r0 in range(0, ny, tile) for c0 in range(0, nx, tile)]
    return _TilePlan(src=src, dem=dem, dtype=dtype, job=job, tiles=tiles,
                     attrs=_product_attrs(azimuth, altitude, hillshade_scale == "unit", roughness_window))



def _run_tiles(client: Client | None, task: Callable[..., Any], args: tuple[Any, ...], tiles: list[Tile],
               write: Callable[[Tile, Any], None], max_in_flight: int | None) -> None:
    """``write(t, task(*args, *t))`` for every tile ``t``: in this process one after another when ``client``
    is None, else as tasks on the cluster with at most ``max_in_flight`` unwritten at a time, each result
    written (and released) as it arrives."""
    if client is None:
        for t in tiles:
            write(t, task(*args, *t))
        return

    import uuid

    from distributed import as_completed

    limit = max_in_flight or max(2, 2 * sum(client.nthreads().values()))
    run = uuid.uuid4().hex[:8]
    todo = iter(tiles)
    pending: dict[Future[Any], Tile] = {}

    def submit(t: Tile) -> Future[Any]:
        fut = client.submit(task, *args, *t, key=f"lunarhub-terrain-tile-{run}-{t[0]}-{t[2]}", pure=False)
        pending[fut] = t
        return fut

    queue = as_completed([submit(t) for t in islice(todo, limit)])
    try:
        for fut in queue:
            t = pending.pop(fut)
            result = fut.result()
            fut.release()
            write(t, result)
            del result
            nxt = next(todo, None)
            if nxt is not None:
                queue.add(submit(nxt))
    except BaseException:
        client.cancel(list(pending))
        raise
