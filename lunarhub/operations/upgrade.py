"""`lunarhub upgrade`: back up, upgrade the hub's database, migrate the state layout, restart
(docs/operations.md, "Upgrades"). The CLI is lunarhub/cli/upgrade.py.

Steps, each named in the report and in a failure:
  1. check     the state dir's layout (a newer one is refused before anything changes)
  2. stop hub  only the hub (and the services it manages): users' servers and the proxy keep
               running (the hub runs with cleanup_servers = cleanup_proxy = False)
  3. backup    lunarhub.operations.backup.backup with the hub quiet, into the usual destination
  4. hub database       JupyterHub's alembic migrations (jupyterhub.dbutil.upgrade_if_needed)
  5. gateway database   dask-gateway-server keeps no schema version: nothing to run, it is in the backup
  6. migration <name>   lunarhub.operations.state_layout.MIGRATIONS, N -> N+1, the version written after each
  7. restart   the stack as `up` starts it, then every other program (new code); the hub adopts the servers
A failure in 4-6 restores the backup of step 3 (servers kept recorded, the rebuilt-at-start folders
such as logs/ carried over) and restarts what ran: the previous state is back and the step is named.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lunarhub.config import Deployment
from lunarhub.operations import backup as backups
from lunarhub.operations import state_layout

# Rebuilt by `up` (so not in a backup) but live while the stack runs: kept across a rollback by rename.
CARRIED = ("logs", "dashboard-runs", "monitoring", "homes")


class UpgradeError(RuntimeError):
    """An upgrade that stopped: `step` failed, `restored` says whether the backup was put back."""

    def __init__(self, step: str, message: str, backup: Path | None = None, restored: bool = False):
        super().__init__(message)
        self.step, self.backup, self.restored = step, backup, restored


@dataclass
class Plan:
    """What an upgrade would do, from what the state dir holds now."""

    running: bool
    layout: int | None
    migrations: list[state_layout.Migration]
    hub_db: str
    hub_revision: str | None
    hub_head: str
    gateway_db: Path | None
    dest: Path

    @property
    def hub_needs_upgrade(self) -> bool:
        return self.hub_revision is not None and self.hub_revision != self.hub_head


@dataclass
class Report:
    plan: Plan
    backup: Path | None = None
    hub_revision_after: str | None = None
    layout_after: int | None = None
    applied: list[tuple[str, list[str]]] = field(default_factory=list)
    servers_before: list[str] = field(default_factory=list)
    servers_after: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def hub_db_url(d: Deployment) -> str:
    """The hub's database URL as lunarhub.platform.hub.network configures it."""
    return d.hub.database_url or f"sqlite:///{d.state_path / state_layout.HUB_DB}"


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def hub_head() -> str:
    """The newest schema revision the installed JupyterHub knows."""
    import jupyterhub
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(os.path.join(os.path.dirname(jupyterhub.__file__), "alembic")).get_current_head()
    assert head is not None
    return head


def hub_revision(url: str) -> str | None:
    """The hub database's schema revision; None when there is no database yet."""
    if url.startswith("sqlite:///") and not Path(url.split(":///", 1)[1]).exists():
        return None
    import sqlalchemy as sa
    from alembic.migration import MigrationContext

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def plan(d: Deployment, dest: Path | None = None,
         migrations: Sequence[state_layout.Migration] | None = None) -> Plan:
    """Read-only: the upgrade's steps for this state dir (UpgradeError at step `check` if refused)."""
    from lunarhub.platform import lifecycle

    try:
        layout = state_layout.read_version(d)
        newer = state_layout.newer_problem(d, layout)
        if newer:
            raise state_layout.LayoutError(newer)
        todo = state_layout.pending(layout, migrations) if layout is not None else []
    except state_layout.LayoutError as exc:
        raise UpgradeError("check", str(exc)) from None
    url = hub_db_url(d)
    gateway = d.state_path / "gateway" / "gateway.sqlite"
    # Asked without creating <state>/supervisor (which supervisor_dir does): a dry run changes nothing.
    running = (d.state_path / "supervisor" / "supervisor.sock").exists() and lifecycle.supervisor_running(d)
    return Plan(running, layout, todo, url, hub_revision(url), hub_head(),
                gateway if gateway.exists() else None, Path(dest) if dest else backups.default_dest(d))


def _servers(d: Deployment) -> list[str]:
    from lunarhub.platform import hubclient

    try:
        users = hubclient.HubAPI(d).users()
    except (hubclient.HubUnavailable, RuntimeError):
        return []
    return sorted(f"{u['name']}/{name}" for u in users for name, srv in u.get("servers", {}).items()
                  if srv.get("ready"))


def upgrade_hub_db(url: str) -> None:
    """JupyterHub's own upgrade (what `jupyterhub upgrade-db` runs), without its copy of the file:
    the backup of step 3 holds the database already."""
    import logging

    from jupyterhub import dbutil

    # dbutil runs the `alembic` script of the hub's environment: put it first on PATH.
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{path}"
    try:
        dbutil.upgrade_if_needed(url, backup=False, log=logging.getLogger("lunarhub.upgrade"))
    finally:
        os.environ["PATH"] = path


def run(d: Deployment, dest: Path | None = None, timeout: float = 240,
        migrations: Sequence[state_layout.Migration] | None = None,
        log: Callable[[str], None] = print) -> Report:
    """Upgrade `d`'s state in place (see the module's docstring); UpgradeError names the failed step."""
    from lunarhub.platform import audit
    from lunarhub.platform import supervisor as process

    p = plan(d, dest, migrations)
    report = Report(p)
    if p.layout is None and p.hub_revision is None:
        report.notes.append(f"{d.state_path}: nothing has run on this state dir yet: nothing to upgrade "
                            f"(`lunarhub up` makes it at layout {state_layout.CURRENT})")
        return report
    step = "stop hub"
    if p.running:
        report.servers_before = _servers(d)
        log(f"stopping the hub (users' servers keep running: {len(report.servers_before)})")
        process.ctl(d, "stop", "hub")
    step = "backup"
    try:
        log(f"backing up into {p.dest}")
        made = backups.backup(d, p.dest)
    except (backups.BackupError, OSError) as exc:
        _restart(d, p.running, timeout)
        raise UpgradeError(step, f"{exc}; nothing was changed") from None
    report.backup = made.path
    log(f"backup {made.path}: {made.files} files in {made.seconds:.1f} s")
    try:
        step = "hub database"
        if p.hub_needs_upgrade:
            log(f"upgrading the hub database {_redacted(p.hub_db)}: {p.hub_revision} -> {p.hub_head}")
            upgrade_hub_db(p.hub_db)
        report.hub_revision_after = hub_revision(p.hub_db)
        if p.hub_revision is not None and report.hub_revision_after != p.hub_head:
            raise RuntimeError(f"the hub database is at {report.hub_revision_after} after the upgrade, "
                               f"not {p.hub_head}")
        step = "gateway database"
        if p.gateway_db:
            report.notes.append(f"{p.gateway_db.relative_to(d.state_path)}: dask-gateway-server keeps no schema "
                                "version (it creates its tables at start): nothing to migrate")
        version = p.layout if p.layout is not None else state_layout.CURRENT
        for m in p.migrations:
            step = f"migration {m.source}->{m.source + 1} {m.name}"
            log(f"migrating the state layout {m.source} -> {m.source + 1}: {m.name}")
            report.applied.append((m.name, m.apply(d)))
            version = m.source + 1
            state_layout.write_version(d, version)
        step = "layout version"
        state_layout.write_version(d, version)
        report.layout_after = version
    except Exception as exc:  # noqa: BLE001 - any failure is rolled back, then reported
        reason = f"{exc.__class__.__name__}: {exc}" if not isinstance(exc, RuntimeError) else str(exc)
        log(f"step {step!r} failed ({reason}): restoring {made.path}")
        try:
            rollback(d, made.path, p.running)
        except Exception as again:  # noqa: BLE001
            raise UpgradeError(step, f"{reason}; and the restore of {made.path} failed too ({again}): restore "
                               f"it by hand (lunarhub restore --force {made.path})", made.path) from None
        _restart(d, p.running, timeout)
        audit.record(d, "operations", "upgrade-failed", step=step, reason=reason, backup=str(made.path))
        raise UpgradeError(step, f"{reason}; the state is back as it was (restored from {made.path})",
                           made.path, restored=True) from None
    step = "restart"
    if p.running:
        log("restarting the stack")
        _restart(d, True, timeout, everything=True)
        report.servers_after = _servers(d)
        log("the hub answers")
    audit.record(d, "operations", "upgrade", backup=str(made.path), layout_before=p.layout,
                 layout_after=report.layout_after, hub_before=p.hub_revision, hub_after=report.hub_revision_after,
                 migrations=[name for name, _ in report.applied])
    return report


def rollback(d: Deployment, src: Path, running: bool) -> None:
    """Put backup `src` back, the supervisor stopped first (the proxy and users' servers keep running)
    and the live folders a backup leaves out carried across by rename."""
    from lunarhub.platform import supervisor as process

    state = d.state_path
    aside: dict[str, Path] = {}
    # The proxy outlives the hub; its pid file (not in a backup) is how the next hub finds it
    # instead of starting a second one on the same port.
    proxy_pid = state / "hub" / "proxy.pid"
    pid = proxy_pid.read_bytes() if proxy_pid.is_file() and not proxy_pid.is_symlink() else None
    if running:
        process.stop(d)
    try:
        for name in CARRIED:
            if (state / name).is_dir() and not (state / name).is_symlink():
                aside[name] = state.parent / f".{state.name}.upgrade-{name}"
                os.rename(state / name, aside[name])
        backups.restore(d, src, keep_servers=True)
    finally:
        for name, where in aside.items():
            if os.path.lexists(state / name):  # restored from a --homes backup: keep what it has
                continue
            os.rename(where, state / name)
        if pid is not None and (state / "hub").is_dir() and not proxy_pid.exists():
            fd = os.open(proxy_pid, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)


def _restart(d: Deployment, was_running: bool, timeout: float, everything: bool = False) -> None:
    """Start again what ran: `up`'s start (the hub adopts the servers its database records), then,
    for an upgrade, every other program so it runs the new code."""
    if not was_running:
        return
    from lunarhub.platform import lifecycle
    from lunarhub.platform import supervisor as process

    started = lifecycle.start(d, timeout)
    if not started.ok:
        raise UpgradeError("restart", f"the hub did not answer after the upgrade ({started.detail}); see "
                           f"{d.state_path / 'logs' / 'hub.log'}")
    if everything:
        others = [name for name in process.status(d) if name != "hub"]
        if others:  # one supervisorctl call: it restarts them together
            process.ctl(d, "restart", *others)


def describe(report: Report) -> list[str]:
    """What changed, one line each, for the CLI."""
    p = report.plan
    lines = [f"layout: {_v(p.layout)} -> {_v(report.layout_after)}",
             f"hub database ({_redacted(p.hub_db)}): {p.hub_revision or 'none'} -> "
             f"{report.hub_revision_after or 'none'}" + ("" if p.hub_needs_upgrade else " (already current)")]
    for name, changes in report.applied:
        lines.append(f"migration {name}: {len(changes)} change(s)")
        lines += [f"  {c}" for c in changes]
    if report.backup:
        lines.append(f"backup taken first: {report.backup}")
    if p.running:
        kept = sorted(set(report.servers_before) & set(report.servers_after))
        lost = sorted(set(report.servers_before) - set(report.servers_after))
        lines.append(f"users' servers: {len(kept)} of {len(report.servers_before)} kept across the restart"
                     + (f"; not back: {' '.join(lost)}" if lost else ""))
    else:
        lines.append("the stack was not running: start it with `lunarhub up`")
    return lines + [f"note: {n}" for n in report.notes]


def describe_plan(p: Plan) -> list[str]:
    lines = [f"would stop the hub only ({'running' if p.running else 'not running'}), keeping users' servers"
             if p.running else "the stack is not running: nothing to stop or restart",
             f"would back up into {p.dest}",
             f"hub database ({_redacted(p.hub_db)}): " + (
                 f"would upgrade {p.hub_revision} -> {p.hub_head}" if p.hub_needs_upgrade else
                 f"at {p.hub_revision or 'none (not created yet)'}: nothing to do")]
    if p.gateway_db:
        lines.append("gateway database: no schema version (dask-gateway-server): nothing to do")
    if p.layout is None:
        lines.append("layout: fresh state dir, nothing to migrate")
    elif not p.migrations:
        lines.append(f"layout {p.layout}: current, nothing to migrate")
    for m in p.migrations:
        lines.append(f"would migrate layout {m.source} -> {m.source + 1}: {m.name} ({m.summary})")
    if p.running:
        lines.append("would restart the stack (the hub adopts the running servers)")
    return lines


def _v(version: int | None) -> str:
    return "none" if version is None else str(version)


def as_json(report: Report) -> dict[str, Any]:
    return {"backup": str(report.backup) if report.backup else None, "layout_before": report.plan.layout,
            "layout_after": report.layout_after, "hub_before": report.plan.hub_revision,
            "hub_after": report.hub_revision_after, "migrations": [n for n, _ in report.applied],
            "servers_before": report.servers_before, "servers_after": report.servers_after}
