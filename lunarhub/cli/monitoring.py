"""`lunarhub monitoring alerts|targets|exporter`: what Prometheus says (root's; lunarhub.operations.monitoring)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from lunarhub.cli.options import load
from lunarhub.operations import exporter, monitoring


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("monitoring", description="Prometheus's alerts that fire and its scrape targets "
                       "(`exporter` is the supervisor's program writing lunarhub's own metrics)")
    p.add_argument("what", choices=("alerts", "targets", "exporter"))
    p.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    p.set_defaults(handler=cmd_monitoring)


def cmd_monitoring(args: argparse.Namespace) -> int:
    d = load(args)
    if os.geteuid() != 0 and d.hub.isolation == "system-users":
        print("lunarhub monitoring: operators only: run it as root (Prometheus's password is root's)", file=sys.stderr)
        return 1
    if not d.monitoring.enabled:
        print("lunarhub monitoring: monitoring.enabled is false in the deployment file", file=sys.stderr)
        return 2
    if args.what == "exporter":
        exporter.run(d, log=lambda line: print(line, flush=True))
        return 0
    try:
        rows = monitoring.firing(d) if args.what == "alerts" else monitoring.targets(d)
    except monitoring.MonitoringError as exc:
        print(f"lunarhub monitoring: Prometheus does not answer: {exc}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=1))
    elif args.what == "alerts":
        for a in rows:
            print(f"{a['alert']:16s} {a['severity']:9s} since {a['since'][:19]}  {a['summary']}")
        if not rows:
            print("no alert fires")
    else:
        for t in rows:
            print(f"{t['job']:12s} {t['instance']:22s} {t['health']:8s} {t['error']}")
    return 1 if args.what == "alerts" and rows else 0
