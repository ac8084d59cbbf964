"""`lunarhub up`, `down`, `status`: the stack on this machine (the steps are lunarhub.platform.lifecycle)."""

from __future__ import annotations

import argparse
import sys

from lunarhub.cli.options import load
from lunarhub.platform import lifecycle


def register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("up", description="start the stack in the background and wait until the hub answers")
    up.add_argument("--timeout", type=float, default=120, help="seconds to wait for the hub (default: 120)")
    up.set_defaults(handler=cmd_up)
    down = sub.add_parser("down", description="stop everything `up` started (user servers included)")
    down.set_defaults(handler=cmd_down)
    status = sub.add_parser("status", description="what runs, where, healthy or not "
                            "(exit 0 healthy, 1 unhealthy, 3 not running)")
    status.set_defaults(handler=cmd_status)


def cmd_up(args: argparse.Namespace) -> int:
    d = load(args)
    problems = lifecycle.start_problems(d)
    if problems:
        print(f"lunarhub: cannot start ({d.config_file}):", file=sys.stderr)
        for where, why in problems:
            print(f"  {where}: {why}", file=sys.stderr)
        return 2
    if d.hub.isolation == "single-account":
        print("WARNING: hub.isolation is 'single-account': every user's server runs as this account "
              "and can read every other user's files. Use it for development only.", file=sys.stderr)
    if d.tls.mode == "off":
        print(f"WARNING: {lifecycle.TLS_OFF}", file=sys.stderr)
    started = lifecycle.start(d, args.timeout)
    if not started.ok:
        print(f"lunarhub: the hub did not answer ({started.detail}). Last lines of its log:", file=sys.stderr)
        print(lifecycle.hub_log_tail(d), file=sys.stderr)
        return 1
    for error in started.errors:
        print(f"lunarhub: {error}", file=sys.stderr)
    print(f"lunarhub is up: {d.public_url}/")
    if d.auth.kind == "password":
        if started.new_passwords:
            print("New logins (shown once; `lunarhub passwords` shows them again to the operator):")
            for u, p in started.new_passwords.items():
                print(f"  {u:16s} {p:20s} groups: {', '.join(d.users[u].groups)}")
        else:
            print("Logins: " + ", ".join(sorted(d.users)) + "  (passwords: .venv/bin/lunarhub passwords)")
    print("Status: .venv/bin/lunarhub status    Stop: make down")
    return 1 if started.errors else 0


def cmd_down(args: argparse.Namespace) -> int:
    d = load(args)
    if lifecycle.supervisor_running(d):
        n = lifecycle.stop_user_servers(d)
        if n:
            print(f"stopped {n} user server(s)")
    if lifecycle.stop(d):
        print("lunarhub stopped (hub, proxy, user servers, sites).")
    else:
        print("lunarhub was not running.")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    d = load(args)
    rows = lifecycle.status(d)
    if rows is None:
        print(f"lunarhub is not running (state: {d.state_path})")
        return 3
    print(f"{'component':16s} {'state':10s} detail")
    for row in rows:
        print(f"{row.component:16s} {row.state:10s} {row.detail}")
    return 0 if all(row.healthy for row in rows) else 1
