"""The Publish panel's runs: `lunarhub.dashboards.publishing.actions.publish` (the same function as
`lunarhub publish` and the launcher form) in a thread of the user's server, with its progress
(which cell the validation run is at) kept for the panel to poll.

The share-with choices are the deployment's (`lunarhub.dashboards.gallery.policy.allowed_groups`,
the rule the gallery and the hub enforce); the lineage rule is applied by the gallery once the run
has shown what the notebook reads, and its refusal names the dataset and the audience.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The same name as lunarhub.lab.environment.DASK_LIMITS_ENV (not imported: that module is the hub's).
DASK_LIMITS_ENV = "LUNARHUB_DASK_LIMITS"

if TYPE_CHECKING:  # the deployment model is imported by the first request that needs it, not at start
    from lunarhub.config import Deployment

MAX_JOBS = 50  # finished runs kept for the panel (one user's server)
_jobs: dict[str, dict[str, Any]] = {}
_lock = threading.Lock()
_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lunarhub-publish")


class BadRequest(ValueError):
    pass


def options(d: Deployment | None, username: str, why: str | None = None) -> dict[str, Any]:
    """Whom this user may share a dashboard with, as the deployment file says."""
    if d is None:
        return {"audiences": [], "notice": why}
    from lunarhub.dashboards.gallery.policy import allowed_groups

    out = []
    for name, via in sorted(allowed_groups(d, username).items()):
        g = d.groups.get(name)
        out.append({"name": name, "via": via,
                    "description": g.description.model_dump(exclude_none=True) if g and g.description else {}})
    return {"audiences": out}


def _notebook(root: Path, rel: str) -> Path:
    """The notebook `rel` under the server's root, refused if it leaves it (links included)."""
    if not rel or not rel.endswith(".ipynb"):
        raise BadRequest(f"not a notebook: {rel!r}")
    base = root.resolve()
    path = (base / rel).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        raise BadRequest(f"no notebook {rel!r} in this server's folder")
    return path


def start(root: Path, body: dict[str, Any], publish_fn: Any = None) -> dict[str, Any]:
    """Start a publish run of body["path"]; returns the job (poll it with get())."""
    nb = _notebook(root, str(body.get("path") or ""))
    title = str(body.get("title") or "").strip()
    if not title:
        raise BadRequest("a title is required")
    share = body.get("share_with") or []
    if not isinstance(share, list) or not all(isinstance(s, str) for s in share):
        raise BadRequest("share_with must be a list of group names")
    job_id = secrets.token_hex(8)
    job: dict[str, Any] = {"id": job_id, "path": str(body["path"]), "title": title, "state": "running",
                           "cell": None, "started": time.time()}
    with _lock:
        _jobs[job_id] = job
        for old in sorted(_jobs, key=lambda k: _jobs[k]["started"])[:-MAX_JOBS]:
            _jobs.pop(old, None)
    _pool.submit(_run, job, nb, title, str(body.get("description") or ""), list(share), publish_fn)
    return dict(job)


def _run(job: dict[str, Any], nb: Path, title: str, description: str, share: list[str], publish_fn: Any) -> None:
    from lunarhub.dashboards.publishing.actions import PublishError, publish
    from lunarhub.dashboards.publishing.validate import ValidationError
    from lunarhub.dashboards.store import StoreError

    def progress(cell: int | None) -> None:
        with _lock:
            job["cell"] = cell

    update: dict[str, Any]
    try:
        result = (publish_fn or publish)(nb, title, description=description, share_with=share,
                                         on_progress=progress)
        update = {"state": "done", "result": {k: result.get(k) for k in
                                              ("title", "version", "url", "gallery_url", "slug",
                                               "thumbnail_error", "lineage")}}
    except ValidationError as exc:
        update = {"state": "refused", "error": str(exc), "cell": exc.cell, "detail": exc.detail}
    except (PublishError, StoreError, OSError) as exc:
        update = {"state": "refused", "error": str(exc)}
    except Exception as exc:  # the panel must learn the run ended, whatever ended it
        update = {"state": "refused", "error": f"{type(exc).__name__}: {exc}"}
    with _lock:
        job.update(update, finished=time.time())


def get(job_id: str) -> dict[str, Any] | None:
    with _lock:
        job = _jobs.get(job_id)
        return json.loads(json.dumps(job)) if job else None


def my_dashboards() -> dict[str, Any]:
    from lunarhub.dashboards.publishing.actions import PublishError, list_dashboards

    try:
        return {"dashboards": list_dashboards(mine=True)}
    except PublishError as exc:
        return {"dashboards": [], "error": str(exc)}


def unpublish(slug: str) -> dict[str, Any]:
    from lunarhub.dashboards.publishing.actions import PublishError
    from lunarhub.dashboards.publishing.actions import unpublish as do_unpublish

    try:
        return do_unpublish(slug)
    except PublishError as exc:
        return {"error": str(exc)}


def compute_limits(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The user's dask limits (largest over their groups) and where the deployment sets each, as
    the hub gave them at spawn (lunarhub.lab.environment.dask_limits, LUNARHUB_DASK_LIMITS)."""
    env = os.environ if environ is None else environ
    raw = env.get(DASK_LIMITS_ENV)
    if raw is None:
        return {"limits": None, "notice": f"{DASK_LIMITS_ENV} is not set in this server"}
    try:
        out = json.loads(raw)
        if not isinstance(out, dict) or not (out.get("limits") is None or isinstance(out["limits"], dict)):
            raise ValueError("not an object with limits")
    except ValueError as exc:
        return {"limits": None, "notice": f"{DASK_LIMITS_ENV} is not the hub's JSON: {exc}"}
    return out
