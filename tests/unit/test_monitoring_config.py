"""Monitoring without a stack: the rules and alerts pass promtool (and promtool's rule unit tests
show each alert fires on the series it is meant for), the generated Prometheus files pass
promtool, the exporter counts the sites' logs by dataset and institute, never by user."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from lunarhub import config
from lunarhub.operations import exporter, monitoring
from lunarhub.platform import components, supervisor
from lunarhub.platform.hub import hub_services

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def deployment(tmp: Path, **monitoring_keys: object) -> config.Deployment:
    data = yaml.safe_load((ROOT / "hub" / "lunarhub.yaml").read_text())
    data["state_dir"] = str(tmp / "state")
    data["hub"]["isolation"] = "single-account"  # no system accounts in a unit test
    for site in data["sites"].values():
        site["data_dir"] = str((ROOT / "hub" / site["data_dir"]).resolve())
    data["paths"] = {"hub_config": str(ROOT / "hub" / "jupyterhub_config.py")}
    data["monitoring"] = {"enabled": True, **monitoring_keys}
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "lunarhub.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return config.load(path)


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    if not os.access(PROMTOOL, os.X_OK):
        pytest.fail("promtool is missing: apt-get install prometheus (Makefile APT_RUNTIME)")
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_repository_rules_and_alerts_pass_promtool():
    r = promtool("check", "rules", str(ROOT / "hub/monitoring/rules.yml"), str(ROOT / "hub/monitoring/alerts.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 8 rules found" in r.stdout and "SUCCESS: 9 rules found" in r.stdout


def test_a_broken_rule_is_refused_by_promtool(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("groups: [{name: x, rules: [{alert: A, expr: 'up ==', for: 1m}]}]\n")
    r = promtool("check", "rules", str(bad))
    assert r.returncode != 0 and "parse error" in (r.stdout + r.stderr)


# One minute a value; every alert is tested against all of them (one alert's series must not fire another).
SERIES = {
    'lunarhub_site_up{site="cn", url="u"}': "1 1 0 0 0 1",
    'up{job="hub", instance="h"}': "1 0 0 0",
    'lunarhub_state_dir_avail_bytes{path="/s"}': "50x10 5x10",
    'lunarhub_state_dir_size_bytes{path="/s"}': "100x20",
    "lunarhub_disk_full_ratio": "0.9x20",
    "lunarhub_backup_last_success_timestamp_seconds": "0x200",
    "lunarhub_backup_max_age_seconds": "3600x200",
}
# alert -> (evaluation time, (labels, summary) it fires with then, or None: it is quiet then)
ALERTS: dict[str, list[tuple[str, tuple[dict[str, str], str] | None]]] = {
    "SiteDown": [("2m", None),
                 ("4m", ({"severity": "critical", "site": "cn", "url": "u"}, "data site cn does not answer (u)")),
                 ("5m", None)],
    "HubDown": [("3m", ({"severity": "critical", "job": "hub", "instance": "h"},
                        "the hub does not answer its metrics scrape at h"))],
    "StateDiskFull": [("9m", None),
                      ("18m", ({"severity": "critical", "path": "/s"}, "the state dir's file system is 95% full (/s)"))],
    "BackupTooOld": [("50m", None),
                     ("75m", ({"severity": "warning"}, "the newest backup is 1h 15m 0s old, longer than "
                                                       "operations.backup.schedule allows"))],
}


@pytest.mark.parametrize("alert", list(ALERTS))
def test_an_alert_fires_on_its_series_and_clears(tmp_path, alert):
    for name in monitoring.RULE_FILES:
        shutil.copy(ROOT / "hub/monitoring" / name, tmp_path / name)
    checks = [{"eval_time": at, "alertname": alert,
               "exp_alerts": [] if fires is None else [{"exp_labels": fires[0],
                                                        "exp_annotations": {"summary": fires[1]}}]}
              for at, fires in ALERTS[alert]]
    tests = {"rule_files": list(monitoring.RULE_FILES), "evaluation_interval": "1m",
             "tests": [{"interval": "1m", "input_series": [{"series": k, "values": v} for k, v in SERIES.items()],
                        "alert_rule_test": checks}]}
    (tmp_path / "t.yml").write_text(yaml.safe_dump(tests, allow_unicode=True))
    r = promtool("test", "rules", "t.yml", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_generated_files_pass_promtool_and_stay_private(tmp_path):
    d = deployment(tmp_path, alert_for_seconds=2, scrape_interval_seconds=1, evaluation_interval_seconds=1)
    lay = monitoring.prepare(d)
    r = promtool("check", "config", str(lay.config))
    assert r.returncode == 0, r.stdout + r.stderr
    r = promtool("check", "web-config", str(lay.web))
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = yaml.safe_load(lay.config.read_text())
    hub = next(j for j in cfg["scrape_configs"] if j["job_name"] == "hub")
    assert hub["static_configs"] == [{"targets": [f"127.0.0.1:{d.hub.hub_port}"]}]
    assert lay.hub_token.read_text() == (d.secrets_path / "prometheus-metrics-token").read_text().strip()
    alerts = yaml.safe_load((lay.rules / "alerts.yml").read_text())
    assert {rule["for"] for g in alerts["groups"] for rule in g["rules"]} == {"2000ms"}
    # the password is never in a file Prometheus serves, and nobody but the owner reads these
    assert monitoring.password(d) not in lay.web.read_text() and monitoring.password(d) not in lay.config.read_text()
    for path in (lay.password, lay.web, lay.hub_token, lay.config):
        assert stat.S_IMODE(path.stat().st_mode) & 0o007 == 0, path


def _no_other_programs(monkeypatch):
    for name in ("_site_programs", "_gateway_programs", "_slurm_programs"):
        monkeypatch.setattr(supervisor, name, lambda d, env: [])


def test_both_listeners_are_loopback_and_password_protected(tmp_path, monkeypatch):
    _no_other_programs(monkeypatch)
    d = deployment(tmp_path)
    cmds = dict(monitoring.program_commands(d, Path("/venv/bin/lunarhub")))
    assert f"--web.listen-address=127.0.0.1:{d.monitoring.port}" in cmds["prometheus"]
    assert f"--web.listen-address=127.0.0.1:{d.monitoring.node_exporter_port}" in cmds["node-exporter"]
    for name in ("prometheus", "node-exporter"):
        assert f"--web.config.file={monitoring.layout(d).web}" in cmds[name]
    assert cmds["monitoring-exporter"] == ["/venv/bin/lunarhub", "monitoring", "exporter"]
    assert {"prometheus", "node-exporter", "monitoring-exporter"} <= {p.name for p in supervisor.programs(d)}
    assert "monitoring.port" in d.ports() and "monitoring.node_exporter_port" in d.ports()


def test_the_metrics_service_holds_read_metrics_only(tmp_path):
    d = deployment(tmp_path)
    assert "monitoring" in [c.name for c in components.enabled(d)]
    services, roles = hub_services.services(d)
    assert any(s["name"] == "prometheus" and "url" not in s for s in services)
    assert [r["scopes"] for r in roles if r["name"] == "prometheus"] == [["read:metrics"]]


def test_monitoring_off_adds_nothing(tmp_path, monkeypatch):
    _no_other_programs(monkeypatch)
    d = deployment(tmp_path, enabled=False)
    assert "monitoring" not in [c.name for c in components.enabled(d)]
    assert not {"prometheus", "node-exporter"} & {p.name for p in supervisor.programs(d)}
    assert monitoring.problems(d) == []


def test_a_missing_rules_folder_is_a_start_problem_naming_it(tmp_path):
    d = deployment(tmp_path)
    d2 = config.load(d.config_file)
    object.__setattr__(d2.paths, "hub_config", str(tmp_path / "elsewhere" / "jupyterhub_config.py"))
    problems = monitoring.problems(d2)
    assert any(key == "paths.hub_config" and "alerts.yml is missing" in why for key, why in problems)


def _log_line(uri: str, user: str, status: int, nbytes: int) -> str:
    import json

    return json.dumps({"time": "2026-11-02T10:00:00+00:00", "site": "cn", "user": user, "uri": uri,
                       "status": status, "bytes": nbytes}) + "\n"


def test_exporter_counts_reads_by_dataset_and_institute_never_by_user(tmp_path):
    d = deployment(tmp_path)
    log = tmp_path / "access.log"
    log.write_text(_log_line("/cn-only/traverse/yutu2_traverse.csv", "cn-scientist", 200, 1000)
                   + _log_line("/cn-only/traverse/yutu2_traverse.csv", "ru-scientist", 403, 80)
                   + _log_line("/partners/lpr/CE4_GRAS_LPR-1_SCI_N_20231216075001_20231217065500_0316_A.zarr/.zmetadata",
                               "dash/ru-scientist/radar", 200, 500)
                   + "not json\n"
                   + _log_line("/open/basemap/moon_wac_cog.tif", "", 401, 20)
                   + '{"uri": "/open/basemap/moon_wac_cog.tif", "user": "cn-sci')  # nginx still writing
    site_log = exporter.SiteLog("cn", log)
    assert site_log.feed(exporter.classifier(d, "cn")) == 4
    assert site_log.requests[("cn-only", "yutu2_traverse", "naoc", "2xx")] == 1
    assert site_log.refusals == {("cn-only", "yutu2_traverse", "policy"): 1, ("open", "basemap", "credentials"): 1}
    assert site_log.sent[("partners", "lpr_radargram", "iki")] == 500
    # the rest of the half-written line arrives: counted once, whole
    with log.open("a") as f:
        f.write('entist", "status": 206, "bytes": 4096}\n')
    assert site_log.feed(exporter.classifier(d, "cn")) == 1
    assert site_log.sent[("open", "basemap", "naoc")] == 4096
    d.state_path.mkdir(parents=True)
    ex = exporter.Exporter(d)
    ex.logs = {"cn": site_log}
    text = ex.text().decode()
    assert 'lunarhub_site_bytes_total{dataset="basemap",institution="naoc",policy="open",site="cn"} 4096.0' in text
    for user in ("cn-scientist", "ru-scientist", "dash/"):
        assert user not in text
    # a rotated (truncated) log is read from its start again
    log.write_text(_log_line("/open/ce6/apollo_east_craters.csv", "cn-scientist", 200, 7))
    assert site_log.feed(exporter.classifier(d, "cn")) == 1


def test_exporter_refuses_a_planted_link_as_its_log(tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text(_log_line("/open/x", "cn-scientist", 200, 1))
    (tmp_path / "access.log").symlink_to(secret)
    site_log = exporter.SiteLog("cn", tmp_path / "access.log")
    assert site_log.feed(lambda e: ("-", "-", "-")) == 0 and not site_log.requests


def test_exporter_writes_thresholds_probes_and_backup_age(tmp_path):
    d = deployment(tmp_path, spawn_p95_threshold_seconds=42, disk_full_ratio=0.8)
    plan = {"backup": {"schedule": "every 6 hours", "dest": str(tmp_path / "backups")}}
    d = config.load(_rewrite(d, operations=plan))
    (tmp_path / "backups" / "lunarhub-backup-20261101T000000Z").mkdir(parents=True)
    (tmp_path / "backups" / "lunarhub-backup-20261102T060000Z").mkdir()
    monitoring.prepare(d)
    exporter.run(d, rounds=1)
    text = (monitoring.layout(d).textfile / exporter.TEXTFILE).read_text()
    assert "lunarhub_spawn_p95_threshold_seconds 42.0" in text
    assert "lunarhub_disk_full_ratio 0.8" in text
    assert "lunarhub_backup_max_age_seconds 32400.0" in text
    assert "lunarhub_backup_last_success_timestamp_seconds 1.7935992e+09" in text
    # no stack runs: every site is down
    assert f'lunarhub_site_up{{site="cn",url="{d.scheme}://127.0.0.1:9102/healthz"}} 0.0' in text
    assert f'lunarhub_state_dir_size_bytes{{path="{d.state_path}"}}' in text
    last = float(next(line.split()[1] for line in text.splitlines()
                      if line.startswith("lunarhub_exporter_last_run_timestamp_seconds ")))
    assert abs(last - time.time()) < 60


def _rewrite(d: config.Deployment, **top: object) -> Path:
    path = Path(str(d.config_file))
    data = yaml.safe_load(path.read_text())
    data.update(top)
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


@pytest.mark.parametrize(("schedule", "seconds"), [("daily 02:00", 86400), ("every 30 minutes", 1800),
                                                   ("every 6 hours", 21600)])
def test_schedule_period(schedule, seconds):
    assert exporter.schedule_period(schedule) == seconds


def test_bad_monitoring_values_name_their_key(tmp_path):
    with pytest.raises(config.ConfigError) as err:
        deployment(tmp_path, disk_full_ratio=1.5)
    assert "monitoring.disk_full_ratio" in str(err.value)
    with pytest.raises(config.ConfigError) as err:
        deployment(tmp_path / "b", scrape_interval="1s")
    assert "monitoring.scrape_interval" in str(err.value)


def test_generated_prometheus_config_is_exactly_the_deployment(tmp_path):
    d = deployment(tmp_path, scrape_interval_seconds=1.5, evaluation_interval_seconds=2, retention_days=7)
    cfg = monitoring.prometheus_config(d)
    assert cfg["global"]["scrape_interval"] == "1500ms" and cfg["global"]["evaluation_interval"] == "2000ms"
    assert {j["job_name"] for j in cfg["scrape_configs"]} == {"hub", "node", "prometheus"}
    cmd = dict(monitoring.program_commands(d, Path("x")))["prometheus"]
    assert "--storage.tsdb.retention.time=7d" in cmd
