"""Usage accounting without a stack (lunarhub.operations.usage): servers' start/stop records paired
into core-hours cut at month boundaries, clusters from a gateway database (kept after the gateway
forgets them), per-group sums and quotas with their message, the CLI's errors and CSV."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from lunarhub import config
from lunarhub.cli import tree
from lunarhub.operations import usage
from lunarhub.platform import audit

ROOT = Path(__file__).resolve().parents[2]


def deployment(tmp: Path, quotas: dict[str, float] | None = None) -> config.Deployment:
    data = yaml.safe_load((ROOT / "hub" / "lunarhub.yaml").read_text())
    data["state_dir"] = str(tmp / "state")
    data["hub"]["isolation"] = "single-account"
    for site in data["sites"].values():
        site["data_dir"] = str((ROOT / "hub" / site["data_dir"]).resolve())
    for g, q in (quotas or {}).items():
        data["groups"][g]["core_hours_per_month"] = q
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "lunarhub.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return config.load(path)


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def event(name: str, user: str, at: str, server: str = "", cores: float = 1) -> dict:
    return {"event": name, "user": user, "server": server, "cores": cores, "time": ts(at)}


def test_starts_and_stops_pair_into_core_hours_cut_at_the_month():
    events = [
        event("server-started", "ru-scientist", "2026-10-31T23:00:00", cores=2),  # 1 h in October, 2 h in November
        event("server-stopped", "ru-scientist", "2026-11-01T02:00:00"),
        event("server-stopped", "ru-scientist", "2026-11-01T02:00:01"),  # a duplicate stop is ignored
        event("server-started", "ru-scientist", "2026-11-10T10:00:00", server="big", cores=4),
        event("server-stopped", "ru-scientist", "2026-11-10T10:30:00", server="big"),
        event("server-stopped", "cn-scientist", "2026-11-10T10:30:00"),  # a stop without a start
        event("server-started", "cn-scientist", "2026-11-30T23:00:00"),  # still running
    ]
    intervals = usage.server_intervals(events)
    nov = usage.month_bounds("2026-11")
    ru = [i for i in intervals if i.user == "ru-scientist"]
    assert usage.core_hours(ru, *nov) == pytest.approx(2 * 2 + 4 * 0.5)
    assert usage.core_hours(ru, *usage.month_bounds("2026-10")) == pytest.approx(2)
    cn = [i for i in intervals if i.user == "cn-scientist"]
    assert usage.core_hours(cn, *nov, now=ts("2026-12-01T05:00:00")) == pytest.approx(1)  # up to the month's end


def test_a_start_without_its_stop_ends_at_the_next_start():
    events = [event("server-started", "student", "2026-11-02T10:00:00"),
              event("server-started", "student", "2026-11-02T11:00:00"),
              event("server-stopped", "student", "2026-11-02T11:30:00")]
    assert usage.core_hours(usage.server_intervals(events), *usage.month_bounds("2026-11")) == pytest.approx(1.5)


@pytest.mark.parametrize("bad", ["2026-13", "2026/11", "november", ""])
def test_a_bad_month_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="write it as YYYY-MM"):
        usage.month_bounds(bad)


def make_gateway_db(path: Path, clusters: list[tuple], workers: list[tuple]) -> None:
    """The columns of dask-gateway-server's `clusters` and `workers` tables that accounting reads
    (times in milliseconds, as dask_gateway_server.utils.timestamp writes them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE clusters (id INTEGER PRIMARY KEY, name TEXT, username TEXT, config TEXT, "
                "start_time INTEGER, stop_time INTEGER)")
    con.execute("CREATE TABLE workers (id INTEGER PRIMARY KEY, cluster_id INTEGER, start_time INTEGER, "
                "stop_time INTEGER)")
    con.executemany("INSERT INTO clusters VALUES (?,?,?,?,?,?)", clusters)
    con.executemany("INSERT INTO workers (cluster_id, start_time, stop_time) VALUES (?,?,?)", workers)
    con.commit()
    con.close()


def ms(text: str) -> int:
    return int(ts(text) * 1000)


def test_clusters_count_scheduler_and_workers_and_survive_the_gateway_forgetting_them(tmp_path):
    d = deployment(tmp_path)
    db = d.state_path / "gateway" / "gateway.sqlite"
    cfg = json.dumps({"scheduler_cores": 1, "worker_cores": 2})
    make_gateway_db(db, [(1, "c1", "ru-scientist", cfg, ms("2026-11-05T10:00:00"), ms("2026-11-05T12:00:00"))],
                    [(1, ms("2026-11-05T10:00:00"), ms("2026-11-05T11:00:00")),
                     (1, ms("2026-11-05T10:00:00"), ms("2026-11-05T12:00:00"))])
    rep = usage.report(d, "2026-11")
    assert rep.users["ru-scientist"]["cluster"] == pytest.approx(1 * 2 + 2 * 1 + 2 * 2)
    assert usage.harvest(d) == 1
    assert usage.harvest(d) == 0  # once only
    db.unlink()  # the gateway dropped its record after a day
    rep = usage.report(d, "2026-11")
    assert rep.users["ru-scientist"]["cluster"] == pytest.approx(8)
    assert rep.groups["ru-science"]["cluster"] == pytest.approx(8)
    assert rep.groups["cn-science"]["cluster"] == 0


def test_groups_sum_their_members_and_a_quota_refuses_with_its_numbers(tmp_path):
    d = deployment(tmp_path, quotas={"students": 3})
    now = ts("2026-11-20T12:00:00")
    audit.record(d, usage.COMPONENT, "server-started", user="student", server="", cores=1.0)
    entries = audit.audit_dir(d) / "usage.jsonl"
    lines = [json.loads(x) for x in entries.read_text().splitlines()]
    lines[0]["time"] = ts("2026-11-20T10:00:00")  # two hours ago
    entries.write_text(json.dumps(lines[0]) + "\n")
    assert usage.quota_refusal(d, "student", "server", now=now) is None  # 2 of 3 core-hours
    assert usage.quota_refusal(d, "ru-scientist", "server", now=now) is None  # no quota for ru-science
    later = ts("2026-11-20T13:30:00")
    why = usage.quota_refusal(d, "student", "dask cluster", now=later)
    assert why == ("cannot start a dask cluster: group 'students' has used 3.5 of its 3 core-hours for 2026-11 "
                   "(groups.students.core_hours_per_month); ask an operator, or wait until next month")
    with pytest.raises(usage.QuotaExceeded, match="group 'students' has used 3.5"):
        usage.check_quota(d, "student", "server", now=later)
    # the next month starts at zero (the server still running counts from its first second)
    assert usage.quota_refusal(d, "student", "server", now=ts("2026-12-01T00:00:10")) is None


def test_a_quota_must_be_positive_and_names_its_key(tmp_path):
    with pytest.raises(config.ConfigError) as err:
        deployment(tmp_path, quotas={"students": 0})
    assert "groups.students.core_hours_per_month" in str(err.value)


def test_the_report_as_csv_and_table(tmp_path):
    d = deployment(tmp_path, quotas={"students": 10})
    for e in (event("server-started", "student", "2026-11-02T10:00:00", cores=2),
              event("server-stopped", "student", "2026-11-02T13:00:00")):
        audit.record(d, usage.COMPONENT, e["event"], user=e["user"], server="", cores=e["cores"])
    path = audit.audit_dir(d) / "usage.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    lines[0]["time"], lines[1]["time"] = ts("2026-11-02T10:00:00"), ts("2026-11-02T13:00:00")
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    text = usage.render(usage.report(d, "2026-11"), as_csv=True)
    rows = text.splitlines()
    assert rows[0] == "month,kind,name,server_core_hours,cluster_core_hours,total_core_hours,quota_core_hours"
    assert "2026-11,user,student,6.000,0.000,6.000," in rows
    assert "2026-11,group,students,6.000,0.000,6.000,10" in rows
    table = usage.render(usage.report(d, "2026-11"), as_csv=False)
    assert "core-hours in 2026-11 (UTC)" in table and "students" in table


def test_cli_refuses_a_bad_month_and_prints_csv(tmp_path, capsys):
    d = deployment(tmp_path)
    assert tree.main(["--config", str(d.config_file), "usage", "--month", "2026-13"]) == 2
    assert "--month: month '2026-13': write it as YYYY-MM" in capsys.readouterr().err
    assert tree.main(["--config", str(d.config_file), "usage", "--month", "2026-11", "--csv"]) == 0
    assert capsys.readouterr().out.startswith("month,kind,name,")
