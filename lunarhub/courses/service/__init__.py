"""The courses service at /services/courses/ (hub-managed, hub OAuth): instructors run their class.

`hub_services(d)` declares it and its role; the pages are in pages.py, the work in
lunarhub.courses.ops (which `lunarhub course` calls too).
"""

from __future__ import annotations

from typing import Any

from lunarhub.config import Deployment, Role

SERVICE = "courses"
PREFIX = f"/services/{SERVICE}/"


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
    from lunarhub.platform.hub_service import declaration

    svc = declaration(d, SERVICE, d.services.courses.port, "lunarhub.courses.service.pages",
                      "Courses: rosters, progress, class start")
    return [svc], [{"name": SERVICE, "scopes": scopes(d), "services": [SERVICE]}]
