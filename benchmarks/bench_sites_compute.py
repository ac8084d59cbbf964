"""Computing at the data's site vs pulling the data to the hub's workers (issue 14).

Starts its own lunarhub stack with the ru site's Slurm cluster (free ports, temp state, as root) and,
in one run, for a terrain statistic (slope histogram, 30 bins) over the LOLA global DEM at site ru:

- **at-site**: `lunarhub.at_site(entry, fn)` on a cluster of ru's own gateway; the worker reads
  the file by local path;
- **pulled**: the same function on a cluster of the hub's gateway (`local` backend, outside the
  site); its worker reads the file from the site's nginx.

Bytes crossing the site boundary = what the site's nginx sent to the user in the window (its
access log) + the result's pickled size (what the site's cluster returns). Also Slurm vs local
backend: `new_cluster()` and `scale(2)` until both workers are connected. Writes the
"## Computing at the site (issue 14)" section of docs/benchmarks.md.

    flock /tmp/lunarhub-stack.lock .venv/bin/python benchmarks/bench_sites_compute.py --runs 3
"""

from __future__ import annotations

import argparse
import gc
import pickle
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from report import write_section

ROOT = Path(__file__).resolve().parents[1]
USER = "ru-scientist"
ENTRY = "lola_global_dem"


def _histogram() -> Any:
    def slope_histogram(da: Any) -> Any:  # nested: travels by value to the workers
        import numpy as np

        z = np.asarray(da.values[0], dtype="float64")
        gy, gx = np.gradient(z, 7580.0)
        slope = np.degrees(np.arctan(np.hypot(gx, gy)))
        counts, _ = np.histogram(slope[np.isfinite(slope)], bins=30, range=(0, 30))
        return counts

    return slope_histogram


def _timed_cluster(gw: Any) -> tuple[Any, float, float]:
    t0 = time.perf_counter()
    cluster = gw.new_cluster()
    t1 = time.perf_counter()
    cluster.scale(2)
    client = cluster.get_client()
    client.wait_for_workers(2, timeout=180)
    return cluster, t1 - t0, time.perf_counter() - t1


def measure(runs: int) -> dict[str, list[float]]:
    sys.path.insert(0, str(ROOT / "tests"))
    from dask_gateway import Gateway, JupyterHubAuth
    from support.stack import make_stack, open_tmpdir

    from lunarhub.compute import placement, site_gateway
    from lunarhub.data import catalog, sites

    tmp = open_tmpdir("bench-sites")
    stack = make_stack(tmp, dask_gateway=True, slurm=True)
    up = stack.cli("up", timeout=300, check=False)
    assert up.returncode == 0, up.stderr
    out: dict[str, list[float]] = {k: [] for k in (
        "site_wall", "site_nginx", "site_result", "pull_wall", "pull_nginx", "pull_result",
        "slurm_start", "slurm_scale2", "local_start", "local_scale2")}
    try:
        d = stack.deployment()
        token = stack.token(USER)
        env = site_gateway.spawn_environment(d, USER)
        ru = Gateway(address=env["LUNARHUB_GATEWAY_RU_ADDRESS"], proxy_address=env["LUNARHUB_GATEWAY_RU_PROXY_ADDRESS"],
                     auth=JupyterHubAuth(api_token=token))
        gw = stack.data["services"]["dask_gateway"]
        hub = Gateway(address=f"{stack.url}/services/dask-gateway",
                      proxy_address=f"tcp://127.0.0.1:{gw['scheduler_proxy_port']}", auth=JupyterHubAuth(api_token=token))
        entry = catalog.open_catalog(environ=sites.credentials_for(d, USER))["ru"][ENTRY]
        fn = _histogram()
        for i in range(runs + 1):  # the first round warms imports and caches; dropped
            for route, gateway in (("site", ru), ("pull", hub)):
                cluster, start, scale2 = _timed_cluster(gateway)
                try:
                    before = len(sites.read_log(d, "ru"))
                    t0 = time.perf_counter()
                    result = placement.at_site(entry, fn, cluster=cluster)
                    wall = time.perf_counter() - t0
                    served = sum(r.get("bytes", 0) for r in sites.read_log(d, "ru")[before:] if r.get("user") == USER)
                finally:
                    cluster.shutdown()
                    gc.collect()
                if i == 0:
                    continue
                out[f"{route}_wall"].append(wall)
                out[f"{route}_nginx"].append(served)
                out[f"{route}_result"].append(len(pickle.dumps(result)))
                key = "slurm" if route == "site" else "local"
                out[f"{key}_start"].append(start)
                out[f"{key}_scale2"].append(scale2)
    finally:
        stack.cli("down", check=False, timeout=240)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def render(m: dict[str, list[float]], runs: int) -> str:
    med = {k: statistics.median(v) for k, v in m.items()}
    site_ratio = (med["site_nginx"] + med["site_result"]) / med["site_result"]
    pull_ratio = (med["pull_nginx"] + med["pull_result"]) / med["pull_result"]
    return f"""Command: `flock /tmp/lunarhub-stack.lock .venv/bin/python benchmarks/bench_sites_compute.py --runs {runs}`
(medians of {runs} runs after one warm-up, one stack, 2 cores). Statistic: slope histogram (30 bins) of the
LOLA global DEM (`ru/{ENTRY}`, 1440 x 720 px) via `lunarhub.at_site`; "at-site": a cluster of ru's own
gateway (Slurm), the worker reads the file by local path; "pulled": a cluster of the hub's gateway, its
worker reads the file from ru's nginx. Crossing = bytes nginx sent to the user + the pickled result.

| route | nginx bytes to the user | result bytes | crossing ÷ result | wall (task) |
|---|---|---|---|---|
| at-site (ru Slurm) | {med['site_nginx']:,.0f} | {med['site_result']:,.0f} | **{site_ratio:.2f}** | {med['site_wall']:.2f} s |
| pulled (hub gateway) | {med['pull_nginx']:,.0f} | {med['pull_result']:,.0f} | **{pull_ratio:,.0f}** | {med['pull_wall']:.2f} s |

| cluster | `new_cluster()` | `scale(2)` until 2 workers | Slurm ÷ local |
|---|---|---|---|
| ru Slurm backend | {med['slurm_start']:.2f} s | {med['slurm_scale2']:.2f} s | {med['slurm_start'] / med['local_start']:.2f}× / {med['slurm_scale2'] / med['local_scale2']:.2f}× |
| hub local backend | {med['local_start']:.2f} s | {med['local_scale2']:.2f} s | 1 |

Both routes run on this one machine, so the wall times show the cost of the route, not of a
cross-border link: no `tc netem` shaping was measured yet (see docs/data-sites.md).
"""


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    body = render(measure(args.runs), args.runs)
    print(body)
    write_section("Computing at the site (issue 14)", body)


if __name__ == "__main__":
    main()
