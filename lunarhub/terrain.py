"""Terrain derivatives for lunar DEMs: xarray in, xarray out, dask-friendly, CRS-aware.

Every function takes a 2-D DataArray of heights in metres with a CRS (``dem.rio.crs``) and
x/y coordinates, and returns a DataArray (or Dataset) on the same grid with the same
coordinates and CRS. numpy-backed input is computed eagerly; dask-backed input stays lazy
and is computed chunk by chunk with ``dask.array.map_overlap``, so a DEM larger than memory
never has to be gathered in one place.

Gradients use Horn's 3x3 method (the default of ``gdaldem``). The metric pixel size comes
from the CRS: on a geographic grid (e.g. ``IAU_2015:30100``) a pixel is ``R*dlat`` tall and
``R*cos(lat)*dlon`` wide, with R the CRS sphere radius (1737.4 km for the Moon), so the
width changes from row to row; on a projected grid it is the transform's pixel size.
See docs/terrain.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import dask.array as da
import numpy as np
import pyproj
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

MOON_RADIUS_M = 1_737_400.0

Edges = Literal["nan", "nearest", "reflect"]

# Attributes that describe the stored heights, not a derived product.
_DROP_ATTRS = {"scale_factor", "add_offset", "_FillValue", "missing_value", "units", "long_name",
               "standard_name", "valid_range", "valid_min", "valid_max"}

_DASK_BOUNDARY = {"nan": np.nan, "nearest": "nearest", "reflect": "reflect", "periodic": "periodic"}
# dask's "reflect" repeats the edge pixel, which is numpy's "symmetric".
_NUMPY_PAD = {"nearest": "edge", "reflect": "symmetric", "periodic": "wrap"}


@dataclass(frozen=True)
class Grid:
    """Where a DEM sits: what the kernels need to turn pixel steps into metres."""

    crs: object
    transform: tuple[float, float, float, float, float, float]  # a, b, c, d, e, f (affine)
    geographic: bool
    radius_m: float
    wraps_x: bool  # a geographic grid covering 360 degrees: columns are periodic

    def x_step_m(self, rows: np.ndarray) -> np.ndarray | float:
        """Signed metres per column step (positive eastwards) for the given row indices."""
        a, _, _, _, e, f = self.transform
        if not self.geographic:
            return a
        lat = np.deg2rad(f + e * (rows + 0.5))
        # Pixel width shrinks with cos(latitude) on the sphere.
        return (self.radius_m * np.cos(lat) * np.deg2rad(a))[:, None]

    def y_step_m(self) -> float:
        """Signed metres per row step (positive northwards; negative for north-up rasters)."""
        e = self.transform[4]
        return self.radius_m * np.deg2rad(e) if self.geographic else e


def _check_dem(dem: xr.DataArray) -> xr.DataArray:
    if not isinstance(dem, xr.DataArray):
        raise TypeError(f"expected an xarray.DataArray of heights, got {type(dem).__name__}")
    if dem.ndim == 3 and "band" in dem.dims and dem.sizes["band"] == 1:
        # rioxarray.open_rasterio always adds a band axis; one band is still a 2-D DEM.
        dem = dem.squeeze("band", drop=True)
    if dem.ndim != 2:
        raise ValueError(
            f"DEM must be 2-D (y, x), got {dem.ndim}-D with dims {dem.dims}; "
            "select one band/time first, e.g. dem.isel(band=0)"
        )
    return dem


def grid_of(dem: xr.DataArray) -> Grid:
    """Read the CRS and transform of a DEM, failing with a message that says how to fix it."""
    dem = _check_dem(dem)
    crs = dem.rio.crs
    if crs is None:
        raise ValueError(
            "DEM has no CRS (dem.rio.crs is None), so the metric pixel size is unknown. "
            'Set it, e.g. dem = dem.rio.write_crs("IAU_2015:30100") for a lunar lon/lat grid '
            'or "IAU_2015:30110" for lunar equirectangular metres.'
        )
    try:
        x_dim, y_dim = dem.rio.x_dim, dem.rio.y_dim
    except Exception as exc:  # rioxarray raises its own MissingSpatialDimensionError
        raise ValueError(f"DEM has no recognisable x/y dimensions ({dem.dims}): {exc}") from exc
    if dem.dims != (y_dim, x_dim):
        raise ValueError(f"DEM dims must be ordered (y, x), got {dem.dims}; use dem.transpose('{y_dim}', '{x_dim}')")
    if x_dim not in dem.coords or y_dim not in dem.coords:
        raise ValueError(
            f"DEM has no '{x_dim}'/'{y_dim}' coordinates, so its pixel size is unknown; "
            "open it with rioxarray.open_rasterio or assign pixel-centre coordinates"
        )
    t = dem.rio.transform(recalc=True)
    if t.b != 0 or t.d != 0:
        raise ValueError("rotated or sheared grids are not supported; warp the DEM to a north-up grid first")
    pcrs = pyproj.CRS.from_user_input(crs.to_wkt())
    geographic = bool(pcrs.is_geographic)
    radius = pcrs.ellipsoid.semi_major_metre if pcrs.ellipsoid is not None else MOON_RADIUS_M
    wraps = geographic and abs(abs(t.a) * dem.sizes[x_dim] - 360.0) < 1e-6 * 360.0
    return Grid(crs=crs, transform=(t.a, t.b, t.c, t.d, t.e, t.f), geographic=geographic,
                radius_m=float(radius), wraps_x=wraps)


def _work_dtype(dem: xr.DataArray) -> np.dtype:
    # float32 DEMs stay float32 (half the memory traffic, what gdaldem computes in);
    # everything else is computed in float64.
    return np.dtype(np.float32) if dem.dtype == np.float32 else np.dtype(np.float64)


BlockFn = Callable[[np.ndarray, int], np.ndarray]


def _apply(dem: xr.DataArray, grid: Grid, depth: int, block_fn: BlockFn, what: str, edges: Edges,
           out_dtype: np.dtype | None = None) -> xr.DataArray:
    """Run ``block_fn(padded_block, first_interior_row)`` over the DEM with a halo of ``depth``.

    The same block function serves numpy input (one block: the whole padded array) and dask
    input (one call per chunk, halos exchanged by map_overlap), so both paths agree exactly.
    """
    if edges not in ("nan", "nearest", "reflect"):
        raise ValueError(f"edges must be 'nan', 'nearest' or 'reflect', got {edges!r}")
    dtype = _work_dtype(dem)
    out_dtype = out_dtype or dtype
    x_edge = "periodic" if grid.wraps_x else edges
    data = dem.data
    if isinstance(data, da.Array):
        for axis, name in enumerate(dem.dims):
            small = min(data.chunks[axis])
            if small < depth:
                raise ValueError(
                    f"{what} needs a halo of {depth} pixel(s) but DEM has a chunk of {small} pixel(s) "
                    f"along '{name}' (chunks {data.chunks[axis]}); every chunk must be at least {depth}. "
                    f"Rechunk, e.g. dem = dem.chunk({{'{dem.dims[0]}': 1024, '{dem.dims[1]}': 1024}})"
                )
        starts = np.concatenate([[0], np.cumsum(data.chunks[0])])

        def per_chunk(block: np.ndarray, block_id: tuple[int, int] | None = None) -> np.ndarray:
            return block_fn(block, int(starts[block_id[0]]))

        out = da.map_overlap(
            per_chunk, data.astype(dtype), depth=depth,
            boundary={0: _DASK_BOUNDARY[edges], 1: _DASK_BOUNDARY[x_edge]},
            trim=False, chunks=data.chunks, dtype=out_dtype, meta=np.empty((0, 0), out_dtype),
        )
    else:
        arr = np.asarray(data, dtype=dtype)
        arr = _pad(arr, depth, 0, edges)
        arr = _pad(arr, depth, 1, x_edge)
        out = block_fn(arr, 0)
    return xr.DataArray(out, coords=dem.coords, dims=dem.dims)


def _pad(arr: np.ndarray, depth: int, axis: int, edge: str) -> np.ndarray:
    widths = [(0, 0), (0, 0)]
    widths[axis] = (depth, depth)
    if edge == "nan":
        return np.pad(arr, widths, mode="constant", constant_values=np.nan)
    return np.pad(arr, widths, mode=_NUMPY_PAD[edge])


def _finish(out: xr.DataArray, dem: xr.DataArray, grid: Grid, name: str, units: str,
            long_name: str, **extra: object) -> xr.DataArray:
    attrs = {k: v for k, v in dem.attrs.items() if k not in _DROP_ATTRS}
    attrs.update(units=units, long_name=long_name, **{k: str(v) for k, v in extra.items()})
    out = out.rename(name).assign_attrs(attrs)
    return out.rio.write_crs(grid.crs)


# --- Horn gradient -------------------------------------------------------------------------

def _horn_gradient(block: np.ndarray, row0: int, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """dz/d(east) and dz/d(north) in m/m for the interior of a block padded by exactly 1."""
    a, b, c = block[:-2, :-2], block[:-2, 1:-1], block[:-2, 2:]
    d, f = block[1:-1, :-2], block[1:-1, 2:]
    g, h, i = block[2:, :-2], block[2:, 1:-1], block[2:, 2:]
    rows = np.arange(row0, row0 + block.shape[0] - 2)
    # Horn: weighted central differences, weights 1-2-1, total run 8 pixel steps.
    dcol = (c - a) + 2 * (f - d) + (i - g)
    drow = (g - c) + 2 * (h - b) + (i - a)  # == (g+2h+i) - (a+2b+c)
    dtype = block.dtype.type
    p = dcol * dtype(1.0 / 8.0) / np.asarray(grid.x_step_m(rows), dtype=block.dtype)
    q = drow * dtype(1.0 / (8.0 * grid.y_step_m()))
    return p, q


def slope(dem: xr.DataArray, *, edges: Edges = "nan") -> xr.DataArray:
    """Slope in degrees (0 = flat) by Horn's method with the metric pixel size of ``dem``'s CRS.

    ``edges`` fills the one-pixel halo outside the DEM: ``"nan"`` (like gdaldem without
    ``-compute_edges``), ``"nearest"`` or ``"reflect"``. A geographic grid spanning 360 degrees
    of longitude wraps around in x whatever ``edges`` says.
    """
    dem = _check_dem(dem)
    grid = grid_of(dem)

    def block_fn(block: np.ndarray, row0: int) -> np.ndarray:
        p, q = _horn_gradient(block, row0, grid)
        return np.degrees(np.arctan(np.sqrt(p * p + q * q)))

    out = _apply(dem, grid, 1, block_fn, "slope", edges)
    return _finish(out, dem, grid, "slope", "degree", "terrain slope", method="Horn (1981)")


def aspect(dem: xr.DataArray, *, edges: Edges = "nan") -> xr.DataArray:
    """Direction the slope faces, in degrees clockwise from north (0 = north, 90 = east),
    as ``gdaldem aspect``; NaN where the surface is flat (gdaldem writes -9999 there).

    Unlike gdaldem, the gradient uses metric pixel sizes, which matters on non-square
    (e.g. geographic) pixels.
    """
    dem = _check_dem(dem)
    grid = grid_of(dem)

    def block_fn(block: np.ndarray, row0: int) -> np.ndarray:
        p, q = _horn_gradient(block, row0, grid)
        # The downslope direction is -grad z = (-p east, -q north); compass angle = atan2(E, N).
        out = np.degrees(np.arctan2(-p, -q)) % 360.0
        out[(p == 0) & (q == 0)] = np.nan
        return out

    out = _apply(dem, grid, 1, block_fn, "aspect", edges)
    return _finish(out, dem, grid, "aspect", "degree", "terrain aspect, clockwise from north",
                   method="Horn (1981)")


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
    az, alt = np.deg2rad(azimuth), np.deg2rad(altitude)
    sun_e, sun_n, sun_up = np.cos(alt) * np.sin(az), np.cos(alt) * np.cos(az), np.sin(alt)
    dem = _check_dem(dem)
    grid = grid_of(dem)

    def block_fn(block: np.ndarray, row0: int) -> np.ndarray:
        p, q = _horn_gradient(block, row0, grid)
        # Unit normal of z = f(e, n) is (-p, -q, 1)/sqrt(1+p²+q²); dot it with the sun vector.
        t = block.dtype.type
        cang = (t(sun_up) - p * t(sun_e) - q * t(sun_n)) / np.sqrt(1 + p * p + q * q)
        if scale == "unit":
            return np.clip(cang, 0, 1)
        return np.where(cang <= 0, t(1), 1 + t(254) * cang)

    out = _apply(dem, grid, 1, block_fn, "hillshade", edges)
    units = "1" if scale == "unit" else "gdaldem hillshade value (1-255)"
    return _finish(out, dem, grid, "hillshade", units, "shaded relief", azimuth=azimuth,
                   altitude=altitude, method="Horn (1981)")


# --- Roughness -----------------------------------------------------------------------------

def _window_extreme(block: np.ndarray, r: int, op: Callable) -> np.ndarray:
    """Max or min over a (2r+1)² window, separably: along x, then along y."""
    ny, nx = block.shape
    m = block[:, 0:nx - 2 * r]
    for k in range(1, 2 * r + 1):
        m = op(m, block[:, k:k + nx - 2 * r])
    out = m[0:ny - 2 * r]
    for k in range(1, 2 * r + 1):
        out = op(out, m[k:k + ny - 2 * r])
    return out


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
    r = window // 2
    dem = _check_dem(dem)
    grid = grid_of(dem)

    def block_fn(block: np.ndarray, row0: int) -> np.ndarray:
        if method == "range":
            return _window_extreme(block, r, np.maximum) - _window_extreme(block, r, np.minimum)
        ny, nx = block.shape
        centre = block[r:ny - r, r:nx - r]
        acc = np.zeros_like(centre)
        for di in range(window):
            for dj in range(window):
                diff = block[di:di + ny - 2 * r, dj:dj + nx - 2 * r] - centre
                acc += diff * diff
        return np.sqrt(acc)

    out = _apply(dem, grid, r, block_fn, f"roughness(window={window})", edges)
    return _finish(out, dem, grid, "roughness", "m", f"terrain roughness ({method})",
                   window=window, method=method)


# --- Landing-site suitability --------------------------------------------------------------

def _lonlat(grid: Grid, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, _, c, _, e, f = grid.transform
    x = c + a * (cols[None, :] + 0.5)
    y = f + e * (rows[:, None] + 0.5)
    x, y = np.broadcast_arrays(x, y)
    if grid.geographic:
        return x, y
    pcrs = pyproj.CRS.from_user_input(grid.crs.to_wkt())
    tr = pyproj.Transformer.from_crs(pcrs, pcrs.geodetic_crs, always_xy=True)
    lon, lat = tr.transform(x, y)
    return np.asarray(lon), np.asarray(lat)


def great_circle_km(lon: np.ndarray, lat: np.ndarray, target: tuple[float, float],
                    radius_m: float = MOON_RADIUS_M) -> np.ndarray:
    """Haversine distance in km from (lon, lat) degrees to ``target`` = (lon, lat) degrees."""
    lon0, lat0 = np.deg2rad(target[0]), np.deg2rad(target[1])
    lon, lat = np.deg2rad(lon), np.deg2rad(lat)
    h = np.sin((lat - lat0) / 2) ** 2 + np.cos(lat) * np.cos(lat0) * np.sin((lon - lon0) / 2) ** 2
    return 2 * radius_m / 1000.0 * np.arcsin(np.sqrt(np.clip(h, 0, 1)))


def distance_to(dem: xr.DataArray, target: tuple[float, float]) -> xr.DataArray:
    """Great-circle distance (km, on the CRS sphere) from each pixel centre to ``target`` (lon, lat)."""
    dem = _check_dem(dem)
    grid = grid_of(dem)
    ny, nx = dem.shape
    if isinstance(dem.data, da.Array):
        row_starts = np.concatenate([[0], np.cumsum(dem.data.chunks[0])])
        col_starts = np.concatenate([[0], np.cumsum(dem.data.chunks[1])])

        def per_chunk(block: np.ndarray, block_id: tuple[int, int] | None = None) -> np.ndarray:
            r0, c0 = row_starts[block_id[0]], col_starts[block_id[1]]
            lon, lat = _lonlat(grid, np.arange(r0, r0 + block.shape[0]), np.arange(c0, c0 + block.shape[1]))
            return great_circle_km(lon, lat, target, grid.radius_m)

        data = da.map_blocks(per_chunk, dem.data, dtype=np.float64, meta=np.empty((0, 0)))
    else:
        lon, lat = _lonlat(grid, np.arange(ny), np.arange(nx))
        data = great_circle_km(lon, lat, target, grid.radius_m)
    out = xr.DataArray(data, coords=dem.coords, dims=dem.dims)
    return _finish(out, dem, grid, "distance", "km", "great-circle distance to target",
                   target_lon=target[0], target_lat=target[1])


def landing_suitability(dem: xr.DataArray, target: tuple[float, float], *, max_slope: float = 8.0,
                        max_roughness: float | None = None, max_distance_km: float | None = None,
                        roughness_window: int = 3) -> xr.Dataset:
    """Where a lander could touch down: slope below ``max_slope`` degrees, roughness (max-min
    over ``roughness_window``) below ``max_roughness`` metres, and within ``max_distance_km``
    great-circle km of ``target`` = (lon, lat) degrees. ``None`` leaves a criterion out.

    Returns a Dataset with ``slope``, ``roughness``, ``distance`` (km), ``suitable`` (bool;
    False wherever an input is NaN) and ``score`` (0..1: 0 where unsuitable, growing towards
    1 as the site gets flatter, smoother and closer; each criterion contributes 1 - value/limit).
    """
    s = slope(dem)
    rough = roughness(dem, roughness_window)
    dist = distance_to(dem, target)
    ok = s <= max_slope
    score = (1 - s / max_slope).clip(0, 1)
    if max_roughness is not None:
        ok = ok & (rough <= max_roughness)
        score = score * (1 - rough / max_roughness).clip(0, 1)
    if max_distance_km is not None:
        ok = ok & (dist <= max_distance_km)
        score = score * (1 - dist / max_distance_km).clip(0, 1)
    ok = ok.rename("suitable").assign_attrs(
        long_name="landing site suitable", max_slope=max_slope, max_roughness=str(max_roughness),
        max_distance_km=str(max_distance_km), target_lon=target[0], target_lat=target[1])
    score = score.where(ok, 0.0).rename("score").assign_attrs(units="1", long_name="landing suitability score")
    ds = xr.Dataset({"slope": s, "roughness": rough, "distance": dist, "suitable": ok, "score": score})
    return ds.rio.write_crs(grid_of(dem).crs)
