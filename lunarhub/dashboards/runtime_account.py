"""The account a published dashboard runs as, its snapshot copy and its lineage-scoped site
credentials (docs/security.md, "A dashboard reads only its lineage").

A dashboard is code its publisher wrote, run for its viewers. Run as the publisher, with the
publisher's site credentials, it could read whatever the publisher may (their home, their lab's
/proc/<pid>/environ, every dataset of their policies) and show it to people who may not. So each
dashboard (owner/slug) has a system account of its own, `lh-dash-<12 hex of sha256(owner/slug)>`
(per dashboard, not per publisher: two dashboards of one publisher, shared with different
audiences, must not read each other's credentials from /proc). It reads:

- a copy of its served versions (`<state>/dashboard-runs/<owner>/<slug>/`, root's, group-readable
  by the account only), made at each start from the store, whose files stay the publisher's group's;
- site credentials scoped to the files its versions' lineages name (lunarhub.data.scoped_credentials),
  issued anew at each start, so a republish (a new lineage) is a new scope.

The hub's spawner calls `prepare_spawner` for a `dash-<slug>` server (its hook in
lunarhub/platform/spawner.py, which also narrows the dashboard's hub token: `token_scopes`); the trusted run (trusted_run.py) uses the same account.
Without system-users isolation (single-account development) there is no account to switch to:
the scoped credentials still apply.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lunarhub.config import Deployment
from lunarhub.dashboards.store import THUMBNAIL, Dashboard, Store, slug_of_server
from lunarhub.data import scoped_credentials, sites
from lunarhub.data.policy import POLICIES, env_prefix

PREFIX = "lh-dash-"
MARKER = "lunarhub dashboard"
RUNS = "dashboard-runs"
# The dashboard's hub token: post activity and be reached through the hub, nothing else. The
# default server role also has access:services, with which a dashboard could call the gateway
# (a cluster runs as the publisher, with their full credentials) or the gallery as its publisher.
TOKEN_SCOPES = ["users:activity!user", "access:servers!server"]


HOME_VARIABLES = ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "MPLCONFIGDIR", "IPYTHONDIR",
                  "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR")


class DashboardAccountError(RuntimeError):
    """The dashboard's account cannot be used; the message says why and what to do."""


def account_name(owner: str, slug: str) -> str:
    return PREFIX + hashlib.sha256(f"{owner}/{slug}".encode()).hexdigest()[:12]


def isolated(d: Deployment) -> bool:
    return d.hub.isolation == "system-users" and os.geteuid() == 0


def ensure_account(d: Deployment, owner: str, slug: str) -> sites.Account | None:
    """The dashboard's system account, created if missing (None without isolation). Only an
    account lunarhub made for exactly this dashboard is used: its comment names owner/slug."""
    if not isolated(d):
        return None
    from lunarhub.platform import accounts, loopback

    name = account_name(owner, slug)
    comment = f"{MARKER} {owner}/{slug}"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        try:
            entry = accounts.create_account(name, comment)
        except accounts.AccountError as exc:
            raise DashboardAccountError(f"dashboard {owner}/{slug}: cannot create its account {name} ({exc})") from None
    if entry.pw_gecos.split(",")[0] != comment or entry.pw_uid == 0 or entry.pw_uid >= sites._uid_min():
        raise DashboardAccountError(
            f"dashboard {owner}/{slug}: account {name} exists but is not the system account lunarhub made "
            f"for it (comment {entry.pw_gecos!r}, uid {entry.pw_uid}); remove it (userdel {name}) and start again")
    loopback.admit_account(d, name)  # its proxy listens on loopback: only root (the hub) reaches it
    return sites.Account(name, entry.pw_uid, entry.pw_gid)


# ---------------------------------------------------------------- the snapshot copy


def runtime_dir(d: Deployment, owner: str, slug: str) -> Path:
    return d.state_path / RUNS / owner / slug


def _seal(root: Path, gid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for f in filenames:
            os.chown(Path(dirpath) / f, 0, gid, follow_symlinks=False)
            os.chmod(Path(dirpath) / f, 0o440)
        for sub in dirnames:
            os.chown(Path(dirpath) / sub, 0, gid, follow_symlinks=False)
            os.chmod(Path(dirpath) / sub, 0o550)
    os.chown(root, 0, gid)
    os.chmod(root, 0o550)


def copy_version(version_dir: Path, target: Path, gid: int) -> Path:
    """`version_dir` (metadata.json, files/) copied to `target`, root's and readable by `gid` only.
    Links are copied as links, never followed (store.check_relpath allows none in a snapshot)."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(version_dir, target, symlinks=True, ignore=shutil.ignore_patterns(THUMBNAIL))
    _seal(target, gid)
    return target


def stage(d: Deployment, dash: Dashboard, account: sites.Account) -> Path:
    """The served versions and their apps copied for `account`; a home it may write (caches)."""
    root = d.state_path / RUNS
    for level in (root, root / dash.owner):
        level.mkdir(parents=True, exist_ok=True)
        os.chown(level, 0, 0)
        os.chmod(level, 0o711)  # traversed by the accounts, listed by nobody
    rt = runtime_dir(d, dash.owner, dash.slug)
    rt.mkdir(exist_ok=True)
    os.chown(rt, 0, account.gid)
    os.chmod(rt, 0o750)
    served = {f"v{v.version}" for v in dash.versions}
    for child in rt.iterdir():
        if child.name not in served | {"apps", "home"}:
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    for v in dash.versions:
        copy_version(v.path, rt / f"v{v.version}", account.gid)
    apps = rt / "apps"
    if apps.exists():
        shutil.rmtree(apps)
    apps.mkdir()
    for v in dash.versions:
        shutil.copyfile(dash.path / "apps" / f"v{v.version}.py", apps / f"v{v.version}.py", follow_symlinks=False)
    _seal(apps, account.gid)
    home = rt / "home"
    home.mkdir(exist_ok=True)
    os.chown(home, account.uid, account.gid, follow_symlinks=False)
    os.chmod(home, 0o700)
    return rt


# ---------------------------------------------------------------- credentials


def version_lineage(version_dir: Path, meta: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The datasets a version read at publish: its metadata's `lineage` (lunarhub.dashboards.lineage),
    else a `lineage.json` beside it."""
    import json

    if meta is None:
        meta = json.loads((version_dir / "metadata.json").read_text(encoding="utf-8"))
    if meta.get("lineage") is not None:
        return list(meta["lineage"])
    path = version_dir / "lineage.json"
    return list(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else []


def scope(lineages: Iterable[Iterable[Mapping[str, Any]]]) -> dict[str, set[str]]:
    """site -> the site paths the lineages name (the union: one process serves every version)."""
    out: dict[str, set[str]] = {}
    for lineage in lineages:
        for ds in lineage:
            path = str(ds.get("path") or "").lstrip("/")
            if ds.get("site") and path and path.split("/")[0] in POLICIES:
                out.setdefault(str(ds["site"]), set()).add(path)
    return out


def scoped_environment(d: Deployment, owner: str, slug: str, paths: Mapping[str, set[str]],
                       env: Mapping[str, str]) -> dict[str, str]:
    """`env` with every site's credentials replaced by the dashboard's own, issued now for
    exactly `paths` (a site it read nothing from: the catalog only). A remote site cannot be
    scoped from here: the dashboard gets no credentials for it."""
    out = dict(env)
    name = scoped_credentials.dashboard_name(owner, slug)
    for site in d.sites:
        p = env_prefix(site)
        for key in ("_USER", "_PASSWORD", "_AUTH", "_POLICIES"):
            out.pop(p + key, None)
        if d.sites[site].kind != "local":
            continue
        wanted = sorted(paths.get(site, set()))
        cred = scoped_credentials.issue(d, site, name, owner, [], wanted, purpose=f"dashboard {owner}/{slug}")
        out[p + "_URL"] = sites.site_url(d, site)
        out[p + "_USER"] = cred.name
        out[p + "_PASSWORD"] = cred.password
        out[p + "_AUTH"] = cred.header()
        out[p + "_POLICIES"] = ",".join(x for x in POLICIES if x in cred.policies) or "open"
    return out


def revoke(d: Deployment, owner: str, slug: str) -> None:
    """Drop the dashboard's credentials at every local site (after an unpublish)."""
    for site in d.sites:
        if d.sites[site].kind == "local":
            scoped_credentials.revoke(d, site, scoped_credentials.dashboard_name(owner, slug))


# ---------------------------------------------------------------- the spawner's hook


def token_scopes(spawner: Any) -> list[str]:
    """Spawner.server_token_scopes: a dashboard's token is narrower; [] keeps the `server` role."""
    return list(TOKEN_SCOPES) if slug_of_server(getattr(spawner, "name", "") or "") else []


def prepare_spawner(spawner: Any) -> None:
    """For a `dash-<slug>` server the gallery's spawn_override has set up: its own account, its
    snapshot copy and its scoped credentials instead of the publisher's."""
    from lunarhub import config
    from lunarhub.config import roster

    d = roster.effective(config.load())
    owner = spawner.user.name
    slug = slug_of_server(spawner.name or "")
    dash = Store.for_deployment(d).get(owner, slug) if slug else None
    if dash is None or not dash.versions:
        return  # spawn_override refused it already
    paths = scope(version_lineage(v.path, v.meta) for v in dash.versions)
    spawner.environment = scoped_environment(d, owner, dash.slug, paths, spawner.environment)
    account = ensure_account(d, owner, dash.slug)
    if account is None:
        return
    rt = stage(d, dash, account)
    prefix = str(dash.path) + "/"
    spawner.args = [str(rt) + "/" + a[len(prefix):] if a.startswith(prefix) else a for a in spawner.args]
    spawner.notebook_dir = str(rt)
    # HOME is the account's (/nonexistent, set by the spawner); caches and runtime files go here.
    home = str(rt / "home")
    spawner.environment.update({key: home for key in HOME_VARIABLES})
    spawner.account = account.name
