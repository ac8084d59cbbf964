"""Prometheus for the operators: its configuration, generated from the deployment, and its answers.

`lunarhub up` runs three supervisor programs when `monitoring.enabled` (docs/operations.md,
"Monitoring"):

- ``prometheus`` (Debian's package) on 127.0.0.1, scraping the hub's ``/hub/metrics`` with the
  token of the hub service ``prometheus`` (scope ``read:metrics`` only), itself and the node exporter,
  and evaluating hub/monitoring/rules.yml and alerts.yml;
- ``node-exporter`` on 127.0.0.1: the machine, plus lunarhub's own metrics from its textfile folder;
- ``monitoring-exporter`` (root, lunarhub/operations/exporter.py): reads the sites' access logs and
  probes sites and gateways, writing aggregated counts into that folder.

Prometheus's API has no users: whoever reaches it reads every metric, and the sites' counts name
datasets and institutes. So both listeners answer only with a password (``--web.config.file``,
bcrypt hash; the password is root's, in the secrets dir) and, with isolation, run as the
``prometheus`` account admitted to the loopback filter: a lab account gets no answer at all
(docs/security.md, "Monitoring").
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from lunarhub.config import Deployment, secrets
from lunarhub.files import write_atomic

SERVICE = "prometheus"  # the hub service whose token scrapes /hub/metrics
ACCOUNT = "prometheus"  # Debian's prometheus package makes it
USERNAME = "lunarhub"  # basic-auth user of both listeners
PROMETHEUS = "/usr/bin/prometheus"
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
RULE_FILES = ("rules.yml", "alerts.yml")


class MonitoringError(RuntimeError):
    pass


@dataclass(frozen=True)
class Layout:
    root: Path  # <state>/monitoring, root:prometheus 0750
    data: Path  # the TSDB, prometheus's own 0700
    textfile: Path  # lunarhub.prom, written by the exporter
    rules: Path
    config: Path
    web: Path
    hub_token: Path
    password: Path


def layout(d: Deployment) -> Layout:
    root = d.state_path / "monitoring"
    return Layout(root, root / "data", root / "textfile", root / "rules", root / "prometheus.yml",
                  root / "web.yml", root / "hub-token", root / "password")


def rules_source(d: Deployment) -> Path:
    """hub/monitoring/ beside the hub's config file (the repository's rules and alerts)."""
    return d.location("hub_config").parent / "monitoring"


def account(d: Deployment) -> pwd.struct_passwd | None:
    """The account Prometheus and the node exporter run as; None: the current one (single-account)."""
    if os.geteuid() != 0 or d.hub.isolation != "system-users":
        return None
    return pwd.getpwnam(ACCOUNT)


def problems(d: Deployment) -> list[tuple[str, str]]:
    """Start-time check: the binaries and the account exist."""
    if not d.monitoring.enabled:
        return []
    out = []
    for exe, package in ((PROMETHEUS, "prometheus"), (NODE_EXPORTER, "prometheus-node-exporter")):
        if not os.access(exe, os.X_OK):
            out.append(("monitoring.enabled", f"{exe} is missing: apt-get install {package} (make up does it "
                                              "as root), or set monitoring.enabled: false"))
    if os.geteuid() == 0 and d.hub.isolation == "system-users":
        try:
            pwd.getpwnam(ACCOUNT)
        except KeyError:
            out.append(("monitoring.enabled", f"the account {ACCOUNT!r} is missing (Debian's prometheus package "
                                              "creates it): apt-get install --reinstall prometheus"))
    for name in RULE_FILES:
        if not (rules_source(d) / name).is_file():
            out.append(("paths.hub_config", f"{rules_source(d) / name} is missing (the alert rules live beside "
                                            "the hub's config file)"))
    return out


def hub_services(d: Deployment) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The external service whose token Prometheus scrapes the hub with: `read:metrics`, nothing else."""
    svc = {"name": SERVICE, "api_token": secrets.token(d, "prometheus-metrics-token"), "display": False}
    role = {"name": SERVICE, "scopes": ["read:metrics"], "services": [SERVICE]}
    return [svc], [role]


def password(d: Deployment) -> str:
    return secrets.token(d, "monitoring-password")


def _seconds(value: float) -> str:
    return f"{int(value * 1000)}ms"


def prometheus_config(d: Deployment) -> dict[str, Any]:
    m, lay = d.monitoring, layout(d)
    auth = {"basic_auth": {"username": USERNAME, "password_file": str(lay.password)}}
    return {
        "global": {"scrape_interval": _seconds(m.scrape_interval_seconds),
                   "scrape_timeout": _seconds(min(m.scrape_interval_seconds, 10)),
                   "evaluation_interval": _seconds(m.evaluation_interval_seconds),
                   "external_labels": {"deployment": d.name}},
        "rule_files": [str(lay.rules / name) for name in RULE_FILES],
        "scrape_configs": [
            {"job_name": "hub", "metrics_path": "/hub/metrics",
             "authorization": {"type": "Bearer", "credentials_file": str(lay.hub_token)},
             "static_configs": [{"targets": [f"127.0.0.1:{d.hub.hub_port}"]}]},
            {"job_name": "node", **auth, "static_configs": [{"targets": [f"127.0.0.1:{m.node_exporter_port}"]}]},
            {"job_name": "prometheus", **auth, "static_configs": [{"targets": [f"127.0.0.1:{m.port}"]}]},
        ],
    }


def rules(d: Deployment, name: str) -> str:
    """A rule file of the repository, with every alert's `for:` replaced when the deployment says so."""
    text = (rules_source(d) / name).read_text(encoding="utf-8")
    seconds = d.monitoring.alert_for_seconds
    if seconds is None:
        return text
    data = yaml.safe_load(text)
    for group in data.get("groups", []):
        for rule in group.get("rules", []):
            if "alert" in rule:
                rule["for"] = _seconds(seconds)
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def _web_config(pw: str) -> str:
    import bcrypt

    digest = bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=10)).decode()
    return yaml.safe_dump({"basic_auth_users": {USERNAME: digest}})


def prepare(d: Deployment) -> Layout:
    """Write Prometheus's files into <state>/monitoring, readable by its account and root only."""
    lay = layout(d)
    acct = account(d)
    gid = acct.pw_gid if acct else os.getgid()
    uid = acct.pw_uid if acct else os.getuid()
    for folder, owner, mode in ((lay.root, (0, gid), 0o750), (lay.rules, (0, gid), 0o750),
                                (lay.textfile, (0, gid), 0o750), (lay.data, (uid, gid), 0o700)):
        if folder.is_symlink():
            raise MonitoringError(f"{folder} is a link: refused (remove it)")
        folder.mkdir(parents=True, exist_ok=True)
        if acct:
            os.chown(folder, *owner)
        os.chmod(folder, mode)

    def put(path: Path, text: str) -> None:
        write_atomic(path, text, 0o640 if acct else 0o600)
        if acct:
            os.chown(path, 0, gid)

    pw = password(d)
    put(lay.password, pw)
    put(lay.web, _web_config(pw))
    put(lay.hub_token, secrets.token(d, "prometheus-metrics-token"))
    for name in RULE_FILES:
        put(lay.rules / name, rules(d, name))
    put(lay.config, yaml.safe_dump(prometheus_config(d), sort_keys=False))
    return lay


def _as_account(d: Deployment, argv: list[str]) -> list[str]:
    if account(d) is None:
        return argv
    # setpriv execs (runuser would stay as a parent): the supervisor's TERM reaches the daemon.
    return ["/usr/bin/setpriv", f"--reuid={ACCOUNT}", f"--regid={ACCOUNT}", "--init-groups", "--", *argv]


def program_commands(d: Deployment, lunarhub_bin: Path) -> list[tuple[str, list[str]]]:
    """(supervisor program, argv) of Prometheus, the node exporter and lunarhub's exporter."""
    m, lay = d.monitoring, layout(d)
    prom = [PROMETHEUS, f"--config.file={lay.config}", f"--storage.tsdb.path={lay.data}",
            f"--storage.tsdb.retention.time={m.retention_days}d", f"--web.listen-address=127.0.0.1:{m.port}",
            f"--web.config.file={lay.web}"]
    node = [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{m.node_exporter_port}",
            f"--web.config.file={lay.web}", "--collector.disable-defaults", "--collector.textfile",
            f"--collector.textfile.directory={lay.textfile}", "--collector.cpu", "--collector.meminfo",
            "--collector.loadavg", "--collector.filesystem"]
    return [("prometheus", _as_account(d, prom)), ("node-exporter", _as_account(d, node)),
            ("monitoring-exporter", [str(lunarhub_bin), "monitoring", "exporter"])]


def admit(d: Deployment) -> None:
    """Put the prometheus account behind the loopback filter: its listeners answer it and root only."""
    from lunarhub.platform import loopback

    acct = account(d)
    if acct is not None and loopback.enabled(d):
        loopback.admit(acct.pw_uid)


# ---------------------------------------------------------------- asking Prometheus


def api(d: Deployment, path: str, timeout: float = 3, **params: str) -> Any:
    """GET Prometheus's HTTP API (root's: the password is in the secrets dir); the `data` of the answer."""
    url = f"http://127.0.0.1:{d.monitoring.port}/api/v1/{path}"
    try:
        r = requests.get(url, params=params, auth=(USERNAME, password(d)), timeout=timeout)
    except requests.RequestException as exc:
        raise MonitoringError(f"{url}: {exc.__class__.__name__}") from None
    if r.status_code != 200:
        raise MonitoringError(f"{url}: {r.status_code} {r.text[:200]}")
    body = r.json()
    if body.get("status") != "success":
        raise MonitoringError(f"{url}: {body.get('error', body)}")
    return body["data"]


def firing(d: Deployment) -> list[dict[str, Any]]:
    """Alerts in state `firing`, each {alert, severity, summary, since}."""
    out = []
    for alert in api(d, "alerts").get("alerts", []):
        if alert.get("state") != "firing":
            continue
        labels, notes = alert.get("labels", {}), alert.get("annotations", {})
        out.append({"alert": labels.get("alertname", "?"), "severity": labels.get("severity", ""),
                    "summary": notes.get("summary", ""), "since": alert.get("activeAt", ""),
                    "labels": labels})
    return out


def targets(d: Deployment) -> list[dict[str, Any]]:
    """Active scrape targets: {job, instance, health, error}."""
    return [{"job": t["labels"].get("job"), "instance": t["labels"].get("instance"), "health": t.get("health"),
             "error": t.get("lastError", "")} for t in api(d, "targets").get("activeTargets", [])]


def query(d: Deployment, expr: str) -> list[dict[str, Any]]:
    """An instant query's vector: [{metric: {...}, value: float}]."""
    data = api(d, "query", query=expr)
    return [{"metric": r["metric"], "value": float(r["value"][1])} for r in data.get("result", [])]
