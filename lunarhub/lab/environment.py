"""What the hub gives a user's server for the lab extension (called by
lunarhub.platform.hub.spawning.spawn_environment, in the hub process)."""

from __future__ import annotations

import json

from lunarhub.config import Deployment

# The user's dask limits as JSON, for the Compute panel: computed here, in the hub, so the user's
# server never imports the hub's gateway rules (lunarhub.compute.gateway).
DASK_LIMITS_ENV = "LUNARHUB_DASK_LIMITS"
LIMIT_NAMES = ("max_clusters", "max_cores", "max_memory_gb", "max_workers")


def ui_language(d: Deployment, username: str) -> str:
    """The user's own `ui_language`, else that of the institute of their first group with one
    (a project's hub user: its first member's), else "" (JupyterLab's English)."""
    user = d.users.get(username)
    if user is None:
        project = d.project_of(username)
        first = d.projects[project].members[0] if project else None
        if first is None:
            return ""
        if first in d.groups:
            groups = [first]
        else:
            user = d.users.get(first)
            groups = list(user.groups) if user else []
    else:
        if user.ui_language:
            return user.ui_language
        groups = list(user.groups)
    for g in groups:
        inst = d.institutions.get(d.groups[g].institution or "") if g in d.groups else None
        if inst is not None and inst.ui_language:
            return inst.ui_language
    return ""


def dask_limits(d: Deployment, username: str) -> dict[str, object]:
    """{"limits": {name: value} | None, "where": {name: "groups.<g>.dask.<name>"}}: the largest of
    the user's groups' dask limits (the ones the gateway enforces) and where each is set."""
    from lunarhub.compute.gateway import user_limits

    lim = user_limits(d, username)
    if lim is None:
        return {"limits": None}
    return {"limits": {k: getattr(lim, k) for k in LIMIT_NAMES}, "where": {k: lim.where(k) for k in LIMIT_NAMES}}


def spawn_environment(d: Deployment, username: str) -> dict[str, str]:
    env = {
        # The server extension reads the same deployment file (it holds no secret) to explain
        # refusals (lunarhub.lab.state); the roster's live groups come as LUNARHUB_USER_GROUPS.
        "LUNARHUB_CONFIG": str(d.config_file or ""),
        "LUNARHUB_UI_LANGUAGE": ui_language(d, username),
        DASK_LIMITS_ENV: json.dumps(dask_limits(d, username)),
    }
    if d.services.dask_gateway.enabled:
        # dask-labextension lists and starts the user's gateway clusters (dask-labextension-gateway),
        # with the gateway's address from DASK_GATEWAY__* (lunarhub.compute.gateway).
        env["DASK_LABEXTENSION__USE_GATEWAY"] = "true"
    return env
