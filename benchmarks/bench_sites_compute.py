"""Computing at the data's site vs pulling the data to the hub's workers (issue 14).

Starts its own lunarhub stack with the ru site's Slurm cluster (free ports, temp state, as root) and,
in one run, for a terrain statistic (slope histogram, 30 bins) over the LOLA global DEM at site ru:

- **at-site**: `lunarhub.at_site(entry, fn)` on a cluster of ru's own gateway (Slurm jobs); the worker
  reads the file by local path, only the histogram crosses to the client;
- **pulled**: the same function on a cluster of the hub's gateway (`local` backend, outside the
  site); its worker reads the file from ru's nginx.

Each route runs over loopback ("direct") and over a link shaped like a cross-border one (60 ms RTT,
200 Mbit/s): a veth pair into a network namespace this benchmark creates, with the kernel's `tbf`
limiting the rate each way. What crosses the border goes through it: for "pulled" the worker's
reads from ru's nginx, for "at-site" the client's connection to ru's scheduler (the gateway proxy).
The delay comes from the forwarder in the namespace when the kernel has no `netem` qdisc (this
machine's kernel has neither `sch_netem` nor a module directory to load it from): every chunk waits
RTT/2 in each direction. The RTT seen through the link is measured and printed.

Bytes crossing the site boundary = what the site's nginx sent to the user in the window (its access
log) + the result's pickled size (what the site's cluster returns). Also Slurm vs local backend:
`new_cluster()` and `scale(2)` until both workers are connected. Writes the "## Compute at the site
(issue 14)" section of docs/benchmarks.md.

    flock /tmp/lunarhub-stack.lock .venv/bin/python benchmarks/bench_sites_compute.py --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import pickle
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from report import write_section

ROOT = Path(__file__).resolve().parents[1]
USER = "ru-scientist"
ENTRY = "lola_global_dem"
RTT_MS = 60.0
RATE_MBIT = 200


def _histogram() -> Any:
    def slope_histogram(da: Any) -> Any:  # nested: travels by value to the workers
        import numpy as np

        z = np.asarray(da.values[0], dtype="float64")
        gy, gx = np.gradient(z, 7580.0)
        slope = np.degrees(np.arctan(np.hypot(gx, gy)))
        counts, _ = np.histogram(slope[np.isfinite(slope)], bins=30, range=(0, 30))
        return counts

    return slope_histogram


# ------------------------------------------------------------------ the shaped link

# Bytes through the link per shaped port: [towards the site, from the site], counted where the
# link ends at the site's side (the root namespace's forwarder).
COUNTS: dict[int, list[int]] = {}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float,
                count: tuple[list[int], int] | None = None) -> None:
    """Copy one direction, each chunk sent `delay` s after it arrived (a delay line: order kept)."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.ensure_future(send())
    try:
        while True:
            data = await reader.read(65536)
            if count is not None:
                count[0][count[1]] += len(data)
            queue.put_nowait((time.monotonic() + delay, data))
            if not data:
                break
        await sender
    except (ConnectionError, OSError):
        sender.cancel()


async def _splice(r1: asyncio.StreamReader, w1: asyncio.StreamWriter, r2: asyncio.StreamReader,
                  w2: asyncio.StreamWriter, delay: float, count: list[int] | None = None) -> None:
    try:
        await asyncio.gather(_pipe(r1, w2, delay, (count, 0) if count is not None else None),
                             _pipe(r2, w1, delay, (count, 1) if count is not None else None))
    finally:
        for w in (w1, w2):
            w.close()


async def _forward(listen: list[tuple[str, int, str]], delay: float) -> None:
    """In the namespace: TCP (host, port) -> Unix socket path, `delay` s each way."""

    def handler(path: str) -> Any:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            r2, w2 = await asyncio.open_unix_connection(path)
            await _splice(r, w, r2, w2, delay)

        return handle

    servers = [await asyncio.start_server(handler(path), host, port) for host, port, path in listen]
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def _unix_to_tcp(paths: dict[str, int]) -> None:
    """In the root namespace (a thread): Unix socket path -> 127.0.0.1:port, no delay."""

    async def main() -> None:
        def handler(port: int) -> Any:
            async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                r2, w2 = await asyncio.open_connection("127.0.0.1", port)
                await _splice(r, w, r2, w2, 0.0, COUNTS.setdefault(port, [0, 0]))

            return handle

        servers = [await asyncio.start_unix_server(handler(port), path) for path, port in paths.items()]
        await asyncio.gather(*(s.serve_forever() for s in servers))

    asyncio.run(main())


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")


def _tc(netns: str | None, dev: str, *qdisc: str) -> subprocess.CompletedProcess:
    cmd = ["tc", "qdisc", "add", "dev", dev, "root", *qdisc]
    return subprocess.run(["ip", "netns", "exec", netns, *cmd] if netns else cmd, capture_output=True, text=True)


@contextlib.contextmanager
def shaped_link(ports: list[int], rtt_ms: float = RTT_MS, rate_mbit: int = RATE_MBIT) -> Iterator[dict[str, Any]]:
    """Each 127.0.0.1 port in `ports` also reachable at <addr>:<port> across a shaped veth link.

    Yields {"addr", "ports": {port: shaped port}, "delay": "netem"|"forwarder", "rate": qdisc}."""
    if not (shutil.which("ip") and shutil.which("tc")):
        raise RuntimeError("the shaped link needs `ip` and `tc` (Debian's iproute2)")
    tag = f"lhb{os.getpid() % 100000}"
    ns, host_dev, ns_dev = tag, f"{tag}h", f"{tag}s"
    net = f"10.231.{os.getpid() % 250}"
    work = Path(tempfile.mkdtemp(prefix="lunarhub-link-"))  # root's, 0700: only root's forwarders
    proc = None
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", host_dev, "type", "veth", "peer", "name", ns_dev)
        _ip("link", "set", ns_dev, "netns", ns)
        _ip("addr", "add", f"{net}.1/30", "dev", host_dev)
        _ip("link", "set", host_dev, "up")
        _ip("netns", "exec", ns, "ip", "addr", "add", f"{net}.2/30", "dev", ns_dev)
        _ip("netns", "exec", ns, "ip", "link", "set", ns_dev, "up")
        _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        half = f"{rtt_ms / 2:g}ms"
        netem = [_tc(None, host_dev, "netem", "delay", half, "rate", f"{rate_mbit}mbit"),
                 _tc(ns, ns_dev, "netem", "delay", half, "rate", f"{rate_mbit}mbit")]
        if all(r.returncode == 0 for r in netem):
            how, delay = "netem", 0.0
        else:
            why = next(r.stderr.strip() for r in netem if r.returncode)
            for r, (netns, dev) in zip(netem, ((None, host_dev), (ns, ns_dev)), strict=True):
                if r.returncode == 0:
                    subprocess.run([*(["ip", "netns", "exec", netns] if netns else []), "tc", "qdisc", "del",
                                    "dev", dev, "root"], capture_output=True)
            # A token bucket of 200 Mbit/s; the burst a few ms of the rate, as on a real link.
            for netns, dev in ((None, host_dev), (ns, ns_dev)):
                r = _tc(netns, dev, "tbf", "rate", f"{rate_mbit}mbit", "burst", "128kb", "latency", "100ms")
                if r.returncode:
                    raise RuntimeError(f"tc tbf on {dev}: {r.stderr.strip()}")
            how = (f"a delay line in the namespace's forwarder, RTT/2 each way: this kernel ({platform.release()}) "
                   f"has no `netem` qdisc (`tc qdisc add … netem`: {why}) and no module directory to load it from")
            delay = rtt_ms / 2000
        paths = {str(work / f"{p}.sock"): p for p in ports}
        threading.Thread(target=_unix_to_tcp, args=(paths,), daemon=True).start()
        deadline = time.monotonic() + 10
        while not all(Path(p).exists() for p in paths) and time.monotonic() < deadline:
            time.sleep(0.05)
        shaped = {p: _free_port() for p in ports}
        spec = [f"{net}.2:{shaped[p]}={path}" for path, p in paths.items()]
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, __file__, "--forward", f"{delay}", *spec],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", "the forwarder did not start"
        yield {"addr": f"{net}.2", "ports": shaped, "delay": how, "rate": f"tbf {rate_mbit} Mbit/s" if delay else "netem"}
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        subprocess.run(["ip", "link", "del", host_dev], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rtt_ms(host: str, port: int, auth: str, n: int = 5) -> float:
    """Median time of a 1-byte ranged GET on a kept-alive connection: one round trip."""
    import requests

    with requests.Session() as s:
        url = f"http://{host}:{port}/"
        s.get(url, headers={"Authorization": auth}, timeout=30)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            s.get(url, headers={"Authorization": auth, "Range": "bytes=0-0"}, timeout=30)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


# ------------------------------------------------------------------ the measurement

def _timed_cluster(gw: Any) -> tuple[Any, float, float]:
    t0 = time.perf_counter()
    cluster = gw.new_cluster()
    t1 = time.perf_counter()
    cluster.scale(2)
    client = cluster.get_client()
    client.wait_for_workers(2, timeout=180)
    return cluster, t1 - t0, time.perf_counter() - t1


def measure(runs: int) -> tuple[dict[str, list[float]], dict[str, Any]]:
    sys.path.insert(0, str(ROOT / "tests"))
    from dask_gateway import Gateway, JupyterHubAuth
    from support.stack import make_stack, open_tmpdir

    from lunarhub.compute import placement, site_gateway
    from lunarhub.data import catalog, sites

    tmp = open_tmpdir("bench-sites")
    stack = make_stack(tmp, dask_gateway=True, slurm=True)
    up = stack.cli("up", timeout=300, check=False)
    assert up.returncode == 0, up.stdout + up.stderr
    out: dict[str, list[float]] = {}
    info: dict[str, Any] = {}

    def add(key: str, value: float) -> None:
        out.setdefault(key, []).append(value)

    try:
        d = stack.deployment()
        token = stack.token(USER)
        env = site_gateway.spawn_environment(d, USER)
        ru_proxy = int(env["LUNARHUB_GATEWAY_RU_PROXY_ADDRESS"].rsplit(":", 1)[1])
        creds = sites.credentials_for(d, USER)
        p = sites.env_prefix("ru")
        nginx = int(creds[f"{p}_URL"].split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
        gw = stack.data["services"]["dask_gateway"]
        fn = _histogram()

        def gateways(proxy: str) -> dict[str, Any]:
            return {
                "site": Gateway(address=env["LUNARHUB_GATEWAY_RU_ADDRESS"], proxy_address=proxy,
                                auth=JupyterHubAuth(api_token=token)),
                "pull": Gateway(address=f"{stack.url}/services/dask-gateway",
                                proxy_address=f"tcp://127.0.0.1:{gw['scheduler_proxy_port']}",
                                auth=JupyterHubAuth(api_token=token))}

        def entry(site_url: str) -> Any:
            return catalog.open_catalog(environ={**creds, f"{p}_URL": site_url})["ru"][ENTRY]

        def link_bytes() -> tuple[int, int]:
            return sum(c[0] for c in COUNTS.values()), sum(c[1] for c in COUNTS.values())

        def one(link: str, route: str, gateway: Any, e: Any, keep: bool) -> None:
            cluster, start, scale2 = _timed_cluster(gateway)
            try:
                before = len(sites.read_log(d, "ru"))
                to0, from0 = link_bytes()
                t0 = time.perf_counter()
                result = placement.at_site(e, fn, cluster=cluster)
                wall = time.perf_counter() - t0
                to1, from1 = link_bytes()
                served = sum(r.get("bytes", 0) for r in sites.read_log(d, "ru")[before:] if r.get("user") == USER)
            finally:
                cluster.shutdown()
                gc.collect()
            assert int(result.sum()) > 900_000, result  # nearly every pixel counted
            if not keep:
                return
            add(f"{link}_{route}_wall", wall)
            add(f"{link}_{route}_nginx", served)
            add(f"{link}_{route}_result", len(pickle.dumps(result)))
            if link == "shaped":
                add(f"{route}_link_from", from1 - from0)
                add(f"{route}_link_to", to1 - to0)
            if link == "direct":
                kind = "slurm" if route == "site" else "local"
                add(f"{kind}_start", start)
                add(f"{kind}_scale2", scale2)

        direct = gateways(env["LUNARHUB_GATEWAY_RU_PROXY_ADDRESS"])
        direct_entry = entry(creds[f"{p}_URL"])
        with shaped_link([ru_proxy, nginx]) as link:
            shaped = gateways(f"tcp://{link['addr']}:{link['ports'][ru_proxy]}")
            shaped_entry = entry(f"http://{link['addr']}:{link['ports'][nginx]}")
            info.update(link)
            info["rtt_direct_ms"] = _rtt_ms("127.0.0.1", nginx, creds[f"{p}_AUTH"])
            info["rtt_shaped_ms"] = _rtt_ms(link["addr"], link["ports"][nginx], creds[f"{p}_AUTH"])
            for i in range(runs + 1):  # round 0 warms imports and caches: dropped
                for route in ("site", "pull"):  # interleaved, so a slow minute hits both
                    one("direct", route, direct[route], direct_entry, i > 0)
                    one("shaped", route, shaped[route], shaped_entry, i > 0)
    finally:
        stack.cli("down", check=False, timeout=240)
        shutil.rmtree(tmp, ignore_errors=True)
    return out, info


def render(m: dict[str, list[float]], info: dict[str, Any], runs: int) -> str:
    med = {k: statistics.median(v) for k, v in m.items()}

    def ratio(link: str, route: str) -> float:
        return (med[f"{link}_{route}_nginx"] + med[f"{link}_{route}_result"]) / med[f"{link}_{route}_result"]

    rows = []
    for link in ("direct", "shaped"):
        for route, name in (("site", "at-site (ru Slurm)"), ("pull", "pulled (hub gateway)")):
            rows.append(f"| {link} | {name} | {med[f'{link}_{route}_nginx']:,.0f} | {med[f'{link}_{route}_result']:,.0f} "
                        f"| **{ratio(link, route):,.2f}** | {med[f'{link}_{route}_wall']:.2f} s |")
    speed = {link: med[f"{link}_pull_wall"] / med[f"{link}_site_wall"] for link in ("direct", "shaped")}
    return f"""Command: `flock /tmp/lunarhub-stack.lock .venv/bin/python benchmarks/bench_sites_compute.py --runs {runs}`
(medians of {runs} interleaved runs after one warm-up, one stack with the ru site's Slurm cluster, 2 cores).
Statistic: slope histogram (30 bins) of the LOLA global DEM (`ru/{ENTRY}`, 1440 x 720 px float32: 4.1 MB in
memory, a 2.2 MB COG with overviews) via `lunarhub.at_site`. "at-site": a cluster of ru's own gateway (Slurm jobs), the worker
reads the file by local path; "pulled": a cluster of the hub's gateway, its worker reads the file from
ru's nginx. Crossing = bytes ru's nginx sent to the user + the pickled result. Wall = the `at_site` call
on a running cluster with 2 workers (connect, submit, read, reduce, result).

"shaped": what crosses the border goes over a veth pair into a network namespace the benchmark
creates, {info['rate']} each way (the kernel's token bucket on both veth ends), RTT {RTT_MS:g} ms; the delay
is {info['delay']}. Measured RTT of a
1-byte HTTP request to ru's nginx: {info['rtt_direct_ms']:.1f} ms direct, **{info['rtt_shaped_ms']:.1f} ms
shaped**. Shaped at-site: the client's connection to ru's scheduler crosses the link; shaped pulled: the
hub worker's reads from ru's nginx do. The gateway's HTTP API (`new_cluster`, `scale`) is not routed over it.

| link | route | nginx bytes to the user | result bytes | crossing ÷ result | wall |
|---|---|---|---|---|---|
{chr(10).join(rows)}

Everything that crossed the shaped link during the `at_site` call, counted at its site end (dask's
protocol, TLS and HTTP included; the cluster was started and its client connected before):

| route | from the site | towards the site | from the site ÷ result |
|---|---|---|---|
| at-site (ru Slurm) | {med['site_link_from']:,.0f} | {med['site_link_to']:,.0f} | **{med['site_link_from'] / med['shaped_site_result']:,.2f}** |
| pulled (hub gateway) | {med['pull_link_from']:,.0f} | {med['pull_link_to']:,.0f} | **{med['pull_link_from'] / med['shaped_pull_result']:,.0f}** |

The DEM is small (1.7 MB of COG over the wire, ~0.07 s at 200 Mbit/s), so both routes' wall times are
mostly dask's round trips (connect, submit, result) and the read itself; the bytes are the figure that
scales with the data. Pulled ÷ at-site wall time: {speed['direct']:.2f}× direct, **{speed['shaped']:.2f}× over the shaped link**.

| cluster | `new_cluster()` | `scale(2)` until 2 workers |
|---|---|---|
| ru Slurm backend | {med['slurm_start']:.2f} s | {med['slurm_scale2']:.2f} s |
| hub local backend | {med['local_start']:.2f} s | {med['local_scale2']:.2f} s |
| Slurm ÷ local | {med['slurm_start'] / med['local_start']:.2f}× | {med['slurm_scale2'] / med['local_scale2']:.2f}× |

The userspace delay line keeps each direction's bytes in order but terminates TCP at the namespace, so
TCP slow start over the 60 ms path is not modelled (a real link would make the pulled route slower, not
faster). `terrain_to_zarr` on 2 Slurm workers: the next section.
"""


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--forward", nargs="+", help=argparse.SUPPRESS)  # DELAY HOST:PORT=UNIXPATH... (in the netns)
    args = p.parse_args()
    if args.forward:
        delay, *spec = args.forward
        listen = [(hp.rsplit(":", 1)[0], int(hp.rsplit(":", 1)[1]), path)
                  for hp, path in (s.split("=", 1) for s in spec)]
        asyncio.run(_forward(listen, float(delay)))
        return
    m, info = measure(args.runs)
    body = render(m, info, args.runs)
    print(body)
    write_section("Compute at the site (issue 14)", body)


if __name__ == "__main__":
    main()
