"""Bytes across the 'border' and catalog latency, against real nginx data sites.

Run: .venv/bin/python benchmarks/bench_catalog.py
Starts its own ru/cn sites on free ports (temp state), measures from the site's
access log ($body_bytes_sent), prints a table and writes it into docs/benchmarks.md
under "## Catalog and data sites (issue 3)".
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from report import replace_section  # noqa: E402
from support.sites_fixtures import make_deployment, start_site, stop_site  # noqa: E402

from lunarhub.data import catalog, sites  # noqa: E402

HEADING = "## Catalog and data sites (issue 3)"
WINDOW = (slice(256, 512), slice(512, 768))  # rows, cols: inside one 256 px COG tile row


def clear_gdal_cache() -> None:
    catalog._gdal().VSICurlClearCache()


def bytes_since(dep, n0: int, name: str) -> tuple[int, int]:
    log = [r for r in sites.read_log(dep, "ru")[n0:] if r["uri"].endswith(name)]
    return sum(r["bytes"] for r in log), len(log)


def make_striped(src: Path, dst: Path) -> None:
    """The same DEM as a plain striped GeoTIFF (what most archives hand out)."""
    with rasterio.open(src) as ds:
        prof = ds.profile
        prof.update(driver="GTiff", tiled=False, compress=None, blockysize=1)
        for k in ("blockxsize", "interleave"):
            prof.pop(k, None)
        with rasterio.open(dst, "w", **prof) as out:
            out.write(ds.read())
            out.scales, out.offsets = ds.scales, ds.offsets


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-catalog-"))
    tmp.chmod(0o755)  # nginx workers (nobody, when run as root) must read the data
    data = tmp / "data-ru"
    shutil.copytree(REPO / "catalogs/data/ru", data)
    make_striped(data / "open/lola/ldem4_0360.tif", data / "open/lola/ldem4_0360_striped.tif")
    dep = make_deployment(tmp)
    dep.sites["ru"].data_dir = str(data)
    procs = [start_site(dep, "ru"), start_site(dep, "cn")]
    rows: list[tuple[str, str, int, int, int]] = []
    try:
        env = sites.credentials_for(dep, "ru-scientist")
        cat = catalog.open_catalog(env)
        entry = cat["ru"]["lola_global_dem"]
        site = catalog.sites_from_env(env)["ru"]
        catalog._gdal_site_auth(site)
        striped = f"/vsicurl/{site.url}/open/lola/ldem4_0360_striped.tif"

        needed_window = 256 * 256 * 2  # int16 pixels the analysis needs
        # COG through the catalog: lazy open + one window
        clear_gdal_cache()
        n0 = len(sites.read_log(dep, "ru"))
        da = entry.read()
        win = da.isel(y=WINDOW[0], x=WINDOW[1]).values
        b, n = bytes_since(dep, n0, "ldem4_0360.tif")
        rows.append(("256x256 window", "COG via catalog", b, needed_window, n))
        # striped GeoTIFF, same window
        clear_gdal_cache()
        n0 = len(sites.read_log(dep, "ru"))
        with rasterio.open(striped) as ds:
            w2 = ds.read(1, window=((256, 512), (512, 768))) * ds.scales[0]
        b, n = bytes_since(dep, n0, "ldem4_0360_striped.tif")
        rows.append(("256x256 window", "striped GeoTIFF", b, needed_window, n))
        assert np.allclose(win[0], w2)

        # whole raster at 1/4 resolution (180 x 360)
        needed_ov = 180 * 360 * 2
        clear_gdal_cache()
        n0 = len(sites.read_log(dep, "ru"))
        ov = entry.read(overview_level=1).values
        b, n = bytes_since(dep, n0, "ldem4_0360.tif")
        rows.append(("overview 180x360", "COG via catalog", b, needed_ov, n))
        clear_gdal_cache()
        n0 = len(sites.read_log(dep, "ru"))
        with rasterio.open(striped) as ds:
            ds.read(1, out_shape=(180, 360))
        b, n = bytes_since(dep, n0, "ldem4_0360_striped.tif")
        rows.append(("overview 180x360", "striped GeoTIFF", b, needed_ov, n))
        assert ov.shape == (1, 180, 360)

        # catalog latency
        t_open = []
        per_site: dict[str, list[float]] = {"ru": [], "cn": []}
        for _ in range(7):
            t = time.perf_counter()
            c = catalog.open_catalog(env)
            t_open.append(time.perf_counter() - t)
            for name in per_site:
                t = time.perf_counter()
                sc = catalog.open_site(catalog.sites_from_env(env)[name])
                for e in sc.values():
                    _ = (e.metadata["title"], e.metadata["policy"], e.metadata["crs"], e.describe())
                per_site[name].append(time.perf_counter() - t)
        n_entries = {k: len(v) for k, v in c.items()}
    finally:
        for p in procs:
            stop_site(p)
        shutil.rmtree(tmp, ignore_errors=True)

    lines = [
        HEADING,
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `benchmarks/bench_catalog.py` on this machine: two real nginx "
        "sites on loopback, LOLA LDEM_4 (1440 x 720 int16), bytes counted from the site's access log "
        "(`$body_bytes_sent`, including the header/IFD reads at open). 'Needed' = uncompressed pixels the "
        "analysis asked for. Goal: ratio <= 1.3.",
        "",
        "| read | source | bytes transferred | bytes needed | ratio | HTTP requests |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for what, src, b, need, n in rows:
        lines.append(f"| {what} | {src} | {b:,} | {need:,} | {b / need:.2f} | {n} |")
    lines += [
        "",
        "| catalog operation | median (7 runs) | goal |",
        "|---|---:|---:|",
        f"| open root catalog (both sites, fetch + parse + filter) | {statistics.median(t_open) * 1000:.1f} ms | |",
    ]
    for name, ts in per_site.items():
        lines.append(f"| site {name}: fetch catalog.yaml + list {n_entries[name]} entries with metadata | "
                     f"{statistics.median(ts) * 1000:.1f} ms | <= 200 ms |")
    lines += ["", "The COG is read through `lunarhub.open_catalog()` (GDAL /vsicurl/ range reads, lazy dask); the "
              "striped file with rasterio over the same authenticated /vsicurl/ path. The striped file has no "
              "overviews, so a whole-raster view must download all of it.", ""]
    text = "\n".join(lines)
    print(text)
    replace_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
