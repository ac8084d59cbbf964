"""GeoTIFF in, GeoTIFFs out: one independent task per tile, the calling process writes the files."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lunarhub.science.terrain.blocks import Edges
from lunarhub.science.terrain.kernel import Engine
from lunarhub.science.terrain.tiles import _gdal_env, _is_local, _plan_tiles, _run_tiles, _terrain_tile

if TYPE_CHECKING:
    from distributed import Client

_GTIFF_BLOCKS = (512, 256, 128, 64, 32, 16)  # GeoTIFF tile edges must be multiples of 16


def terrain_to_geotiff(src: str | os.PathLike[str],
                       dst: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]],
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
    profile: dict[str, Any] = dict(driver="GTiff", width=nx, height=ny, count=1, dtype=dtype.name, crs=crs,
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
