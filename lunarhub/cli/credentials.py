"""`lunarhub token` and `lunarhub passwords`: credentials the operator hands out."""

from __future__ import annotations

import argparse
import sys

from lunarhub.cli.options import load
from lunarhub.config import secrets
from lunarhub.platform import hubclient


def register(sub: argparse._SubParsersAction) -> None:
    tok = sub.add_parser("token", description="print a new API token for a hub user (like `jupyterhub token`)")
    tok.add_argument("user", help="a user the hub knows")
    tok.add_argument("--note", default="issued by lunarhub token", help="shown with the token in the hub")
    tok.add_argument("--expires-in", type=int, default=None, help="seconds (default: never)")
    tok.set_defaults(handler=cmd_token)
    pw = sub.add_parser("passwords", description="show the generated demo passwords (operator only)")
    pw.set_defaults(handler=cmd_passwords)


def cmd_token(args: argparse.Namespace) -> int:
    d = load(args)
    api = hubclient.HubAPI(d)
    names = {u["name"] for u in api.users()}
    if args.user not in names:
        print(f"lunarhub token: unknown user {args.user!r}", file=sys.stderr)
        return 2
    print(api.new_token(args.user, note=args.note, expires_in=args.expires_in))
    return 0


def cmd_passwords(args: argparse.Namespace) -> int:
    d = load(args)
    if d.auth.kind != "password":
        print(f"auth.kind is {d.auth.kind!r}: passwords are managed by the identity provider")
        return 0
    known = secrets.initial_passwords(d)
    for name in sorted(d.users):
        print(f"{name:20s} {known.get(name, '(not yet generated: run lunarhub up)')}")
    return 0
