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
    pw = sub.add_parser("passwords", description="show the generated passwords not yet used (operator only); "
                        "each is forgotten at its user's first login")
    pw.add_argument("--reset", metavar="USER", help="give USER a new generated password (shown until first login)")
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
    if args.reset:
        if args.reset not in d.users:
            print(f"lunarhub passwords: unknown user {args.reset!r} (not in the deployment's users)", file=sys.stderr)
            return 2
        print(f"{args.reset:20s} {secrets.set_password(d, args.reset)}")
        return 0
    known = secrets.initial_passwords(d)
    hashed = secrets.password_hashes(d)
    for name in sorted(d.users):
        if name in known:
            shown = known[name]
        elif name in hashed:
            shown = "(in use: forgotten at first login; lunarhub passwords --reset NAME gives a new one)"
        else:
            shown = "(not yet generated: run lunarhub up)"
        print(f"{name:20s} {shown}")
    return 0
