"""The operators' dashboard without a stack: who may open it (a scope only admin groups hold, carried
by the service's login tokens), its texts in three languages, and its per-group counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lunarhub import config
from lunarhub.operations import dashboard, dashboard_data, usage
from lunarhub.platform import audit
from lunarhub.platform.hub import hub_services, rbac

ROOT = Path(__file__).resolve().parents[2]


def deployment(tmp: Path) -> config.Deployment:
    data = yaml.safe_load((ROOT / "hub" / "lunarhub.yaml").read_text())
    data["state_dir"] = str(tmp / "state")
    data["hub"]["isolation"] = "single-account"
    for site in data["sites"].values():
        site["data_dir"] = str((ROOT / "hub" / site["data_dir"]).resolve())
    data["monitoring"] = {"enabled": True}
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "lunarhub.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    return config.load(tmp / "lunarhub.yaml")


def test_only_admin_groups_hold_the_dashboards_scope(tmp_path):
    d = deployment(tmp_path)
    services, roles = hub_services.services(d)
    svc = next(s for s in services if s["name"] == dashboard.SERVICE)
    assert svc["oauth_client_allowed_scopes"] == [dashboard.SCOPE]
    assert svc["url"] == f"http://127.0.0.1:{d.monitoring.dashboard_port}"
    holders = [r for r in roles + rbac.roles(d) if dashboard.SCOPE in r.get("scopes", [])]
    assert [(r["name"], r["groups"]) for r in holders] == [("operator-dashboard-viewers", ["admins"])]
    # every user has access:services (gallery, gateway): that scope must not be what the proxy checks
    assert "access:services" in next(r for r in rbac.roles(d) if r["name"] == "user")["scopes"]


def test_the_proxy_checks_the_admins_scope_and_serves_panel_on_a_unix_socket():
    args = dashboard.command("30")
    assert "--unix-socket=True" in args and "--unix-socket={unix_socket}" in args
    assert args[args.index("serve") + 1] == str(dashboard.APP)
    assert not any(a.startswith("--port") or a.startswith("--allow-websocket-origin") for a in args)


def test_the_hub_config_defines_the_custom_scope(tmp_path):
    from traitlets.config import Config

    d = deployment(tmp_path)
    c = Config()
    hub_services.configure_services(c, d)
    assert dashboard.SCOPE in c.JupyterHub.custom_scopes


@pytest.mark.parametrize(("query", "accept", "lang"), [
    ({"lang": [b"ru"]}, None, "ru"), ({"lang": [b"xx"]}, "zh-CN,zh;q=0.9", "zh"), ({}, "de-DE,ru;q=0.5", "ru"),
    ({}, None, "en"), ({"lang": "zh"}, "ru", "zh"),
])
def test_language_from_the_query_then_the_browser(query, accept, lang):
    assert dashboard_data.language(query, accept) == lang


def test_language_remembered_by_the_hubs_cookie_comes_before_the_browsers():
    # the same rule as the hub's pages and the gallery (lunarhub.config.languages.pick)
    assert dashboard_data.language({}, "ru", cookie="zh") == "zh"
    assert dashboard_data.language({"lang": [b"en"]}, "ru", cookie="zh") == "en"
    assert dashboard_data.language({}, "ru", cookie="xx") == "ru"
    assert dashboard_data.language({}, "en;q=0.2,zh;q=0.8") == "zh"  # by weight, not by order


def test_every_text_has_three_languages():
    for key, texts in dashboard_data.TEXTS.items():
        assert set(texts) == {"en", "ru", "zh"} and all(texts.values()), key
    assert dashboard_data.text("title", "zh") == "lunarhub：运维面板"


def test_running_servers_and_clusters_are_counted_per_group(tmp_path):
    import sqlite3

    d = deployment(tmp_path)
    for user in ("ru-scientist", "cn-scientist"):
        audit.record(d, usage.COMPONENT, "server-started", user=user, server="", cores=1.0)
    audit.record(d, usage.COMPONENT, "server-stopped", user="cn-scientist", server="")
    db = d.state_path / "gateway" / "gateway.sqlite"
    db.parent.mkdir(parents=True)
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE clusters (id INTEGER PRIMARY KEY, name TEXT, username TEXT, config TEXT, "
                "start_time INTEGER, stop_time INTEGER)")
    con.execute("CREATE TABLE workers (id INTEGER PRIMARY KEY, cluster_id INTEGER, start_time INTEGER, "
                "stop_time INTEGER)")
    con.execute("INSERT INTO clusters VALUES (1, 'c', 'ru-scientist', ?, 1, NULL)", (json.dumps({}),))
    con.commit()
    con.close()
    rows = {r["group"]: r for r in dashboard_data.running_per_group(d)}
    assert rows["ru-science"] == {"group": "ru-science", "servers": 1, "clusters": 1}
    assert rows["cn-science"] == {"group": "cn-science", "servers": 0, "clusters": 0}


def test_gather_without_prometheus_reports_it_and_keeps_the_other_panels(tmp_path):
    d = deployment(tmp_path)
    snap = dashboard_data.gather(d)
    assert any(p.startswith("prometheus: ") for p in snap.problems)
    assert {r["group"] for r in snap.per_group} >= set(d.groups)


def test_the_panel_app_runs_in_every_language_without_prometheus(tmp_path):
    """`panel serve` of the app (no stack: Prometheus absent, shown as a note): each language's session
    is built without an error in the app's code (Bokeh answers 200 even when the handler raises)."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import requests

    d = deployment(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "panel.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "panel", "serve", str(dashboard.APP), f"--port={port}",
                                 "--address=127.0.0.1", f"--allow-websocket-origin=127.0.0.1:{port}"],
                                env={**os.environ, "LUNARHUB_CONFIG": str(d.config_file)}, stdout=out,
                                stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}/dashboard_app"
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(url, timeout=5)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"panel serve did not answer: {log.read_text()[-2000:]}")
                time.sleep(0.3)
        for lang in ("en", "ru", "zh"):
            assert requests.get(url, params={"lang": lang}, timeout=30).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text()
    assert "Error running application handler" not in text, text[-3000:]
