"""Prometheus on a real stack (docs/operations.md, "Monitoring"): every target answers, a stopped
site makes `SiteDown` fire (and `lunarhub status` say so) and it clears when the site is back; the
hub's metrics token reads metrics only; a lab account gets no answer from Prometheus or the node
exporter, and nobody gets metrics without the password. The same stack's usage accounting: a
server's start and stop are in the audit trail, `lunarhub usage` counts them, and a group over its
quota of core-hours gets no new server, with a message naming the group."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml
from support.stack import Stack, make_stack, open_tmpdir, require_root

from lunarhub.operations import monitoring
from lunarhub.platform import accounts
from lunarhub.platform import supervisor as process

RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"
ATTACKER = "student"


# students may use a few core-seconds a month: one short server, then the quota refuses.
STUDENT_QUOTA = 0.002


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    require_root()
    tmp = open_tmpdir("monitoring")
    s = make_stack(tmp, monitoring=True)
    s.data["groups"]["students"]["core_hours_per_month"] = STUDENT_QUOTA
    s.config.write_text(yaml.safe_dump(s.data, allow_unicode=True, sort_keys=False))
    s.cli("up", timeout=240)
    try:
        yield s
    finally:
        s.cli("down", check=False, timeout=240)
        shutil.rmtree(tmp, ignore_errors=True)


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except monitoring.MonitoringError as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {timeout} s (last: {last})")


def _site_alerts(d: Any, site: str) -> list[dict[str, Any]]:
    return [a for a in monitoring.firing(d) if a["alert"] == "SiteDown" and a["labels"].get("site") == site]


def test_every_target_is_up_and_the_exporter_reports_sites(stack: Stack):
    d = stack.deployment()

    def all_up() -> list[dict[str, Any]] | None:
        targets = monitoring.targets(d)
        return targets if targets and all(t["health"] == "up" for t in targets) else None

    targets = _wait(all_up, 60, "every scrape target up")
    assert {t["job"] for t in targets} == {"hub", "node", "prometheus"}
    ups = _wait(lambda: monitoring.query(d, "up") if len(monitoring.query(d, "up")) == 3 else None, 30, "up series")
    assert all(r["value"] == 1 for r in ups), ups
    sites = _wait(lambda: monitoring.query(d, "lunarhub_site_up") or None, 30, "lunarhub_site_up")
    assert {r["metric"]["site"]: r["value"] for r in sites} == {"ru": 1, "cn": 1}
    # the hub's own metrics arrive with the token (a JupyterHub metric, not only `up`)
    assert _wait(lambda: monitoring.query(d, "jupyterhub_total_users") or None, 30, "hub metrics")


def test_site_reads_are_counted_by_dataset_and_institute(stack: Stack):
    from lunarhub.data import sites
    from lunarhub.data.policy import env_prefix

    d = stack.deployment()
    auth_header = sites.credentials_for(d, "cn-scientist")[f"{env_prefix('cn')}_AUTH"]
    url = sites.site_url(d, "cn").rstrip("/") + "/open/ce6/apollo_east_craters.csv"
    r = requests.get(url, headers={"Authorization": auth_header}, timeout=10)
    assert r.status_code == 200
    expr = 'lunarhub_site_requests_total{site="cn",dataset="ce6_craters",institution="naoc",code="2xx"}'
    assert _wait(lambda: monitoring.query(d, expr) or None, 30, "the read counted")[0]["value"] >= 1


def test_a_stopped_site_fires_site_down_and_it_clears_when_back(stack: Stack):
    d = stack.deployment()
    assert _site_alerts(d, "cn") == []
    process.ctl(d, "stop", "site-cn", check=True)
    try:
        alert = _wait(lambda: _site_alerts(d, "cn"), 45, "SiteDown for cn firing")[0]
        assert alert["severity"] == "critical" and "data site cn does not answer" in alert["summary"]
        status = stack.cli("status", check=False)
        assert status.returncode == 1
        assert "alert SiteDown" in status.stdout and "data site cn does not answer" in status.stdout
        assert _site_alerts(d, "ru") == []  # the other site is fine
    finally:
        process.ctl(d, "start", "site-cn", check=True)
    _wait(lambda: _site_alerts(d, "cn") == [] or None, 45, "SiteDown for cn cleared")
    assert "alert SiteDown" not in stack.cli("status", check=False).stdout


def test_the_metrics_token_reads_metrics_and_nothing_else(stack: Stack):
    d = stack.deployment()
    token = monitoring.layout(d).hub_token.read_text().strip()
    hub = f"http://127.0.0.1:{d.hub.hub_port}"
    headers = {"Authorization": f"token {token}"}
    assert requests.get(f"{hub}/hub/metrics", headers=headers, timeout=10).status_code == 200
    assert requests.get(f"{hub}/hub/metrics", timeout=10).status_code in (401, 403)
    for path in ("/hub/api/users", "/hub/api/users/cn-scientist", "/hub/api/groups"):
        assert requests.get(f"{hub}{path}", headers=headers, timeout=10).status_code == 403, path


def _connect_as(user: str, port: int) -> str:
    """What `user` gets from 127.0.0.1:port: an HTTP status, or no answer."""
    code = ("import socket,sys\n"
            "s=socket.socket(); s.settimeout(3)\n"
            "try:\n"
            f"    s.connect(('127.0.0.1',{port})); s.sendall(b'GET /api/v1/alerts HTTP/1.0\\r\\n\\r\\n')\n"
            "    print(s.recv(64).decode(errors='replace').split('\\r\\n')[0])\n"
            "except OSError as e: print('no answer', type(e).__name__)\n")
    r = subprocess.run([RUNUSER, "-u", user, "--", "/usr/bin/python3", "-c", code], capture_output=True,
                       text=True, timeout=30, start_new_session=True)
    return r.stdout.strip() or r.stderr.strip()


def test_a_lab_account_gets_no_answer_and_nobody_reads_without_the_password(stack: Stack):
    d = stack.deployment()
    accounts.prepare_user(d, ATTACKER)  # the account exists and is behind the loopback filter
    m = d.monitoring
    for port in (m.port, m.node_exporter_port):
        assert _connect_as(ATTACKER, port).startswith("no answer"), port
        # root and unfiltered accounts reach the listener, but it wants the password
        assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 401
        assert _connect_as("nobody", port).endswith("401 Unauthorized"), port
        r = requests.get(f"http://127.0.0.1:{port}/metrics", auth=(monitoring.USERNAME, "wrong"), timeout=5)
        assert r.status_code == 401
    ok = requests.get(f"http://127.0.0.1:{m.port}/api/v1/targets", timeout=5,
                      auth=(monitoring.USERNAME, monitoring.password(d)))
    assert ok.status_code == 200
    # Prometheus runs as its own account, which cannot read the hub's database or the secrets
    pid = process.program_pid(d, "prometheus")
    assert pid and os.stat(f"/proc/{pid}").st_uid == monitoring.account(d).pw_uid
    lay = monitoring.layout(d)
    for path in (lay.password, lay.hub_token, lay.config, lay.data):
        r = subprocess.run([RUNUSER, "-u", ATTACKER, "--", "/usr/bin/cat", str(path)], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode != 0 and "Permission denied" in r.stderr, path


def test_usage_counts_a_server_and_the_quota_refuses_the_next(stack: Stack):
    from lunarhub.operations import usage
    from lunarhub.platform import audit

    d = stack.deployment()
    stack.start_server("student")
    time.sleep(STUDENT_QUOTA * 3600 + 1)  # 7 s at one core: over the quota
    stack.stop_server("student")
    records = [e for e in audit.read(d, ["usage"]) if e.get("user") == "student"]
    assert [e["event"] for e in records][:2] == ["server-started", "server-stopped"]
    assert records[0]["cores"] == d.profiles[d.groups["students"].profile].cpu
    csv_text = stack.cli("usage", "--csv").stdout
    row = next(line.split(",") for line in csv_text.splitlines() if ",user,student," in line)
    assert float(row[3]) >= STUDENT_QUOTA  # server core-hours
    group = next(line.split(",") for line in csv_text.splitlines() if ",group,students," in line)
    assert float(group[6]) == STUDENT_QUOTA
    # the next spawn is refused before anything starts, naming the group and its numbers
    r = stack.request("POST", "/hub/api/users/student/server", stack.admin_token())
    deadline = time.monotonic() + 30
    while r.status_code in (201, 202) and time.monotonic() < deadline:
        info = stack.request("GET", "/hub/api/users/student", stack.admin_token()).json()
        if "" not in info.get("servers", {}):
            break
        time.sleep(0.5)
    assert r.status_code not in (201, 202) or "" not in info.get("servers", {})
    why = usage.quota_refusal(d, "student", "server")
    assert why and "group 'students' has used" in why and "groups.students.core_hours_per_month" in why
    log = (stack.state / "logs" / "hub.log").read_text(errors="replace")
    assert "group 'students' has used" in r.text + log
    # another group's user still starts
    assert usage.quota_refusal(d, "cn-scientist", "server") is None


DASHBOARD = "/services/operator-dashboard/dashboard_app"
TITLES = {"en": "lunarhub: operator dashboard", "ru": "lunarhub: панель оператора", "zh": "lunarhub：运维面板"}


def test_the_operator_dashboard_opens_for_admin_in_three_languages_and_for_nobody_else(stack: Stack):
    from support.browser import chromium, logged_in_page

    with chromium() as browser:
        page = logged_in_page(browser, stack, "admin")
        for lang, title in TITLES.items():
            page.goto(f"{stack.url}{DASHBOARD}?lang={lang}")
            page.get_by_text(title).wait_for(timeout=60_000)
            # the panels are there, in that language's words
            page.get_by_text({"en": "Site reads per dataset and institute",
                              "ru": "Чтения с сайтов по наборам данных и институтам",
                              "zh": "按数据集和机构统计的站点读取"}[lang]).wait_for(timeout=30_000)
        # the read counted earlier in this module shows with its dataset and institute
        page.goto(f"{stack.url}{DASHBOARD}?lang=en")
        page.get_by_text("ce6_craters").first.wait_for(timeout=60_000)
        assert page.get_by_text("naoc").count() >= 1
        for user in ("cn-scientist", "reviewer"):
            other = logged_in_page(browser, stack, user)
            response = other.goto(f"{stack.url}{DASHBOARD}")
            assert response is not None and response.status == 403, (user, response and response.status)
            assert TITLES["en"] not in other.content()
            other.context.close()
    # anonymous: sent to the hub's login, never the app
    r = stack.request("GET", DASHBOARD, None)
    assert r.status_code == 302 and "oauth2/authorize" in r.headers["Location"], r.headers.get("Location")
