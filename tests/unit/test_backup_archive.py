"""Backups, verification and restores of a state dir (lunarhub.operations.backup) on a real
filesystem: SQLite files, the dashboards store, secrets, team folders with planted links."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sqlite3
import stat
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from lunarhub import config
from lunarhub.cli import tree
from lunarhub.config import ConfigError
from lunarhub.dashboards.gallery.comments import Comments
from lunarhub.dashboards.store import Store
from lunarhub.operations import backup as ops
from lunarhub.platform import audit, lifecycle

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534


def deployment(tmp: Path, **extra: object) -> config.Deployment:
    data = yaml.safe_load((ROOT / "hub" / "lunarhub.yaml").read_text())
    data["state_dir"] = str(tmp / "state")
    data["hub"]["isolation"] = "single-account"  # no system accounts in a unit test
    for site in data["sites"].values():
        site["data_dir"] = str((ROOT / "hub" / site["data_dir"]).resolve())
    data.update(extra)
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "lunarhub.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return config.load(path)


def notebook() -> bytes:
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}).encode()


def populate(d: config.Deployment) -> None:
    """A state dir as a running stack leaves it, plus what `up` rebuilds (which must not be copied)."""
    state = d.state_path
    for sub in ("hub", "gateway", "logs", "supervisor", "secrets/sites/ru", "courses", "sites/ru/data", "audit"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    for sub in ("secrets", "secrets/sites", "secrets/sites/ru"):
        os.chmod(state / sub, 0o700)  # as lunarhub.config.secrets makes them
    hub = sqlite3.connect(state / "hub" / "jupyterhub.sqlite")
    hub.executescript("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);"
                      "CREATE TABLE servers (id INTEGER PRIMARY KEY, port INTEGER);"
                      "CREATE TABLE spawners (id INTEGER PRIMARY KEY, user_id INTEGER, server_id INTEGER, state TEXT);"
                      "INSERT INTO users (name) VALUES ('ru-scientist'), ('newcomer');"
                      "INSERT INTO servers (port) VALUES (40001);"
                      "INSERT INTO spawners (user_id, server_id, state) VALUES (1, 1, '{\"pid\": 4242}');")
    hub.commit()
    hub.close()
    os.chmod(state / "hub" / "jupyterhub.sqlite", 0o600)
    (state / "hub" / "jupyterhub.pid").write_text("123")
    (state / "logs" / "hub.log").write_text("log")
    (state / "supervisor" / "supervisord.conf").write_text("[supervisord]")
    (state / "sites" / "ru" / "access.log").write_text('{"user": "ru-scientist"}\n')
    (state / "sites" / "ru" / "data" / "big.tif").write_text("rebuilt at up")
    for name, text in (("cookie_secret", "c" * 64), ("password-hashes.json", '{"newcomer": "scrypt$x"}'),
                       ("sites/ru/users.json", "{}")):
        (state / "secrets" / name).write_text(text)
        os.chmod(state / "secrets" / name, 0o600)
    (state / "roster.json").write_text(json.dumps({"users": {"newcomer": {"groups": ["students"]}}, "removed": []}))
    (state / "courses" / "luna101.json").write_text("{}")
    audit.record(d, "hub", "share-created", actor="cn-scientist")
    store = Store.for_deployment(d)
    for n in range(3):
        store.publish("cn-scientist", "crater-map", title="Crater map", description=f"v{n}", notebook="a.ipynb",
                      files={"a.ipynb": notebook(), "data/n.txt": str(n).encode()}, share_with=["cn-science"],
                      environment={})
    Comments(store.root / "comments.sqlite").add("cn-scientist", "crater-map", 2, "reviewer", "looks right")
    team = state / "projects" / "cn-science"
    team.mkdir(parents=True)
    os.chown(team, 0, NOBODY)
    os.chmod(team, 0o2770)
    (team / "notes.md").write_text("shared notes")
    os.chown(team / "notes.md", NOBODY, NOBODY)
    os.chmod(team / "notes.md", 0o660)
    # What a team member plants: links out of the folder, to a file and to a folder root reads.
    (team / "shadow").symlink_to("/etc/shadow")
    (team / "etc").symlink_to("/etc")
    os.mkfifo(team / "pipe")


def entries(result_path: Path) -> dict[str, dict]:
    return {e["path"]: e for e in json.loads((result_path / ops.MANIFEST).read_text())["entries"]}


@pytest.fixture
def d(tmp_path: Path) -> config.Deployment:
    dep = deployment(tmp_path)
    populate(dep)
    return dep


def test_backup_copies_the_state_with_owners_modes_and_checksums_and_skips_what_up_rebuilds(d, tmp_path) -> None:
    res = ops.backup(d, tmp_path / "backups")
    assert ops.NAME_RE.match(res.path.name)
    assert stat.S_IMODE(res.path.stat().st_mode) == 0o700
    found = entries(res.path)
    manifest = json.loads((res.path / ops.MANIFEST).read_text())
    assert manifest["versions"]["lunarhub"] and manifest["versions"]["jupyterhub"]
    for rel in ("hub/jupyterhub.sqlite", "secrets/cookie_secret", "secrets/sites/ru/users.json", "roster.json",
                "courses/luna101.json", "audit/hub.jsonl", "sites/ru/access.log", "dashboards/comments.sqlite",
                "dashboards/cn-scientist/crater-map/v3/files/data/n.txt", "projects/cn-science/notes.md"):
        assert f"state/{rel}" in found, rel
    for rel in ("hub/jupyterhub.pid", "logs", "supervisor", "sites/ru/data"):
        assert not any(p == f"state/{rel}" or p.startswith(f"state/{rel}/") for p in found), rel
    notes = found["state/projects/cn-science/notes.md"]
    assert (notes["uid"], notes["gid"], notes["mode"]) == (NOBODY, NOBODY, "0660")
    assert found["state/projects/cn-science"]["mode"] == "2770"
    assert found["state/secrets/cookie_secret"]["mode"] == "0600"
    for path in (res.path / ops.DATA).rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_uid == 0, path
    assert any("pipe" in s for s in res.skipped)


def test_planted_links_are_recorded_as_links_never_followed(d, tmp_path) -> None:
    res = ops.backup(d, tmp_path / "backups")
    found = entries(res.path)
    assert found["state/projects/cn-science/shadow"] == {**found["state/projects/cn-science/shadow"],
                                                        "kind": "link", "target": "/etc/shadow"}
    assert "sha256" not in found["state/projects/cn-science/shadow"]
    assert found["state/projects/cn-science/etc"]["kind"] == "link"
    assert not any(p.startswith("state/projects/cn-science/etc/") for p in found)  # /etc not walked
    assert not os.path.lexists(res.path / ops.DATA / "state/projects/cn-science/etc")
    shadow = Path("/etc/shadow").read_bytes() if Path("/etc/shadow").exists() else b"\0no shadow"
    for path in (res.path / ops.DATA).rglob("*"):
        assert not path.is_symlink(), path
        if path.is_file() and len(shadow) > 20:
            assert shadow not in path.read_bytes(), path
    target = deployment(tmp_path / "fresh")
    ops.restore(target, res.path)
    link = target.state_path / "projects" / "cn-science" / "shadow"
    assert link.is_symlink() and os.readlink(link) == "/etc/shadow"
    assert os.lstat(link).st_uid == 0


def test_a_link_swapped_in_for_a_file_while_copying_is_not_read_through(d, tmp_path, monkeypatch) -> None:
    """The race: a member replaces notes.md by a link to /etc/shadow between root listing the folder
    and opening the file. The open refuses the link (O_NOFOLLOW); nothing of the target is copied."""
    notes = d.state_path / "projects" / "cn-science" / "notes.md"
    real_open = os.open

    def racing_open(path, flags, *args, **kw):
        if path == "notes.md" and kw.get("dir_fd") is not None and notes.exists() and not notes.is_symlink():
            notes.unlink()
            notes.symlink_to("/etc/shadow")
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", racing_open)
    res = ops.backup(d, tmp_path / "backups")
    monkeypatch.undo()
    assert "state/projects/cn-science/notes.md" not in entries(res.path)
    assert any("notes.md" in s and "changed while being copied" in s for s in res.skipped)
    assert not (res.path / ops.DATA / "state/projects/cn-science/notes.md").exists()


def test_a_live_sqlite_transaction_is_not_torn_into_the_copy(d, tmp_path) -> None:
    writer = sqlite3.connect(d.state_path / "hub" / "jupyterhub.sqlite")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO users (name) VALUES ('uncommitted')")
    try:
        res = ops.backup(d, tmp_path / "backups")
    finally:
        writer.rollback()
        writer.close()
    copy = sqlite3.connect(res.path / ops.DATA / "state/hub/jupyterhub.sqlite")
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert [r[0] for r in copy.execute("SELECT name FROM users ORDER BY id")] == ["ru-scientist", "newcomer"]


def test_verify_names_the_first_damaged_missing_or_added_file(d, tmp_path) -> None:
    res = ops.backup(d, tmp_path / "backups")
    assert ops.verify(res.path).entries
    secret = res.path / ops.DATA / "state/secrets/cookie_secret"
    secret.write_text("d" + "c" * 63)
    with pytest.raises(ops.BackupError, match=r"state/secrets/cookie_secret: checksum mismatch"):
        ops.verify(res.path)
    secret.write_text("c" * 64)
    (res.path / ops.DATA / "state/courses/luna101.json").unlink()
    with pytest.raises(ops.BackupError, match=r"state/courses/luna101.json: missing"):
        ops.verify(res.path)
    (res.path / ops.DATA / "state/courses/luna101.json").write_text("{}")
    os.chmod(res.path / ops.DATA / "state/courses/luna101.json", 0o600)
    (res.path / ops.DATA / "state/courses/extra.json").write_text("{}")
    with pytest.raises(ops.BackupError, match=r"extra.json: not in the manifest"):
        ops.verify(res.path)
    (res.path / ops.DATA / "state/courses/extra.json").unlink()
    ops.verify(res.path)
    with open(res.path / ops.MANIFEST, "ab") as f:
        f.write(b" ")
    with pytest.raises(ops.BackupError, match=r"manifest.json: damaged"):
        ops.verify(res.path)


def test_cli_verify_exit_codes_and_messages(d, tmp_path, capsys) -> None:
    res = ops.backup(d, tmp_path / "backups")
    assert tree.main(["--config", str(d.config_file), "backup", "verify", str(res.path)]) == 0
    assert "OK" in capsys.readouterr().out
    with open(res.path / ops.DATA / "state/roster.json", "ab") as f:
        f.write(b"\n")
    assert tree.main(["--config", str(d.config_file), "backup", "verify", str(res.path)]) == 1
    assert "state/roster.json: size" in capsys.readouterr().err


def test_restore_onto_a_fresh_state_dir_gives_back_everything_with_owners_and_modes(d, tmp_path) -> None:
    res = ops.backup(d, tmp_path / "backups")
    target = deployment(tmp_path / "fresh")
    out = ops.restore(target, res.path)
    state = target.state_path
    assert out.files == sum(1 for e in entries(res.path).values() if e["kind"] == "file")
    assert (state / "secrets" / "password-hashes.json").read_text() == '{"newcomer": "scrypt$x"}'
    for secret in (state / "secrets").rglob("*"):
        assert stat.S_IMODE(secret.stat().st_mode) == (0o600 if secret.is_file() else 0o700), secret
    team = state / "projects" / "cn-science"
    assert (stat.S_IMODE(team.stat().st_mode), team.stat().st_gid) == (0o2770, NOBODY)
    notes = team / "notes.md"
    assert (notes.read_text(), notes.stat().st_uid, stat.S_IMODE(notes.stat().st_mode)) == ("shared notes", NOBODY, 0o660)
    dash = Store.for_deployment(target).get("cn-scientist", "crater-map")
    assert dash is not None and [v.version for v in dash.versions] == [1, 2, 3]
    assert stat.S_IMODE(dash.versions[0].path.stat().st_mode) == stat.S_IMODE(
        (d.state_path / "dashboards/cn-scientist/crater-map/v1").stat().st_mode)
    assert [c["text"] for c in Comments(state / "dashboards" / "comments.sqlite").list("cn-scientist", "crater-map")] \
        == ["looks right"]
    assert audit.read(target, ["hub"])[0]["actor"] == "cn-scientist"
    assert not (state / "logs").exists() and not (state / "supervisor").exists()
    hub = sqlite3.connect(state / "hub" / "jupyterhub.sqlite")
    # Processes are not state: no server is recorded as running after a restore.
    assert hub.execute("SELECT server_id, state FROM spawners").fetchall() == [(None, "{}")]
    assert hub.execute("SELECT COUNT(*) FROM servers").fetchone() == (0,)
    assert [r[0] for r in hub.execute("SELECT name FROM users")] == ["ru-scientist", "newcomer"]
    assert not [p for p in state.parent.iterdir() if ".restore-" in p.name]


def test_restore_over_a_state_swaps_it_and_removes_the_previous_one(d, tmp_path) -> None:
    res = ops.backup(d, tmp_path / "backups")
    (d.state_path / "courses" / "luna101.json").write_text('{"changed": true}')
    (d.state_path / "courses" / "after-backup.json").write_text("{}")
    ops.restore(d, res.path)
    assert (d.state_path / "courses" / "luna101.json").read_text() == "{}"
    assert not (d.state_path / "courses" / "after-backup.json").exists()
    assert sorted(p.name for p in d.state_path.parent.iterdir() if p.name.startswith(".")) == []


def test_a_corrupted_backup_is_refused_by_restore_and_nothing_changes(d, tmp_path) -> None:
    res = ops.backup(d, tmp_path / "backups")
    blob = next((res.path / ops.DATA / "state/dashboards").rglob("n.txt"))
    blob.write_bytes(b"9")
    before = (d.state_path / "roster.json").read_text()
    (d.state_path / "roster.json").write_text("{}")
    with pytest.raises(ops.BackupError, match=r"n.txt: checksum mismatch"):
        ops.restore(d, res.path)
    assert (d.state_path / "roster.json").read_text() == "{}" != before


def test_restore_refuses_a_running_stack_unless_forced_and_then_stops_it_first(d, tmp_path, monkeypatch) -> None:
    res = ops.backup(d, tmp_path / "backups")
    running = {"yes": True}
    monkeypatch.setattr(lifecycle, "supervisor_running", lambda _d: running["yes"])
    with pytest.raises(ops.BackupError, match="lunarhub is running .*--force"):
        ops.restore(d, res.path)
    assert (d.state_path / "logs" / "hub.log").exists()  # untouched

    def stop(_d: config.Deployment) -> None:
        running["yes"] = False

    ops.restore(d, res.path, force=True, stop=stop)
    assert running["yes"] is False and not (d.state_path / "logs").exists()


def test_a_failed_swap_puts_back_what_was_already_swapped(tmp_path, monkeypatch) -> None:
    d = deployment(tmp_path, secrets_dir=str(tmp_path / "secrets-elsewhere"))
    populate(d)
    d.secrets_path.mkdir(mode=0o700)
    (d.secrets_path / "cookie_secret").write_text("outside")
    res = ops.backup(d, tmp_path / "backups")
    assert "secrets" in json.loads((res.path / ops.MANIFEST).read_text())["sources"]
    (d.state_path / "roster.json").write_text('{"users": {}, "removed": ["after"]}')
    (d.secrets_path / "cookie_secret").write_text("rotated")
    real, calls = ops.exchange, []

    def failing(a: Path, b: Path) -> None:
        calls.append(b)
        if b == d.secrets_path and len(calls) == 2:
            raise OSError(errno.EIO, "simulated failure")
        real(a, b)

    monkeypatch.setattr(ops, "exchange", failing)
    with pytest.raises(OSError, match="simulated"):
        ops.restore(d, res.path)
    assert (d.state_path / "roster.json").read_text() == '{"users": {}, "removed": ["after"]}'
    assert (d.secrets_path / "cookie_secret").read_text() == "rotated"
    assert not [p for p in tmp_path.iterdir() if ".restore-" in p.name]
    monkeypatch.setattr(ops, "exchange", real)
    ops.restore(d, res.path)
    assert (d.secrets_path / "cookie_secret").read_text() == "outside"


def test_a_manifest_entry_through_a_link_is_refused_at_restore(d, tmp_path) -> None:
    """A backup edited to write `projects/cn-science/etc/passwd` through the recorded link `etc`:
    the restore refuses it (it never writes through a link) and leaves the state as it was."""
    res = ops.backup(d, tmp_path / "backups")
    manifest = json.loads((res.path / ops.MANIFEST).read_text())
    assert manifest["entries"][-1]["path"] != "state/projects/cn-science/etc"  # the link comes first
    manifest["entries"].append({**manifest["entries"][-1], "path": "state/projects/cn-science/etc/passwd",
                                "kind": "file", "size": 1, "sha256": hashlib.sha256(b"x").hexdigest()})
    text = json.dumps(manifest).encode()
    (res.path / ops.MANIFEST).write_bytes(text)
    (res.path / ops.MANIFEST_SUM).write_text(hashlib.sha256(text).hexdigest())
    (res.path / ops.DATA / "state/projects/cn-science/etc").mkdir()
    (res.path / ops.DATA / "state/projects/cn-science/etc/passwd").write_text("x")
    ops.verify(res.path)  # consistent: only the restore's own guard stands in the way
    before = Path("/etc/passwd").read_bytes()
    with pytest.raises(ops.BackupError, match="goes through a link"):
        ops.restore(deployment(tmp_path / "fresh"), res.path)
    assert Path("/etc/passwd").read_bytes() == before


def test_dest_not_writable_and_disk_full_are_clear_and_leave_nothing(d, tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ops.BackupError, match=r"a-file/backups: not writable"):
        ops.backup(d, blocker / "backups")
    dest = tmp_path / "backups"
    real_write, written = os.write, []

    def full(fd: int, data: bytes) -> int:
        written.append(len(data))
        if len(written) > 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(ops.os, "write", full)
    with pytest.raises(ops.BackupError, match="no space left"):
        ops.backup(d, dest)
    monkeypatch.undo()
    assert list(dest.iterdir()) == []


def test_disk_full_on_a_real_tiny_tmpfs(d, tmp_path) -> None:
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.fail("this test mounts a 64 KiB tmpfs: run it as root on a host that allows mount")
    try:
        (d.state_path / "courses" / "big.bin").write_bytes(os.urandom(256 * 1024))
        with pytest.raises(ops.BackupError, match="no space left"):
            ops.backup(d, mnt)
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_keep_removes_the_oldest_beyond_n(d, tmp_path) -> None:
    dest = tmp_path / "backups"
    made = [ops.backup(d, dest, now=1_700_000_000 + i * 86400).path for i in range(3)]
    (dest / ".lunarhub-backup-x.tmp").mkdir()  # one under way is never pruned
    res = ops.backup(d, dest, keep=2, now=1_700_000_000 + 3 * 86400)
    assert res.removed == made[:2]
    assert ops.backups_in(dest) == [made[2], res.path]
    assert (dest / ".lunarhub-backup-x.tmp").exists()


def test_schedule_times_and_config_errors(tmp_path) -> None:
    at = datetime(2026, 3, 1, 1, 30)
    assert ops.next_run("daily 02:00", at) == datetime(2026, 3, 1, 2, 0)
    assert ops.next_run("daily 02:00", datetime(2026, 3, 1, 2, 0)) == datetime(2026, 3, 2, 2, 0)
    assert ops.next_run("every 6 hours", at) == datetime(2026, 3, 1, 7, 30)
    d = deployment(tmp_path, operations={"backup": {"schedule": "daily 02:00", "keep": 3, "dest": "bk"}})
    assert d.operations.backup is not None and ops.default_dest(d) == tmp_path / "bk"
    with pytest.raises(ConfigError) as err:
        deployment(tmp_path / "bad", operations={"backup": {"schedule": "nightly"}})
    assert "operations.backup.schedule" in str(err.value) and "daily HH:MM" in str(err.value)


def test_the_scheduled_loop_backs_up_prunes_and_survives_a_failure(tmp_path) -> None:
    d = deployment(tmp_path, operations={"backup": {"schedule": "every 1 minutes", "keep": 2,
                                                     "dest": str(tmp_path / "bk")}})
    populate(d)
    slept: list[float] = []
    lines: list[str] = []
    ops.run_scheduled(d, log=lines.append, sleep=slept.append, runs=3)
    assert len(ops.backups_in(tmp_path / "bk")) == 2 and len(slept) == 3 and 55 <= slept[0] <= 60
    assert [e["event"] for e in audit.read(d, ["operations"])] == ["backup"] * 3
    (tmp_path / "bk").chmod(0o700)
    os.rename(tmp_path / "bk", tmp_path / "bk-moved")
    (tmp_path / "bk").write_text("not a folder")
    ops.run_scheduled(d, log=lines.append, sleep=slept.append, runs=1)
    assert "backup FAILED" in lines[-1] and audit.read(d, ["operations"])[-1]["event"] == "backup-failed"


def test_backup_and_restore_are_root_only(d, tmp_path) -> None:
    res = ops.backup(d, tmp_path / "backups")
    os.chmod(tmp_path, 0o755)
    proc = subprocess.run(["runuser", "-u", "nobody", "--", str(ROOT / ".venv/bin/lunarhub"), "--config",
                           str(d.config_file), "restore", str(res.path)], capture_output=True, text=True)
    assert proc.returncode == 1 and "operators only: run it as root" in proc.stderr
    proc = subprocess.run(["runuser", "-u", "nobody", "--", "cat",
                           str(res.path / ops.DATA / "state/secrets/cookie_secret")], capture_output=True, text=True)
    assert proc.returncode != 0 and "Permission denied" in proc.stderr


def test_the_supervisor_runs_the_schedule_only_when_the_file_asks(tmp_path, monkeypatch) -> None:
    from lunarhub.platform import supervisor

    # The sites' programs check the state dir's place on disk (pytest's tmp is closed): not the point here.
    monkeypatch.setattr(supervisor, "_site_programs", lambda d, env: [])
    assert "backup" not in [p.name for p in supervisor.programs(deployment(tmp_path / "none"))]
    d = deployment(tmp_path / "daily", operations={"backup": {"schedule": "daily 02:00"}})
    [prog] = [p for p in supervisor.programs(d) if p.name == "backup"]
    assert prog.command[-2:] == ["backup", "--scheduled"] and prog.environment["LUNARHUB_CONFIG"] == str(d.config_file)


def test_homes_only_with_homes(d, tmp_path) -> None:
    home = d.state_path / "homes" / "student"  # single-account mode keeps homes in the state dir
    home.mkdir(parents=True)
    (home / "work.ipynb").write_text("{}")
    os.chmod(home / "work.ipynb", 0o640)
    without = ops.backup(d, tmp_path / "a")
    assert not any(p.startswith("state/homes") for p in entries(without.path))
    with_homes = ops.backup(d, tmp_path / "b", homes=True)
    assert entries(with_homes.path)["state/homes/student/work.ipynb"]["mode"] == "0640"
    target = deployment(tmp_path / "fresh")
    ops.restore(target, with_homes.path)
    restored = target.state_path / "homes" / "student" / "work.ipynb"
    assert restored.read_text() == "{}" and stat.S_IMODE(restored.stat().st_mode) == 0o640
