"""Running a block function over a DEM with a halo: row strips of a numpy array, or one call per dask
chunk with halos exchanged by dask; both paths agree exactly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, overload

import dask.array as da
import numpy as np
import xarray as xr

from lunarhub.science.terrain.grid import Grid, _work_dtype

Edges = Literal["nan", "nearest", "reflect"]


_DASK_BOUNDARY = {"nan": np.nan, "nearest": "nearest", "reflect": "reflect", "periodic": "periodic"}
# dask's "reflect" repeats the edge pixel, which is numpy's "symmetric".
_NUMPY_PAD: dict[str, Literal["edge", "symmetric", "wrap"]] = {"nearest": "edge", "reflect": "symmetric",
                                                               "periodic": "wrap"}


BlockFn = Callable[[np.ndarray, int], np.ndarray]

# numpy input is processed in strips of this many rows, so the numpy engine's temporaries stay
# small; the compiled kernel only needs row-sized scratch, so it takes strips of up to this many
# pixels (a whole dask-chunk-sized block in one call, written straight into the result).
_NUMPY_STRIP_ROWS = 512
_COMPILED_STRIP_PIXELS = 1 << 24


@overload
def _apply(dem: xr.DataArray, grid: Grid, depth: int, block_fn: Callable[..., np.ndarray], what: str,
           edges: Edges, out_dtype: np.dtype | None = None, n_out: None = None,
           compiled: bool = False) -> xr.DataArray: ...


@overload
def _apply(dem: xr.DataArray, grid: Grid, depth: int, block_fn: Callable[..., np.ndarray], what: str,
           edges: Edges, out_dtype: np.dtype | None = None, *, n_out: int,
           compiled: bool = False) -> np.ndarray | da.Array: ...


# block_fn is a BlockFn, or with n_out a BlockFn that also takes the array to write into.
def _apply(dem: xr.DataArray, grid: Grid, depth: int, block_fn: Callable[..., np.ndarray], what: str,
           edges: Edges, out_dtype: np.dtype | None = None, n_out: int | None = None,
           compiled: bool = False) -> xr.DataArray | np.ndarray | da.Array:
    """Run ``block_fn(padded_block, first_interior_row)`` over the DEM with a halo of ``depth``.

    The same block function serves numpy input (row strips of the padded array) and dask
    input (one call per chunk, halos exchanged by ``dask.array.overlap.overlap``), so both
    paths agree exactly. With ``n_out`` the block function returns ``(n_out, rows, cols)``
    (several products from one pass) and so does the result (a bare numpy/dask array then).
    ``compiled``: ``block_fn`` runs the compiled kernel, which takes larger strips of numpy input.
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

        def per_chunk(block: np.ndarray, block_info: Any = None) -> np.ndarray:  # dask passes a dict
            return block_fn(block, int(starts[block_info[0]["chunk-location"][0]]))

        # overlap + map_blocks (what map_overlap(trim=False) does), spelled out so that the
        # kernel may add a leading "product" axis. No trim: the kernel returns interiors only.
        padded = da.overlap.overlap(data.astype(dtype), depth={0: depth, 1: depth},
                                    boundary={0: _DASK_BOUNDARY[edges], 1: _DASK_BOUNDARY[x_edge]})
        out: np.ndarray | da.Array = da.map_blocks(
            per_chunk, padded, chunks=tuple((n,) for n in lead) + data.chunks,
            new_axis=list(range(len(lead))) or None, dtype=out_dtype,
            meta=np.empty((0,) * (len(lead) + 2), out_dtype), name=f"lunarhub-{what.split('(')[0]}")
    else:
        arr = np.asarray(data, dtype=dtype)
        ny, nx = arr.shape
        out = np.empty(lead + (ny, nx), out_dtype)
        step = max(_NUMPY_STRIP_ROWS, _COMPILED_STRIP_PIXELS // nx) if compiled else _NUMPY_STRIP_ROWS
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
