"""Landing-site suitability: great-circle distance on the CRS sphere, combined with slope and roughness."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
import pyproj
import xarray as xr

from lunarhub.lunar import MOON_RADIUS_M
from lunarhub.science.terrain.grid import Grid, _check_dem, _finish, grid_of
from lunarhub.science.terrain.kernel import _fused_numba
from lunarhub.science.terrain.products import terrain_pipeline


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


def _haversine_loop(lon: np.ndarray, lat: np.ndarray, lon0: float, lat0: float, km_per_rad: float,
                    out: np.ndarray) -> None:
    """Haversine per element with libm's sin/cos/asin (compiled by numba: see
    :func:`_compile_haversine`). One scalar call per element, so a pixel's distance does not depend
    on the chunk it is in or on numpy's SIMD dispatch, and a threshold on it (``suitable``) gives
    the same mask on every route."""
    d2r = math.pi / 180.0
    cos_lat0 = math.cos(lat0 * d2r)
    for k in range(out.size):
        la = lat[k] * d2r
        s_lat = math.sin((la - lat0 * d2r) / 2.0)
        s_lon = math.sin((lon[k] * d2r - lon0 * d2r) / 2.0)
        h = s_lat * s_lat + math.cos(la) * cos_lat0 * (s_lon * s_lon)
        h = 0.0 if h < 0.0 else (1.0 if h > 1.0 else h)
        out[k] = km_per_rad * math.asin(math.sqrt(h)) if h == h else np.nan


def _compile_haversine() -> Callable[..., None] | None:
    if _fused_numba is None:
        return None
    import numba

    try:
        return numba.njit(cache=True, nogil=True, error_model="numpy")(_haversine_loop)
    except RuntimeError:
        return numba.njit(cache=False, nogil=True, error_model="numpy")(_haversine_loop)


_haversine_numba = _compile_haversine()


def great_circle_km(lon: np.ndarray, lat: np.ndarray, target: tuple[float, float],
                    radius_m: float = MOON_RADIUS_M) -> np.ndarray:
    """Haversine distance in km from (lon, lat) degrees to ``target`` = (lon, lat) degrees."""
    lon, lat = np.broadcast_arrays(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    km_per_rad = 2 * radius_m / 1000.0
    if _haversine_numba is not None:
        out = np.empty(lon.shape, dtype=np.float64)
        _haversine_numba(np.ascontiguousarray(lon).reshape(-1), np.ascontiguousarray(lat).reshape(-1),
                         float(target[0]), float(target[1]), km_per_rad, out.reshape(-1))
        return out
    # Without numba: numpy's ufuncs, within a few ULPs of the above (docs/terrain.md).
    lon0, lat0 = np.deg2rad(target[0]), np.deg2rad(target[1])
    lon, lat = np.deg2rad(lon), np.deg2rad(lat)
    h = np.sin((lat - lat0) / 2) ** 2 + np.cos(lat) * np.cos(lat0) * np.sin((lon - lon0) / 2) ** 2
    km: np.ndarray = km_per_rad * np.arcsin(np.sqrt(np.clip(h, 0, 1)))
    return km


def distance_to(dem: xr.DataArray, target: tuple[float, float]) -> xr.DataArray:
    """Great-circle distance (km, on the CRS sphere) from each pixel centre to ``target`` (lon, lat)."""
    dem = _check_dem(dem)
    grid = grid_of(dem)
    ny, nx = dem.shape
    if isinstance(dem.data, da.Array):
        row_starts = np.concatenate([[0], np.cumsum(dem.data.chunks[0])])
        col_starts = np.concatenate([[0], np.cumsum(dem.data.chunks[1])])

        def per_chunk(block: np.ndarray, block_id: Any = None) -> np.ndarray:  # dask passes (row, col)
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
    both = terrain_pipeline(dem, roughness_window=roughness_window, products=("slope", "roughness"))
    s, rough = both.slope, both.roughness
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
    with_crs: xr.Dataset = ds.rio.write_crs(grid_of(dem).crs)
    return with_crs
