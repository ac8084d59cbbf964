"""The audit trail (lunarhub.platform.audit) and `lunarhub audit` (lunarhub.cli.audit)."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
import yaml

from lunarhub import config
from lunarhub.cli import audit as audit_cli
from lunarhub.cli import tree
from lunarhub.platform import audit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def d(tmp_path: Path) -> config.Deployment:
    data = yaml.safe_load((ROOT / "hub" / "lunarhub.yaml").read_text())
    data["state_dir"] = str(tmp_path / "state")
    for site in data["sites"].values():
        site["data_dir"] = str((ROOT / "hub" / site["data_dir"]).resolve())
    path = tmp_path / "lunarhub.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return config.load(path)


def test_appends_whole_lines_in_a_private_file(d) -> None:
    audit.record(d, "hub", "share-created", actor="cn-scientist", owner="cn-scientist", audience="group:cn-science")
    path = audit.audit_dir(d) / "hub.jsonl"
    first = path.read_bytes()
    audit.record(d, "hub", "share-refused", actor="cn-scientist", reason="x" * (audit.MAX_FIELD + 50))
    after = path.read_bytes()
    assert after.startswith(first) and after.count(b"\n") == 2  # appended, the first line untouched
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(audit.audit_dir(d).stat().st_mode) == 0o700
    events = audit.read(d, ["hub"])
    assert [e["event"] for e in events] == ["share-created", "share-refused"]
    assert len(events[1]["reason"]) == audit.MAX_FIELD + 1  # cut, with an ellipsis
    assert audit.read(d, event="share-refused", actor="cn-scientist")[0]["event"] == "share-refused"


def test_a_planted_link_is_refused_for_writing_and_reading(d, tmp_path: Path) -> None:
    audit.audit_dir(d).mkdir(parents=True, mode=0o700)
    target = tmp_path / "elsewhere"
    target.write_text("")
    (audit.audit_dir(d) / "hub.jsonl").symlink_to(target)
    with pytest.raises(OSError):
        audit.record(d, "hub", "share-created", actor="x")
    assert target.read_text() == ""
    with pytest.raises(OSError):
        audit.read(d, ["hub"])


def test_component_names_cannot_leave_the_folder(d) -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        audit.record(d, "../hub", "x")


def test_a_cut_line_leaves_the_rest_readable(d) -> None:
    audit.record(d, "hub", "share-created", actor="a")
    with open(audit.audit_dir(d) / "hub.jsonl", "a") as f:
        f.write('{"time": 1, "event": "cut')
    assert [e["actor"] for e in audit.read(d, ["hub"])] == ["a"]


# ---------------------------------------------------------------- lunarhub audit


def test_select_filters_by_component_event_user_and_time(d) -> None:
    audit.record(d, "hub", "share-refused", actor="cn-scientist", owner="cn-scientist", audience="group:reviewers")
    audit.record(d, "hub", "share-created", actor="dashboards", owner="ru-scientist", audience="user:cn-scientist")
    audit.record(d, "dashboards", "opened", user="reviewer", owner="cn-scientist")
    assert len(audit_cli.select(d)) == 3
    assert [e["event"] for e in audit_cli.select(d, component="hub")] == ["share-refused", "share-created"]
    assert [e["event"] for e in audit_cli.select(d, event="opened")] == ["opened"]
    assert len(audit_cli.select(d, user="cn-scientist")) == 3  # actor, audience "user:..." and owner
    assert [e["event"] for e in audit_cli.select(d, user="reviewer")] == ["opened"]
    assert audit_cli.select(d, since=time.time() + 60) == []
    with pytest.raises(ValueError, match="--since 'yesterday': not an ISO date"):
        audit_cli.parse_since("yesterday")
    assert audit_cli.parse_since("2026-03-01") < audit_cli.parse_since("2026-03-01T12:00")


def test_the_command_lists_and_prints_json(d, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # as root (the refusal is tested below)
    audit.record(d, "hub", "share-refused", actor="cn-scientist", owner="cn-scientist", server="",
                 audience="group:reviewers", reason="its owner reads cn-only data")
    assert tree.main(["--config", str(d.config_file), "audit", "--event", "share-refused"]) == 0
    out = capsys.readouterr().out
    assert "share-refused" in out and "audience=group:reviewers" in out
    assert 'reason="its owner reads cn-only data"' in out
    assert tree.main(["--config", str(d.config_file), "audit", "--json", "--user", "cn-scientist"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["audience"] == "group:reviewers"
    assert tree.main(["--config", str(d.config_file), "audit", "--since", "soon"]) == 2
    assert "not an ISO date" in capsys.readouterr().err


def test_the_command_refuses_anyone_but_root(d, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    audit.record(d, "hub", "share-created", actor="a")
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    assert tree.main(["--config", str(d.config_file), "audit"]) == 1
    err = capsys.readouterr().err
    assert "admins only: run it as root" in err and str(audit.audit_dir(d)) in err


def test_site_reads_join_the_trail_with_the_dashboard_named(d) -> None:
    """`--sites`: the sites' access logs (what nginx wrote) as events; a dashboard's scoped credential
    names its dashboard, so "which dataset each dashboard read" is one query."""
    from lunarhub.data import sites

    lines = [{"time": "2026-12-01T10:00:00+00:00", "site": "ru", "user": "dash/cn-scientist/yutu", "uri":
              "/open/tables/gazetteer.csv", "status": 200, "bytes": 512, "range": ""},
             {"time": "2026-12-01T10:00:05+00:00", "site": "ru", "user": "ru-scientist", "uri":
              "/ru-only/polar/boguslawsky_sps.tif", "status": 206, "bytes": 4096, "range": "bytes=0-4095"},
             {"time": "garbled", "user": "x"}]
    log = sites.site_state_dir(d, "ru") / "access.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    audit.record(d, "dashboards", "opened", user="reviewer", owner="cn-scientist")
    assert [e["event"] for e in audit_cli.select(d)] == ["opened"]  # not unless asked
    reads = audit_cli.select(d, component="sites")
    assert [(e["user"], e["uri"], e["status"]) for e in reads] == [
        ("dash/cn-scientist/yutu", "/open/tables/gazetteer.csv", 200),
        ("ru-scientist", "/ru-only/polar/boguslawsky_sps.tif", 206)]
    assert reads[0]["owner"] == "cn-scientist" and reads[0]["dashboard"] == "yutu"
    # Oldest first: the read (10:00 UTC) before the open recorded now.
    assert [e["event"] for e in audit_cli.select(d, with_sites=True, user="cn-scientist")] == ["read", "opened"]
    assert len(audit_cli.select(d, with_sites=True)) == 3
