"""The versioned state layout and `lunarhub upgrade` on a stopped stack (lunarhub.operations.state_layout,
lunarhub.operations.upgrade), on a copy of the state dir the previous release left
(tests/data/state-previous): real JupyterHub migrations, real backups and restores."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest
import yaml
from support.previous_state import NEWCOMER, copy_into

from lunarhub import config
from lunarhub.cli import tree
from lunarhub.operations import backup as backups
from lunarhub.operations import state_layout, upgrade

ROOT = Path(__file__).resolve().parents[2]
JUPYTERHUB_5_HEAD = "4621fec11365"  # what the fixture's hub database is at (tests/data/state-previous/README.md)


def deployment(tmp: Path) -> config.Deployment:
    data = yaml.safe_load((ROOT / "hub" / "lunarhub.yaml").read_text())
    data["state_dir"] = str(tmp / "state")
    data["hub"]["isolation"] = "single-account"  # no system accounts in a unit test
    for site in data["sites"].values():
        site["data_dir"] = str((ROOT / "hub" / site["data_dir"]).resolve())
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "lunarhub.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    return config.load(tmp / "lunarhub.yaml")


@pytest.fixture
def previous(tmp_path: Path) -> config.Deployment:
    d = deployment(tmp_path)
    copy_into(d.state_path, owners=False)
    return d


def hub_users(d: config.Deployment) -> list[str]:
    con = sqlite3.connect(d.state_path / state_layout.HUB_DB)
    try:
        return sorted(r[0] for r in con.execute("SELECT name FROM users"))
    finally:
        con.close()


def tree_of(state: Path) -> dict[str, tuple[str, str | None]]:
    """Mode and content hash of every entry (SQLite files by their rows: a restore copies them
    through the online backup API, which may lay the pages out differently)."""
    out: dict[str, tuple[str, str | None]] = {}
    for path in sorted([state, *state.rglob("*")]):
        st = os.lstat(path)
        digest = None
        if stat.S_ISREG(st.st_mode):
            if path.suffix == ".sqlite":
                con = sqlite3.connect(path)
                digest = hashlib.sha256("\n".join(con.iterdump()).encode()).hexdigest()
                con.close()
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
        out[str(path.relative_to(state))] = (f"{stat.S_IMODE(st.st_mode):04o}", digest)
    return out


# ---------------------------------------------------------------- the version file


def test_a_state_dir_without_a_version_file_is_the_previous_layout_or_fresh(tmp_path: Path, previous) -> None:
    assert state_layout.read_version(previous) == 0  # a hub ran on it: version 0
    fresh = deployment(tmp_path / "fresh")
    assert state_layout.read_version(fresh) is None
    state_layout.stamp_if_fresh(fresh)
    assert state_layout.read_version(fresh) == state_layout.CURRENT
    assert stat.S_IMODE(os.stat(state_layout.version_path(fresh)).st_mode) == 0o644
    state_layout.stamp_if_fresh(previous)  # never stamps over an old layout
    assert state_layout.read_version(previous) == 0


def test_up_refuses_an_older_or_a_newer_layout_and_a_damaged_version_file(previous) -> None:
    [(where, why)] = state_layout.start_problems(previous)
    assert "layout version 0" in why and "lunarhub upgrade" in why
    state_layout.write_version(previous, state_layout.CURRENT + 1)
    [(where, why)] = state_layout.start_problems(previous)
    assert where.endswith("layout-version") and "newer lunarhub" in why and f"up to {state_layout.CURRENT}" in why
    state_layout.version_path(previous).write_text("one\n")
    [(where, why)] = state_layout.start_problems(previous)
    assert where.endswith("layout-version") and "'one' is not a layout version" in why
    state_layout.write_version(previous, state_layout.CURRENT)
    assert state_layout.start_problems(previous) == []


# ---------------------------------------------------------------- the migration chain


def test_the_chain_goes_from_0_to_current_one_step_at_a_time() -> None:
    assert [m.source for m in state_layout.MIGRATIONS] == list(range(state_layout.CURRENT))
    assert state_layout.pending(0) == list(state_layout.MIGRATIONS)
    assert state_layout.pending(state_layout.CURRENT) == []
    with pytest.raises(state_layout.LayoutError, match="no migration from layout 1 to 2"):
        state_layout.pending(0, state_layout.MIGRATIONS[:1], target=3)


def test_private_modes_migration_closes_what_the_previous_release_left_open_and_is_idempotent(previous) -> None:
    db = previous.state_path / state_layout.HUB_DB
    assert stat.S_IMODE(db.stat().st_mode) == 0o640  # as 0.1.0 left it (owners.json)
    (previous.state_path / "hub" / "jupyterhub.sqlite.2026-11-30-020000").write_bytes(b"old copy")
    os.chmod(previous.state_path / "hub" / "jupyterhub.sqlite.2026-11-30-020000", 0o644)
    [m] = state_layout.pending(0)
    changes = m.apply(previous)
    assert "hub/jupyterhub.sqlite: now 0600" in changes
    assert "hub/jupyterhub.sqlite.2026-11-30-020000: now 0600" in changes
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert m.apply(previous) == []  # a rerun changes nothing more


# ---------------------------------------------------------------- lunarhub upgrade, stack stopped


def test_upgrade_of_the_previous_release_backs_up_upgrades_the_hub_db_and_migrates(previous) -> None:
    users = hub_users(previous)
    assert NEWCOMER in users and "cn-scientist" in users
    p = upgrade.plan(previous)
    assert (p.layout, p.hub_revision, p.running) == (0, JUPYTERHUB_5_HEAD, False)
    assert p.hub_needs_upgrade and [m.name for m in p.migrations] == ["private-state-modes"]
    assert any("would upgrade 4621fec11365 ->" in line for line in upgrade.describe_plan(p))
    report = upgrade.run(previous, log=lambda _: None)
    assert report.backup and report.backup.parent == backups.default_dest(previous)
    backups.verify(report.backup)  # whole, and made before anything changed:
    assert (report.backup / "data/state/layout-version").exists() is False
    assert report.hub_revision_after == upgrade.hub_head() == upgrade.hub_revision(upgrade.hub_db_url(previous))
    assert report.layout_after == state_layout.CURRENT == state_layout.read_version(previous)
    assert hub_users(previous) == users  # the data came along
    text = "\n".join(upgrade.describe(report))
    assert f"layout: 0 -> {state_layout.CURRENT}" in text and f"{JUPYTERHUB_5_HEAD} -> {report.hub_revision_after}" in text
    assert f"backup taken first: {report.backup}" in text and "migration private-state-modes" in text
    [event] = [json.loads(x) for x in (previous.state_path / "audit" / "operations.jsonl").read_text().splitlines()]
    assert event["event"] == "upgrade" and event["layout_before"] == 0 and event["backup"] == str(report.backup)
    again = upgrade.run(previous, log=lambda _: None)  # a second run: nothing left but the backup
    assert again.applied == [] and again.plan.hub_needs_upgrade is False and again.layout_after == state_layout.CURRENT


def test_a_failing_migration_leaves_the_state_as_it_was_and_names_the_step(previous) -> None:
    before = tree_of(previous.state_path)

    def boom(d: config.Deployment) -> list[str]:
        (d.state_path / "roster.json").write_text("half-migrated")
        (d.state_path / "new-folder").mkdir()
        raise OSError(28, "No space left on device")

    chain = [state_layout.Migration(0, "boom", "fails half-way", boom)]
    with pytest.raises(upgrade.UpgradeError) as err:
        upgrade.run(previous, migrations=chain, log=lambda _: None)
    assert err.value.step == "migration 0->1 boom" and err.value.restored
    assert "No space left on device" in str(err.value) and "back as it was" in str(err.value)
    after = tree_of(previous.state_path)
    # What a restore adds: the version the backup was made at (0, as before), and the audit trail's record.
    assert state_layout.read_version(previous) == 0
    assert after.pop("layout-version")[1] == hashlib.sha256(b"0\n").hexdigest()
    event = json.loads((previous.state_path / "audit" / "operations.jsonl").read_text())
    assert event["event"] == "upgrade-failed" and event["step"] == "migration 0->1 boom"
    after.pop("audit/operations.jsonl")
    assert after == before  # the hub database too: back at JupyterHub 5's schema, same rows
    assert upgrade.hub_revision(upgrade.hub_db_url(previous)) == JUPYTERHUB_5_HEAD


def test_a_state_dir_from_the_future_is_refused_before_anything_changes(previous) -> None:
    state_layout.write_version(previous, 7)
    before = tree_of(previous.state_path)
    with pytest.raises(upgrade.UpgradeError) as err:
        upgrade.run(previous, log=lambda _: None)
    assert err.value.step == "check" and "layout version 7 (from a newer lunarhub)" in str(err.value)
    assert tree_of(previous.state_path) == before
    assert not backups.default_dest(previous).exists()  # not even a backup


def test_a_backup_from_the_future_is_not_restored(previous, tmp_path: Path) -> None:
    state_layout.write_version(previous, state_layout.CURRENT + 1)
    made = backups.backup(previous, tmp_path / "b")
    other = deployment(tmp_path / "other")
    with pytest.raises(backups.BackupError, match=f"made at state layout {state_layout.CURRENT + 1}"):
        backups.restore(other, made.path)
    assert not other.state_path.exists()


def test_cli_dry_run_changes_nothing_and_a_future_state_exits_1(previous, capsys) -> None:
    if os.geteuid() != 0:
        pytest.fail("run as root (CI does): lunarhub upgrade is root's")
    cfg = str(previous.config_file)
    before = tree_of(previous.state_path)
    assert tree.main(["--config", cfg, "upgrade", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would back up into" in out and "would migrate layout 0 -> 1: private-state-modes" in out
    assert tree_of(previous.state_path) == before
    state_layout.write_version(previous, 9)
    assert tree.main(["--config", cfg, "upgrade"]) == 1
    assert "step 'check' failed" in capsys.readouterr().err
