"""Reading lunar DEMs into the (y, x) DataArrays that :mod:`lunarhub.science.terrain` expects."""

from __future__ import annotations

import numpy as np
import pyproj
import rioxarray
import xarray as xr

from lunarhub.lunar import GEOGRAPHIC as GEOGRAPHIC_MOON
from lunarhub.lunar import MOON_RADIUS_M


def _snap_deg(res: float) -> float:
    """Labels give the map scale in metres rounded to 1 cm (7580.84 m for 1/4 degree), which
    puts pixel centres 1e-4 degree off; snap to a whole number of pixels per degree if close."""
    ppd = 1.0 / abs(res)
    return float(np.copysign(1.0 / round(ppd), res)) if abs(ppd - round(ppd)) < 1e-4 * ppd else res


def read_pds3_dem(label: str, chunks: dict | int | None = None) -> xr.DataArray:
    """Heights in metres from a PDS3 simple-cylindrical DEM (e.g. LOLA ``LDEM_*.LBL``).

    The label is read by GDAL's PDS driver, so sizes, offsets and scaling come from the label,
    not from assumptions. The result is on a geographic lon/lat grid (``IAU_2015:30100`` for
    the 1737.4 km sphere) because the projected simple-cylindrical metres are only true along
    the equator: slopes computed on them would be wrong away from it.

    Heights are DN * SCALING_FACTOR. The label's OFFSET is the reference radius (radius =
    height + OFFSET), so it is deliberately not added. ``chunks`` makes the result lazy (dask).
    """
    raw = rioxarray.open_rasterio(label, chunks=chunks, mask_and_scale=False)
    raw = raw.squeeze("band", drop=True)
    scale = float(raw.attrs.get("scale_factor", 1.0))
    params = raw.rio.crs.to_dict()
    if params.get("proj") != "eqc":
        raise ValueError(f"{label}: expected a simple-cylindrical (eqc) map projection, got {params.get('proj')}")
    radius = float(params["R"] if "R" in params else params["a"])
    lat_ts = np.deg2rad(float(params.get("lat_ts", 0.0)))
    t = raw.rio.transform()
    res_x = _snap_deg(np.degrees(t.a / (radius * np.cos(lat_ts))))
    res_y = _snap_deg(np.degrees(t.e / radius))
    x0 = float(params.get("lon_0", 0.0)) + np.degrees(t.c / (radius * np.cos(lat_ts)))
    y0 = float(params.get("lat_0", 0.0)) + np.degrees(t.f / radius)
    # The same rounding shifts the map edge; snap it to the pixel lattice as well.
    x0 = round(x0 / res_x) * res_x if abs(x0 / res_x - round(x0 / res_x)) < 1e-2 else x0
    y0 = round(y0 / res_y) * res_y if abs(y0 / res_y - round(y0 / res_y)) < 1e-2 else y0
    lon = x0 + res_x * (np.arange(raw.sizes["x"]) + 0.5)
    lat = y0 + res_y * (np.arange(raw.sizes["y"]) + 0.5)
    heights = raw.astype(np.float32) * np.float32(scale)
    nodata = raw.rio.nodata
    if nodata is not None:
        heights = heights.where(raw != nodata)
    dem = xr.DataArray(heights.data, dims=("y", "x"), coords={"y": lat, "x": lon}, name="height")
    crs = GEOGRAPHIC_MOON if radius == MOON_RADIUS_M else pyproj.CRS.from_proj4(f"+proj=longlat +R={radius} +no_defs")
    dem.attrs.update(units="m", long_name="height above the reference sphere", reference_radius_m=radius,
                     source=str(label))
    return dem.rio.write_crs(crs)
