"""`lunarhub users list|add|set-groups|remove|import`: the roster, mirrored into the running hub."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lunarhub import config
from lunarhub.config import ConfigError, Deployment, roster, secrets
from lunarhub.platform import hubclient, lifecycle


def register(sub: argparse._SubParsersAction) -> None:
    users = sub.add_parser("users", description="list, add and remove users, set their groups, import a CSV roster "
                           "(kept beside the deployment file; the running hub follows at once)")
    users.set_defaults(handler=cmd_users)
    actions = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="users and their groups", description="users and their groups")
    add = actions.add_parser("add", help="add a user with groups", description="add a user with groups")
    add.add_argument("name", help="login name")
    add.add_argument("--groups", required=True, help="comma-separated group names")
    regroup = actions.add_parser("set-groups", help="replace a user's groups",
                                 description="replace a user's groups")
    regroup.add_argument("name", help="an existing user")
    regroup.add_argument("--groups", required=True, help="comma-separated group names")
    remove = actions.add_parser("remove", help="remove a user from the hub (the home folder is kept)",
                                description="remove a user from the hub (the home folder is kept)")
    remove.add_argument("name", help="an existing user")
    imp = actions.add_parser("import", help="add or update every user of a CSV roster",
                             description="add or update every user of a CSV roster")
    imp.add_argument("csv", help="CSV with columns username,groups[,full_name]; groups separated by ';'")


def _apply_live(d: Deployment, name: str, groups: list[str] | None, reload_roles: bool = True) -> str:
    """Mirror a roster change into the running hub, if it runs."""
    try:
        api = hubclient.HubAPI(d)
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
            lifecycle.restart_hub(d)
            note = " (applied; hub restarted to update instructors' access)"
        return note
    except hubclient.HubUnavailable:
        return " (hub not running: applied at next `lunarhub up`)"


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
            # One hub restart for the whole roster, after its last user.
            note = _apply_live(d, name, groups, reload_roles=i == len(rows) - 1)
            print(f"{name}: groups {','.join(groups)}{note}")
        for u, p in secrets.ensure_passwords(d, [r[0] for r in rows]).items():
            print(f"  password for {u}: {p}")
        return 0
    raise AssertionError(args.action)
