"""What can this user reach? Sites, entitlements, catalogs, dask-gateway, kernel, versions.

In a notebook: `import lunarhub.science.doctor; lunarhub.science.doctor.report()` (the first cell of
every tutorial). From a shell: `lunarhub doctor` inside a user's server, or
`lunarhub doctor --user NAME` as the operator to see what NAME's server would get.

Every check answers within seconds and never raises: a site that is down is a
line in the report, not a traceback, because this is what a user runs when
something is already wrong.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import html
import json
import os
import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import requests

TIMEOUT = 5.0
PACKAGES = ("lunarhub", "jupyterhub", "jupyterlab", "ipykernel", "numpy", "pandas", "xarray", "dask",
            "distributed", "dask-gateway", "rasterio", "rioxarray", "pyproj", "intake", "zarr",
            "matplotlib", "panel", "holoviews")


@dataclass
class Check:
    area: str
    name: str
    ok: bool | None  # None: not applicable / informational
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def mark(self) -> str:
        return {True: "ok", False: "FAIL", None: "--"}[self.ok]


@dataclass
class Report:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    def by_area(self, area: str) -> list[Check]:
        return [c for c in self.checks if c.area == area]

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.__dict__ for c in self.checks]}

    def __str__(self) -> str:
        lines = []
        for area in dict.fromkeys(c.area for c in self.checks):
            lines.append(f"[{area}]")
            for c in self.by_area(area):
                lines.append(f"  {c.mark:4s} {c.name:22s} {c.detail}")
        lines.append("all good" if self.ok else "PROBLEMS: see the FAIL lines above")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour = {True: "#2e7d32", False: "#c62828", None: "#757575"}
        rows = []
        for c in self.checks:
            rows.append(f"<tr><td>{html.escape(c.area)}</td><td>{html.escape(c.name)}</td>"
                        f"<td style='color:{colour[c.ok]};font-weight:bold'>{c.mark}</td>"
                        f"<td style='text-align:left'>{html.escape(c.detail)}</td></tr>")
        head = "<tr><th>area</th><th>what</th><th></th><th style='text-align:left'>detail</th></tr>"
        verdict = "all good" if self.ok else "problems: see the FAIL rows"
        return f"<table>{head}{''.join(rows)}</table><p><b>{verdict}</b></p>"


# ---------------------------------------------------------------- checks


def check_identity(env: Mapping[str, str]) -> list[Check]:
    user = env.get("JUPYTERHUB_USER") or "(not in a hub server)"
    groups = env.get("LUNARHUB_USER_GROUPS", "")
    return [
        Check("identity", "user", None, f"{user}; groups: {groups or '-'}", {"user": user, "groups": groups}),
        Check("identity", "hub", None, env.get("LUNARHUB_HUB_URL", "(unknown)")),
    ]


def check_sites(env: Mapping[str, str]) -> list[Check]:
    """Each site: does it answer, do our credentials work, what may we read there."""
    from lunarhub.data.catalog import CatalogError, open_site, sites_from_env

    access = sites_from_env(env)
    if not access:
        return [Check("sites", "sites", False, "no data sites configured (LUNARHUB_SITES is empty): "
                      "run this inside a hub user's server, or `lunarhub doctor --user NAME`")]
    out = []
    for name, site in access.items():
        try:
            r = requests.get(f"{site.url}/healthz", timeout=TIMEOUT)
            up = r.status_code == 200
            detail = f"{site.url} answers" if up else f"{site.url}/healthz -> HTTP {r.status_code}"
        except requests.RequestException as exc:
            up, detail = False, f"{site.url} does not answer ({type(exc).__name__})"
        policies = ",".join(sorted(site.policies))
        out.append(Check("sites", f"site {name}", up, f"{detail}; entitled to: {policies}",
                         {"url": site.url, "policies": sorted(site.policies), "user": site.user}))
        if not up:
            continue
        try:
            cat = open_site(site)
            out.append(Check("catalogs", f"catalog {name}", True,
                             f"{len(cat)} datasets readable: {', '.join(sorted(cat))}"
                             + (f"; not entitled: {', '.join(cat.hidden)}" if cat.hidden else ""),
                             {"readable": sorted(cat), "hidden": cat.hidden}))
        except CatalogError as exc:
            out.append(Check("catalogs", f"catalog {name}", False, str(exc)))
    return out


def _gateway_address(env: Mapping[str, str]) -> str | None:
    return env.get("DASK_GATEWAY__ADDRESS") or None


def check_gateway(env: Mapping[str, str]) -> list[Check]:
    address = _gateway_address(env)
    if not address:
        return [Check("dask", "gateway", None, "not configured for this user: notebooks use a LocalCluster "
                      "inside the server")]
    if not env.get("JUPYTERHUB_API_TOKEN"):
        return [Check("dask", "gateway", None, f"configured at {address} (not checked: no user token here)",
                      {"address": address})]

    def listing() -> int:
        from dask_gateway import Gateway

        with Gateway(address=address, auth="jupyterhub") as gw:
            return len(gw.list_clusters())

    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        n = pool.submit(listing).result(timeout=TIMEOUT * 2)
        return [Check("dask", "gateway", True, f"{address}: reachable, {n} cluster(s) of yours running",
                      {"address": address, "clusters": n})]
    except Exception as exc:  # noqa: BLE001 - any failure is a report line
        return [Check("dask", "gateway", False, f"{address}: {type(exc).__name__}: {exc}"[:300],
                      {"address": address})]
    finally:
        pool.shutdown(wait=False)


def check_kernel(env: Mapping[str, str]) -> list[Check]:
    from lunarhub.platform import kernels

    found = False
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        saved = os.environ.get("JUPYTER_PATH")
        if env.get("JUPYTER_PATH"):
            os.environ["JUPYTER_PATH"] = env["JUPYTER_PATH"]
        try:
            found = kernels.KERNEL_NAME in KernelSpecManager().find_kernel_specs()
        finally:
            if saved is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = saved
    except Exception:  # noqa: BLE001 - jupyter_client missing: reported as not found
        pass
    missing = [k for k, v in kernels.gdal_environment().items() if env.get(k) != v]
    return [
        Check("kernel", kernels.KERNEL_NAME, found, "kernel spec found" if found else
              f"kernel spec not found on JUPYTER_PATH ({env.get('JUPYTER_PATH', 'unset')})"),
        Check("kernel", "GDAL remote reads", not missing,
              "GDAL settings for remote reads are set" if not missing else f"not set here: {', '.join(missing)}"),
    ]


def check_versions() -> list[Check]:
    vers = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            vers[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            vers[pkg] = "missing"
    try:
        import pyproj
        import rasterio

        vers["GDAL"] = rasterio.__gdal_version__
        vers["PROJ"] = pyproj.proj_version_str
    except Exception:  # noqa: BLE001 - reported as missing
        vers["GDAL"] = vers["PROJ"] = "missing"
    text = ", ".join(f"{k} {v}" for k, v in vers.items())
    return [Check("versions", "packages", "missing" not in vers.values(), text, vers)]


def collect(environ: Mapping[str, str] | None = None) -> Report:
    env = dict(os.environ if environ is None else environ)
    checks = check_identity(env) + check_sites(env) + check_gateway(env) + check_kernel(env) + check_versions()
    return Report(checks)


def report(environ: Mapping[str, str] | None = None) -> Report:
    """The notebook helper: returns a Report that renders as a table (and as text with print)."""
    return collect(environ)


# ---------------------------------------------------------------- CLI


def _operator_env(config_path: str | None, user: str) -> dict[str, str]:
    """The environment the hub would give `user`'s server (site credentials included)."""
    from lunarhub import config
    from lunarhub.config import roster
    from lunarhub.platform import hub

    d = roster.effective(config.load(config_path))
    if user not in d.users:
        raise SystemExit(f"lunarhub doctor: unknown user {user!r}")
    env = dict(os.environ)
    env.update(hub.spawn_environment(d, user))
    env["JUPYTERHUB_USER"] = user
    env.pop("JUPYTERHUB_API_TOKEN", None)  # the operator's shell must not pose as the user
    return env


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lunarhub doctor", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="deployment YAML (with --user)")
    p.add_argument("--user", help="as the operator: check what this user's server would reach")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(sys.argv[1:] if argv is None else argv))


def run(args: argparse.Namespace) -> int:
    """`lunarhub doctor` with parsed arguments (the `lunarhub` tree parses them with build_parser's)."""
    env = _operator_env(args.config, args.user) if args.user else None
    rep = collect(env)
    print(json.dumps(rep.as_dict(), indent=1, ensure_ascii=False) if args.json else rep)
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
