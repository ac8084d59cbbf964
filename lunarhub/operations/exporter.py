"""lunarhub's own metrics, for Prometheus through the node exporter's textfile collector.

The supervisor program ``monitoring-exporter`` (root: the sites' access logs and the backups are
root's) runs `run` forever. Each round it

- reads what the sites' access logs gained since the last round and counts requests, bytes and
  refusals by site, policy, dataset (the catalog entry whose files were read) and the reader's
  institute. No user name becomes a label: Prometheus keeps what datasets an institute read, and
  the per-user record stays in the logs and the audit trail (root's);
- probes each local site (``/healthz``) and each gateway (``/api/health``);
- reports the newest backup's age against ``operations.backup.schedule``, the state dir's disk, and
  the deployment's alert thresholds (so hub/monitoring/alerts.yml stays the same everywhere);

then replaces ``<state>/monitoring/textfile/lunarhub.prom`` in one rename. Writing a file instead of
listening keeps the exporter off the network.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from lunarhub.config import Deployment
from lunarhub.files import write_atomic

TEXTFILE = "lunarhub.prom"


def _policies() -> tuple[str, ...]:
    from lunarhub.data.sites import POLICIES

    return tuple(POLICIES)


def datasets(d: Deployment, site: str) -> list[tuple[str, str]]:
    """(path prefix under the site root, catalog entry) of the site's catalog, longest prefix first."""
    from lunarhub.data import sites

    text = sites.served_catalog_text(d, site)
    if not text:
        return []
    try:
        sources = (yaml.safe_load(text) or {}).get("sources") or {}
    except yaml.YAMLError:
        return []
    out = []
    for name, entry in sources.items():
        urlpath = str(((entry or {}).get("args") or {}).get("urlpath", ""))
        prefix = urlpath.replace("{{ CATALOG_DIR }}", "").lstrip("/")
        if prefix:
            out.append(("/" + prefix, str(name)))
    return sorted(out, key=lambda p: -len(p[0]))


def reader_institution(d: Deployment, user: str) -> str:
    """The institute a log's `user` belongs to: a user's first group's, a dashboard credential's
    (`dash/<owner>/<slug>`) owner's, `joint` for a project, `anonymous` without credentials."""
    if not user:
        return "anonymous"
    if user.startswith("dash/"):
        user = user.split("/")[1] if user.count("/") >= 2 else ""
    if user.startswith("project-") or user.startswith("lh-project-"):
        return "joint"
    u = d.users.get(user)
    if u is None:
        return "other"
    for g in u.groups:
        inst = d.groups[g].institution if g in d.groups else None
        if inst:
            return inst
    return "none"


@dataclass
class SiteLog:
    """What one site's access log said so far; `feed` reads what was appended since."""

    site: str
    path: Path
    offset: int = 0
    inode: int | None = None
    requests: Counter = field(default_factory=Counter)  # (policy, dataset, institution, code) -> n
    sent: Counter = field(default_factory=Counter)  # (policy, dataset, institution) -> body bytes
    refusals: Counter = field(default_factory=Counter)  # (policy, dataset, reason) -> n
    _partial: bytes = b""

    def feed(self, classify: Callable[[dict[str, Any]], tuple[str, str, str]]) -> int:
        """Count the lines appended since the last call; a rotated or truncated log is read anew."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, OSError):
            return 0
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_ino != self.inode or st.st_size < self.offset:
                self.inode, self.offset, self._partial = st.st_ino, 0, b""
            f.seek(self.offset)
            chunk = f.read()
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # a line nginx is still writing
        n = 0
        for raw in lines:
            entry = _json_line(raw)
            if entry is None:
                continue
            policy, dataset, inst = classify(entry)
            status = int(entry.get("status") or 0)
            self.requests[(policy, dataset, inst, f"{status // 100}xx")] += 1
            self.sent[(policy, dataset, inst)] += int(entry.get("bytes") or 0)
            if status in (401, 403):
                self.refusals[(policy, dataset, "credentials" if status == 401 else "policy")] += 1
            n += 1
        return n


def _json_line(raw: bytes) -> dict[str, Any] | None:
    import json

    try:
        entry = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return entry if isinstance(entry, dict) else None


def classifier(d: Deployment, site: str) -> Callable[[dict[str, Any]], tuple[str, str, str]]:
    prefixes = datasets(d, site)
    policies = set(_policies())
    cache: dict[str, str] = {}

    def classify(entry: dict[str, Any]) -> tuple[str, str, str]:
        uri = str(entry.get("uri", ""))
        first = uri.lstrip("/").split("/", 1)[0]
        policy = first if first in policies else "-"
        dataset = "-"
        for prefix, name in prefixes:
            if uri == prefix or uri.startswith(prefix.rstrip("/") + "/"):
                dataset = name
                break
        user = str(entry.get("user", ""))
        if user not in cache:
            cache[user] = reader_institution(d, user)
        return policy, dataset, cache[user]

    return classify


# ---------------------------------------------------------------- probes


def _probe(url: str, good: Iterable[int]) -> bool:
    try:
        return requests.get(url, timeout=3, allow_redirects=False).status_code in set(good)
    except requests.RequestException:
        return False


def site_probes(d: Deployment) -> list[tuple[str, str, bool]]:
    """(site, url, answers) for every site."""
    out = []
    for name, site in d.sites.items():
        if site.kind == "local":
            url = f"{d.scheme}://127.0.0.1:{site.port}/healthz"
            out.append((name, url, _probe(url, {200})))
        elif site.url:
            url = site.url.rstrip("/") + "/catalog.yaml"
            out.append((name, url, _probe(url, {200, 401})))
    return out


def gateway_probes(d: Deployment) -> list[tuple[str, str, bool]]:
    """(gateway, url, answers) for the hub's gateway and each site's."""
    out = []
    if d.services.dask_gateway.enabled:
        url = f"{d.proxy_url}/services/dask-gateway/api/health"
        out.append(("dask-gateway", url, _probe(url, {200})))
    from lunarhub.compute import site_gateway

    for site in site_gateway.sites(d):
        url = f"{d.proxy_url}{site_gateway.prefix(site)}/api/health"
        out.append((f"dask-gateway-{site}", url, _probe(url, {200})))
    return out


SCHEDULE_RE = re.compile(r"^(?:daily \d\d:\d\d|every (\d+) (minutes|hours))$")


def schedule_period(schedule: str) -> float:
    """Seconds between two scheduled backups."""
    m = SCHEDULE_RE.match(schedule)
    if m is None:
        raise ValueError(f"schedule {schedule!r}")
    if m.group(1) is None:
        return 86_400.0
    return int(m.group(1)) * (60.0 if m.group(2) == "minutes" else 3600.0)


def newest_backup(d: Deployment) -> float | None:
    """UTC time (epoch seconds) of the newest finished backup in the scheduled destination."""
    from lunarhub.operations import backup

    plan = d.operations.backup
    dest = d.path(plan.dest) if plan is not None and plan.dest else backup.default_dest(d)
    newest = None
    for path in backup.backups_in(dest) if dest.is_dir() else []:
        m = backup.NAME_RE.match(path.name)
        if m:
            moment = datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
            newest = moment if newest is None else max(newest, moment)
    return newest


# ---------------------------------------------------------------- the collector


class Exporter:
    """Everything `lunarhub.prom` holds; `collect` is what prometheus_client asks for."""

    def __init__(self, d: Deployment) -> None:
        from lunarhub.data import sites

        self.d = d
        self.started = time.time()
        self.logs = {name: SiteLog(name, sites.site_state_dir(d, name) / "access.log")
                     for name, s in d.sites.items() if s.kind == "local"}
        self.classifiers = {name: classifier(d, name) for name in self.logs}
        self.site_up: list[tuple[str, str, bool]] = []
        self.gateway_up: list[tuple[str, str, bool]] = []
        self.last_run = 0.0

    def refresh(self) -> None:
        for name, log in self.logs.items():
            log.feed(self.classifiers[name])
        self.site_up = site_probes(self.d)
        self.gateway_up = gateway_probes(self.d)
        from lunarhub.operations import usage

        usage.harvest(self.d)  # the gateways forget finished clusters after a day; the audit trail keeps them
        self.last_run = time.time()

    def collect(self) -> Iterator[Metric]:
        d, m = self.d, self.d.monitoring
        req = CounterMetricFamily("lunarhub_site_requests", "Requests the data sites answered.",
                                  labels=["site", "policy", "dataset", "institution", "code"])
        byt = CounterMetricFamily("lunarhub_site_bytes", "Body bytes the data sites sent (egress).",
                                  labels=["site", "policy", "dataset", "institution"])
        ref = CounterMetricFamily("lunarhub_site_refusals", "Requests the sites refused (401 credentials, "
                                  "403 policy or lineage).", labels=["site", "policy", "dataset", "reason"])
        for site, log in self.logs.items():
            for key, n in sorted(log.requests.items()):
                req.add_metric([site, *key], n)
            for key3, n in sorted(log.sent.items()):
                byt.add_metric([site, *key3], n)
            for key3, n in sorted(log.refusals.items()):
                ref.add_metric([site, *key3], n)
        yield from (req, byt, ref)
        up = GaugeMetricFamily("lunarhub_site_up", "1 when the data site answers.", labels=["site", "url"])
        for site, url, ok in self.site_up:
            up.add_metric([site, url], 1.0 if ok else 0.0)
        yield up
        gw = GaugeMetricFamily("lunarhub_gateway_up", "1 when the dask gateway answers /api/health.",
                               labels=["gateway", "url"])
        for name, url, ok in self.gateway_up:
            gw.add_metric([name, url], 1.0 if ok else 0.0)
        yield gw
        st = os.statvfs(d.state_path)
        path = str(d.state_path)
        yield _gauge("lunarhub_state_dir_size_bytes", "Size of the state dir's file system.",
                     st.f_blocks * st.f_frsize, path=path)
        yield _gauge("lunarhub_state_dir_avail_bytes", "Bytes left to unprivileged writers on the state dir's file "
                     "system.", st.f_bavail * st.f_frsize, path=path)
        yield _gauge("lunarhub_disk_full_ratio", "monitoring.disk_full_ratio of the deployment.", m.disk_full_ratio)
        yield _gauge("lunarhub_spawn_p95_threshold_seconds", "monitoring.spawn_p95_threshold_seconds.",
                     m.spawn_p95_threshold_seconds)
        yield _gauge("lunarhub_exporter_interval_seconds", "monitoring.exporter_interval_seconds.",
                     m.exporter_interval_seconds)
        yield _gauge("lunarhub_exporter_last_run_timestamp_seconds", "When this exporter last refreshed.",
                     self.last_run)
        plan = d.operations.backup
        if plan is not None:
            newest = newest_backup(d)
            # No backup yet: count from this exporter's start, so a fresh deployment gets one period of grace.
            yield _gauge("lunarhub_backup_last_success_timestamp_seconds", "Time of the newest finished backup.",
                         newest if newest is not None else self.started)
            yield _gauge("lunarhub_backup_max_age_seconds", "1.5 periods of operations.backup.schedule.",
                         1.5 * schedule_period(plan.schedule))

    def text(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)  # type: ignore[arg-type]
        return generate_latest(registry)


def _gauge(name: str, doc: str, value: float, **labels: str) -> Metric:
    g = GaugeMetricFamily(name, doc, labels=list(labels))
    g.add_metric(list(labels.values()), value)
    return g


def write(d: Deployment, exporter: Exporter) -> Path:
    from lunarhub.operations import monitoring

    lay = monitoring.layout(d)
    acct = monitoring.account(d)
    target = lay.textfile / TEXTFILE
    write_atomic(target, exporter.text(), 0o640 if acct else 0o600)
    if acct:
        os.chown(target, 0, acct.pw_gid)
    return target


def run(d: Deployment, rounds: int | None = None, log: Callable[[str], None] = print) -> None:
    """Refresh and write every `monitoring.exporter_interval_seconds` (forever, or `rounds` times)."""
    exporter = Exporter(d)
    n = 0
    while rounds is None or n < rounds:
        started = time.monotonic()
        try:
            exporter.refresh()
            write(d, exporter)
        except Exception as exc:  # noqa: BLE001 - a bad round is logged; ExporterStale alerts when it lasts
            log(f"monitoring exporter: {exc.__class__.__name__}: {exc}")
        n += 1
        if rounds is None or n < rounds:
            time.sleep(max(0.1, d.monitoring.exporter_interval_seconds - (time.monotonic() - started)))
