"""What the operators' dashboard shows (lunarhub/operations/dashboard_app.py), gathered without
Panel so it can be tested alone: Prometheus's answers, the usage records and the gateways' clusters.
Every figure is an aggregate (per group, dataset, institute); a failing source gives an empty
table and a note, never an error page."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lunarhub.config import Deployment, languages
from lunarhub.operations import monitoring, usage
from lunarhub.platform import audit

TEXTS: dict[str, dict[str, str]] = {
    "title": {"en": "lunarhub: operator dashboard", "ru": "lunarhub: панель оператора",
              "zh": "lunarhub：运维面板"},
    "active": {"en": "Active users", "ru": "Активные пользователи", "zh": "活跃用户"},
    "spawn": {"en": "Server start time (s)", "ru": "Время запуска сервера (с)", "zh": "服务器启动时间（秒）"},
    "failures": {"en": "Failed starts (15 min)", "ru": "Неудачные запуски (15 мин)", "zh": "启动失败（15 分钟）"},
    "per_group": {"en": "Servers and clusters per group", "ru": "Серверы и кластеры по группам",
                  "zh": "各组的服务器与集群"},
    "reads": {"en": "Site reads per dataset and institute", "ru": "Чтения с сайтов по наборам данных и институтам",
              "zh": "按数据集和机构统计的站点读取"},
    "egress": {"en": "Egress bytes per site and institute", "ru": "Исходящий трафик по сайтам и институтам",
               "zh": "按站点和机构统计的出站字节"},
    "alerts": {"en": "Alerts firing", "ru": "Активные оповещения", "zh": "正在触发的告警"},
    "none": {"en": "none", "ru": "нет", "zh": "无"},
    "unavailable": {"en": "Prometheus does not answer", "ru": "Prometheus не отвечает", "zh": "Prometheus 无响应"},
    "group": {"en": "group", "ru": "группа", "zh": "组"},
    "servers": {"en": "servers", "ru": "серверы", "zh": "服务器"},
    "clusters": {"en": "clusters", "ru": "кластеры", "zh": "集群"},
    "site": {"en": "site", "ru": "сайт", "zh": "站点"},
    "dataset": {"en": "dataset", "ru": "набор данных", "zh": "数据集"},
    "institution": {"en": "institute", "ru": "институт", "zh": "机构"},
    "requests": {"en": "requests", "ru": "запросы", "zh": "请求"},
    "bytes": {"en": "bytes", "ru": "байты", "zh": "字节"},
}
text = languages.translator(TEXTS)


def language(query: dict[str, Any], accept_language: str | None, cookie: str | None = None) -> str:
    """As on every other page (lunarhub.config.languages.pick); `query` as Bokeh gives it (a list
    of bytes per argument)."""
    asked = query.get("lang")
    if isinstance(asked, list | tuple):
        asked = asked[0] if asked else None
    if isinstance(asked, bytes):
        asked = asked.decode(errors="replace")
    return languages.pick(asked if isinstance(asked, str) else None, cookie, accept_language)


@dataclass
class Snapshot:
    active: dict[str, float] = field(default_factory=dict)  # 24h / 7d / 30d
    spawn: dict[str, float | None] = field(default_factory=dict)  # p50 / p99
    failures: float = 0.0
    per_group: list[dict[str, Any]] = field(default_factory=list)
    reads: list[dict[str, Any]] = field(default_factory=list)
    egress: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _scalar(d: Deployment, expr: str) -> float | None:
    rows = monitoring.query(d, expr)
    if not rows:
        return None
    value = rows[0]["value"]
    return None if value != value else value  # NaN: no samples in the window


def running_per_group(d: Deployment, now: float | None = None) -> list[dict[str, Any]]:
    """Servers (from the usage records) and clusters (from the gateways) running now, per group."""
    servers = [i for i in usage.server_intervals(audit.read(d, [usage.COMPONENT])) if i.stop is None]
    clusters = [c for db in usage.gateway_databases(d) for c in usage.gateway_clusters(db) if c["stop"] is None]
    count: Counter = Counter()
    for i in servers:
        for g in d.users[i.user].groups if i.user in d.users else ["(other)"]:
            count[(g, "servers")] += 1
    for c in clusters:
        for g in d.users[c["user"]].groups if c["user"] in d.users else ["(other)"]:
            count[(g, "clusters")] += 1
    groups = sorted({g for g, _ in count} | set(d.groups))
    return [{"group": g, "servers": count[(g, "servers")], "clusters": count[(g, "clusters")]} for g in groups]


def gather(d: Deployment) -> Snapshot:
    snap = Snapshot()
    try:
        snap.per_group = running_per_group(d)
    except Exception as exc:  # noqa: BLE001 - a panel says what failed; the others still show
        snap.problems.append(f"usage records: {exc}")
    try:
        for row in monitoring.query(d, "jupyterhub_active_users"):
            snap.active[row["metric"].get("period", "?")] = row["value"]
        snap.spawn = {"p50": _scalar(d, "lunarhub:spawn_duration_seconds:p50_1h"),
                      "p99": _scalar(d, "lunarhub:spawn_duration_seconds:p99_1h")}
        snap.failures = _scalar(d, "lunarhub:spawn_failures:increase15m") or 0.0
        snap.reads = [{"site": r["metric"].get("site"), "dataset": r["metric"].get("dataset"),
                       "institution": r["metric"].get("institution"), "requests": int(r["value"])}
                      for r in monitoring.query(d, "sum by (site, dataset, institution) (lunarhub_site_requests_total)")]
        snap.reads.sort(key=lambda r: -r["requests"])
        snap.egress = [{"site": r["metric"].get("site"), "institution": r["metric"].get("institution"),
                        "bytes": int(r["value"])}
                       for r in monitoring.query(d, "sum by (site, institution) (lunarhub_site_bytes_total)")]
        snap.egress.sort(key=lambda r: -r["bytes"])
        snap.alerts = monitoring.firing(d)
    except monitoring.MonitoringError as exc:
        snap.problems.append(f"prometheus: {exc}")
    return snap
