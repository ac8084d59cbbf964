"""The `lunarhub` command: up, down, status, token, users, passwords, catalog, render."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import requests

from lunarhub import config
from lunarhub.config import ConfigError, Deployment, roster, secrets
from lunarhub.platform import hubclient as hubapi
from lunarhub.platform import preflight
from lunarhub.platform import supervisor as process


def _load(args: argparse.Namespace) -> Deployment:
    return roster.effective(config.load(args.config))


def _health(d: Deployment) -> tuple[bool, str]:
    url = f"{d.public_url}/hub/health"
    try:
        r = requests.get(url, timeout=3)
        return r.status_code == 200, f"{url} -> {r.status_code}"
    except requests.RequestException as exc:
        return False, f"{url} -> {exc.__class__.__name__}"


def _tail(path: Path, n: int = 20) -> str:
    if not path.exists():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def cmd_up(args: argparse.Namespace) -> int:
    d = _load(args)
    running = process.supervisor_running(d)
    problems = preflight.check(d, running)
    if problems:
        print(f"lunarhub: cannot start ({d.config_file}):", file=sys.stderr)
        for where, why in problems:
            print(f"  {where}: {why}", file=sys.stderr)
        return 2
    if d.hub.isolation == "single-account":
        print("WARNING: hub.isolation is 'single-account': every user's server runs as this account "
              "and can read every other user's files. Use it for development only.", file=sys.stderr)
    new_passwords = secrets.ensure_passwords(d, sorted(d.users))
    if any(site.kind == "local" for site in d.sites.values()):
        from lunarhub.data import build as databuild
        from lunarhub.data import sites

        databuild.build_all(d)
        for name, site in d.sites.items():
            if site.kind == "local":
                sites.prepare_site(d, name)
    process.start(d)
    deadline = time.monotonic() + args.timeout
    ok, detail = _health(d)
    while not ok and time.monotonic() < deadline:
        state = process.status(d).get("hub", {}).get("state")
        if state in ("FATAL", "BACKOFF") and time.monotonic() > deadline - args.timeout + 10:
            break
        time.sleep(0.5)
        ok, detail = _health(d)
    if not ok:
        print(f"lunarhub: the hub did not answer ({detail}). Last lines of its log:", file=sys.stderr)
        print(_tail(d.state_path / "logs" / "hub.log"), file=sys.stderr)
        return 1
    print(f"lunarhub is up: {d.public_url}/")
    if d.auth.kind == "password":
        shown = new_passwords or {}
        if shown:
            print("New logins (shown once; `lunarhub passwords` shows them again to the operator):")
            for u, p in shown.items():
                print(f"  {u:16s} {p:20s} groups: {', '.join(d.users[u].groups)}")
        else:
            print("Logins: " + ", ".join(sorted(d.users)) + "  (passwords: .venv/bin/lunarhub passwords)")
    print("Status: .venv/bin/lunarhub status    Stop: make down")
    return 0


def _stop_user_servers(d: Deployment, timeout: float = 90) -> int:
    """Stop every user server through the hub, which records it (restarts keep servers)."""
    try:
        api = hubapi.HubAPI(d)
        users = api.users()
    except (hubapi.HubUnavailable, RuntimeError):
        return 0
    running = [(u["name"], name) for u in users for name in u.get("servers", {})]
    for user, name in running:
        path = f"/users/{user}/servers/{name}" if name else f"/users/{user}/server"
        try:
            api.request("DELETE", path)
        except RuntimeError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(u.get("servers") for u in api.users()):
            break
        time.sleep(0.5)
    return len(running)


def _stop_proxy(d: Deployment) -> None:
    import os
    import signal

    pidfile = d.state_path / "hub" / "proxy.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
        except (ValueError, ProcessLookupError):
            pass
        pidfile.unlink(missing_ok=True)


def cmd_down(args: argparse.Namespace) -> int:
    d = _load(args)
    if process.supervisor_running(d):
        n = _stop_user_servers(d)
        if n:
            print(f"stopped {n} user server(s)")
    stopped = process.stop(d)
    _stop_proxy(d)
    if stopped:
        print("lunarhub stopped (hub, proxy, user servers, sites).")
    else:
        print("lunarhub was not running.")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    d = _load(args)
    progs = process.status(d)
    if not progs:
        print(f"lunarhub is not running (state: {d.state_path})")
        return 3
    ok, detail = _health(d)
    healthy = ok
    print(f"{'component':16s} {'state':10s} detail")
    for name, info in progs.items():
        print(f"{name:16s} {info['state']:10s} {info['detail']}")
        healthy = healthy and info["state"] == "RUNNING"
    print(f"{'proxy+hub':16s} {'healthy' if ok else 'UNHEALTHY':10s} {detail}")
    checks = []
    if d.services.dask_gateway.enabled:
        checks.append(("dask gateway", f"{d.public_url}/services/dask-gateway/api/health", {200}))
    if d.services.dashboards.enabled:
        # The gallery sends anonymous visitors to the hub's login: that answer means it serves.
        checks.append(("dashboards", f"{d.public_url}/services/dashboards/", {200, 302}))
    for label, url, good in checks:
        try:
            code = requests.get(url, timeout=3, allow_redirects=False).status_code
        except requests.RequestException as exc:
            code = exc.__class__.__name__
        healthy = healthy and code in good
        print(f"{label:16s} {'healthy' if code in good else 'UNHEALTHY':10s} {url} -> {code}")
    for name, site_ok, site_detail in _site_health(d):
        healthy = healthy and site_ok
        print(f"{'site ' + name:16s} {'healthy' if site_ok else 'UNHEALTHY':10s} {site_detail}")
    if ok:
        try:
            users = hubapi.HubAPI(d).users()
            running = [f"{u['name']}/{s or ''}" for u in users for s, srv in u.get("servers", {}).items()
                       if srv.get("ready")]
            print(f"{'user servers':16s} {len(running):<10d} {' '.join(running)}")
        except Exception as exc:  # noqa: BLE001 - status must report, not crash
            print(f"{'user servers':16s} {'?':10s} {exc}")
    return 0 if healthy else 1


def _site_health(d: Deployment) -> list[tuple[str, bool, str]]:
    """A site answering for its catalog (200, or 401 without credentials) is serving."""
    if not d.sites:
        return []
    from lunarhub.data import sites

    out = []
    for name in d.sites:
        url = sites.site_url(d, name).rstrip("/") + "/catalog.yaml"
        try:
            r = requests.get(url, timeout=3)
            out.append((name, r.status_code in (200, 401), f"{url} -> {r.status_code}"))
        except requests.RequestException as exc:
            out.append((name, False, f"{url} -> {exc.__class__.__name__}"))
    return out


def cmd_token(args: argparse.Namespace) -> int:
    d = _load(args)
    api = hubapi.HubAPI(d)
    names = {u["name"] for u in api.users()}
    if args.user not in names:
        print(f"lunarhub token: unknown user {args.user!r}", file=sys.stderr)
        return 2
    print(api.new_token(args.user, note=args.note, expires_in=args.expires_in))
    return 0


def _apply_live(d: Deployment, name: str, groups: list[str] | None, reload_roles: bool = True) -> str:
    """Mirror a roster change into the running hub, if it runs."""
    try:
        api = hubapi.HubAPI(d)
        taught = {s for g in d.groups.values() for s in g.teaches}
        before = {g for u in api.users() if u["name"] == name for g in u.get("groups", [])}
        if groups is None:
            api.delete_user(name)
        else:
            api.ensure_user(name, groups, list(d.groups))
        note = " (applied to the running hub)"
        # Roles naming individual students are built at hub start: reload them. User
        # servers keep running across a hub restart.
        if reload_roles and (before | set(groups or [])) & taught:
            restart_hub(d)
            note = " (applied; hub restarted to update instructors' access)"
        return note
    except hubapi.HubUnavailable:
        return " (hub not running: applied at next `lunarhub up`)"


def restart_hub(d: Deployment, timeout: float = 90) -> None:
    process.ctl(d, "restart", "hub")
    deadline = time.monotonic() + timeout
    while not _health(d)[0]:
        if time.monotonic() > deadline:
            raise RuntimeError("the hub did not come back after a restart; see lunarhub status")
        time.sleep(0.5)


def cmd_users(args: argparse.Namespace) -> int:
    base = config.load(args.config)
    d = roster.effective(base)
    if args.action == "list":
        for name, user in sorted(d.users.items()):
            print(f"{name:20s} {','.join(user.groups)}")
        return 0
    if args.action in ("add", "set-groups"):
        if args.action == "set-groups" and args.name not in d.users:
            print(f"lunarhub users: unknown user {args.name!r}", file=sys.stderr)
            return 2
        if args.action == "add" and args.name in d.users:
            print(f"lunarhub users: user {args.name!r} already exists (use set-groups)", file=sys.stderr)
            return 2
        groups = [g for g in args.groups.replace(",", " ").split() if g]
        try:
            d = roster.set_user(base, args.name, groups)
        except ValueError as exc:
            print(f"lunarhub users: {exc}", file=sys.stderr)
            return 2
        note = _apply_live(d, args.name, groups)
        new = secrets.ensure_passwords(d, [args.name])
        print(f"{args.name}: groups {','.join(groups)}{note}")
        for u, p in new.items():
            print(f"  password for {u}: {p}")
        return 0
    if args.action == "remove":
        try:
            d = roster.remove_user(base, args.name)
        except KeyError as exc:
            print(f"lunarhub users: {exc.args[0]}", file=sys.stderr)
            return 2
        note = _apply_live(d, args.name, None)
        secrets.forget_password(d, args.name)
        print(f"{args.name}: removed from the hub{note}; the home folder is kept")
        return 0
    if args.action == "import":
        path = Path(args.csv)
        try:
            rows = roster.parse_roster(path.read_text(encoding="utf-8"), str(path), d)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        for i, (name, groups, full) in enumerate(rows):
            d = roster.set_user(base, name, groups, full)
            note = _apply_live(d, name, groups, reload_roles=i == len(rows) - 1)
            print(f"{name}: groups {','.join(groups)}{note}")
        for u, p in secrets.ensure_passwords(d, [r[0] for r in rows]).items():
            print(f"  password for {u}: {p}")
        return 0
    raise AssertionError(args.action)


def cmd_passwords(args: argparse.Namespace) -> int:
    d = _load(args)
    if d.auth.kind != "password":
        print(f"auth.kind is {d.auth.kind!r}: passwords are managed by the identity provider")
        return 0
    known = secrets.initial_passwords(d)
    for name in sorted(d.users):
        print(f"{name:20s} {known.get(name, '(not yet generated: run lunarhub up)')}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    d = _load(args)
    print(f"{d.config_file}: valid ({len(d.users)} users, {len(d.groups)} groups, ports "
          + ", ".join(f"{k}={v}" for k, v in d.ports().items()) + ")")
    return 0


def cmd_catalog(args: argparse.Namespace, rest: list[str]) -> int:
    from lunarhub.cli import catalog as catalog_cli

    return catalog_cli.main(rest)


def cmd_render(args: argparse.Namespace, rest: list[str]) -> int:
    from lunarhub.compute import render

    extra = ["--config", args.config] if args.config else []
    return render.main(extra + rest)


def _with_config(args: argparse.Namespace) -> list[str]:
    return ["--config", args.config] if args.config else []


def cmd_doctor(args: argparse.Namespace, rest: list[str]) -> int:
    from lunarhub.science import doctor

    return doctor.main(_with_config(args) + rest if "--user" in rest else rest)


def cmd_course(args: argparse.Namespace, rest: list[str]) -> int:
    from lunarhub.courses import manage as courses

    return courses.main(_with_config(args) + rest)


def _dashboards(name: str):
    def handler(args: argparse.Namespace, rest: list[str]) -> int:
        from lunarhub.dashboards.publishing import cli as dashboards_cli

        return dashboards_cli.main([name, *rest])

    return handler


# Subcommands owned by other modules: their arguments are handed on untouched.
PASSTHROUGH = {"catalog": cmd_catalog, "render": cmd_render, "doctor": cmd_doctor, "course": cmd_course,
               "publish": _dashboards("publish"), "unpublish": _dashboards("unpublish"),
               "dashboards": _dashboards("dashboards")}
PASSTHROUGH_HELP = {
    "catalog": "catalog tools: lunarhub catalog validate [PATH]",
    "render": "render Kubernetes (daskhub values) or HPC gateway config",
    "doctor": "what this user's server can reach: sites, catalogs, gateway, versions",
    "course": "instructors: course create NAME --roster CSV | status NAME | reset NAME STUDENT NB",
    "publish": "publish a notebook as a versioned Panel dashboard (from a user's server)",
    "unpublish": "remove a published dashboard and revoke access",
    "dashboards": "dashboards list: the dashboards you may open",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lunarhub", description=__doc__)
    p.add_argument("--config", help="deployment YAML (default: $LUNARHUB_CONFIG or hub/lunarhub.yaml)")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the stack in the background and wait until the hub answers")
    up.add_argument("--timeout", type=float, default=120)
    sub.add_parser("down", help="stop everything `up` started")
    sub.add_parser("status", help="what runs, where, healthy or not")
    sub.add_parser("config", help="validate the deployment file")
    sub.add_parser("passwords", help="show generated demo passwords (operator only)")
    tok = sub.add_parser("token", help="print a new API token for a hub user")
    tok.add_argument("user")
    tok.add_argument("--note", default="issued by lunarhub token")
    tok.add_argument("--expires-in", type=int, default=None, help="seconds")
    users = sub.add_parser("users", help="list/add/remove users, set groups, import a CSV roster")
    usub = users.add_subparsers(dest="action", required=True)
    usub.add_parser("list")
    a = usub.add_parser("add")
    a.add_argument("name")
    a.add_argument("--groups", required=True, help="comma-separated group names")
    s = usub.add_parser("set-groups")
    s.add_argument("name")
    s.add_argument("--groups", required=True)
    r = usub.add_parser("remove")
    r.add_argument("name")
    i = usub.add_parser("import")
    i.add_argument("csv", help="CSV with columns username,groups[,full_name]; groups separated by ';'")
    for name, text in PASSTHROUGH_HELP.items():
        sub.add_parser(name, help=text, add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # The subcommand is the first word that is not `--config X`.
    idx = 0
    while idx < len(argv) and argv[idx].startswith("--config"):
        idx += 1 if "=" in argv[idx] else 2
    if idx < len(argv) and argv[idx] in PASSTHROUGH:
        args = parser.parse_args(argv[: idx + 1])
        try:
            return PASSTHROUGH[argv[idx]](args, argv[idx + 1:])
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
    args = parser.parse_args(argv)
    handlers = {"up": cmd_up, "down": cmd_down, "status": cmd_status, "token": cmd_token,
                "users": cmd_users, "passwords": cmd_passwords, "config": cmd_config}
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except hubapi.HubUnavailable as exc:
        print(f"lunarhub: {exc}; is it running? (`lunarhub status`)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
