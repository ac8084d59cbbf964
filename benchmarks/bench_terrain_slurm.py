"""`terrain_to_zarr` on 2 Slurm workers of the ru site against single-thread gdaldem (issue 14).

    flock /tmp/lunarhub-stack.lock .venv/bin/python benchmarks/bench_terrain_slurm.py --sizes 1e8,4e8

Run as root. Starts its own lunarhub stack with the ru site's real Slurm cluster (free ports, temp
state, like benchmarks/bench_sites_compute.py), asks ru's own gateway for a cluster of 2 workers
(1 core, --worker-memory GiB each: Slurm jobs running as ru-scientist, one per core of this
2-core machine) and, per size, on the same float32 GeoTIFF, in this one run:

- gdaldem slope, 1 thread (GDAL_NUM_THREADS=1), then gdaldem slope + hillshade + roughness;
- `terrain_to_zarr(client=...)` with products=("slope",), then with its default three products
  (uncompressed Zarr store written by the workers; only a pixel count comes back).

The DEM is the issue-4 one (LOLA LDEM_4 upsampled + fBm detail, benchmarks/bench_terrain.py, 1e8 px,
cached in benchmarks/.work/); larger sizes tile it: 2e8 = two copies side by side (the east edge meets
the west edge: longitude wraps, no seam), 4e8 = those two rows, the second flipped north-south (pole
meets pole: no seam), at half the pixel size so the grid stays global. Everything lives in a temp dir
this process makes (0755; the stores' folders 0777 because the workers write into them as the user).

Peak RSS per worker: every worker process's RSS sampled through the scheduler every 0.2 s during each
run. Agreement: every slope pixel of each store against gdaldem's slope, in row strips: the NaN
positions (gdaldem's nodata border) must be identical and the largest |difference| within --tolerance
degrees, else the benchmark fails (a wrong fast answer is no figure). Prints a markdown subsection.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
USER = "ru-scientist"
BASE = 1e8  # the cached issue-4 DEM; larger sizes tile it


def _read_through(path: Path) -> None:
    """Into the page cache, so every contender starts from the same warm file."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def tiled_dem(base: Path, pixels: float, out: Path) -> Path:
    """`base` tiled to ~`pixels` px: 2 across (2e8) or 2 x 2 with the lower row flipped (4e8)."""
    import rasterio
    from affine import Affine

    ratio = round(pixels / BASE)
    if ratio == 1:
        path = out / "dem_1e8.tif"
        shutil.copyfile(base, path)
        return path
    if ratio not in (2, 4):
        raise SystemExit(f"--sizes: {pixels:g} px; this benchmark builds 1e8, 2e8 or 4e8")
    path = out / f"dem_{ratio}e8.tif"
    with rasterio.open(base) as src:
        h, w = src.shape
        t = src.transform
        rows = 2 if ratio == 4 else 1
        # Half the pixel size across (and down, for 4e8) keeps the grid global, as a real finer DEM.
        tr = Affine(t.a / 2, 0, t.c, 0, t.e / rows, t.f)
        profile = dict(src.profile, width=2 * w, height=rows * h, transform=tr, tiled=True,
                       blockxsize=512, blockysize=512, BIGTIFF="YES", compress=None)
        with rasterio.open(path, "w", **profile) as dst:
            step = 1024
            for r0 in range(0, h, step):
                r1 = min(h, r0 + step)
                block = src.read(1, window=((r0, r1), (0, w)))
                for k in range(2):
                    dst.write(block, 1, window=((r0, r1), (k * w, (k + 1) * w)))
                if rows == 2:  # the flipped copy: source rows r0..r1 land at 2h-r1 .. 2h-r0
                    for k in range(2):
                        dst.write(block[::-1], 1, window=((2 * h - r1, 2 * h - r0), (k * w, (k + 1) * w)))
    return path


class RssSampler(threading.Thread):
    """Peak RSS of every worker process, sampled through the scheduler every `period` s."""

    def __init__(self, client: Any, period: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.client, self.period, self.stop = client, period, threading.Event()
        self.peak: dict[str, int] = {}
        self.samples = 0

    def sample(self) -> dict[str, int]:
        return self.client.run(lambda: __import__("psutil").Process().memory_info().rss)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                for w, rss in self.sample().items():
                    self.peak[w] = max(self.peak.get(w, 0), rss)
                self.samples += 1
            except Exception:  # a sample may race with a task's end; losing one is harmless
                pass
            self.stop.wait(self.period)


def gdaldem(products: tuple[str, ...], dem: Path, out: Path) -> float:
    env = dict(os.environ, GDAL_NUM_THREADS="1")
    _read_through(dem)
    t0 = time.perf_counter()
    for p in products:
        subprocess.run(["gdaldem", p, str(dem), str(out / f"gd_{p}.tif"), "-q"], check=True, env=env)
    return time.perf_counter() - t0


def on_slurm(client: Any, products: tuple[str, ...], dem: Path, store: Path) -> dict[str, Any]:
    from lunarhub.science import terrain

    _read_through(dem)
    client.run(__import__("gc").collect)
    idle = RssSampler(client).sample()
    sampler = RssSampler(client)
    sampler.start()
    old = os.umask(0)  # the workers (ru-scientist) write the chunks into the folders this process makes
    t0 = time.perf_counter()
    try:
        terrain.terrain_to_zarr(dem, store, products=products, client=client, compress=False, overwrite=True)
    finally:
        os.umask(old)
    seconds = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    return {"seconds": seconds, "peak": dict(sampler.peak), "idle": idle, "samples": sampler.samples}


def compare_slope(gd_path: Path, store: Path, tolerance: float) -> float:
    """Largest |slope - gdaldem slope| in degrees over every pixel; NaN positions must match exactly."""
    import rasterio
    import zarr

    mine: Any = zarr.open_group(str(store), mode="r")["slope"]  # an Array; zarr types members as Array | Group
    worst = 0.0
    with rasterio.open(gd_path) as f:
        h, w = f.shape
        nodata = f.nodata
        for r0 in range(0, h, 1024):
            r1 = min(h, r0 + 1024)
            gd = f.read(1, window=((r0, r1), (0, w))).astype(np.float64)
            gd_nan = gd == nodata if nodata is not None else np.isnan(gd)
            m = np.asarray(mine[r0:r1, :], dtype=np.float64)
            m_nan = np.isnan(m)
            if not np.array_equal(gd_nan, m_nan):
                bad = np.argwhere(gd_nan != m_nan)[0]
                raise SystemExit(f"{store}: NaN positions differ from gdaldem's nodata, first at row "
                                 f"{r0 + bad[0]}, column {bad[1]} ({int((gd_nan != m_nan).sum())} pixels in rows "
                                 f"{r0}-{r1})")
            if (~m_nan).any():
                worst = max(worst, float(np.max(np.abs(m[~m_nan] - gd[~m_nan]))))
    if worst > tolerance:
        raise SystemExit(f"{store}: slope differs from gdaldem by up to {worst:.3g} deg (> {tolerance:g})")
    return worst


def mib(b: float) -> str:
    return f"{b / 2**20:,.0f}"


def measure(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    sys.path.insert(0, str(ROOT / "tests"))
    from bench_terrain import build_dem
    from dask_gateway import Gateway, JupyterHubAuth
    from support.stack import make_stack, open_tmpdir

    from lunarhub.compute import site_gateway

    base = build_dem(BASE, 2048)  # cached in benchmarks/.work/ after its first build
    work = Path(tempfile.mkdtemp(prefix="lunarhub-bench-terrain-slurm-"))
    os.chmod(work, 0o755)  # the workers (ru-scientist) read the DEMs and write into the stores
    dems = {px: tiled_dem(base, px, work) for px in args.sizes}
    # A small crop for the untimed warm-up (imports, numba compile on each worker).
    warm = work / "warm.tif"
    subprocess.run(["gdal_translate", "-q", "-srcwin", "0", "0", "4096", "2048", str(base), str(warm)], check=True)
    tmp = open_tmpdir("bench-terrain-slurm")
    stack = make_stack(tmp, dask_gateway=True, slurm=True)
    meta: dict[str, Any] = {}
    results: list[dict[str, Any]] = []
    try:
        t0 = time.perf_counter()
        up = stack.cli("up", timeout=300, check=False)
        assert up.returncode == 0, up.stdout + up.stderr
        meta["up_s"] = time.perf_counter() - t0
        env = site_gateway.spawn_environment(stack.deployment(), USER)
        gw = Gateway(address=env["LUNARHUB_GATEWAY_RU_ADDRESS"], proxy_address=env["LUNARHUB_GATEWAY_RU_PROXY_ADDRESS"],
                     auth=JupyterHubAuth(api_token=stack.token(USER)))
        cluster = gw.new_cluster(worker_cores=1, worker_memory=args.worker_memory)
        try:
            cluster.scale(2)
            client = cluster.get_client()
            client.wait_for_workers(2, timeout=180)
            # GDAL's block cache defaults to 5% of RAM per process; cap it so RSS shows the pipeline.
            client.run(os.environ.__setitem__, "GDAL_CACHEMAX", "64")
            meta["workers"] = client.run(lambda: {"user": __import__("getpass").getuser(),
                                                  "job": __import__("os").environ.get("SLURM_JOB_ID")})
            t0 = time.perf_counter()
            on_slurm(client, ("slope", "hillshade", "roughness"), warm, work / "warm.zarr")
            meta["warm_s"] = time.perf_counter() - t0
            for px, dem in dems.items():
                out = work / f"out_{px:.0e}"
                out.mkdir()
                load0 = os.getloadavg()[0]
                r: dict[str, Any] = {"pixels": px, "dem": dem, "load0": load0}
                r["gd_slope"] = gdaldem(("slope",), dem, out)
                r["z_slope"] = on_slurm(client, ("slope",), dem, out / "slope.zarr")
                r["gd_all"] = gdaldem(("slope", "hillshade", "roughness"), dem, out)
                r["z_all"] = on_slurm(client, ("slope", "hillshade", "roughness"), dem, out / "all.zarr")
                r["load1"] = os.getloadavg()[0]
                r["err_slope"] = compare_slope(out / "gd_slope.tif", out / "slope.zarr", args.tolerance)
                r["err_all"] = compare_slope(out / "gd_slope.tif", out / "all.zarr", args.tolerance)
                import rasterio

                with rasterio.open(dem) as f:
                    r["shape"] = f.shape
                results.append(r)
                print(f"  {px:.0e}: gdaldem slope {r['gd_slope']:.2f} s, slurm {r['z_slope']['seconds']:.2f} s; "
                      f"all 3: {r['gd_all']:.2f} s vs {r['z_all']['seconds']:.2f} s", flush=True)
                shutil.rmtree(out, ignore_errors=True)  # 6+ GB at 4e8: not kept
                print(render_md(results, meta, args), flush=True)  # so far: a later size may not finish
        finally:
            cluster.shutdown()
    finally:
        stack.cli("down", check=False, timeout=240)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return results, meta


def render_md(results: list[dict[str, Any]], meta: dict[str, Any], args: argparse.Namespace) -> str:
    sizes = ",".join(f"{r['pixels']:.0e}".replace("+0", "") for r in results)
    gdal = subprocess.run(["gdalinfo", "--version"], capture_output=True, text=True).stdout.strip()
    workers = ", ".join(f"{v['user']} (Slurm job {v['job']})" for v in meta["workers"].values())
    rows = []
    for r in results:
        for kind, gd, z, err in (("slope", r["gd_slope"], r["z_slope"], r["err_slope"]),
                                 ("slope + hillshade + roughness", r["gd_all"], r["z_all"], r["err_all"])):
            px = r["pixels"]
            rows.append(f"| {px:.0e} ({r['shape'][0]}x{r['shape'][1]}) | {kind} | {gd:.2f} ({px / gd / 1e6:.1f}) "
                        f"| {z['seconds']:.2f} ({px / z['seconds'] / 1e6:.1f}) | **{gd / z['seconds']:.2f}x** "
                        f"| {' / '.join(mib(v) for v in z['peak'].values())} | {err:.1e} |")
    idle = " / ".join(mib(v) for v in results[0]["z_slope"]["idle"].values())
    ratios = [r["gd_slope"] / r["z_slope"]["seconds"] for r in results] + [r["gd_all"] / r["z_all"]["seconds"]
                                                                          for r in results]
    peaks = {f"{r['pixels']:.0e}": max(max(r["z_slope"]["peak"].values()), max(r["z_all"]["peak"].values()))
             for r in results}
    verdict = (f"Goal ≥ 1.5× at every size: {'met' if min(ratios) >= 1.5 else 'NOT met'} ({min(ratios):.2f}–"
               f"{max(ratios):.2f}×). Largest worker peak RSS per size: "
               + ", ".join(f"{k}: {mib(v)} MiB" for k, v in peaks.items()) + ".")
    return f"""### terrain_to_zarr on Slurm

Command: `flock /tmp/lunarhub-stack.lock .venv/bin/python benchmarks/bench_terrain_slurm.py --sizes {sizes}`
(measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, one run, {platform.node()}: 2 cores, shared with other work;
{gdal}). One stack with the ru site's real Slurm cluster; a cluster of ru's own gateway, 2 workers of 1 core /
{args.worker_memory:g} GiB each: {workers}. Baseline: `gdaldem` with `GDAL_NUM_THREADS=1`, GeoTIFF out, the commands
one after another. lunarhub: `terrain_to_zarr(dem, store, products=..., client=...)`, uncompressed float32 Zarr
written by the workers (tile 2048). Each contender starts with the DEM in the page cache; times are wall seconds
including reading and writing. DEM: the issue-4 DEM (LOLA LDEM_4 upsampled + fBm detail, 1e8 px float32 GeoTIFF),
tiled for larger sizes (2 across, and for 4e8 a second row flipped north-south, at half the pixel size: no seams).

| pixels | products | gdaldem 1 thread s (Mpx/s) | 2 Slurm workers s (Mpx/s) | gdaldem ÷ Slurm | peak RSS per worker MiB | max \\|slope − gdaldem\\| deg |
|---|---|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

{verdict}
Idle worker RSS before the first run: {idle} MiB (sampled every 0.2 s from the workers' own processes
through the scheduler). Agreement: every slope pixel of each store against gdaldem's slope; the NaN positions
(gdaldem's nodata border) are identical and the difference is within {args.tolerance:g} deg, checked by the
benchmark (it fails otherwise). Load average (1 min) before / after each size:
{"; ".join(f"{r['pixels']:.0e}: {r['load0']:.1f} / {r['load1']:.1f}" for r in results)}. Stack up: {meta['up_s']:.0f} s;
warm-up run (numba compile on the workers, 8 Mpx, untimed): {meta['warm_s']:.1f} s.
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--sizes", default="1e8,4e8", help="comma-separated pixel counts: 1e8, 2e8, 4e8")
    p.add_argument("--worker-memory", type=float, default=4.0, help="GiB per worker (the Slurm job's --mem)")
    p.add_argument("--tolerance", type=float, default=1e-3, help="largest |slope - gdaldem| allowed, degrees")
    args = p.parse_args()
    args.sizes = [float(s) for s in args.sizes.split(",")]
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark starts a lunarhub stack with the ru site's Slurm cluster")
    measure(args)  # prints the subsection after each size


if __name__ == "__main__":
    main()
