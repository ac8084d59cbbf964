"""Terrain pipeline benchmark (issue 4): slope + hillshade + roughness over large lunar DEMs.

    .venv/bin/python benchmarks/bench_terrain.py [--sizes 1e7,1e8[,4e8]] [--scheduler local|gateway]
                                                  [--mode windows,overlap[,windows-tiff]] [--gateway-url URL --token T]

For each size it builds (once, cached in benchmarks/.work/, git-ignored) a global DEM by
upsampling the real LOLA LDEM_4 and adding fractal detail, written as a tiled float32
GeoTIFF in lunar equirectangular metres (IAU_2015:30110) so gdaldem can read it. Then it times,
in this one run:
  (a) gdaldem slope, hillshade, roughness (single-threaded, Debian gdal-bin), one after another;
  (b) lunarhub.science.terrain.terrain_pipeline on numpy, this process, one core: read, compute, write 3 GeoTIFFs;
  (c) terrain_pipeline on a 2-worker dask cluster (1 thread each), sampling every worker's RSS
      meanwhile, in one or more of three ways (--mode; default windows,overlap):
        windows: lunarhub.science.terrain.terrain_to_zarr(client=...): one independent task per chunk
                 reads the chunk plus its 1-pixel halo from the GeoTIFF, runs the fused kernel and
                 writes its chunk of each product into an uncompressed Zarr store that this process
                 created (metadata only) beforehand; only a pixel count comes back;
        overlap: the lazy route: rioxarray.open_rasterio(chunks=, lock=False) -> terrain_pipeline
                 (one dask overlap + one fused task per chunk) -> to_zarr, an uncompressed Zarr
                 store written chunk by chunk by the workers (no gather);
        windows-tiff: lunarhub.science.terrain.terrain_to_geotiff(client=...): the same tasks return their
                 products and this process writes them into uncompressed tiled GeoTIFFs.
--scheduler local: a LocalCluster of 2 single-threaded worker processes.
--scheduler gateway: a real lunarhub stack with dask-gateway (started here, as root, on free
  ports, like tests/integration/test_gateway.py; or an existing one with --gateway-url/--token),
  workers running as the user's system account (ru-scientist); cluster start and scale-to-2
  times are measured. The output dir (/tmp/lunarhub-bench-terrain) is world-writable for them.
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

from report import DOC, replace_section  # noqa: E402

from lunarhub.lunar import MOON_RADIUS_M as R  # noqa: E402
from lunarhub.science import terrain  # noqa: E402
from lunarhub.science.terrain_io import read_pds3_dem  # noqa: E402

LOLA = Path("/work/shared/data/lola/LDEM_4.LBL")
if not LOLA.exists():
    LOLA = ROOT / "tests/data/lola/LDEM_4.LBL"
WORK = ROOT / "benchmarks/.work"
OUT = Path("/tmp/lunarhub-bench-terrain")  # world-writable: gateway workers run as the user
HEADING = "## Terrain pipeline (issue 4)"
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


# --- the ways to run the pipeline ------------------------------------------------------------------

PRODUCTS = ("slope", "hillshade", "roughness")
MODES = ("windows", "overlap", "windows-tiff")


def _read_through(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def run_numpy(path: Path, out: Path) -> dict:
    t0 = time.perf_counter()
    dem = rioxarray.open_rasterio(path).squeeze("band", drop=True)
    dem = dem.load()
    t_read = time.perf_counter()
    ds = terrain.terrain_pipeline(dem)
    t_comp = time.perf_counter()
    rss = psutil.Process().memory_info().rss
    for name in PRODUCTS:
        ds[name].rio.to_raster(out / f"np_{name}.tif", tiled=True)
    t_end = time.perf_counter()
    return dict(seconds=t_end - t0, compute_s=t_comp - t_read, peak_rss=rss)


def run_gdaldem(path: Path, out: Path) -> dict:
    env = dict(os.environ, GDAL_NUM_THREADS="1")
    t0 = time.perf_counter()
    for cmd in PRODUCTS:
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


def _open_writable(path: Path) -> None:
    """Gateway workers run as the user, not as us: let them write into what we created."""
    for root, _dirs, files in os.walk(path):
        os.chmod(root, 0o777)
        for f in files:
            os.chmod(os.path.join(root, f), 0o666)


def run_cluster(client, path: Path, out: Path, chunk: int, mode: str) -> dict:
    client.run(__import__("gc").collect)
    baseline = RssSampler(client).sample()
    sampler = RssSampler(client)
    sampler.start()
    t0 = time.perf_counter()
    if mode == "overlap":
        store = out / "cluster_overlap.zarr"
        shutil.rmtree(store, ignore_errors=True)
        dem = rioxarray.open_rasterio(path, chunks={"y": chunk, "x": chunk}, lock=False).squeeze("band", drop=True)
        ds = terrain.terrain_pipeline(dem)
        encoding = {v: {"compressors": None, "chunks": (chunk, chunk)} for v in ds.data_vars}
        delayed = ds.to_zarr(store, mode="w", encoding=encoding, consolidated=False, compute=False)
        _open_writable(store)
        dask.compute(delayed)
    elif mode == "windows":
        # The library's memory-flat, worker-writes route: one independent task per chunk reads its
        # window + halo from the GeoTIFF, runs the fused kernel and writes its chunk of each product
        # into the uncompressed Zarr store this process created (metadata only) just before.
        old_umask = os.umask(0)  # gateway workers run as the user: let them write into the store's folders
        try:
            terrain.terrain_to_zarr(path, out / "cluster_windows.zarr", products=PRODUCTS, tile=chunk,
                                    client=client, compress=False, overwrite=True)
        finally:
            os.umask(old_umask)
    else:
        # windows-tiff: the same tasks return their products; this process writes them into
        # uncompressed tiled GeoTIFFs (like gdaldem's output) as they arrive.
        terrain.terrain_to_geotiff(path, out / "cluster_windows_tiff", products=PRODUCTS, tile=chunk,
                                   client=client, compress=None)
    seconds = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    return dict(seconds=seconds, peak_rss={w: int(v) for w, v in sampler.peak.items()},
                baseline_rss={w: int(v) for w, v in baseline.items()})


def check_outputs(out: Path, stem: str, modes: list[str]) -> dict:
    """The cluster's outputs equal the in-process numpy run and agree with gdaldem (interior, sampled)."""
    res = {}
    with rasterio.open(out / "gd_slope.tif") as f:
        h, w = f.shape
        win = rasterio.windows.Window(w // 3, h // 3, 512, 512)
        gd = f.read(1, window=win).astype(np.float64)
    for mode in modes:
        if mode == "windows-tiff":
            with rasterio.open(out / "cluster_windows_tiff" / f"{stem}_slope.tif") as f:
                mine = f.read(1, window=win)
        else:
            z = xr.open_zarr(out / f"cluster_{mode}.zarr", consolidated=False)
            # Read here, not on the cluster (the cluster client is the default scheduler).
            mine = z.slope[h // 3:h // 3 + 512, w // 3:w // 3 + 512].compute(scheduler="sync").values
        res[mode] = float(np.nanmax(np.abs(mine - gd)))
    return res


# --- clusters ----------------------------------------------------------------------------------------

class GatewayStack:
    """A lunarhub stack with the dask gateway, started for this run (or an existing one)."""

    def __init__(self, url: str | None, token: str | None, proxy: str | None, user: str):
        self.stack = self.tmp = None
        if url:
            if not token:
                sys.exit("--gateway-url needs --token (e.g. `lunarhub token ru-scientist`)")
            self.address, self.token, self.proxy = url.rstrip("/") + "/services/dask-gateway", token, proxy
            return
        if os.geteuid() != 0:
            sys.exit("--scheduler gateway starts a lunarhub stack whose workers run as the user's own "
                     "account: run as root (or pass --gateway-url/--token of a running stack)")
        sys.path.insert(0, str(ROOT / "tests"))
        from support.stack import make_stack, open_tmpdir

        self.tmp = open_tmpdir("bench-terrain")
        self.stack = make_stack(self.tmp, dask_gateway=True)
        t0 = time.perf_counter()
        self.stack.cli("up", timeout=240)
        self.up_s = time.perf_counter() - t0
        gw = self.stack.data["services"]["dask_gateway"]
        self.address = f"{self.stack.url}/services/dask-gateway"
        self.proxy = f"tcp://127.0.0.1:{gw['scheduler_proxy_port']}"
        self.token = self.stack.token(user)

    def gateway(self):
        from dask_gateway import Gateway, JupyterHubAuth

        return Gateway(address=self.address, proxy_address=self.proxy, auth=JupyterHubAuth(api_token=self.token))

    def close(self) -> None:
        if self.stack is not None:
            self.stack.cli("down", check=False, timeout=240)
            shutil.rmtree(self.tmp, ignore_errors=True)


def start_cluster(args):
    """(cluster, client, start s, scale-to-2 s, cleanup)."""
    if args.scheduler == "gateway":
        gs = GatewayStack(args.gateway_url, args.token, args.proxy_address, args.user)
        gw = gs.gateway()
        t0 = time.perf_counter()
        cluster = gw.new_cluster(worker_cores=1, worker_memory=args.worker_memory)
        t_start = time.perf_counter() - t0
        t1 = time.perf_counter()
        cluster.scale(2)
        client = cluster.get_client()
        client.wait_for_workers(2, timeout=180)
        t_scale = time.perf_counter() - t1
        # GDAL's block cache defaults to 5% of RAM per process; cap it before anything opens a file.
        client.run(os.environ.__setitem__, "GDAL_CACHEMAX", "64")

        def cleanup():
            client.close()
            cluster.shutdown()
            gs.close()
        return cluster, client, t_start, t_scale, cleanup
    from distributed import Client, LocalCluster
    # GDAL's block cache defaults to 5% of RAM per process and fills up as a worker reads
    # ever more tiles it never rereads; cap it so worker memory reflects the pipeline.
    os.environ.setdefault("GDAL_CACHEMAX", "64")
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=0, threads_per_worker=1, processes=True, dashboard_address=None,
                           memory_limit=f"{args.worker_memory}GiB")
    t_start = time.perf_counter() - t0
    t1 = time.perf_counter()
    cluster.scale(2)
    client = Client(cluster)
    client.wait_for_workers(2)
    t_scale = time.perf_counter() - t1

    def cleanup():
        client.close()
        cluster.close()
    return cluster, client, t_start, t_scale, cleanup


# --- reporting ---------------------------------------------------------------------------------

def mib(b: float) -> str:
    return f"{b / 2**20:,.0f}"


MODE_TEXT = {
    "windows": "`windows` = `terrain.terrain_to_zarr(client=...)`, one independent task per chunk that reads its "
               "chunk + 1-pixel halo, runs the fused kernel and writes its chunk of each product into an "
               "uncompressed float32 Zarr store created beforehand by the benchmark process (only a pixel count "
               "comes back)",
    "overlap": "`overlap` = the lazy route (`open_rasterio(chunks=, lock=False)` -> `terrain_pipeline` -> "
               "`to_zarr`, an uncompressed float32 Zarr store written chunk by chunk by the workers, no gather)",
    "windows-tiff": "`windows-tiff` = `terrain.terrain_to_geotiff(client=...)`, the same tasks return their "
                    "products, written by the benchmark process into uncompressed tiled float32 GeoTIFFs as "
                    "they arrive",
}


def render(results: list[dict], meta: dict) -> str:
    modes = meta["modes"]
    sched = ("dask-gateway through a lunarhub stack (LocalBackend, workers as ru-scientist, 1 core / "
             f"{meta['worker_memory']:g} GiB each)" if meta["scheduler"] == "gateway"
             else "LocalCluster (2 worker processes x 1 thread)")
    lines = [HEADING, "",
             f"Measured {meta['date']} on {meta['machine']}; {meta['versions']}. "
             f"Run: `{meta['command']}`. Cluster: {sched}, dask chunks {meta['chunk']}x{meta['chunk']}.",
             "",
             "DEM: global LOLA LDEM_4 bilinearly upsampled plus fBm value-noise detail (Hurst 0.8), float32 "
             "tiled GeoTIFF in IAU_2015:30110, built at run time in `benchmarks/.work/` (not committed). "
             "Pipeline = slope + hillshade + 3x3 roughness, read from disk and written to disk. gdaldem runs the "
             "three commands one after another (1 thread, GeoTIFF out, hillshade as Byte). lunarhub runs "
             "`terrain.terrain_pipeline` (one fused numba pass per block, Horn gradient once per pixel): "
             "'1 core' in this process on the whole DEM in memory (GeoTIFFs out); on the cluster: "
             + "; ".join(MODE_TEXT[m] for m in modes)
             + ". Times are wall-clock seconds including I/O; each contender starts with the DEM in the page cache.",
             "",
             f"Cluster start: {meta['t_start']:.2f} s; scale to 2 workers (until both connected): "
             f"{meta['t_scale']:.2f} s{meta.get('stack_note', '')}; first (untimed, warm-up: imports, numba "
             f"compile) pipeline run on the smallest DEM: {meta['t_warm']:.2f} s.",
             "",
             "| pixels | shape | gdaldem 1 thread s (Mpx/s) | lunarhub 1 core s (Mpx/s) | "
             + " | ".join(f"2 workers `{m}` s (Mpx/s) | `{m}` / gdaldem | `{m}` peak RSS per worker MiB" for m in modes)
             + " | load avg |",
             "|---:|---|---:|---:|" + "---:|---:|---:|" * len(modes) + "---|"]
    for r in results:
        px = r["pixels"]

        def cell(d, px=px):
            return f"{d['seconds']:.2f} ({px / d['seconds'] / 1e6:.1f})" if d else "not run"

        row = f"| {px:.3g} | {r['shape'][0]}x{r['shape'][1]} | {cell(r['gdaldem'])} | {cell(r['numpy'])} |"
        for m in modes:
            c = r["cluster"][m]
            row += (f" {cell(c)} | **{r['gdaldem']['seconds'] / c['seconds']:.2f}x** | "
                    f"{' / '.join(mib(v) for v in c['peak_rss'].values())} |")
        lines.append(row + f" {r['load_before']:.1f}-{r['load_after']:.1f} |")
    idle = " / ".join(mib(v) for v in results[0]["cluster"][modes[0]]["baseline_rss"].values())
    lines += ["", f"Idle worker RSS before a run: {idle} MiB. Max |slope - gdaldem| on a 512x512 interior "
              "sample of each cluster output: "
              + "; ".join(f"{r['pixels']:.3g}: " + ", ".join(f"{m} {v:.1e} deg" for m, v in r["check"].items())
                          for r in results) + "."]
    for m in modes:
        big = [r["gdaldem"]["seconds"] / r["cluster"][m]["seconds"] for r in results if r["pixels"] >= 0.99e8]
        worst = min(big) if big else float("nan")
        peak = [max(r["cluster"][m]["peak_rss"].values()) for r in results]
        lines += ["", f"**Verdict (`{m}`, this run).** Goal (2 workers >= 1.5x gdaldem at >= 1e8 px): "
                  f"{'met' if worst >= 1.5 else 'not met'} (worst case over those sizes {worst:.2f}x). "
                  f"Goal (memory per worker flat): {'met' if peak[-1] <= 1.25 * peak[0] else 'not met'} "
                  f"(peak {mib(peak[0])} -> {mib(peak[-1])} MiB from {results[0]['pixels']:.3g} to "
                  f"{results[-1]['pixels']:.3g} px)."]
    for note in meta["notes"]:
        lines += ["", note]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1e7,1e8", help="DEM sizes in pixels, comma-separated (e.g. 1e7,1e8,4e8)")
    ap.add_argument("--scheduler", choices=("local", "gateway"), default="local")
    ap.add_argument("--mode", default="windows,overlap", help="cluster route(s), comma-separated: windows, overlap, windows-tiff")
    ap.add_argument("--gateway-url", help="hub URL of a running lunarhub stack (default: start one)")
    ap.add_argument("--token", help="JupyterHub API token of --user for --gateway-url")
    ap.add_argument("--proxy-address", help="gateway scheduler proxy, e.g. tcp://127.0.0.1:8786 (with --gateway-url)")
    ap.add_argument("--user", default="ru-scientist", help="whose cluster (gateway)")
    ap.add_argument("--worker-memory", type=float, default=2.0, help="GiB per worker (the gateway's default is 2)")
    ap.add_argument("--chunk", type=int, default=2048, help="dask chunk edge in pixels")
    ap.add_argument("--numpy-max", type=float, default=1.1e8, help="largest size also run on numpy in memory")
    ap.add_argument("--repeat", type=int, default=1, help="runs per contender and size; the fastest is kept")
    ap.add_argument("--note", action="append", default=[], help="a sentence for the doc section (repeatable)")
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--render-only", action="store_true", help="rewrite the doc section from .work/results.json")
    args = ap.parse_args(argv)
    if args.render_only:
        saved = json.loads((WORK / "results.json").read_text())
        saved["meta"]["notes"] = saved["meta"].get("notes", []) + args.note
        replace_section(render(saved["results"], saved["meta"]))
        return
    if shutil.which("gdaldem") is None:
        sys.exit("gdaldem not found: apt-get install gdal-bin")
    modes = [m for m in args.mode.split(",") if m]
    if not modes or set(modes) - set(MODES) or len(set(modes)) != len(modes):
        sys.exit(f"--mode must be one or more of {', '.join(MODES)} (comma-separated, each once), got {args.mode!r}")
    sizes = [float(s) for s in args.sizes.split(",")]
    dask.config.set({"distributed.worker.daemon": False})

    print("building DEMs", flush=True)
    paths = [build_dem(s, args.chunk) for s in sizes]
    OUT.mkdir(exist_ok=True)
    os.chmod(OUT, 0o777)
    cluster, client, t_start, t_scale, cleanup = start_cluster(args)
    print(f"cluster start {t_start:.2f} s, scale to 2 {t_scale:.2f} s", flush=True)
    results = []
    try:
        unreadable = {w: ok for w, ok in client.run(os.access, str(paths[-1]), os.R_OK).items() if not ok}
        if unreadable:
            sys.exit(f"workers {list(unreadable)} cannot read {paths[-1]}: make it readable for {args.user}")
        # Untimed warm-up: the first task on a fresh worker imports lunarhub, pyproj, rasterio, zarr
        # and compiles (or loads) the numba kernel; that is start-up cost, not throughput.
        warm = OUT / "warmup"
        warm.mkdir(exist_ok=True)
        os.chmod(warm, 0o777)
        t_warm = sum(run_cluster(client, paths[0], warm, args.chunk, m)["seconds"] for m in modes)
        terrain.terrain_pipeline(rioxarray.open_rasterio(paths[0]).squeeze("band", drop=True)[:64, :64].load())
        for path in paths:
            out = OUT / f"out_{path.stem}"
            out.mkdir(exist_ok=True)
            os.chmod(out, 0o777)
            with rasterio.open(path) as src:
                shape = src.shape
            px = shape[0] * shape[1]
            r = dict(pixels=px, shape=shape, cluster={})
            _read_through(path)  # every contender starts with the DEM in the page cache
            r["load_before"] = os.getloadavg()[0]
            r["gdaldem"] = min((run_gdaldem(path, out) for _ in range(args.repeat)), key=lambda d: d["seconds"])
            print(f"{px:.3g} px  gdaldem  {r['gdaldem']['seconds']:.2f} s", flush=True)
            r["numpy"] = (min((run_numpy(path, out) for _ in range(args.repeat)), key=lambda d: d["seconds"])
                          if px <= args.numpy_max else None)
            if r["numpy"]:
                print(f"{px:.3g} px  1 core   {r['numpy']['seconds']:.2f} s "
                      f"(compute {r['numpy']['compute_s']:.2f} s, RSS {mib(r['numpy']['peak_rss'])} MiB)", flush=True)
            for m in modes:
                c = r["cluster"][m] = min((run_cluster(client, path, out, args.chunk, m) for _ in range(args.repeat)),
                                          key=lambda d: d["seconds"])
                print(f"{px:.3g} px  {m:8s} {c['seconds']:.2f} s  = {r['gdaldem']['seconds'] / c['seconds']:.2f}x "
                      f"gdaldem; peak RSS/worker MiB {[mib(v) for v in c['peak_rss'].values()]}", flush=True)
            r["load_after"] = os.getloadavg()[0]
            r["check"] = check_outputs(out, path.stem, modes)
            results.append(r)
            for f in out.glob("*.tif"):
                f.unlink()
            for d in ("cluster_windows.zarr", "cluster_windows_tiff", "cluster_overlap.zarr"):
                shutil.rmtree(out / d, ignore_errors=True)
    finally:
        cleanup()

    import numba

    meta = dict(
        date=time.strftime("%Y-%m-%d"), command="python benchmarks/bench_terrain.py " + " ".join(argv or sys.argv[1:]),
        machine=f"{psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, {platform.platform()}",
        versions=(f"gdaldem {subprocess.run(['gdaldem', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}, "
                  f"numpy {np.__version__}, numba {numba.__version__}, dask {dask.__version__}, "
                  f"rasterio {rasterio.__version__}"),
        scheduler=args.scheduler, modes=modes, worker_memory=args.worker_memory, chunk=args.chunk, t_start=t_start,
        t_scale=t_scale, t_warm=t_warm, repeat=args.repeat,
        notes=[f"Best of {args.repeat} run(s) per cell. The load-average column is the 1-minute load before/after "
               "each size, on 2 cores shared with other engineers' processes.", *args.note])
    (WORK / "results.json").write_text(json.dumps(dict(meta=meta, results=results), indent=1, default=str))
    if not args.no_doc:
        replace_section(render(results, meta))
        print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
