"""`lunarhub usage [--month YYYY-MM] [--csv]`: core-hours per user and group (root's; lunarhub.operations.usage)."""

from __future__ import annotations

import argparse
import os
import sys

from lunarhub.cli.options import load
from lunarhub.operations import usage


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("usage", description="core-hours of users' servers and dask clusters per user and group in "
                       "a month (UTC), with each group's quota")
    p.add_argument("--month", metavar="YYYY-MM", help="the month (default: this one)")
    p.add_argument("--csv", action="store_true", help="CSV instead of a table")
    p.set_defaults(handler=cmd_usage)


def cmd_usage(args: argparse.Namespace) -> int:
    d = load(args)
    if os.geteuid() != 0 and d.hub.isolation == "system-users":
        print("lunarhub usage: operators only: run it as root (the records are in the audit trail)", file=sys.stderr)
        return 1
    month = args.month or usage.current_month()
    try:
        usage.month_bounds(month)
    except ValueError as exc:
        print(f"lunarhub usage: --month: {exc}", file=sys.stderr)
        return 2
    usage.harvest(d)
    sys.stdout.write(usage.render(usage.report(d, month), args.csv))
    return 0
