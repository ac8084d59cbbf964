"""`lunarhub upgrade [--dry-run]` (root's; the steps are lunarhub.operations.upgrade, the how-to is
docs/operations.md, "Upgrades")."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from lunarhub.cli.options import load
from lunarhub.operations import upgrade as ops


def register(sub: argparse._SubParsersAction) -> None:
    u = sub.add_parser("upgrade", description="after installing a new release: back up, upgrade the hub "
                       "database and the state layout, restart keeping users' servers; says what changed")
    u.add_argument("--dry-run", action="store_true", help="say what it would do and change nothing")
    u.add_argument("--dest", metavar="DIR", help="where the backup taken first goes (default: "
                   "operations.backup.dest, else <state_dir>-backups)")
    u.add_argument("--timeout", type=float, default=240, help="seconds to wait for the hub at the restart")
    u.add_argument("--json", action="store_true", help="print what changed as JSON")
    u.set_defaults(handler=cmd_upgrade)


def cmd_upgrade(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("lunarhub upgrade: operators only: run it as root (it backs up and rewrites the state), "
              "e.g. sudo lunarhub upgrade", file=sys.stderr)
        return 1
    d = load(args)
    dest = Path(args.dest) if args.dest else None
    try:
        if args.dry_run:
            for line in ops.describe_plan(ops.plan(d, dest)):
                print(line)
            return 0
        started = time.monotonic()
        # With --json the progress goes to stderr: stdout is the report alone.
        out = sys.stderr if args.json else sys.stdout
        report = ops.run(d, dest, timeout=args.timeout,
                         log=lambda line: print(f"[{time.monotonic() - started:5.1f} s] {line}", file=out, flush=True))
    except ops.UpgradeError as exc:
        print(f"lunarhub upgrade: step {exc.step!r} failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(ops.as_json(report), indent=1))
        return 0
    print(f"lunarhub upgraded {d.state_path}:")
    for line in ops.describe(report):
        print(f"  {line}")
    return 0
