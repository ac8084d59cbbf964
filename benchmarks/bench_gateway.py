"""Cluster start and scale-to-2 times through the hub (issue 4).

Starts its own lunarhub stack with the gateway (free ports, temp state, as root:
workers run as the user's account), times `Gateway.new_cluster()` and
`cluster.scale(2)` until both workers are connected, and writes the
"## Dask gateway (issue 4)" section of docs/benchmarks.md (only that section).

    sudo .venv/bin/python benchmarks/bench_gateway.py --runs 5
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

from report import DOC, replace_section

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Dask gateway (issue 4)"


def measure(runs: int, user: str = "ru-scientist") -> dict[str, list[float]]:
    sys.path.insert(0, str(ROOT / "tests"))
    from dask_gateway import Gateway, JupyterHubAuth
    from support.stack import make_stack, open_tmpdir

    tmp = open_tmpdir("bench-gateway")
    stack = make_stack(tmp, dask_gateway=True)
    stack.cli("up", timeout=240)
    out: dict[str, list[float]] = {"start": [], "scale2": []}
    try:
        gw_cfg = stack.data["services"]["dask_gateway"]
        gw = Gateway(address=f"{stack.url}/services/dask-gateway",
                     proxy_address=f"tcp://127.0.0.1:{gw_cfg['scheduler_proxy_port']}",
                     auth=JupyterHubAuth(api_token=stack.token(user)))
        for _ in range(runs + 1):  # the first run warms imports and page cache; dropped
            t0 = time.perf_counter()
            cluster = gw.new_cluster()
            t1 = time.perf_counter()
            cluster.scale(2)
            client = cluster.get_client()
            client.wait_for_workers(2, timeout=120)
            t2 = time.perf_counter()
            out["start"].append(t1 - t0)
            out["scale2"].append(t2 - t1)
            client.close()
            cluster.shutdown()
            gc.collect()
    finally:
        stack.cli("down", check=False, timeout=240)
        shutil.rmtree(tmp, ignore_errors=True)
    return {k: v[1:] for k, v in out.items()}


def section(results: dict[str, list[float]]) -> str:
    import dask_gateway_server
    import distributed

    def row(name: str, values: list[float]) -> str:
        return (f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |")

    load = os.getloadavg()[0]
    return "\n".join([
        HEADING,
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `benchmarks/bench_gateway.py` on {os.cpu_count()} cores, "
        f"{platform.platform()}; dask-gateway-server {dask_gateway_server.__version__}, "
        f"distributed {distributed.__version__}. Through the hub's proxy "
        "(`/services/dask-gateway`, JupyterHub token auth), LocalBackend with workers as the user's "
        f"system account (ru-scientist), {len(results['start'])} runs after one warm-up; "
        f"1-minute load average at the end {load:.1f}.",
        "",
        "| step | median s | min s | max s |",
        "|---|---:|---:|---:|",
        row("`Gateway.new_cluster()` (scheduler up, cluster RUNNING)", results["start"]),
        row("`cluster.scale(2)` until 2 workers connected", results["scale2"]),
        "",
        "Scale-to-2 covers the scale request through the hub, the scheduler's heartbeat asking the "
        "gateway for workers, two `dask worker` processes starting as the user and registering "
        "with the scheduler over TLS.",
        "",
    ])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--no-write", action="store_true", help="print, do not touch docs/benchmarks.md")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("run as root: workers run as the user's own system account", file=sys.stderr)
        return 2
    text = section(measure(args.runs))
    print(text)
    if not args.no_write:
        replace_section(text)
        print(f"updated {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
