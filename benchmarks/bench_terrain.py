"""Terrain pipeline benchmark (issue 4): slope + hillshade + roughness over large lunar DEMs.

    .venv/bin/python benchmarks/bench_terrain.py [--sizes 1e7,1e8,4e8] [--scheduler local|gateway]

For each size it builds (once, cached in benchmarks/.work/, git-ignored) a global DEM by
upsampling the real LOLA LDEM_4 and adding fractal detail, written as a tiled float32
GeoTIFF in lunar equirectangular metres (IAU_2015:30110) so gdaldem can read it. Then it times,
in this one process:
  (a) lunarhub.terrain on numpy, one core: read the whole DEM, compute, write 3 GeoTIFFs;
  (b) gdaldem slope, hillshade, roughness (single-threaded, Debian gdal-bin), one after another;
  (c) lunarhub.terrain on a 2-worker dask cluster (1 thread each): read chunks, compute with
      map_overlap, write the three outputs to an uncompressed Zarr store (no gather),
      sampling every worker's RSS meanwhile.
Results go to docs/benchmarks.md under "## Terrain pipeline (issue 4)" (only that section).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import psutil
import rasterio
import rioxarray
import xarray as xr
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lunarhub import terrain  # noqa: E402
from lunarhub.terrain_io import read_pds3_dem  # noqa: E402

LOLA = Path("/work/shared/data/lola/LDEM_4.LBL")
if not LOLA.exists():
    LOLA = ROOT / "tests/data/lola/LDEM_4.LBL"
WORK = ROOT / "benchmarks/.work"
DOC = ROOT / "docs/benchmarks.md"
HEADING = "## Terrain pipeline (issue 4)"
R = 1_737_400.0
CRS = "IAU_2015:30110"


# --- synthetic DEM: LOLA upsampled + fractal detail -------------------------------------------

def _hash_uniform(i: np.ndarray, j: np.ndarray, octave: int) -> np.ndarray:
    """Deterministic uniform [-1, 1) per lattice node (splitmix64), so chunks agree at seams."""
    with np.errstate(over="ignore"):
        h = (i.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
             ^ j.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
             ^ np.uint64(octave + 1) * np.uint64(0x165667B19E3779F9))
        h ^= h >> np.uint64(31)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(29)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(32)
    return (h >> np.uint64(40)).astype(np.float32) / np.float32(2**23) - np.float32(1.0)


def _value_noise(rows: np.ndarray, cols: np.ndarray, spacing: float, octave: int) -> np.ndarray:
    u, v = rows / spacing, cols / spacing
    i0, j0 = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    fu, fv = (u - i0).astype(np.float32), (v - j0).astype(np.float32)
    fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)  # smoothstep: no lattice creases
    ia, ja = np.arange(i0.min(), i0.max() + 2), np.arange(j0.min(), j0.max() + 2)
    lat = _hash_uniform(ia[:, None], ja[None, :], octave)
    ri, cj = i0 - ia[0], j0 - ja[0]
    top = lat[ri][:, cj] * (1 - fv) + lat[ri][:, cj + 1] * fv
    bot = lat[ri + 1][:, cj] * (1 - fv) + lat[ri + 1][:, cj + 1] * fv
    return top * (1 - fu)[:, None] + bot * fu[:, None]


def _dem_block(lola: np.ndarray, shape: tuple[int, int], block_info=None) -> np.ndarray:
    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    ny, nx = shape
    factor = ny / lola.shape[0]  # output pixels per LOLA pixel
    rows, cols = np.arange(r0, r1, dtype=np.float64), np.arange(c0, c1, dtype=np.float64)
    # Bilinear upsampling of LOLA (pixel centres aligned; longitude wraps).
    y = np.clip((rows + 0.5) / factor - 0.5, 0, lola.shape[0] - 1)
    x = (cols + 0.5) / factor - 0.5
    y0 = np.minimum(np.floor(y).astype(int), lola.shape[0] - 2)
    x0 = np.floor(x).astype(int)
    fy, fx = (y - y0).astype(np.float32)[:, None], (x - x0).astype(np.float32)[None, :]
    xa, xb = x0 % lola.shape[1], (x0 + 1) % lola.shape[1]
    top = lola[y0][:, xa] * (1 - fx) + lola[y0][:, xb] * fx
    bot = lola[y0 + 1][:, xa] * (1 - fx) + lola[y0 + 1][:, xb] * fx
    z = top * (1 - fy) + bot * fy
    # Fractal (fBm) detail from the LOLA pixel scale down to ~2 output pixels, Hurst 0.8:
    # amplitude ~ spacing^0.8, 150 m at the 7.6 km LOLA scale.
    spacing, octave = factor, 0
    while spacing >= 2.0:
        z += np.float32(150.0 * (spacing / factor) ** 0.8) * _value_noise(rows, cols, spacing, octave)
        spacing, octave = spacing / 2, octave + 1
    return z.astype(np.float32)


def shape_for(pixels: float) -> tuple[int, int]:
    ny = int(round((pixels / 2) ** 0.5))
    return ny, 2 * ny


def build_dem(pixels: float, chunk: int) -> Path:
    ny, nx = shape_for(pixels)
    path = WORK / f"dem_{ny}x{nx}.tif"
    if path.exists():
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    lola = read_pds3_dem(str(LOLA)).values.astype(np.float32)
    res = 2 * np.pi * R / nx
    t0 = time.perf_counter()
    # The small LOLA grid rides along as a closure constant; blocks only need their location.
    arr = da.map_blocks(lambda b, block_info=None: _dem_block(lola, (ny, nx), block_info),
                        da.empty((ny, nx), chunks=(chunk, chunk), dtype=np.float32), dtype=np.float32)
    tmp = path.with_suffix(".tmp.tif")
    profile = dict(driver="GTiff", width=nx, height=ny, count=1, dtype="float32", crs=CRS,
                   transform=from_origin(-np.pi * R, np.pi / 2 * R, res, res), tiled=True,
                   blockxsize=512, blockysize=512, BIGTIFF="IF_SAFER")
    with rasterio.open(tmp, "w", **profile) as dst:
        # One dask chunk at a time through the threaded scheduler keeps memory to a few chunks.
        lock = threading.Lock()

        class Writer:
            def __setitem__(self, key, value):
                (rs, cs) = key
                with lock:
                    dst.write(value, 1, window=((rs.start, rs.stop), (cs.start, cs.stop)))

        da.store(arr, Writer(), lock=False, scheduler="threads", num_workers=2)
    tmp.rename(path)
    print(f"  built {path.name}: {ny}x{nx} = {ny * nx:.3g} px in {time.perf_counter() - t0:.1f} s", flush=True)
    return path


# --- the three ways to run the pipeline -----------------------------------------------------------

def _read_through(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def run_numpy(path: Path, out: Path) -> dict:
    t0 = time.perf_counter()
    dem = rioxarray.open_rasterio(path).squeeze("band", drop=True)
    dem = dem.load()
    t_read = time.perf_counter()
    rss = [psutil.Process().memory_info().rss]
    outputs = {}
    for name, fn in (("slope", terrain.slope), ("hillshade", terrain.hillshade), ("roughness", terrain.roughness)):
        outputs[name] = fn(dem)
        rss.append(psutil.Process().memory_info().rss)
    t_comp = time.perf_counter()
    for name, o in outputs.items():
        o.rio.to_raster(out / f"np_{name}.tif")
    t_end = time.perf_counter()
    return dict(seconds=t_end - t0, compute_s=t_comp - t_read, peak_rss=max(rss))


def run_gdaldem(path: Path, out: Path) -> dict:
    env = dict(os.environ, GDAL_NUM_THREADS="1")
    t0 = time.perf_counter()
    for cmd in ("slope", "hillshade", "roughness"):
        subprocess.run(["gdaldem", cmd, str(path), str(out / f"gd_{cmd}.tif"), "-q"], check=True, env=env)
    return dict(seconds=time.perf_counter() - t0)


class RssSampler(threading.Thread):
    """Peak RSS of every worker process, sampled through the scheduler every ``period`` s."""

    def __init__(self, client, period: float = 0.2):
        super().__init__(daemon=True)
        self.client, self.period, self.peak, self.stop = client, period, {}, threading.Event()

    def sample(self) -> dict:
        return self.client.run(lambda: __import__("psutil").Process().memory_info().rss)

    def run(self):
        while not self.stop.is_set():
            try:
                for w, rss in self.sample().items():
                    self.peak[w] = max(self.peak.get(w, 0), rss)
            except Exception:  # a sample may race with shutdown; losing one is harmless
                pass
            self.stop.wait(self.period)


def run_cluster(client, path: Path, out: Path, chunk: int) -> dict:
    store = out / "cluster.zarr"
    shutil.rmtree(store, ignore_errors=True)
    client.run(__import__("gc").collect)
    baseline = RssSampler(client).sample()
    sampler = RssSampler(client)
    sampler.start()
    t0 = time.perf_counter()
    dem = rioxarray.open_rasterio(path, chunks={"y": chunk, "x": chunk}, lock=False).squeeze("band", drop=True)
    ds = xr.Dataset({"slope": terrain.slope(dem), "hillshade": terrain.hillshade(dem),
                     "roughness": terrain.roughness(dem)})
    ds.to_zarr(store, mode="w", encoding={v: {"compressors": None} for v in ds.data_vars}, consolidated=False)
    seconds = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    return dict(seconds=seconds, peak_rss={w: int(v) for w, v in sampler.peak.items()},
                baseline_rss={w: int(v) for w, v in baseline.items()})


def start_cluster(kind: str):
    t0 = time.perf_counter()
    if kind == "gateway":
        if not os.environ.get("DASK_GATEWAY__ADDRESS"):
            sys.exit("--scheduler gateway needs DASK_GATEWAY__ADDRESS (and the proxy/auth settings) in the "
                     "environment, as in a lunarhub user server")
        from dask_gateway import Gateway
        cluster = Gateway().new_cluster()
        t_start = time.perf_counter() - t0
        t1 = time.perf_counter()
        cluster.scale(2)
        client = cluster.get_client()
    else:
        from distributed import Client, LocalCluster
        # GDAL's block cache defaults to 5% of RAM per process and fills up as a worker reads
        # ever more tiles it never rereads; cap it so worker memory reflects the pipeline.
        os.environ.setdefault("GDAL_CACHEMAX", "64")
        cluster = LocalCluster(n_workers=0, threads_per_worker=1, processes=True, dashboard_address=None)
        t_start = time.perf_counter() - t0
        t1 = time.perf_counter()
        cluster.scale(2)
        client = Client(cluster)
    client.wait_for_workers(2)
    return cluster, client, t_start, time.perf_counter() - t1


# --- reporting ---------------------------------------------------------------------------------

def mib(b: float) -> str:
    return f"{b / 2**20:,.0f}"


def render(results: list[dict], meta: dict) -> str:
    lines = [HEADING, "",
             f"Measured {meta['date']} on {meta['machine']}; {meta['versions']}. "
             f"Run: `{meta['command']}`. Scheduler: {meta['scheduler']} (2 workers x 1 thread), "
             f"dask chunks {meta['chunk']}x{meta['chunk']}.",
             "",
             "DEM: global LOLA LDEM_4 bilinearly upsampled plus fBm value-noise detail (Hurst 0.8), float32 "
             "tiled GeoTIFF in IAU_2015:30110, built at run time in `benchmarks/.work/` (not committed). "
             "Pipeline = slope + hillshade + 3x3 roughness, read from disk and written to disk: "
             "numpy and gdaldem write GeoTIFFs (gdaldem hillshade as Byte), the cluster writes one "
             "uncompressed Zarr store chunk by chunk (no gather). Times are wall-clock seconds including I/O.",
             "",
             f"Cluster start: {meta['t_start']:.2f} s; scale to 2 workers: {meta['t_scale']:.2f} s; "
             f"first (untimed, warm-up) pipeline run on the smallest DEM: {meta['t_warm']:.2f} s. "
             "Each contender starts with the DEM in the page cache.",
             "",
             "| pixels | shape | gdaldem 1 thread s (Mpx/s) | numpy 1 core s (Mpx/s) | 2-worker cluster s (Mpx/s) "
             "| cluster / gdaldem speed-up | peak RSS per worker MiB (idle) |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    loads = []
    for r in results:
        px = r["pixels"]

        def cell(d, px=px):
            return f"{d['seconds']:.2f} ({px / d['seconds'] / 1e6:.1f})" if d else "not run"

        loads.append(f"{r['load_before']:.1f}-{r['load_after']:.1f}")
        peaks = " / ".join(mib(v) for v in r["cluster"]["peak_rss"].values())
        idle = " / ".join(mib(v) for v in r["cluster"]["baseline_rss"].values())
        lines.append(f"| {px:.3g} | {r['shape'][0]}x{r['shape'][1]} | {cell(r['gdaldem'])} | {cell(r['numpy'])} "
                     f"| {cell(r['cluster'])} | {r['gdaldem']['seconds'] / r['cluster']['seconds']:.2f}x "
                     f"| {peaks} ({idle}) |")
    best = max(r["gdaldem"]["seconds"] / r["cluster"]["seconds"] for r in results)
    peak = [max(r["cluster"]["peak_rss"].values()) for r in results]
    lines += ["", f"**Verdict.** Goal (cluster >= 1.5x gdaldem): {'met' if best >= 1.5 else 'not met'} "
              f"(best {best:.2f}x). Goal (memory per worker flat): "
              f"{'met' if peak[-1] <= 1.25 * peak[0] else 'not met'} (peak {mib(peak[0])} -> {mib(peak[-1])} MiB "
              f"from {results[0]['pixels']:.3g} to {results[-1]['pixels']:.3g} px).",
              "",
              "Why: on this 2-core machine the per-core numpy kernels (several full-array temporaries per "
              "derivative, slope and hillshade each recomputing the Horn gradient) run at about a third of "
              "gdaldem's C speed per core, so two workers cannot reach 1.5x; fusing the three derivatives into one "
              "pass or compiling the kernels (numba) is the next step. The load average (below) shows the cores were "
              "shared, so absolute times are noisy. Worker memory grows with size; the likely cause (not yet "
              "verified) is that map_overlap keeps each chunk until the chunk row below has taken its halo, so "
              "about a row of chunks stays resident (~ sqrt(size)). The GDAL block cache is capped at 64 MB per worker.",
              "",
              f"Best of {meta['repeat']} run(s) per cell. 1-minute load average around each size "
              f"(2 cores, shared with other engineers' test runs): {', '.join(loads)}.", *meta["notes"], ""]
    return "\n".join(lines)


def write_section(text: str) -> None:
    """Replace only our section: other sections of docs/benchmarks.md belong to other people."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    current = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    lines = current.splitlines()
    if HEADING in lines:
        start = lines.index(HEADING)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = lines[:start] + text.rstrip("\n").splitlines() + ([""] if end < len(lines) else []) + lines[end:]
    else:
        new = lines + ([""] if lines and lines[-1] else []) + text.rstrip("\n").splitlines()
    tmp = DOC.with_suffix(".md.tmp")
    tmp.write_text("\n".join(new) + "\n")
    tmp.replace(DOC)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1e7,1e8", help="DEM sizes in pixels, comma-separated (e.g. 1e7,1e8,4e8)")
    ap.add_argument("--scheduler", choices=("local", "gateway"), default="local")
    ap.add_argument("--chunk", type=int, default=2048, help="dask chunk edge in pixels")
    ap.add_argument("--numpy-max", type=float, default=1.1e8, help="largest size also run on numpy in memory")
    ap.add_argument("--repeat", type=int, default=1, help="runs per contender and size; the fastest is kept")
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--render-only", action="store_true", help="rewrite the doc section from .work/results.json")
    args = ap.parse_args(argv)
    if args.render_only:
        saved = json.loads((WORK / "results.json").read_text())
        write_section(render(saved["results"], saved["meta"]))
        return
    if shutil.which("gdaldem") is None:
        sys.exit("gdaldem not found: apt-get install gdal-bin")
    sizes = [float(s) for s in args.sizes.split(",")]
    dask.config.set({"distributed.worker.daemon": False})

    print("building DEMs", flush=True)
    paths = [build_dem(s, args.chunk) for s in sizes]
    cluster, client, t_start, t_scale = start_cluster(args.scheduler)
    print(f"cluster start {t_start:.2f} s, scale to 2 {t_scale:.2f} s", flush=True)
    # Untimed warm-up: the first task on a fresh worker imports lunarhub, pyproj, rasterio, zarr
    # (about a second); that is start-up cost, not throughput.
    warm = WORK / "warmup"
    warm.mkdir(exist_ok=True)
    t_warm = run_cluster(client, paths[0], warm, args.chunk)["seconds"]
    results = []
    try:
        for path in paths:
            out = WORK / f"out_{path.stem}"
            out.mkdir(exist_ok=True)
            with rasterio.open(path) as src:
                shape = src.shape
            px = shape[0] * shape[1]
            r = dict(pixels=px, shape=shape)
            _read_through(path)  # every contender starts with the DEM in the page cache
            r["load_before"] = os.getloadavg()[0]
            r["gdaldem"] = min((run_gdaldem(path, out) for _ in range(args.repeat)), key=lambda d: d["seconds"])
            print(f"{px:.3g} px  gdaldem  {r['gdaldem']['seconds']:.2f} s", flush=True)
            r["numpy"] = (min((run_numpy(path, out) for _ in range(args.repeat)), key=lambda d: d["seconds"])
                          if px <= args.numpy_max else None)
            if r["numpy"]:
                print(f"{px:.3g} px  numpy    {r['numpy']['seconds']:.2f} s "
                      f"(compute {r['numpy']['compute_s']:.2f} s, RSS {mib(r['numpy']['peak_rss'])} MiB)", flush=True)
            r["cluster"] = min((run_cluster(client, path, out, args.chunk) for _ in range(args.repeat)),
                               key=lambda d: d["seconds"])
            r["load_after"] = os.getloadavg()[0]
            c = r["cluster"]
            print(f"{px:.3g} px  cluster  {c['seconds']:.2f} s  = {r['gdaldem']['seconds'] / c['seconds']:.2f}x "
                  f"gdaldem; peak RSS/worker MiB {[mib(v) for v in c['peak_rss'].values()]}", flush=True)
            results.append(r)
    finally:
        client.close()
        cluster.close()

    meta = dict(
        date=time.strftime("%Y-%m-%d"), command="python benchmarks/bench_terrain.py " + " ".join(argv or sys.argv[1:]),
        machine=f"{psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, {platform.platform()}",
        versions=(f"gdaldem {subprocess.run(['gdaldem', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}, "
                  f"numpy {np.__version__}, dask {dask.__version__}, rasterio {rasterio.__version__}"),
        scheduler=args.scheduler, chunk=args.chunk, t_start=t_start, t_scale=t_scale, t_warm=t_warm, repeat=args.repeat, notes=[])
    (WORK / "results.json").write_text(json.dumps(dict(meta=meta, results=results), indent=1, default=str))
    if not args.no_doc:
        write_section(render(results, meta))
        print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
