"""Where a DEM sits (:class:`Grid`: CRS, transform, sphere radius) and the name, attributes and CRS
every product carries."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pyproj
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from lunarhub.lunar import MOON_RADIUS_M

if TYPE_CHECKING:
    from rasterio.crs import CRS

_XR = TypeVar("_XR", xr.DataArray, xr.Dataset)

# Attributes that describe the stored heights, not a derived product.
_DROP_ATTRS = {"scale_factor", "add_offset", "_FillValue", "missing_value", "units", "long_name",
               "standard_name", "valid_range", "valid_min", "valid_max"}


@dataclass(frozen=True)
class Grid:
    """Where a DEM sits: what the kernels need to turn pixel steps into metres."""

    crs: CRS
    transform: tuple[float, float, float, float, float, float]  # a, b, c, d, e, f (affine)
    geographic: bool
    radius_m: float
    wraps_x: bool  # a geographic grid covering 360 degrees: columns are periodic

    def x_step_m(self, rows: np.ndarray) -> np.ndarray | float:
        """Signed metres per column step (positive eastwards) for the given row indices."""
        a, _, _, _, e, f = self.transform
        if not self.geographic:
            return a
        lat = np.deg2rad(f + e * (np.asarray(rows) + 0.5))
        # Pixel width shrinks with cos(latitude) on the sphere. cos comes from libm one row at a
        # time, not from numpy's SIMD ufunc: numpy's result for a row can depend on the CPU and on
        # where the row falls in a vector, which would make a row's width (and every product) differ
        # by an ULP between a chunk and the whole DEM. See "Numerical contract" in docs/terrain.md.
        cos_lat = np.fromiter((math.cos(v) for v in lat.tolist()), dtype=np.float64, count=lat.size)
        widths: np.ndarray = (self.radius_m * cos_lat * np.deg2rad(a))[:, None]
        return widths

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
    _drop_accessor(dem)
    return Grid(crs=crs, transform=(t.a, t.b, t.c, t.d, t.e, t.f), geographic=geographic,
                radius_m=float(radius), wraps_x=wraps)


def _work_dtype(dem: xr.DataArray) -> np.dtype:
    # float32 DEMs stay float32 (half the memory traffic, what gdaldem computes in);
    # everything else is computed in float64.
    return np.dtype(np.float32) if dem.dtype == np.float32 else np.dtype(np.float64)


def _finish(out: xr.DataArray, dem: xr.DataArray, grid: Grid | None, name: str, units: str,
            long_name: str, **extra: object) -> xr.DataArray:
    """Name and attributes; the CRS too unless ``grid`` is None (the caller writes it once on a Dataset:
    rioxarray's write_crs builds CF attributes from the CRS, about 10 ms a call)."""
    attrs = {k: v for k, v in dem.attrs.items() if k not in _DROP_ATTRS}
    attrs.update(units=units, long_name=long_name, **{k: str(v) for k, v in extra.items()})
    out = out.rename(name).assign_attrs(attrs)
    return out if grid is None else _with_crs(out, grid.crs)


def _with_crs(obj: _XR, crs: object) -> _XR:
    """``obj.rio.write_crs(crs)`` in place (no deep copy of the data), without leaving a cycle.

    xarray caches the ``.rio`` accessor on the object and the accessor refers back to it: a
    reference cycle, so a numpy-backed result would only be freed by the cyclic garbage
    collector, which does not count bytes. In a loop over large blocks (a worker processing
    chunk after chunk) memory then grows by hundreds of MB. Dropping the cached accessor
    frees results as soon as the last reference goes.
    """
    obj = obj.rio.write_crs(crs, inplace=True)
    _drop_accessor(obj)
    return obj


def _drop_accessor(obj: xr.DataArray | xr.Dataset) -> None:
    cache = getattr(obj, "_cache", None)
    if isinstance(cache, dict):
        cache.pop("rio", None)
