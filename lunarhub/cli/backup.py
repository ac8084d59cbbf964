"""`lunarhub backup [DEST]`, `lunarhub backup verify SRC`, `lunarhub restore SRC` (root's; the steps are
lunarhub.operations.backup, the how-to is docs/operations.md)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lunarhub.cli.options import load
from lunarhub.config import Deployment
from lunarhub.operations import backup as ops
from lunarhub.platform import lifecycle


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("backup", description="copy the state (hub database, secrets, roster, dashboards, courses, "
                       "team folders, audit and access logs) into a new backup while the stack runs; "
                       "`backup verify SRC` checks one")
    b.add_argument("target", nargs="*", metavar="DEST | verify SRC",
                   help="folder the backup goes into (default: operations.backup.dest, else <state_dir>-backups); "
                        "or `verify SRC` to recompute the checksums of backup SRC")
    b.add_argument("--homes", action="store_true", help="include users' and projects' home folders")
    b.add_argument("--keep", type=int, metavar="N", help="then remove the oldest backups in DEST beyond N")
    b.add_argument("--scheduled", action="store_true",
                   help="run forever, backing up as operations.backup says (what the supervisor runs)")
    b.set_defaults(handler=cmd_backup)
    r = sub.add_parser("restore", description="put a backup in place of the state (verified first; refused "
                       "while the stack runs unless --force)")
    r.add_argument("src", help="a backup folder (lunarhub-backup-<time>)")
    r.add_argument("--force", action="store_true", help="stop the running stack first")
    r.add_argument("--no-homes", action="store_true", help="leave home folders as they are even if the backup has them")
    r.set_defaults(handler=cmd_restore)


def _root_only(what: str) -> str | None:
    if os.geteuid() == 0:
        return None
    return (f"lunarhub {what}: operators only: run it as root (the state holds every account's secrets and "
            f"files), e.g. sudo lunarhub {what}")


def cmd_backup(args: argparse.Namespace) -> int:
    if args.target[:1] == ["verify"]:
        return _verify(args.target[1:])
    if len(args.target) > 1:
        print(f"lunarhub backup: one DEST at most, got {' '.join(args.target)}", file=sys.stderr)
        return 2
    refused = _root_only("backup")
    if refused:
        print(refused, file=sys.stderr)
        return 1
    d = load(args)
    try:
        if args.scheduled:
            ops.run_scheduled(d, log=lambda line: print(line, flush=True))
            return 0
        keep = args.keep if args.keep is not None else None
        res = ops.backup(d, Path(args.target[0]) if args.target else None, homes=args.homes, keep=keep)
    except ops.BackupError as exc:
        print(f"lunarhub backup: {exc}", file=sys.stderr)
        return 1
    print(f"backup {res.path}: {res.files} files, {res.bytes / 2**20:.1f} MiB in {res.seconds:.1f} s")
    for line in res.skipped:
        print(f"  skipped {line}")
    for old in res.removed:
        print(f"  removed {old} (--keep {args.keep})")
    return 0


def _verify(rest: list[str]) -> int:
    if len(rest) != 1:
        print("lunarhub backup verify: give one backup folder: lunarhub backup verify SRC", file=sys.stderr)
        return 2
    try:
        manifest = ops.verify(Path(rest[0]))
    except ops.BackupError as exc:
        print(f"lunarhub backup verify: {exc}", file=sys.stderr)
        return 1
    except PermissionError as exc:
        print(f"lunarhub backup verify: {exc.filename}: permission denied (backups are root's)", file=sys.stderr)
        return 1
    files = [e for e in manifest.entries if e.kind == "file"]
    v = manifest.data.get("versions", {})
    print(f"{rest[0]}: OK, {len(files)} files checked ({sum(e.size for e in files) / 2**20:.1f} MiB), made "
          f"{manifest.data.get('created')} by lunarhub {v.get('lunarhub')} / JupyterHub {v.get('jupyterhub')}")
    return 0


def _stop(d: Deployment) -> None:
    n = lifecycle.stop_user_servers(d)
    lifecycle.stop(d)
    print(f"stopped the running stack ({n} user server(s)) before restoring", flush=True)


def cmd_restore(args: argparse.Namespace) -> int:
    refused = _root_only("restore")
    if refused:
        print(refused, file=sys.stderr)
        return 1
    d = load(args)
    try:
        res = ops.restore(d, Path(args.src), force=args.force, homes=not args.no_homes, stop=_stop)
    except ops.BackupError as exc:
        print(f"lunarhub restore: {exc}; nothing was changed", file=sys.stderr)
        return 1
    print(f"restored {args.src} into {res.path}: {res.files} files in {res.seconds:.1f} s. Start it: lunarhub up")
    for note in res.notes:
        print(f"  note: {note}")
    return 0
