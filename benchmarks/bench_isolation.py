"""The cost of isolation (issue 12): the same measurements with isolation as shipped ("after")
and without it ("before"), each on its own real stack, in one run.

    .venv/bin/python benchmarks/bench_isolation.py [--parts kernel,spawn,lab,dashboard,terrain]
                                                   [--variants after,before] [--repeat 5] [--n 300]
                                                   [--terrain-size 1e7] [--no-write]

Parts (default: all):
  kernel     a kernel's execute round trip over Unix sockets (`ipc`, what users' servers use now)
             against TCP (before): one real ipykernel per transport with jupyter_client, no hub,
             `--n` tiny execute requests each, alternating transports per round.
  spawn      a user's (cn-scientist's) server started through the hub API until the hub reports it
             `ready`, `--repeat` times (stopped in between).
  lab        login -> JupyterLab drawn (`.jp-LabShell`) in Debian's chromium (Playwright), the server
             stopped before each login, so it includes the spawn, `--repeat` times.
  dashboard  notebooks/dashboards/lola_explorer.ipynb published by cn-scientist and shared with
             reviewers; `reviewer` opens it in chromium until the first Bokeh canvas is drawn: the first
             visit after publishing, `--repeat` warm visits, and up to 3 cold visits from the gallery
             (the dashboard's server stopped first, as the idle culler does).
  terrain    the terrain pipeline (bench_terrain.py's `windows` route, a `--terrain-size` px DEM) on a
             dask-gateway cluster of 2 workers (1 core / 2 GiB each) through the hub, `--repeat` runs
             after an untimed warm-up; variants: `hub.resource_limits: cgroups` against `none`.

Variants: "after" is the deployment as shipped (hub.resource_limits: cgroups, hub.loopback_filter:
nftables, hub.subdomain_host default: one origin per user); "before" is resource_limits: none,
loopback_filter: none, subdomain_host: false (every server on the hub's origin), i.e. the hub before
issue 12. spawn, lab and dashboard share one stack per variant; terrain has its own (with the gateway),
where only resource_limits changes.

Real stacks need root. Results are kept in benchmarks/.work/isolation.json (git-ignored) per part and
variant, so parts can be run separately (e.g. to hold the shared stack lock only briefly); every run
rewrites the "## Isolation (issue 12)" section of docs/benchmarks.md from all stored results.
Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(HERE))

from report import p95, publish, timed  # noqa: E402

RESULTS = HERE / ".work" / "isolation.json"
PARTS = ("kernel", "spawn", "lab", "dashboard", "terrain")
VARIANTS = ("after", "before")
# hub settings per variant; "after" changes nothing: the shipped defaults (hub/lunarhub.yaml, config model).
HUB_SETTINGS = {
    "after": {},
    "before": {"resource_limits": "none", "loopback_filter": "none", "subdomain_host": False},
}
TERRAIN_SETTINGS = {"after": {}, "before": {"resource_limits": "none"}}
USER = "cn-scientist"
TERRAIN_USER = "ru-scientist"


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


# --- kernel: ipc vs tcp ------------------------------------------------------------------------

def kernel_part(n: int) -> dict[str, Any]:
    from jupyter_client.manager import KernelManager

    def start(transport: str, folder: Path) -> tuple[Any, Any]:
        km = KernelManager(transport=transport, connection_file=str(folder / f"kernel-{transport}.json"))
        if transport == "ipc":
            km.ip = str(folder / "kernel-ipc")  # the socket files' prefix, in a private temp dir
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        return km, kc

    def round_trip(kc: Any) -> float:
        return timed(kc.execute_interactive, "1", timeout=30, output_hook=lambda msg: None)[1]

    times: dict[str, list[float]] = {"tcp": [], "ipc": []}
    with tempfile.TemporaryDirectory(prefix="lunarhub-bench-") as tmp:
        kernels = {t: start(t, Path(tmp)) for t in ("tcp", "ipc")}
        try:
            for _, kc in kernels.values():  # warm both up
                for _ in range(20):
                    round_trip(kc)
            for _ in range(n):
                for transport, (_, kc) in kernels.items():
                    times[transport].append(round_trip(kc))
        finally:
            for km, kc in kernels.values():
                kc.stop_channels()
                km.shutdown_kernel(now=True)
    return {"n": n, "times": times, "measured": stamp()}


# --- stacks with a variant of the hub settings ---------------------------------------------------

def _stack_class():
    from support.stack import Stack

    @dataclass
    class VariantStack(Stack):
        """A Stack whose servers may share the hub's origin (hub.subdomain_host: false)."""

        subdomains: bool = True

        @property
        def url(self) -> str:
            if self.subdomains:
                return super().url
            return f"http://127.0.0.1:{self.data['hub']['port']}"  # the hub's origin then (HubSettings.origin)

        def origin(self, user: str) -> str:
            return super().origin(user) if self.subdomains else self.url

    return VariantStack


def start_stack(prefix: str, hub: dict[str, Any], **services: bool):
    """A fresh stack of the demo deployment with `hub` settings on top, `lunarhub up`: (stack, tmp, up s)."""
    from support.stack import make_stack, open_tmpdir, require_root

    require_root()
    tmp = open_tmpdir(prefix)
    base = make_stack(tmp, **services)
    base.data["hub"].update(hub)
    base.config.write_text(yaml.safe_dump(base.data, allow_unicode=True, sort_keys=False))
    stack = _stack_class()(config=base.config, state=base.state, data=base.data,
                           subdomains=hub.get("subdomain_host", None) is not False)
    try:
        _, up_s = timed(stack.cli, "up", timeout=300)
    except BaseException:
        stack.cli("down", check=False, timeout=240)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return stack, tmp, up_s


def stop_stack(stack, tmp: Path) -> None:
    stack.cli("down", check=False, timeout=240)
    shutil.rmtree(tmp, ignore_errors=True)


def effective_hub(stack) -> dict[str, Any]:
    h = stack.deployment().hub
    return {"resource_limits": h.resource_limits, "loopback_filter": h.loopback_filter,
            "subdomain_host": h.subdomain_host, "origin": stack.origin(USER)}


# --- spawn, lab, dashboard on one stack per variant -------------------------------------------------

def hub_parts(variant: str, parts: list[str], repeat: int, record) -> None:
    """spawn, lab and dashboard on one stack of `variant`; `record(part, variant, result or error)`
    is called as each part ends, so a failing part keeps the others' figures."""
    from bench_hub import browser_login_to_lab, spawn_time, stop

    load0 = os.getloadavg()[0]
    stack, tmp, up_s = start_stack(f"bench-iso-{variant}", HUB_SETTINGS[variant], dashboards="dashboard" in parts)
    try:
        settings = effective_hub(stack)
        print(f"[{variant}] up in {up_s:.1f} s: {settings}", flush=True)
        admin = stack.admin_token()

        def spawn() -> dict[str, Any]:
            spawn_time(stack.url, USER, admin)  # untimed: creates the account and home, warms the page cache
            stop(stack.url, USER, admin)
            times = []
            for _ in range(repeat):
                times.append(spawn_time(stack.url, USER, admin))
                stop(stack.url, USER, admin)
                print(f"[{variant}] spawn -> ready {times[-1]:.2f} s", flush=True)
            return {"times": times}

        def lab() -> dict[str, Any]:
            from support.browser import chromium

            times = []
            with chromium() as browser:
                for _ in range(repeat):
                    times.append(browser_login_to_lab(browser, stack, USER))
                    stop(stack.url, USER, admin)
                    print(f"[{variant}] login -> lab {times[-1]:.2f} s", flush=True)
            return {"times": times}

        steps = {"spawn": spawn, "lab": lab, "dashboard": lambda: dashboard_part(stack, variant, repeat)}
        for part in parts:
            measured = stamp()
            try:
                value = steps[part]()
            except Exception as exc:  # noqa: BLE001 - reported in the doc; the other parts go on
                print(f"[{variant}] {part} failed: {exc!r}", flush=True)
                record(part, variant, None, f"{type(exc).__name__}: {str(exc).strip()[-300:]}")
                continue
            record(part, variant, {"measured": measured, "settings": settings, "up_s": up_s,
                                   "load": [load0, os.getloadavg()[0]], **value}, None)
    finally:
        stop_stack(stack, tmp)


def dashboard_part(stack, variant: str, repeat: int) -> dict[str, Any]:
    from bench_dashboards import first_plot, login
    from support.browser import ARGS, CHROMIUM
    from support.dashboards_helpers import EXAMPLE, as_user

    p, publish_s = timed(as_user, stack, USER, "publish", str(EXAMPLE), "--title", "LOLA explorer",
                         "--share-with", "reviewers")
    if p.returncode != 0:
        raise RuntimeError(f"publish failed:\n{p.stdout}\n{p.stderr}")
    version = p.stdout.split(" v", 1)[1].split()[0]
    dash = stack.browser_url(f"/user/{USER}/dash-lola-explorer")
    url = f"{dash}/v{version}"
    gallery_open = f"{stack.url}/services/dashboards/open/{USER}/lola-explorer/v{version}"

    async def run() -> dict[str, Any]:
        from playwright.async_api import async_playwright

        res: dict[str, Any] = {"publish_s": publish_s, "url": url}
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                page = await login(browser, stack, "reviewer", dash)
                res["first_ever"] = await first_plot(page, url)
                res["warm"] = [await first_plot(page, url) for _ in range(repeat)]
                res["cold"] = []
                for _ in range(min(repeat, 3)):
                    stack.stop_server(USER, "dash-lola-explorer")
                    res["cold"].append(await first_plot(page, gallery_open, timeout=180))
            finally:
                await browser.close()
        return res

    res = asyncio.run(run())
    print(f"[{variant}] dashboard: publish {publish_s:.1f} s, first {res['first_ever']:.2f} s, warm "
          f"{[round(v, 2) for v in res['warm']]}, cold {[round(v, 2) for v in res['cold']]}", flush=True)
    return res


# --- terrain on 2 gateway workers ------------------------------------------------------------------

def terrain_part(variant: str, repeat: int, size: float) -> dict[str, Any]:
    import bench_terrain as bt

    path = bt.build_dem(size, 2048)  # cached in benchmarks/.work/
    bt.OUT.mkdir(exist_ok=True)
    os.chmod(bt.OUT, 0o777)
    out = bt.OUT / f"isolation_{variant}"
    out.mkdir(exist_ok=True)
    os.chmod(out, 0o777)
    load0 = os.getloadavg()[0]
    stack, tmp, up_s = start_stack(f"bench-iso-terrain-{variant}", TERRAIN_SETTINGS[variant], dask_gateway=True)
    try:
        settings = effective_hub(stack)
        print(f"[terrain {variant}] up in {up_s:.1f} s: resource_limits {settings['resource_limits']}", flush=True)
        gw = stack.data["services"]["dask_gateway"]
        args = SimpleNamespace(scheduler="gateway", gateway_url=stack.url, token=stack.token(TERRAIN_USER),
                               proxy_address=f"tcp://127.0.0.1:{gw['scheduler_proxy_port']}",
                               user=TERRAIN_USER, worker_memory=2.0)
        _cluster, client, t_start, t_scale, cleanup = bt.start_cluster(args)
        try:
            unreadable = [w for w, ok in client.run(os.access, str(path), os.R_OK).items() if not ok]
            if unreadable:
                raise RuntimeError(f"workers {unreadable} cannot read {path}: make it readable for {TERRAIN_USER}")
            bt._read_through(path)
            warm = bt.run_cluster(client, path, out, 2048, "windows")["seconds"]  # untimed: imports, numba
            runs = []
            for _ in range(repeat):
                r = bt.run_cluster(client, path, out, 2048, "windows")
                runs.append(r)
                print(f"[terrain {variant}] {r['seconds']:.2f} s, peak RSS/worker MiB "
                      f"{[bt.mib(v) for v in r['peak_rss'].values()]}", flush=True)
        finally:
            cleanup()
    finally:
        stop_stack(stack, tmp)
        shutil.rmtree(out, ignore_errors=True)
    import rasterio

    with rasterio.open(path) as src:
        shape = src.shape
    return {"measured": stamp(), "settings": settings, "up_s": up_s, "pixels": shape[0] * shape[1],
            "shape": list(shape), "start_s": t_start, "scale2_s": t_scale, "warmup_s": warm,
            "times": [r["seconds"] for r in runs],
            "peak_rss_mib": max((max(r["peak_rss"].values(), default=0) for r in runs), default=0) / 2**20,
            "load": [load0, os.getloadavg()[0]]}


# --- report ------------------------------------------------------------------------------------------

def _fmt(values: list[float] | None) -> tuple[str, str]:
    if not values:
        return "–", "–"
    return f"{statistics.median(values):.2f}", f"{p95(values):.2f}"


def _ratio(after: list[float] | None, before: list[float] | None) -> str:
    if not after or not before:
        return "–"
    return f"**{statistics.median(after) / statistics.median(before):.2f}×**"


def _row(label: str, a: list[float] | None, b: list[float] | None) -> str | None:
    if not a and not b:
        return None
    (bm, bp), (am, ap) = _fmt(b), _fmt(a)
    n = f"{len(b or [])} / {len(a or [])}"
    return f"| {label} | {n} | {bm} | {bp} | {am} | {ap} | {_ratio(a, b)} |"


def render(res: dict[str, Any]) -> str:
    lines: list[str] = []
    cores = os.cpu_count()
    lines.append(
        f"Machine: {cores} cores, {platform.platform()}, shared with other engineers' work (1-minute load "
        "averages below). Command: `.venv/bin/python benchmarks/bench_isolation.py` (as root; where several "
        "people share the machine, under `flock /tmp/lunarhub-stack.lock`; parts and "
        "variants can be run separately with `--parts` / `--variants`, results are merged from "
        "`benchmarks/.work/isolation.json`). Timings are reported, never asserted.")
    lines.append("")
    lines.append(
        "**After** = the deployment as shipped: `hub.resource_limits: cgroups` (each server and dask worker in "
        "its own cgroup with its profile's memory and CPU), `hub.loopback_filter: nftables`, `hub.subdomain_host` "
        "default (the hub at `http://localhost:<port>`, each user's servers at `http://<user>.localhost:<port>`), "
        "kernels over `ipc`. **Before** = `resource_limits: none`, `loopback_filter: none`, "
        "`subdomain_host: false` (every server on the hub's origin): the hub before issue 12, except that its "
        "kernels still use `ipc` (the transport is not a setting; it is compared on its own below). "
        "Each variant runs on its own fresh real stack (`lunarhub up` on free ports, temp state); spawn, "
        "login and dashboard share one stack per variant, terrain has its own with the gateway, where only "
        "`resource_limits` differs. p95 of a handful of repeats is close to the max.")
    hub_rows = []
    compared: list[tuple[str, list[float] | None, list[float] | None]] = []
    spawn, lab, dash, terr = (res.get(p, {}) for p in ("spawn", "lab", "dashboard", "terrain"))

    def times(part: dict, variant: str, key: str = "times") -> list[float] | None:
        return part.get(variant, {}).get(key)

    if spawn or lab or dash:
        hub_rows.append(_row(f"spawn → ready ({USER}'s server through the hub API until `ready`)",
                             times(spawn, "after"), times(spawn, "before")))
        hub_rows.append(_row("login → JupyterLab drawn (chromium, server stopped before: includes the spawn)",
                             times(lab, "after"), times(lab, "before")))
        compared += [("spawn", times(spawn, "after"), times(spawn, "before")),
                     ("login → lab", times(lab, "after"), times(lab, "before"))]
        if dash:
            def one(v: str) -> list[float] | None:
                x = dash.get(v, {}).get("first_ever")
                return [x] if x is not None else None

            def pub(v: str) -> list[float] | None:
                x = dash.get(v, {}).get("publish_s")
                return [x] if x is not None else None

            hub_rows.append(_row("dashboard first plot, warm (reviewer reopens the running dashboard, chromium)",
                                 times(dash, "after", "warm"), times(dash, "before", "warm")))
            hub_rows.append(_row("dashboard first plot, first visit after publishing (starts Panel)",
                                 one("after"), one("before")))
            hub_rows.append(_row("dashboard first plot, cold (server stopped, opened from the gallery)",
                                 times(dash, "after", "cold"), times(dash, "before", "cold")))
            compared += [("dashboard warm", times(dash, "after", "warm"), times(dash, "before", "warm")),
                         ("dashboard cold", times(dash, "after", "cold"), times(dash, "before", "cold"))]
            hub_rows.append(_row("publish (`lunarhub publish` as cn-scientist: validate, snapshot, spawn, share)",
                                 pub("after"), pub("before")))
        ups = {v: next((p[v]["up_s"] for p in (spawn, lab, dash) if v in p), None) for v in VARIANTS}
        hub_rows.append(_row("`lunarhub up` of the stack (once)", [ups["after"]] if ups["after"] else None,
                             [ups["before"]] if ups["before"] else None))
    if terr:
        def tt(v: str, key: str) -> list[float] | None:
            x = terr.get(v, {}).get(key)
            return None if x is None else (x if isinstance(x, list) else [x])

        anyv = terr.get("after") or terr.get("before")
        px = f"{anyv['pixels']:.3g} px ({anyv['shape'][0]}×{anyv['shape'][1]})"
        hub_rows.append(_row(f"terrain pipeline on 2 gateway workers, {px}, wall time", tt("after", "times"),
                             tt("before", "times")))
        compared.append(("terrain", tt("after", "times"), tt("before", "times")))
        hub_rows.append(_row("gateway: `new_cluster()`", tt("after", "start_s"), tt("before", "start_s")))
        hub_rows.append(_row("gateway: `scale(2)` until both workers connected", tt("after", "scale2_s"),
                             tt("before", "scale2_s")))
    if hub_rows:
        lines += ["", "| measurement | n before / after | before median s | before p95 s | after median s | "
                      "after p95 s | after / before |",
                  "|---|---:|---:|---:|---:|---:|---:|", *(r for r in hub_rows if r)]
        within, beyond = [], []
        for label, a_, b_ in compared:
            if a_ and b_ and min(len(a_), len(b_)) >= 3:
                ratio = statistics.median(a_) / statistics.median(b_)
                spread = max(p95(x) / statistics.median(x) - 1 for x in (a_, b_))
                (within if abs(ratio - 1) <= spread else beyond).append(f"{label} {ratio:.2f}×")
        if within or beyond:
            lines += ["", "Against the spread of the repeats (p95 ÷ median − 1 of either variant): "
                      + (f"within it: {', '.join(within)}" if within else "")
                      + ("; " if within and beyond else "")
                      + (f"beyond it: {', '.join(beyond)}" if beyond else "") + "."]
        notes = []
        for v in VARIANTS:  # one note per stack: spawn, login and dashboard of one run share it
            stacks: dict[tuple[str, float], list[dict[str, Any]]] = {}
            for name, part in (("spawn", spawn), ("login", lab), ("dashboard", dash), ("terrain", terr)):
                if v in part:
                    label = "terrain" if name == "terrain" else "hub"
                    stacks.setdefault((label, part[v]["up_s"]), []).append(part[v])
            for (label, _), ps in stacks.items():
                st = ps[0]["settings"]
                what = (f"resource_limits {st['resource_limits']}" if label == "terrain" else
                        f"resource_limits {st['resource_limits']}, loopback_filter {st['loopback_filter']}, "
                        f"{USER}'s servers at {st['origin']}")
                notes.append(f"{label} stack {v}: {ps[0]['measured']}, {what}, load {ps[0]['load'][0]:.1f} → "
                             f"{max(x['load'][1] for x in ps):.1f}")
        lines += ["", "Stacks (when, effective settings read back from the deployment, 1-minute load at start → "
                      "end): " + "; ".join(notes) + "."]
        if terr:
            anyv = terr.get("after") or terr.get("before")
            lines += ["", "Terrain: bench_terrain.py's `windows` route (`terrain.terrain_to_zarr(client=...)`, "
                          "one task per 2048² chunk reading chunk + halo, writing uncompressed Zarr), workers as "
                          f"{TERRAIN_USER} with `worker_cores=1, worker_memory=2` GiB (their cgroup limits in the "
                          "after variant), after an untimed warm-up run; peak worker RSS "
                          + ", ".join(f"{v} {terr[v]['peak_rss_mib']:,.0f} MiB" for v in VARIANTS if v in terr)
                          + "."]
    k = res.get("kernel")
    if k:
        med = {t: statistics.median(v) * 1000 for t, v in k["times"].items()}
        tail = {t: p95(v) * 1000 for t, v in k["times"].items()}
        lines += ["", f"Kernel execute round trip (`execute_interactive(\"1\")`, {k['n']} per transport, "
                      f"alternating, one real ipykernel each, no hub; {k['measured']}):", "",
                  "| transport | median | p95 |", "|---|---|---|",
                  *(f"| {t} | {med[t]:.2f} ms | {tail[t]:.2f} ms |" for t in ("tcp", "ipc")), "",
                  f"ipc / tcp median: **{med['ipc'] / med['tcp']:.2f}×** (below 1 means the Unix socket is faster)."]
    missing = [f"{p} {v}" for p in PARTS if p != "kernel" for v in VARIANTS if v not in res.get(p, {})]
    if not k:
        missing.insert(0, "kernel")
    errors = res.get("errors", {})
    missing = [m for m in missing if m not in errors]
    if missing:
        lines += ["", "Not measured yet: " + ", ".join(missing) + "."]
    if errors:
        lines += ["", "Failed in the last run (older figures above, if any, are kept): "
                  + "; ".join(f"{k}: `{' '.join(v.split())}`" for k, v in sorted(errors.items())) + "."]
    return "\n".join(lines) + "\n"


def load_results() -> dict[str, Any]:
    try:
        return json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        return {}


def save_results(res: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(res, indent=1, default=str))
    os.replace(tmp, RESULTS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS))
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: after, before")
    ap.add_argument("--repeat", type=int, default=5, help="repeats of each stack measurement")
    ap.add_argument("--n", type=int, default=300, help="kernel execute requests per transport")
    ap.add_argument("--terrain-size", type=float, default=1e7, help="DEM pixels of the terrain part")
    ap.add_argument("--no-write", action="store_true", help="measure and print; keep docs/benchmarks.md and "
                                                              "the stored results as they are")
    ap.add_argument("--render-only", action="store_true", help="rewrite the doc section from stored results")
    args = ap.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    variants = [v for v in args.variants.split(",") if v]
    if set(parts) - set(PARTS) or set(variants) - set(VARIANTS):
        ap.error(f"--parts: {', '.join(PARTS)}; --variants: {', '.join(VARIANTS)}")
    res = load_results()

    def record(part: str, variant: str | None, value: dict[str, Any] | None, error: str | None) -> None:
        key = f"{part} {variant}" if variant else part
        errors = res.setdefault("errors", {})
        if error:
            errors[key] = error  # the last good figures, if any, stay
        else:
            errors.pop(key, None)
            if variant:
                res.setdefault(part, {})[variant] = value
            else:
                res[part] = value
        if not args.no_write:
            save_results(res)

    if not args.render_only:
        if "kernel" in parts:
            record("kernel", None, kernel_part(args.n), None)
        hub = [p for p in parts if p in ("spawn", "lab", "dashboard")]
        for v in variants:
            if hub:
                hub_parts(v, hub, args.repeat, record)
            if "terrain" in parts:
                try:
                    record("terrain", v, terrain_part(v, args.repeat, args.terrain_size), None)
                except Exception as exc:  # noqa: BLE001 - reported in the doc
                    print(f"[terrain {v}] failed: {exc!r}", flush=True)
                    record("terrain", v, None, f"{type(exc).__name__}: {str(exc).strip()[-300:]}")
    body = render(res)
    return publish("Isolation (issue 12)", body, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
