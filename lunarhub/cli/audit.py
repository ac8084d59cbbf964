"""`lunarhub audit`: the audit trail (who shared what with whom, who opened which dashboard
version, what each dashboard read), for admins of the machine that hosts the stack."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime
from typing import Any

from lunarhub.cli.options import load
from lunarhub.config import Deployment
from lunarhub.platform import audit

# Shown first, in this order; any other fields follow alphabetically.
LEADING = ("actor", "owner", "server", "audience", "user", "reason")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", description="list audit events: shares created, refused and revoked, dashboards "
                       "opened and what they read (admins only: as root)")
    p.add_argument("--component", metavar="C", help="only events of component C (e.g. hub, dashboards)")
    p.add_argument("--event", metavar="E", help="only events named E (e.g. share-refused)")
    p.add_argument("--user", metavar="U", help="only events naming user U (as actor, owner, audience or user)")
    p.add_argument("--since", metavar="ISO", help="only events at or after this local date or time "
                   "(2026-03-01 or 2026-03-01T12:00)")
    p.add_argument("--sites", action="store_true", help="also every read the local data sites served "
                   "(component sites: which credential read which file, dashboards' scoped ones included)")
    p.add_argument("--json", action="store_true", help="a JSON list of the events instead of lines")
    p.set_defaults(handler=cmd_audit)


def may_read(d: Deployment | None) -> str | None:
    """Why the caller may not read the trail, or None (`d` None: the caller cannot even read the
    deployment's state). Root may; so may the account the hub runs as in single-account mode
    (where the trail is that account's)."""
    if os.geteuid() == 0:
        return None
    folder = audit.audit_dir(d) if d is not None else "<state_dir>/audit"
    if (d is not None and d.hub.isolation == "single-account" and audit.audit_dir(d).is_dir()
            and audit.audit_dir(d).stat().st_uid == os.geteuid()):
        return None
    return (f"lunarhub audit: admins only: run it as root (the audit trail in {folder} is root's and "
            f"private to it), e.g. sudo lunarhub audit")


def parse_since(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since {text!r}: not an ISO date or time (e.g. 2026-03-01 or 2026-03-01T12:00)") from None
    return moment.timestamp()  # a naive time is local, as the listing shows it


def names_user(entry: dict[str, Any], user: str) -> bool:
    """True if any field names `user`, alone or as an audience ("user:NAME")."""
    return any(value in (user, f"user:{user}") for key, value in entry.items()
               if key not in ("time", "component", "event") and isinstance(value, str))


def site_reads(d: Deployment, since: float | None = None) -> list[dict[str, Any]]:
    """The local sites' access logs as audit events ("sites", "read"): each names the credential
    (a user, a project, `dash/<owner>/<slug>` for a dashboard's scoped one, `run/...` for a
    trusted run) and, for a dashboard's, the dashboard."""
    from lunarhub.data import sites

    out = []
    for name, site in d.sites.items():
        if site.kind != "local":
            continue
        for e in sites.read_log(d, name):
            try:
                when = datetime.fromisoformat(e["time"]).timestamp()
            except (KeyError, ValueError):
                continue
            if since is not None and when < since:
                continue
            entry = {"time": when, "component": "sites", "event": "read", "site": name, "user": e.get("user", ""),
                     "uri": e.get("uri", ""), "status": e.get("status"), "bytes": e.get("bytes")}
            parts = str(entry["user"]).split("/")
            if parts[0] in ("dash", "run") and len(parts) >= 3:
                entry["owner"], entry["dashboard"] = parts[1], parts[2]
            out.append(entry)
    return out


def select(d: Deployment, component: str | None = None, event: str | None = None, user: str | None = None,
           since: float | None = None, with_sites: bool = False) -> list[dict[str, Any]]:
    match = {"event": event} if event else {}
    entries = [] if component == "sites" else audit.read(d, [component] if component else None, since=since,
                                                         **match)
    if with_sites or component == "sites":
        entries += [e for e in site_reads(d, since) if not event or e["event"] == event]
        entries.sort(key=lambda e: e.get("time", 0))
    return [e for e in entries if user is None or names_user(e, user)]


def _shown(value: Any) -> str:
    # Quoted when it would not read as one word (reasons are sentences).
    if isinstance(value, str) and value and " " not in value:
        return value
    return json.dumps(value, ensure_ascii=False)


def line(entry: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(entry.get("time", 0))))
    rest = {k: v for k, v in entry.items() if k not in ("time", "component", "event")}
    keys = [k for k in LEADING if k in rest] + sorted(k for k in rest if k not in LEADING)
    fields = " ".join(f"{k}={_shown(rest[k])}" for k in keys)
    return f"{when}  {entry.get('component', '?'):10s} {entry.get('event', '?'):16s} {fields}"


def cmd_audit(args: argparse.Namespace) -> int:
    try:
        d: Deployment | None = load(args)
    except PermissionError:
        d = None  # the roster and state are root's: refused below, by the same message
    refused = may_read(d)
    if refused:
        print(refused, file=sys.stderr)
        return 1
    try:
        since = parse_since(args.since) if args.since else None
        assert d is not None
        entries = select(d, args.component, args.event, args.user, since, args.sites)
    except ValueError as exc:
        print(f"lunarhub audit: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(entries, ensure_ascii=False, indent=1))
        return 0
    if not entries:
        print("no audit events match", file=sys.stderr)
        return 0
    for entry in entries:
        print(line(entry))
    return 0
