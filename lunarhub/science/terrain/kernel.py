"""The fused kernel: the Horn gradient once per pixel, then every requested product; compiled by numba
when it is installed, else the same arithmetic as whole-block numpy expressions."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Literal, cast

import dask.array as da
import numpy as np
import xarray as xr

from lunarhub.science.terrain.blocks import Edges, _apply
from lunarhub.science.terrain.grid import Grid, _check_dem, _work_dtype, grid_of

Engine = Literal["auto", "numba", "numpy"]

# _fused_loops, compiled or not, or _fused_numpy: same arguments, writes into its last one.
_Kernel = Callable[..., None]


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


def _fused_loops(block: np.ndarray, depth: int, xstep: np.ndarray, ystep: float, sun_e: float,
                 sun_n: float, sun_up: float, r: int, i_slope: int, i_aspect: int, i_hs: int, hs_unit: bool,
                 i_rough: int, out: np.ndarray) -> None:
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
                hi: float = np.float64(top[bj - 1])
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
    atan: np.ndarray = y0 + z
    return atan


def _fused_numpy(block: np.ndarray, depth: int, xstep: np.ndarray, ystep: float, sun_e: float,
                 sun_n: float, sun_up: float, r: int, i_slope: int, i_aspect: int, i_hs: int, hs_unit: bool,
                 i_rough: int, out: np.ndarray) -> None:
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


def _compile() -> _Kernel | None:
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


def _engine_fn(engine: Engine) -> _Kernel:
    if engine not in ("auto", "numba", "numpy"):
        raise ValueError(f"engine must be 'auto', 'numba' or 'numpy', got {engine!r}")
    if engine == "numba" and not HAVE_NUMBA:
        raise ValueError("engine='numba' but numba is not installed (pip install numba), "
                         "or LUNARHUB_TERRAIN_NUMBA=0 disabled it; use engine='auto' or 'numpy'")
    # HAVE_NUMBA is what says _fused_numba is not None (tests turn it off on its own).
    return _fused_numpy if engine == "numpy" or not HAVE_NUMBA else cast("_Kernel", _fused_numba)


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
                    hs_unit: bool, roughness_window: int, kernel: _Kernel) -> Callable[..., np.ndarray]:
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
    stack = _apply(dem, grid, depth, block_fn, what, edges, n_out=len(products),
                   compiled=kernel is not _fused_numpy)
    return dem, grid, stack


def _window_extreme(block: np.ndarray, r: int, op: np.ufunc) -> np.ndarray:
    """Max or min over a (2r+1)² window, separably: along x, then along y."""
    ny, nx = block.shape
    m = block[:, 0:nx - 2 * r]
    for k in range(1, 2 * r + 1):
        m = op(m, block[:, k:k + nx - 2 * r])
    out = m[0:ny - 2 * r]
    for k in range(1, 2 * r + 1):
        out = op(out, m[k:k + ny - 2 * r])
    return out
