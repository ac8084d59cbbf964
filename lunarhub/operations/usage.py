"""Core-hours of users' servers and dask clusters, per user and group and month, and the groups'
monthly quotas (`groups.<g>.core_hours_per_month`; docs/operations.md, "Usage accounting").

The records are ones users cannot write: the hub's spawner appends `server-started` and
`server-stopped` (user, server, cores) to the audit trail (``<state>/audit/usage.jsonl``, root's,
0600), and the gateway's own database holds each cluster's scheduler and workers with their start
and stop times and cores. The gateway forgets a finished cluster after a day, so lunarhub's exporter
copies each finished cluster into the audit trail once (`cluster-finished`, with its core-seconds);
clusters still running are read from the gateway's database at the time of the report.

A user's core-hours count toward every group they belong to; a group's quota is checked against
the sum of its members' core-hours this month, at each spawn (the hub's pre-spawn hook) and each
cluster start (the gateway), with a message naming the group, its use and its quota.
"""

from __future__ import annotations

import calendar
import csv
import functools
import io
import json
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lunarhub.config import Deployment
from lunarhub.platform import audit

COMPONENT = "usage"


class QuotaExceeded(RuntimeError):
    pass


@dataclass(frozen=True)
class Interval:
    user: str
    kind: str  # "server" or "cluster"
    name: str
    cores: float
    start: float
    stop: float | None  # None: still running


def month_bounds(month: str) -> tuple[float, float]:
    """`YYYY-MM` -> [start, end) in UTC epoch seconds; a bad value raises ValueError naming it."""
    try:
        first = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"month {month!r}: write it as YYYY-MM, e.g. 2026-11") from None
    days = calendar.monthrange(first.year, first.month)[1]
    return first.timestamp(), first.timestamp() + days * 86400


def current_month(now: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if now is None else now, UTC).strftime("%Y-%m")


# ---------------------------------------------------------------- records


@functools.lru_cache(maxsize=1)
def hub_deployment() -> Deployment:
    """The deployment the hub process runs ($LUNARHUB_CONFIG), for the spawner's records."""
    from lunarhub import config

    return config.load()


def record_server(d: Deployment, event: str, user: str, server: str, cores: float) -> None:
    """The spawner's record of a server that started or stopped (the hub, as root)."""
    audit.record(d, COMPONENT, event, user=user, server=server, cores=float(cores))


def server_intervals(events: Iterable[dict[str, Any]]) -> list[Interval]:
    """Pair each `server-started` with the next `server-stopped` of the same user and server."""
    open_: dict[tuple[str, str], dict[str, Any]] = {}
    out = []
    for e in sorted(events, key=lambda e: e.get("time", 0)):
        key = (str(e.get("user")), str(e.get("server", "")))
        if e.get("event") == "server-started":
            if key in open_:  # a start without a stop (the hub died): the new start ends it
                s = open_.pop(key)
                out.append(Interval(key[0], "server", key[1], float(s.get("cores", 1)), s["time"], e["time"]))
            open_[key] = e
        elif e.get("event") == "server-stopped" and key in open_:
            s = open_.pop(key)
            out.append(Interval(key[0], "server", key[1], float(s.get("cores", 1)), s["time"], e["time"]))
    for key, s in open_.items():
        out.append(Interval(key[0], "server", key[1], float(s.get("cores", 1)), s["time"], None))
    return out


def gateway_databases(d: Deployment) -> list[Path]:
    """The gateways' SQLite databases (the hub's and each Slurm site's) that exist."""
    paths = [d.state_path / "gateway" / "gateway.sqlite", *sorted(d.state_path.glob("gateway/*/gateway.sqlite"))]
    return [p for p in paths if p.is_file() and not p.is_symlink()]


def _cores(config: Any, key: str) -> float:
    try:
        return float((json.loads(config) if isinstance(config, str | bytes) else config or {}).get(key) or 1)
    except (ValueError, AttributeError):
        return 1.0


def gateway_clusters(db: Path) -> list[dict[str, Any]]:
    """Each cluster of a gateway database: name, user, start, stop (seconds) and its processes'
    core-seconds so far (scheduler and workers; a running one counts up to now)."""
    now = time.time()
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        clusters = con.execute("SELECT id, name, username, config, start_time, stop_time FROM clusters").fetchall()
        workers = con.execute("SELECT cluster_id, start_time, stop_time FROM workers").fetchall()
    except sqlite3.Error:
        return []
    finally:
        con.close()
    by_cluster: dict[int, list[tuple[float, float | None]]] = defaultdict(list)
    for cid, start, stop in workers:
        by_cluster[cid].append((start / 1000, stop / 1000 if stop else None))
    out = []
    for cid, name, user, config, start, stop in clusters:
        start_s, stop_s = start / 1000, (stop / 1000 if stop else None)
        spans = [(start_s, stop_s, _cores(config, "scheduler_cores"))]
        spans += [(a, b, _cores(config, "worker_cores")) for a, b in by_cluster.get(cid, [])]
        gw = "dask-gateway" if db.parent.name == "gateway" else f"dask-gateway-{db.parent.name}"
        out.append({"name": name, "user": user, "start": start_s, "stop": stop_s, "gateway": gw,
                    "spans": [(a, b if b is not None else None, c) for a, b, c in spans],
                    "core_seconds": sum(((b or now) - a) * c for a, b, c in spans)})
    return out


def harvest(d: Deployment) -> int:
    """Copy finished clusters the audit trail does not have yet into it (the exporter's rounds)."""
    known = {(e.get("gateway"), e.get("cluster")) for e in audit.read(d, [COMPONENT], event="cluster-finished")}
    n = 0
    for db in gateway_databases(d):
        for c in gateway_clusters(db):
            if c["stop"] is None or (c["gateway"], c["name"]) in known:
                continue
            audit.record(d, COMPONENT, "cluster-finished", user=c["user"], cluster=c["name"], gateway=c["gateway"],
                         start=c["start"], stop=c["stop"], spans=c["spans"], core_seconds=round(c["core_seconds"], 3))
            n += 1
    return n


def cluster_intervals(d: Deployment) -> list[Interval]:
    """Every cluster process ever recorded: finished ones from the audit trail, the rest from the
    gateways' databases (running, or finished and not harvested yet)."""
    out = []
    seen = set()
    for e in audit.read(d, [COMPONENT], event="cluster-finished"):
        seen.add((e.get("gateway"), e.get("cluster")))
        for a, b, c in e.get("spans", []):
            out.append(Interval(str(e["user"]), "cluster", str(e["cluster"]), float(c), float(a),
                                float(b) if b is not None else float(e["stop"])))
    for db in gateway_databases(d):
        for c in gateway_clusters(db):
            if (c["gateway"], c["name"]) in seen:
                continue
            for a, b, cores in c["spans"]:
                out.append(Interval(c["user"], "cluster", c["name"], cores, a, b if b is not None else c["stop"]))
    return out


# ---------------------------------------------------------------- the report


def core_hours(intervals: Iterable[Interval], start: float, end: float, now: float | None = None) -> float:
    """Core-hours of `intervals` inside [start, end) (a running one counts up to `now`)."""
    now = time.time() if now is None else now
    total = 0.0
    for i in intervals:
        stop = i.stop if i.stop is not None else now
        overlap = min(stop, end) - max(i.start, start)
        if overlap > 0:
            total += overlap * i.cores
    return total / 3600


@dataclass
class Report:
    month: str
    users: dict[str, dict[str, float]]  # user -> {server, cluster}
    groups: dict[str, dict[str, float]]  # group -> {server, cluster, quota or -1}


def report(d: Deployment, month: str, now: float | None = None) -> Report:
    start, end = month_bounds(month)
    servers = server_intervals(audit.read(d, [COMPONENT]))
    clusters = cluster_intervals(d)
    users: dict[str, dict[str, float]] = defaultdict(lambda: {"server": 0.0, "cluster": 0.0})
    for kind, intervals in (("server", servers), ("cluster", clusters)):
        by_user: dict[str, list[Interval]] = defaultdict(list)
        for i in intervals:
            by_user[i.user].append(i)
        for user, items in by_user.items():
            hours = core_hours(items, start, end, now)
            if hours > 0:
                users[user][kind] += hours
    groups: dict[str, dict[str, float]] = {}
    for g, group in d.groups.items():
        members = [u for u, info in d.users.items() if g in info.groups]
        row = {"server": sum(users[u]["server"] for u in members if u in users),
               "cluster": sum(users[u]["cluster"] for u in members if u in users),
               "quota": group.core_hours_per_month if group.core_hours_per_month is not None else -1.0}
        groups[g] = row
    return Report(month, dict(users), groups)


def render(rep: Report, as_csv: bool) -> str:
    rows = [("user", u, v["server"], v["cluster"], "") for u, v in sorted(rep.users.items())]
    rows += [("group", g, v["server"], v["cluster"], "" if v["quota"] < 0 else f"{v['quota']:g}")
             for g, v in sorted(rep.groups.items())]
    if as_csv:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["month", "kind", "name", "server_core_hours", "cluster_core_hours", "total_core_hours",
                    "quota_core_hours"])
        for kind, name, s, c, q in rows:
            w.writerow([rep.month, kind, name, f"{s:.3f}", f"{c:.3f}", f"{s + c:.3f}", q])
        return buf.getvalue()
    lines = [f"core-hours in {rep.month} (UTC)", f"{'':6s} {'name':24s} {'servers':>10s} {'clusters':>10s} "
             f"{'total':>10s} {'quota':>8s}"]
    for kind, name, s, c, q in rows:
        lines.append(f"{kind:6s} {name:24s} {s:10.2f} {c:10.2f} {s + c:10.2f} {q:>8s}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- quotas


def quota_refusal(d: Deployment, username: str, what: str, now: float | None = None) -> str | None:
    """Why `username` may not start a `what` (server, cluster) now: a group of theirs used its
    monthly core-hours; None when every quota leaves room (or none is set)."""
    user = d.users.get(username)
    if user is None:
        return None
    limited = [g for g in user.groups if g in d.groups and d.groups[g].core_hours_per_month is not None]
    if not limited:
        return None
    month = current_month(now)
    rep = report(d, month, now)
    for g in limited:
        used = rep.groups[g]["server"] + rep.groups[g]["cluster"]
        quota = float(d.groups[g].core_hours_per_month or 0)
        if used >= quota:
            return (f"cannot start a {what}: group {g!r} has used {used:.1f} of its {quota:g} core-hours for "
                    f"{month} (groups.{g}.core_hours_per_month); ask an operator, or wait until next month")
    return None


def check_quota(d: Deployment, username: str, what: str, now: float | None = None) -> None:
    why = quota_refusal(d, username, what, now)
    if why:
        raise QuotaExceeded(why)
