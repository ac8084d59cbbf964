"""GeoTIFF in, Zarr store out: this process writes the metadata, every tile task writes its own chunks."""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import dask.array as da
import numpy as np
import xarray as xr

from lunarhub.science.terrain.blocks import Edges
from lunarhub.science.terrain.grid import _drop_accessor, _finish, _with_crs
from lunarhub.science.terrain.kernel import Engine
from lunarhub.science.terrain.tiles import _is_local, _plan_tiles, _run_tiles, _terrain_tile, _TileJob

if TYPE_CHECKING:
    from distributed import Client

def terrain_to_zarr(src: str | os.PathLike[str], store: str | os.PathLike[str], azimuth: float = 315.0,
                    altitude: float = 45.0, roughness_window: int = 3, *,
                    products: Sequence[str] = ("slope", "hillshade", "roughness"),
                    hillshade_scale: Literal["byte", "unit"] = "byte", edges: Edges = "nan",
                    engine: Engine = "auto", band: int = 1, tile: int = 2048, client: Client | None = None,
                    compress: bool = True, overwrite: bool = False,
                    max_in_flight: int | None = None) -> Path | str:
    """:func:`terrain_pipeline` from a DEM file into a Zarr store, tile by tile, written by the workers.

    The same tiles, halo, decoding and checks as :func:`terrain_to_geotiff` (``tile`` need not be
    a multiple of 16 here, only at least 16 and at least the halo), but the products do not come
    back: this process first creates the store (metadata and coordinates only: one variable per
    product, chunks of ``tile`` x ``tile``, the DEM's CRS as the ``spatial_ref`` coordinate
    rioxarray reads, NaN as the fill value), then each tile task reads its window plus the halo,
    runs the fused kernel and writes its tile of every product straight into the store. Tiles are
    the store's chunks, so no two tasks write the same chunk, and a task returns only its pixel
    count. At most ``max_in_flight`` tasks are submitted at once (default: twice the cluster's
    worker threads). ``client=None`` runs the tiles one after another in this process.

    The values equal (within the numerical contract of docs/terrain.md) :func:`terrain_pipeline` on the whole DEM read with
    ``rioxarray.open_rasterio(src, mask_and_scale=True)``; ``xr.open_zarr(store)`` gives them back
    with ``.rio.crs`` set. ``store``: a directory path (or an fsspec URL string) every worker can
    write to at the same path. An existing store is refused unless ``overwrite=True``, which
    replaces it. ``compress=False`` stores chunks uncompressed (else Zarr's default codec). If a
    tile fails, a local store is removed, so a store that exists is complete. Returns the store
    (a ``Path`` for a local directory).
    """
    from affine import Affine

    plan = _plan_tiles(src, azimuth=azimuth, altitude=altitude, roughness_window=roughness_window,
                       products=products, hillshade_scale=hillshade_scale, edges=edges, engine=engine, band=band,
                       tile=tile, max_in_flight=max_in_flight, tile_multiple=1)
    store = os.fspath(store)
    local = _is_local(store)
    if local:
        if _is_local(plan.src) and os.path.abspath(store) == os.path.abspath(plan.src):
            raise ValueError(f"the store is the DEM itself ({store}); choose another path")
        if os.path.lexists(store) and not overwrite:
            raise FileExistsError(f"Zarr store {store} already exists; pass overwrite=True to replace it "
                                  "or choose another path")
        if os.path.isfile(store):
            raise ValueError(f"{store} is a file, not a Zarr store (a directory); remove it or choose another path")
    dem, dtype, ny, nx = plan.dem, plan.dtype, *plan.dem.shape
    template = da.empty((ny, nx), chunks=(tile, tile), dtype=dtype)
    variables = {p: _finish(xr.DataArray(template, coords=dem.coords, dims=dem.dims), dem, None, **plan.attrs[p])
                 for p in plan.job.products}
    ds = _with_crs(xr.Dataset(variables), plan.job.grid.crs)
    ds.rio.write_transform(Affine(*plan.job.grid.transform), inplace=True)  # exact, not re-derived from x/y
    _drop_accessor(ds)
    for p in plan.job.products:  # so that xr.open_zarr(store) reads spatial_ref back as a coordinate
        ds.variables[p].encoding["coordinates"] = "spatial_ref"
    encoding = {p: {"chunks": (tile, tile), "_FillValue": np.nan, **({} if compress else {"compressors": None})}
                for p in plan.job.products}
    written: list[int] = []
    # Metadata and coordinates only; the product chunks are written by the tile tasks.
    with warnings.catch_warnings():  # zarr 3: consolidated metadata is not in the v3 spec (xarray reads it)
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        ds.to_zarr(store, mode="w" if overwrite else "w-", encoding=encoding, compute=False)
    done = False  # from here on the store is ours: remove it if a tile fails
    try:
        _run_tiles(client, _terrain_tile_to_zarr, (plan.job, store), plan.tiles,
                   lambda t, n: written.append(n), max_in_flight)
        if sum(written) != ny * nx:  # a task that silently skipped its tile would leave fill values
            raise RuntimeError(f"tiles wrote {sum(written)} of {ny * nx} pixels into {store}")
        done = True
    finally:
        if not done and local:
            shutil.rmtree(store, ignore_errors=True)
    return Path(store) if local else store


def _terrain_tile_to_zarr(job: _TileJob, store: str, r0: int, r1: int, c0: int, c1: int) -> int:
    """One tile task of :func:`terrain_to_zarr`: compute the tile and write it into each product's chunk."""
    import zarr

    result = _terrain_tile(job, r0, r1, c0, c1)
    group: Any = zarr.open_group(store, mode="r+")  # zarr cannot know that a product's member is an array
    for k, name in enumerate(job.products):
        group[name][r0:r1, c0:c1] = result[k]
    return int(result[0].size)
