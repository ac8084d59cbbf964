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

Modules, in the order a product is made: ``grid`` (where a DEM sits), ``blocks`` (halos, strips and
chunks), ``kernel`` (the fused kernel), ``products`` (the in-memory/dask functions), ``tiles`` (a DEM
file cut into independent tasks) with ``geotiff`` and ``zarr_store`` (the file-to-file routes), and
``landing`` (distance and landing suitability). Everything public is re-exported here.
"""

from __future__ import annotations

from lunarhub.lunar import MOON_RADIUS_M
from lunarhub.science.terrain.blocks import BlockFn, Edges
from lunarhub.science.terrain.geotiff import terrain_to_geotiff
from lunarhub.science.terrain.grid import Grid, grid_of
from lunarhub.science.terrain.kernel import HAVE_NUMBA, PRODUCTS, Engine
from lunarhub.science.terrain.landing import distance_to, great_circle_km, landing_suitability
from lunarhub.science.terrain.products import aspect, hillshade, roughness, slope, terrain_pipeline
from lunarhub.science.terrain.zarr_store import terrain_to_zarr

__all__ = [
    "HAVE_NUMBA", "MOON_RADIUS_M", "PRODUCTS", "BlockFn", "Edges", "Engine", "Grid", "aspect", "distance_to",
    "great_circle_km", "grid_of", "hillshade", "landing_suitability", "roughness", "slope", "terrain_pipeline",
    "terrain_to_geotiff", "terrain_to_zarr",
]
