"""The functions a notebook calls on a DEM in memory or on dask: slope, aspect, hillshade, roughness,
and several of them in one pass (:func:`terrain_pipeline`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import dask.array as da
import numpy as np
import xarray as xr

from lunarhub.science.terrain.blocks import Edges, _apply
from lunarhub.science.terrain.grid import _check_dem, _finish, _with_crs, grid_of
from lunarhub.science.terrain.kernel import Engine, _fused


def _as_array(dem: xr.DataArray, data: np.ndarray | da.Array) -> xr.DataArray:
    return xr.DataArray(data, coords=dem.coords, dims=dem.dims)


def _slope_attrs() -> dict[str, Any]:
    return dict(name="slope", units="degree", long_name="terrain slope", method="Horn (1981)")


def _hillshade_attrs(azimuth: float, altitude: float, unit: bool) -> dict[str, Any]:
    return dict(name="hillshade", units="1" if unit else "gdaldem hillshade value (1-255)",
                long_name="shaded relief", azimuth=azimuth, altitude=altitude, method="Horn (1981)")


def _roughness_attrs(window: int, method: str) -> dict[str, Any]:
    return dict(name="roughness", units="m", long_name=f"terrain roughness ({method})", window=window,
                method=method)


def _product_attrs(azimuth: float, altitude: float, unit: bool, roughness_window: int) -> dict[str, dict[str, Any]]:
    return {"slope": _slope_attrs(), "hillshade": _hillshade_attrs(azimuth, altitude, unit),
            "roughness": _roughness_attrs(roughness_window, "range"),
            "aspect": dict(name="aspect", units="degree", long_name="terrain aspect, clockwise from north",
                           method="Horn (1981)")}


def slope(dem: xr.DataArray, *, edges: Edges = "nan") -> xr.DataArray:
    """Slope in degrees (0 = flat) by Horn's method with the metric pixel size of ``dem``'s CRS.

    ``edges`` fills the one-pixel halo outside the DEM: ``"nan"`` (like gdaldem without
    ``-compute_edges``), ``"nearest"`` or ``"reflect"``. A geographic grid spanning 360 degrees
    of longitude wraps around in x whatever ``edges`` says.
    """
    dem, grid, stack = _fused(dem, ("slope",), edges=edges)
    return _finish(_as_array(dem, stack[0]), dem, grid, **_slope_attrs())


def aspect(dem: xr.DataArray, *, edges: Edges = "nan") -> xr.DataArray:
    """Direction the slope faces, in degrees clockwise from north (0 = north, 90 = east),
    as ``gdaldem aspect``; NaN where the surface is flat (gdaldem writes -9999 there).

    Unlike gdaldem, the gradient uses metric pixel sizes, which matters on non-square
    (e.g. geographic) pixels.
    """
    dem, grid, stack = _fused(dem, ("aspect",), edges=edges)
    return _finish(_as_array(dem, stack[0]), dem, grid, "aspect", "degree",
                   "terrain aspect, clockwise from north", method="Horn (1981)")


def hillshade(dem: xr.DataArray, azimuth: float = 315.0, altitude: float = 45.0, *,
              scale: Literal["byte", "unit"] = "byte", edges: Edges = "nan") -> xr.DataArray:
    """Shaded relief for a sun at ``azimuth`` (degrees clockwise from north) and ``altitude``
    (degrees above the horizon).

    ``scale="byte"`` gives gdaldem's values: 1 + 254*cos(incidence), 1 where the sun does not
    reach (as a float; gdaldem rounds it into a Byte and keeps 0 for nodata).
    ``scale="unit"`` gives cos(incidence) clipped to 0..1.
    """
    if scale not in ("byte", "unit"):
        raise ValueError(f"scale must be 'byte' or 'unit', got {scale!r}")
    dem, grid, stack = _fused(dem, ("hillshade",), azimuth=azimuth, altitude=altitude,
                              hs_unit=scale == "unit", edges=edges)
    return _finish(_as_array(dem, stack[0]), dem, grid, **_hillshade_attrs(azimuth, altitude, scale == "unit"))


def terrain_pipeline(dem: xr.DataArray, azimuth: float = 315.0, altitude: float = 45.0,
                     roughness_window: int = 3, *,
                     products: Sequence[str] = ("slope", "hillshade", "roughness"),
                     hillshade_scale: Literal["byte", "unit"] = "byte", edges: Edges = "nan",
                     engine: Engine = "auto") -> xr.Dataset:
    """Slope, hillshade and range roughness (and/or aspect: ``products``) in ONE pass.

    The Horn gradient is computed once per pixel and every product comes out of the same
    compiled loop; a dask DEM gets one halo exchange (depth ``max(1, roughness_window // 2)``)
    and one task per chunk producing all products, stacked on a leading axis. Each variable of
    the returned Dataset equals what :func:`slope`, :func:`hillshade`, :func:`roughness`
    (``method="range"``) and :func:`aspect` return. ``engine``: ``"numba"`` (compiled),
    ``"numpy"`` (whole-block numpy expressions, same results), ``"auto"`` (numba if installed).

    On a cluster, write the Dataset chunk by chunk (``ds.to_zarr(...)``) rather than computing
    it into memory; for memory that stays flat however large the DEM file is, use
    :func:`terrain_to_zarr` (fastest on a cluster) or :func:`terrain_to_geotiff` (GeoTIFF files).
    """
    if hillshade_scale not in ("byte", "unit"):
        raise ValueError(f"hillshade_scale must be 'byte' or 'unit', got {hillshade_scale!r}")
    products = tuple(products)
    unit = hillshade_scale == "unit"
    dem, grid, stack = _fused(dem, products, azimuth=azimuth, altitude=altitude, hs_unit=unit,
                              roughness_window=roughness_window, edges=edges, engine=engine)
    attrs = _product_attrs(azimuth, altitude, unit, roughness_window)
    variables = {name: _finish(_as_array(dem, stack[k]), dem, None, **attrs[name])
                 for k, name in enumerate(products)}
    return _with_crs(xr.Dataset(variables), grid.crs)


def roughness(dem: xr.DataArray, window: int = 3, *, method: Literal["range", "tri"] = "range",
              edges: Edges = "nan") -> xr.DataArray:
    """Surface roughness in metres over a ``window`` x ``window`` neighbourhood (odd, >= 3).

    ``method="range"``: max - min in the window (``gdaldem roughness`` for window=3).
    ``method="tri"``: sqrt of the summed squared differences to the centre pixel
    (Riley's Terrain Ruggedness Index, ``gdaldem TRI -alg Riley`` for window=3).
    """
    if not isinstance(window, int | np.integer) or window < 3 or window % 2 == 0:
        raise ValueError(f"window must be an odd integer >= 3, got {window!r}")
    if method not in ("range", "tri"):
        raise ValueError(f"method must be 'range' or 'tri', got {method!r}")
    if method == "range":
        dem, grid, stack = _fused(dem, ("roughness",), roughness_window=window, edges=edges)
        return _finish(_as_array(dem, stack[0]), dem, grid, **_roughness_attrs(window, method))
    r = window // 2
    dem = _check_dem(dem)
    grid = grid_of(dem)

    def block_fn(block: np.ndarray, row0: int) -> np.ndarray:
        ny, nx = block.shape
        centre = block[r:ny - r, r:nx - r]
        acc = np.zeros_like(centre)
        for di in range(window):
            for dj in range(window):
                diff = block[di:di + ny - 2 * r, dj:dj + nx - 2 * r] - centre
                acc += diff * diff
        tri: np.ndarray = np.sqrt(acc)
        return tri

    out = _apply(dem, grid, r, block_fn, f"roughness(window={window})", edges)
    return _finish(out, dem, grid, **_roughness_attrs(window, method))
