"""What a snapshot reads, seen where its publisher cannot forge it (docs/security.md, "Lineage
the publisher cannot forge").

The publish validation runs in the publisher's own server: the lineage it reports, and even the
time window in which the sites' logs are searched, are the publisher's word. Here the gallery
service (root) runs the stored snapshot itself, once, the way `panel serve` runs it (the
validation child of lunarhub.dashboards.publishing.validate, in a Bokeh document), as the
dashboard's own account (runtime_account), with a site credential minted for this run alone
(lunarhub.data.scoped_credentials: the publisher's policies, no more), revoked after it. What the
sites logged under that credential is the run's lineage: nobody else holds it, and the run
cannot choose what the site writes.

    reads = observed_reads(d, owner, slug, version_dir, timeout=120)
    reads -> [{"site", "path", "policy", "bytes", "requests", "sources": ["trusted-run"]}, ...]
    reads.error -> None, or why the run failed or was stopped (the reads up to then are kept)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lunarhub.config import Deployment
from lunarhub.dashboards import runtime_account
from lunarhub.dashboards.store import snapshot_notebook
from lunarhub.data import scoped_credentials, sites
from lunarhub.data.policy import POLICIES, env_prefix

DEFAULT_TIMEOUT = 120.0
READ_STATUSES = (200, 206, 304)


class Observed(list[dict[str, Any]]):
    """The reads the sites saw (a list of dicts), with how the run ended."""

    def __init__(self) -> None:
        super().__init__()
        self.error: str | None = None
        self.seconds = 0.0


def _drop_to(account: sites.Account | None) -> Callable[[], None] | None:
    if account is None:
        return None

    def preexec() -> None:
        os.setgid(account.gid)
        os.setgroups([])
        os.setuid(account.uid)

    return preexec


def _environment(d: Deployment, home: Path) -> dict[str, str]:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(home),
           "LUNARHUB_SITES": ",".join(d.sites), "PYTHONUNBUFFERED": "1"}
    env.update({key: str(home) for key in runtime_account.HOME_VARIABLES})
    for site in d.sites:
        env[env_prefix(site) + "_URL"] = sites.site_url(d, site)
    return env


def reads_of(d: Deployment, site: str, credential: str) -> list[dict[str, Any]]:
    """The dataset files `credential` read on `site`, per path: bytes and requests summed."""
    seen: dict[str, dict[str, Any]] = {}
    for entry in sites.read_log(d, site):
        if entry.get("user") != credential or entry.get("status") not in READ_STATUSES:
            continue
        path = str(entry.get("uri", "")).lstrip("/")
        policy = path.split("/")[0]
        if policy not in POLICIES:
            continue  # the catalog and provenance files every credential may fetch
        rec = seen.setdefault(path, {"site": site, "path": path, "policy": policy, "bytes": 0, "requests": 0,
                                     "sources": ["trusted-run"]})
        rec["bytes"] += int(entry.get("bytes") or 0)
        rec["requests"] += 1
    return [seen[p] for p in sorted(seen)]


def _run(notebook: Path, out: Path, env: dict[str, str], account: sites.Account | None, timeout: float) -> str | None:
    progress, result = out / "progress", out / "result.json"
    cmd = [sys.executable, "-m", "lunarhub.dashboards.publishing.validate", str(notebook), str(progress), str(result)]
    # Own session: a notebook that forks (dask, subprocesses) is killed as a whole.
    proc = subprocess.Popen(cmd, cwd=notebook.parent, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, preexec_fn=_drop_to(account))  # noqa: PLW1509
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        cell = (progress.read_text().split() or ["?"])[-1] if progress.exists() else "?"
        return f"the notebook did not finish within {timeout:g} s (cell {cell} was still running)"
    if not result.exists():
        tail = "\n".join(output.decode(errors="replace").splitlines()[-10:])
        return f"the notebook ended the Python process (exit status {proc.returncode}):\n{tail}"
    data = json.loads(result.read_text())
    return str(data["error"]) if data.get("error") else None


def observed_reads(d: Deployment, owner: str, slug: str, version_dir: Path,
                   timeout: float = DEFAULT_TIMEOUT) -> Observed:
    """Run the snapshot in `version_dir` once as the dashboard's account; what the local sites
    saw it read. Never raises for the notebook's sake: a failure, a crash or the timeout is
    `.error`, and what was read until then is still returned."""
    observed = Observed()
    started = time.monotonic()
    minted: dict[str, str] = {}
    work = Path(tempfile.mkdtemp(prefix="lunarhub-trusted-run-"))
    try:
        account = runtime_account.ensure_account(d, owner, slug)
        os.chmod(work, 0o711)
        home = work / "home"
        home.mkdir()
        if account is not None:
            os.chown(home, account.uid, account.gid)
            snapshot = runtime_account.copy_version(Path(version_dir), work / "snapshot", account.gid)
        else:
            snapshot = Path(version_dir)
        os.chmod(home, 0o700)
        env = _environment(d, home)
        name = scoped_credentials.run_name(owner, slug)
        for site in d.sites:
            if d.sites[site].kind != "local":
                continue
            cred = scoped_credentials.issue(d, site, name, owner, sites.entitled_policies(d, owner, site), None,
                                            purpose=f"trusted run of {owner}/{slug} ({Path(version_dir).name})")
            minted[site] = name
            p = env_prefix(site)
            env.update({p + "_USER": cred.name, p + "_PASSWORD": cred.password, p + "_AUTH": cred.header(),
                        p + "_POLICIES": ",".join(x for x in POLICIES if x in cred.policies)})
        observed.error = _run(snapshot_notebook(snapshot), home, env, account, timeout)
    except Exception as exc:  # noqa: BLE001 - the caller gets the reason with what was read
        observed.error = f"{type(exc).__name__}: {exc}"
    finally:
        for site, name in minted.items():
            try:
                scoped_credentials.revoke(d, site, name)
            except Exception as exc:  # noqa: BLE001 - keep the reads; say the revocation failed
                observed.error = (observed.error or "") + f"; revoking {name} at site {site} failed: {exc}"
            observed.extend(reads_of(d, site, name))
        shutil.rmtree(work, ignore_errors=True)
        observed.seconds = time.monotonic() - started
    return observed
