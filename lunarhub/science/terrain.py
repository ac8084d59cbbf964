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

Slope, aspect, hillshade and range roughness all run through one fused per-pixel kernel
(``terrain_pipeline`` computes several of them in a single pass, the Horn gradient once per
pixel), compiled with numba when it is installed and otherwise run as an equivalent numpy
expression (same arithmetic in the same order, double precision inside). See docs/terrain.md.
"""

from __future__ import annotations

import math
import os
import shutil
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import dask.array as da
import numpy as np
import pyproj
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

if TYPE_CHECKING:
    from distributed import Client

MOON_RADIUS_M = 1_737_400.0

Edges = Literal["nan", "nearest", "reflect"]
Engine = Literal["auto", "numba", "numpy"]

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
        lat = np.deg2rad(f + e * (np.asarray(rows) + 0.5))
        # Pixel width shrinks with cos(latitude) on the sphere. cos comes from libm one row at a
        # time, not from numpy's SIMD ufunc: numpy's result for a row can depend on the CPU and on
        # where the row falls in a vector, which would make a row's width (and every product) differ
        # by an ULP between a chunk and the whole DEM. See "Numerical contract" in docs/terrain.md.
        cos_lat = np.fromiter((math.cos(v) for v in lat.tolist()), dtype=np.float64, count=lat.size)
        return (self.radius_m * cos_lat * np.deg2rad(a))[:, None]

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


BlockFn = Callable[[np.ndarray, int], np.ndarray]

# numpy input is processed in strips of this many rows, so the numpy engine's temporaries stay
# small; the compiled kernel only needs row-sized scratch, so it takes strips of up to this many
# pixels (a whole dask-chunk-sized block in one call, written straight into the result).
_NUMPY_STRIP_ROWS = 512
_COMPILED_STRIP_PIXELS = 1 << 24


def _apply(dem: xr.DataArray, grid: Grid, depth: int, block_fn: BlockFn, what: str, edges: Edges,
           out_dtype: np.dtype | None = None, n_out: int | None = None,
           strip_rows: int | None = None) -> xr.DataArray | np.ndarray:
    """Run ``block_fn(padded_block, first_interior_row)`` over the DEM with a halo of ``depth``.

    The same block function serves numpy input (row strips of the padded array) and dask
    input (one call per chunk, halos exchanged by ``dask.array.overlap.overlap``), so both
    paths agree exactly. With ``n_out`` the block function returns ``(n_out, rows, cols)``
    (several products from one pass) and so does the result (a bare numpy/dask array then).
    """
    if edges not in ("nan", "nearest", "reflect"):
        raise ValueError(f"edges must be 'nan', 'nearest' or 'reflect', got {edges!r}")
    dtype = _work_dtype(dem)
    out_dtype = out_dtype or dtype
    x_edge = "periodic" if grid.wraps_x else edges
    data = dem.data
    lead = () if n_out is None else (n_out,)
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

        def per_chunk(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
            return block_fn(block, int(starts[block_info[0]["chunk-location"][0]]))

        # overlap + map_blocks (what map_overlap(trim=False) does), spelled out so that the
        # kernel may add a leading "product" axis. No trim: the kernel returns interiors only.
        padded = da.overlap.overlap(data.astype(dtype), depth={0: depth, 1: depth},
                                    boundary={0: _DASK_BOUNDARY[edges], 1: _DASK_BOUNDARY[x_edge]})
        out = da.map_blocks(per_chunk, padded, chunks=tuple((n,) for n in lead) + data.chunks,
                            new_axis=list(range(len(lead))) or None, dtype=out_dtype,
                            meta=np.empty((0,) * (len(lead) + 2), out_dtype),
                            name=f"lunarhub-{what.split('(')[0]}")
    else:
        arr = np.asarray(data, dtype=dtype)
        ny, nx = arr.shape
        out = np.empty(lead + (ny, nx), out_dtype)
        step = strip_rows or _NUMPY_STRIP_ROWS
        for r0 in range(0, ny, step):
            # Pad strip by strip (rows of the DEM around it, the edge rule only at the DEM's
            # top/bottom): no padded copy of the whole DEM.
            r1 = min(ny, r0 + step)
            lo, hi = r0 - depth, r1 + depth
            strip = arr[max(lo, 0):min(hi, ny)]
            if lo < 0 or hi > ny:
                widths = ((max(0, -lo), max(0, hi - ny)), (0, 0))
                strip = (np.pad(strip, widths, mode="constant", constant_values=np.nan) if edges == "nan"
                         else np.pad(strip, widths, mode=_NUMPY_PAD[edges]))
            strip = _pad(strip, depth, 1, x_edge)
            if n_out is None:
                out[r0:r1] = block_fn(strip, r0)
            else:  # multi-product kernels write into the result directly: no copy
                block_fn(strip, r0, out[:, r0:r1])
    if n_out is not None:
        return out
    return xr.DataArray(out, coords=dem.coords, dims=dem.dims)


def _pad(arr: np.ndarray, depth: int, axis: int, edge: str) -> np.ndarray:
    widths = [(0, 0), (0, 0)]
    widths[axis] = (depth, depth)
    if edge == "nan":
        return np.pad(arr, widths, mode="constant", constant_values=np.nan)
    return np.pad(arr, widths, mode=_NUMPY_PAD[edge])


def _finish(out: xr.DataArray, dem: xr.DataArray, grid: Grid | None, name: str, units: str,
            long_name: str, **extra: object) -> xr.DataArray:
    """Name and attributes; the CRS too unless ``grid`` is None (the caller writes it once on a Dataset:
    rioxarray's write_crs builds CF attributes from the CRS, about 10 ms a call)."""
    attrs = {k: v for k, v in dem.attrs.items() if k not in _DROP_ATTRS}
    attrs.update(units=units, long_name=long_name, **{k: str(v) for k, v in extra.items()})
    out = out.rename(name).assign_attrs(attrs)
    return out if grid is None else _with_crs(out, grid.crs)


def _with_crs(obj: xr.DataArray | xr.Dataset, crs: object) -> xr.DataArray | xr.Dataset:
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


# --- the fused kernel: Horn gradient once per pixel, then every requested product --------

PRODUCTS = ("slope", "aspect", "hillshade", "roughness")
_RAD2DEG = 180.0 / math.pi


# atan(x) for x >= 0 as in Cephes (S. Moshier): range reduction by tan(3pi/8) and 0.66, then a
# rational function; relative error ~1e-16. Written out with selects instead of calling libm so
# that the compiled row loop vectorizes, and so numpy (the fallback) evaluates it in exactly the
# same correctly rounded operations: slopes are the same bits on both engines and on any CPU, which
# numpy's CPU-dependent SIMD arctan would not give (docs/terrain.md, "Numerical contract").
_T3P8 = 2.41421356237309504880
_MOREBITS = 6.123233995736765886130e-17
_AP = (-8.750608600031904122785e-1, -1.615753718733365076637e1, -7.500855792314704667340e1,
       -1.228866684490136173410e2, -6.485021904942025371773e1)
_AQ = (2.485846490142306297962e1, 1.650270098316988542046e2, 4.328810604912902668951e2,
       4.853903996359136964868e2, 1.945506571482613964425e2)
_P0, _P1, _P2, _P3, _P4 = _AP
_Q0, _Q1, _Q2, _Q3, _Q4 = _AQ
_PIO2, _PIO4 = math.pi / 2, math.pi / 4


def _fused_loops(block, depth, xstep, ystep, sun_e, sun_n, sun_up, r, i_slope, i_aspect, i_hs,
                 hs_unit, i_rough, out):
    """One pass over a block padded by ``depth``; writes ``out[k, i, j]`` for each wanted product
    (an index of -1 skips it). Row by row: the Horn gradient of a row goes into small scratch
    arrays, then one tight loop per product. Double precision, the same operations in the same
    order as :func:`_fused_numpy`. Compiled by numba (see :func:`_compile`)."""
    ny, nx = out.shape[1], out.shape[2]
    inv8y = 1.0 / (8.0 * ystep)
    need_grad = i_slope >= 0 or i_aspect >= 0 or i_hs >= 0
    p = np.empty(nx)
    q = np.empty(nx)
    pq = np.empty(nx)
    for i in range(ny):
        xs = xstep[i]
        top, mid, bot = block[i + depth - 1], block[i + depth], block[i + depth + 1]
        if need_grad:
            for j in range(nx):
                bj = j + depth
                za, zb, zc = np.float64(top[bj - 1]), np.float64(top[bj]), np.float64(top[bj + 1])
                zd, zf = np.float64(mid[bj - 1]), np.float64(mid[bj + 1])
                zg, zh, zi = np.float64(bot[bj - 1]), np.float64(bot[bj]), np.float64(bot[bj + 1])
                # Horn: weighted central differences, weights 1-2-1, total run 8 pixel steps.
                dcol = (zc - za) + 2.0 * (zf - zd) + (zi - zg)
                drow = (zg - zc) + 2.0 * (zh - zb) + (zi - za)  # == (g+2h+i) - (a+2b+c)
                pj = dcol * 0.125 / xs
                qj = drow * inv8y
                p[j] = pj
                q[j] = qj
                pq[j] = pj * pj + qj * qj
        if i_slope >= 0:
            o = out[i_slope, i]
            for j in range(nx):
                x = math.sqrt(pq[j])
                big = x > _T3P8
                mi = (not big) and x > 0.66
                xr = -1.0 / x if big else ((x - 1.0) / (x + 1.0) if mi else x)
                y0 = _PIO2 if big else (_PIO4 if mi else 0.0)
                corr = _MOREBITS if big else (0.5 * _MOREBITS if mi else 0.0)
                z = xr * xr
                z = z * ((((_P0 * z + _P1) * z + _P2) * z + _P3) * z + _P4) / (
                    ((((z + _Q0) * z + _Q1) * z + _Q2) * z + _Q3) * z + _Q4)
                z = xr * z + xr
                z = z + corr
                o[j] = (y0 + z) * _RAD2DEG
        if i_hs >= 0:
            o = out[i_hs, i]
            for j in range(nx):
                # Unit normal of z = f(e, n) is (-p, -q, 1)/sqrt(1+p²+q²); dot it with the sun.
                cang = (sun_up - p[j] * sun_e - q[j] * sun_n) / math.sqrt(1.0 + pq[j])
                if hs_unit:
                    o[j] = 0.0 if cang < 0.0 else (1.0 if cang > 1.0 else cang)
                else:
                    o[j] = 1.0 if cang <= 0.0 else 1.0 + 254.0 * cang
        if i_aspect >= 0:
            o = out[i_aspect, i]
            for j in range(nx):
                if p[j] == 0.0 and q[j] == 0.0:
                    o[j] = np.nan
                else:
                    # Downslope direction is -grad z = (-p east, -q north); compass = atan2(E, N).
                    o[j] = (math.atan2(-p[j], -q[j]) * _RAD2DEG) % 360.0
        if i_rough >= 0 and r == 1:
            o = out[i_rough, i]
            for j in range(nx):
                bj = j + depth
                hi = np.float64(top[bj - 1])
                lo = hi
                bad = hi != hi
                for v32 in (top[bj], top[bj + 1], mid[bj - 1], mid[bj], mid[bj + 1],
                            bot[bj - 1], bot[bj], bot[bj + 1]):
                    v = np.float64(v32)
                    bad = bad | (v != v)
                    hi = v if v > hi else hi
                    lo = v if v < lo else lo
                o[j] = np.nan if bad else hi - lo
        elif i_rough >= 0:
            for j in range(nx):
                bj = j + depth
                hi = -np.inf
                lo = np.inf
                bad = False
                for di in range(-r, r + 1):
                    for dj in range(-r, r + 1):
                        v = np.float64(block[i + depth + di, bj + dj])
                        bad = bad | (v != v)
                        hi = v if v > hi else hi
                        lo = v if v < lo else lo
                out[i_rough, i, j] = np.nan if bad else hi - lo


def _atan_nonneg(x: np.ndarray) -> np.ndarray:
    """The Cephes atan of :func:`_fused_loops`, on arrays (x >= 0 or NaN)."""
    big = x > _T3P8
    mi = ~big & (x > 0.66)
    with np.errstate(divide="ignore", invalid="ignore"):
        xr = np.where(big, -1.0 / x, np.where(mi, (x - 1.0) / (x + 1.0), x))
    y0 = np.where(big, _PIO2, np.where(mi, _PIO4, 0.0))
    corr = np.where(big, _MOREBITS, np.where(mi, 0.5 * _MOREBITS, 0.0))
    z = xr * xr
    z = z * ((((_P0 * z + _P1) * z + _P2) * z + _P3) * z + _P4) / (
        ((((z + _Q0) * z + _Q1) * z + _Q2) * z + _Q3) * z + _Q4)
    z = xr * z + xr
    z = z + corr
    return y0 + z


def _fused_numpy(block, depth, xstep, ystep, sun_e, sun_n, sun_up, r, i_slope, i_aspect, i_hs,
                 hs_unit, i_rough, out):
    """The same computation as :func:`_fused_loops` with whole-block numpy expressions."""
    ny, nx = out.shape[1], out.shape[2]
    z = np.asarray(block, dtype=np.float64)

    def at(di: int, dj: int) -> np.ndarray:
        return z[depth + di:depth + di + ny, depth + dj:depth + dj + nx]

    if i_slope >= 0 or i_aspect >= 0 or i_hs >= 0:
        za, zb, zc = at(-1, -1), at(-1, 0), at(-1, 1)
        zd, zf = at(0, -1), at(0, 1)
        zg, zh, zi = at(1, -1), at(1, 0), at(1, 1)
        dcol = (zc - za) + 2.0 * (zf - zd) + (zi - zg)
        drow = (zg - zc) + 2.0 * (zh - zb) + (zi - za)
        p = dcol * 0.125 / np.asarray(xstep, dtype=np.float64)[:, None]
        q = drow * (1.0 / (8.0 * ystep))
        del dcol, drow
        pq = p * p + q * q
        with np.errstate(invalid="ignore"):
            if i_slope >= 0:
                out[i_slope] = _atan_nonneg(np.sqrt(pq)) * _RAD2DEG
            if i_hs >= 0:
                cang = (sun_up - p * sun_e - q * sun_n) / np.sqrt(1.0 + pq)
                if hs_unit:
                    out[i_hs] = np.where(cang < 0.0, 0.0, np.where(cang > 1.0, 1.0, cang))
                else:
                    out[i_hs] = np.where(cang <= 0.0, 1.0, 1.0 + 254.0 * cang)
            if i_aspect >= 0:
                asp = (np.arctan2(-p, -q) * _RAD2DEG) % 360.0
                asp[(p == 0.0) & (q == 0.0)] = np.nan
                out[i_aspect] = asp
    if i_rough >= 0:
        win = z[depth - r:depth + r + ny, depth - r:depth + r + nx]
        out[i_rough] = _window_extreme(win, r, np.maximum) - _window_extreme(win, r, np.minimum)


def _compile():
    """numba-compiled :func:`_fused_loops`, or None (then the numpy expressions are used).

    ``LUNARHUB_TERRAIN_NUMBA=0`` disables it. The machine code is cached on disk when the
    package directory (or numba's per-user cache) is writable; otherwise compiled per process.
    """
    if os.environ.get("LUNARHUB_TERRAIN_NUMBA", "1") == "0":
        return None
    try:
        import numba
    except ImportError:
        return None
    try:
        return numba.njit(cache=True, nogil=True, error_model="numpy")(_fused_loops)
    except RuntimeError:  # no writable cache location (e.g. a read-only install for a worker)
        return numba.njit(cache=False, nogil=True, error_model="numpy")(_fused_loops)


_fused_numba = _compile()
HAVE_NUMBA = _fused_numba is not None


def _engine_fn(engine: Engine) -> Callable:
    if engine not in ("auto", "numba", "numpy"):
        raise ValueError(f"engine must be 'auto', 'numba' or 'numpy', got {engine!r}")
    if engine == "numba" and not HAVE_NUMBA:
        raise ValueError("engine='numba' but numba is not installed (pip install numba), "
                         "or LUNARHUB_TERRAIN_NUMBA=0 disabled it; use engine='auto' or 'numpy'")
    return _fused_numpy if engine == "numpy" or not HAVE_NUMBA else _fused_numba


def _check_products(products: Sequence[str]) -> tuple[str, ...]:
    products = tuple(products)
    unknown = [name for name in products if name not in PRODUCTS]
    if unknown or not products or len(set(products)) != len(products):
        why = (f"unknown product(s) {', '.join(map(repr, unknown))}" if unknown
               else "no products" if not products else "a product is repeated")
        raise ValueError(f"products must be distinct names out of {PRODUCTS}, got {products}: {why}")
    return products


def _check_window(roughness_window: int) -> None:
    if not isinstance(roughness_window, int | np.integer) or roughness_window < 3 or roughness_window % 2 == 0:
        raise ValueError(f"window must be an odd integer >= 3, got {roughness_window!r}")


def _halo(products: Sequence[str], roughness_window: int) -> int:
    return max(1, roughness_window // 2) if "roughness" in products else 1


def _fused_block_fn(products: tuple[str, ...], grid: Grid, dtype: np.dtype, *, azimuth: float, altitude: float,
                    hs_unit: bool, roughness_window: int, kernel: Callable) -> Callable:
    """``block_fn(padded_block, first_row, out=None)``: every product of a block padded by the halo.

    ``first_row`` is the block's first interior row in the whole DEM (it sets each row's latitude);
    the result is ``(len(products), rows, cols)`` of the interior, written into ``out`` if given."""
    r = roughness_window // 2
    depth = _halo(products, roughness_window)
    index = {name: (products.index(name) if name in products else -1) for name in PRODUCTS}
    az, alt = math.radians(azimuth), math.radians(altitude)
    sun_e, sun_n, sun_up = math.cos(alt) * math.sin(az), math.cos(alt) * math.cos(az), math.sin(alt)
    ystep = float(grid.y_step_m())

    def block_fn(block: np.ndarray, row0: int, out: np.ndarray | None = None) -> np.ndarray:
        ny, nx = block.shape[0] - 2 * depth, block.shape[1] - 2 * depth
        xstep = np.ascontiguousarray(np.broadcast_to(
            np.asarray(grid.x_step_m(np.arange(row0, row0 + ny)), dtype=np.float64).reshape(-1), (ny,)))
        # The compiled loops vectorize only on C-contiguous output rows; a strip of a
        # multi-product result is not, so it goes through a buffer.
        target = out if out is not None and out.flags.c_contiguous else np.empty((len(products), ny, nx), dtype)
        kernel(np.ascontiguousarray(block), depth, xstep, ystep, sun_e, sun_n, sun_up, r,
               index["slope"], index["aspect"], index["hillshade"], bool(hs_unit), index["roughness"], target)
        if out is not None and target is not out:
            out[...] = target
        return target

    return block_fn


def _fused(dem: xr.DataArray, products: Sequence[str], *, azimuth: float = 315.0, altitude: float = 45.0,
           hs_unit: bool = False, roughness_window: int = 3, edges: Edges = "nan",
           engine: Engine = "auto") -> tuple[xr.DataArray, Grid, np.ndarray | da.Array]:
    """``(dem, grid, stack)``: ``stack[k]`` is ``products[k]`` over the whole DEM, one pass."""
    products = _check_products(products)
    _check_window(roughness_window)
    kernel = _engine_fn(engine)
    dem = _check_dem(dem)
    grid = grid_of(dem)
    depth = _halo(products, roughness_window)
    block_fn = _fused_block_fn(products, grid, _work_dtype(dem), azimuth=azimuth, altitude=altitude,
                               hs_unit=hs_unit, roughness_window=roughness_window, kernel=kernel)
    what = "+".join(products) + (f"(window={roughness_window})" if "roughness" in products else "")
    strip_rows = None if kernel is _fused_numpy else max(_NUMPY_STRIP_ROWS, _COMPILED_STRIP_PIXELS // dem.shape[1])
    stack = _apply(dem, grid, depth, block_fn, what, edges, n_out=len(products), strip_rows=strip_rows)
    return dem, grid, stack


def _as_array(dem: xr.DataArray, data: np.ndarray | da.Array) -> xr.DataArray:
    return xr.DataArray(data, coords=dem.coords, dims=dem.dims)


def _slope_attrs() -> dict:
    return dict(name="slope", units="degree", long_name="terrain slope", method="Horn (1981)")


def _hillshade_attrs(azimuth: float, altitude: float, unit: bool) -> dict:
    return dict(name="hillshade", units="1" if unit else "gdaldem hillshade value (1-255)",
                long_name="shaded relief", azimuth=azimuth, altitude=altitude, method="Horn (1981)")


def _roughness_attrs(window: int, method: str) -> dict:
    return dict(name="roughness", units="m", long_name=f"terrain roughness ({method})", window=window,
                method=method)


def _product_attrs(azimuth: float, altitude: float, unit: bool, roughness_window: int) -> dict[str, dict]:
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


# --- GeoTIFF in, GeoTIFFs out: one independent task per tile ------------------------------------

_GTIFF_BLOCKS = (512, 256, 128, 64, 32, 16)  # GeoTIFF tile edges must be multiples of 16


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


def _gdal_env():
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
    attrs: dict[str, dict]


def _plan_tiles(src: str | os.PathLike, *, azimuth: float, altitude: float, roughness_window: int,
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


def terrain_to_geotiff(src: str | os.PathLike, dst: str | os.PathLike | Mapping[str, str | os.PathLike],
                       azimuth: float = 315.0, altitude: float = 45.0, roughness_window: int = 3, *,
                       products: Sequence[str] = ("slope", "hillshade", "roughness"),
                       hillshade_scale: Literal["byte", "unit"] = "byte", edges: Edges = "nan",
                       engine: Engine = "auto", band: int = 1, tile: int = 2048,
                       client: Client | None = None, compress: str | None = "deflate",
                       max_in_flight: int | None = None) -> dict[str, Path]:
    """:func:`terrain_pipeline` from a DEM file to one GeoTIFF per product, tile by tile, in flat memory.

    The DEM (band ``band`` of a GeoTIFF or anything GDAL reads; nodata becomes NaN and a
    scale/offset is applied, as ``rioxarray.open_rasterio(src, mask_and_scale=True)`` does) is cut
    into ``tile`` x ``tile`` pixel tiles. Each tile is one independent task: it reads its own
    window plus the halo (1 pixel, or ``roughness_window // 2``) straight from the file, runs the
    fused kernel and returns the tile's products; the calling process writes them into the
    outputs as they arrive. No task depends on another, so a task holds one tile and its halo
    whatever the DEM's size, and at most ``max_in_flight`` tiles (default: twice the worker
    threads the cluster has when called, at least 2) exist at once: memory stays flat as the
    DEM grows. The results equal :func:`terrain_pipeline` on the whole DEM in memory within the
    numerical contract of docs/terrain.md (the halo outside the DEM follows ``edges``; a 360-degree
    geographic grid wraps around in longitude).

    ``dst``: a directory (created if needed; files ``<src stem>_<product>.tif``) or a mapping
    ``{product: path}``. ``client``: a ``distributed.Client`` (LocalCluster, dask-gateway) to
    run the tiles on; its workers must be able to read ``src`` at the same path. ``None``
    runs them one after another in this process. Outputs are tiled GeoTIFFs (blocks of up to
    512 that divide ``tile``) with the DEM's CRS and transform, NaN as nodata, compressed
    with ``compress`` (``None``: uncompressed) and the floating-point predictor; each is
    written under a temporary name and renamed when complete. Returns ``{product: path}``.
    """
    import rasterio
    from rasterio.windows import Window

    plan = _plan_tiles(src, azimuth=azimuth, altitude=altitude, roughness_window=roughness_window,
                       products=products, hillshade_scale=hillshade_scale, edges=edges, engine=engine, band=band,
                       tile=tile, max_in_flight=max_in_flight, tile_multiple=16)
    src, products, dtype, job, tiles, attrs = plan.src, plan.job.products, plan.dtype, plan.job, plan.tiles, plan.attrs
    ny, nx = plan.dem.shape
    with rasterio.open(src) as f:
        crs, transform = f.crs, f.transform

    if isinstance(dst, Mapping):
        paths = {str(k): Path(v) for k, v in dst.items()}
        missing, extra = [p for p in products if p not in paths], [k for k in paths if k not in products]
        if missing or extra:
            raise ValueError(f"dst must map exactly the products {products} to paths; "
                             + "; ".join(([f"missing {missing}"] if missing else [])
                                         + ([f"not computed: {extra}"] if extra else [])))
    else:
        out_dir = Path(dst)
        if out_dir.exists() and not out_dir.is_dir():
            raise ValueError(f"dst {out_dir} is a file: give a directory or a mapping {{product: path}}")
        paths = {p: out_dir / f"{Path(src).stem}_{p}.tif" for p in products}
    if _is_local(src) and any(os.path.abspath(p) == os.path.abspath(src) for p in paths.values()):
        raise ValueError(f"an output path is the DEM itself ({src}); choose another")

    block = next(b for b in _GTIFF_BLOCKS if tile % b == 0)
    profile: dict = dict(driver="GTiff", width=nx, height=ny, count=1, dtype=dtype.name, crs=crs,
                         transform=transform, nodata=np.nan, tiled=True, blockxsize=block, blockysize=block,
                         BIGTIFF="IF_SAFER")
    if compress:
        profile.update(compress=compress, predictor=3, NUM_THREADS="ALL_CPUS")
    partial = {p: path.with_name(path.name + ".partial") for p, path in paths.items()}
    done = False
    try:
        with _gdal_env(), ExitStack() as stack:
            outs = []
            for p in products:
                partial[p].parent.mkdir(parents=True, exist_ok=True)
                out = stack.enter_context(rasterio.open(partial[p], "w", **profile))
                out.update_tags(1, **{k: str(v) for k, v in attrs[p].items() if k != "name"})
                out.set_band_description(1, p)
                outs.append(out)

            def write(t: tuple[int, int, int, int], result: np.ndarray) -> None:
                r0, r1, c0, c1 = t
                for k, out in enumerate(outs):
                    out.write(result[k], 1, window=Window(c0, r0, c1 - c0, r1 - r0))

            _run_tiles(client, _terrain_tile, (job,), tiles, write, max_in_flight)
        for p, path in paths.items():
            os.replace(partial[p], path)
        done = True
    finally:
        if not done:
            for tmp in partial.values():
                tmp.unlink(missing_ok=True)
    return paths


def _run_tiles(client: Client | None, task: Callable, args: tuple, tiles: list[tuple[int, int, int, int]],
               write: Callable[[tuple[int, int, int, int], object], None], max_in_flight: int | None) -> None:
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
    pending: dict = {}

    def submit(t: tuple[int, int, int, int]):
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


# --- GeoTIFF in, Zarr store out: every tile task writes its own chunks ----------------------------

def terrain_to_zarr(src: str | os.PathLike, store: str | os.PathLike, azimuth: float = 315.0,
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
    group = zarr.open_group(store, mode="r+")
    for k, name in enumerate(job.products):
        group[name][r0:r1, c0:c1] = result[k]
    return int(result[0].size)


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
        return np.sqrt(acc)

    out = _apply(dem, grid, r, block_fn, f"roughness(window={window})", edges)
    return _finish(out, dem, grid, **_roughness_attrs(window, method))


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


def _haversine_loop(lon, lat, lon0, lat0, km_per_rad, out):
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


def _compile_haversine():
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
    return km_per_rad * np.arcsin(np.sqrt(np.clip(h, 0, 1)))


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
    return ds.rio.write_crs(grid_of(dem).crs)
