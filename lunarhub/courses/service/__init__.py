"""The courses service at /services/courses/ (hub-managed, hub OAuth): instructors run their class.

`hub_services(d)` declares it and its role; the pages are in pages.py, the work in
lunarhub.courses.ops (which `lunarhub course` calls too).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lunarhub.config import Deployment, Role, secrets

SERVICE = "courses"
PREFIX = f"/services/{SERVICE}/"
VENV_BIN = Path(sys.executable).parent


def scopes(d: Deployment) -> list[str]:
    """As narrow as the hub allows: servers, tokens and shares of student groups' members only
    (a scientist's or an instructor's server is out of its reach), names of those it shares with.
    `admin:users` because creating a user has no narrower scope."""
    out = ["admin:users"]
    for g in d.groups_with_role(Role.student):
        out += [f"groups!group={g}", f"read:users!group={g}", f"read:servers!group={g}",
                f"servers!group={g}", f"tokens!group={g}", f"shares!group={g}", f"read:shares!group={g}"]
    for g in d.groups_with_role(Role.instructor) + d.groups_with_role(Role.admin):
        out.append(f"read:users:name!group={g}")
    return out


def hub_services(d: Deployment) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not d.services.courses.enabled:
        return [], []
    svc = {
        "name": SERVICE,
        "url": f"http://127.0.0.1:{d.services.courses.port}",
        "command": [str(VENV_BIN / "python"), "-m", "lunarhub.courses.service.pages"],
        "environment": {"LUNARHUB_CONFIG": str(d.config_file or ""), "PYTHONUNBUFFERED": "1"},
        "oauth_no_confirm": True,
        "display": True,
        "info": {"description": "Courses: rosters, progress, class start"},
        "api_token": secrets.token(d, "courses-api-token"),
    }
    return [svc], [{"name": SERVICE, "scopes": scopes(d), "services": [SERVICE]}]
