"""Who may share a dashboard with whom, from the deployment model.

The hub enforces the same rule (roles `share-<group>` name only the allowed
targets, lunarhub/platform/hub/); checking here first turns the hub's bare 403 into a
reason the publisher can act on, before anything is stored or started.

A joint project (hub user `project-<name>`) publishes as its own author. It may share with the
groups that EVERY member may share with (a member group with its own `share_with`, a member user
with their groups'): like its data (lunarhub.data.entitlement.project_policies), a project never
reaches further than each of its members could alone, so no member widens the others' audience.
The hub's role for the project names the same targets (lunarhub.platform.projects).
"""

from __future__ import annotations

from typing import Any

from lunarhub.config import Deployment, Role

# Groups whose members get a lab (and so may publish): same set as hub.LAB_ROLES.
PUBLISHER_ROLES = {Role.science, Role.instructor, Role.student, Role.admin}


class ShareRefused(ValueError):
    pass


def _groups_allowing(d: Deployment, groups: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for g in groups:
        group = d.groups[g]
        if group.role in PUBLISHER_ROLES:
            for target in group.share_with:
                out.setdefault(target, []).append(g)
    return out


def allowed_groups(d: Deployment, username: str) -> dict[str, list[str]]:
    """target group -> the publisher's groups that allow sharing with it (for a project's hub
    user: the targets every member allows, each with the members' groups that allow it)."""
    project = d.project_of(username)
    if project is not None:
        return project_targets(d, project)
    user = d.users.get(username)
    return _groups_allowing(d, list(user.groups) if user else [])


def project_targets(d: Deployment, project: str) -> dict[str, list[str]]:
    """target group -> the member groups allowing it, for the targets all members allow."""
    per_member = [_groups_allowing(d, [m] if m in d.groups else list(d.users[m].groups) if m in d.users else [])
                  for m in d.projects[project].members]
    common = set.intersection(*(set(x) for x in per_member)) if per_member else set()
    return {t: sorted({g for x in per_member for g in x[t]}) for t in sorted(common)}


def publisher_groups(d: Deployment, username: str) -> list[str]:
    """The groups a refusal names as the publisher's (a project: its members' groups)."""
    project = d.project_of(username)
    if project is None:
        user = d.users.get(username)
        return list(user.groups) if user else []
    out: list[str] = []
    for m in d.projects[project].members:
        for g in [m] if m in d.groups else (d.users[m].groups if m in d.users else []):
            if g not in out:
                out.append(g)
    return out


def parse_targets(d: Deployment, items: list[str]) -> tuple[list[str], list[str]]:
    """Split share targets into (groups, users); `user:NAME` forces a user name."""
    groups, users = [], []
    for raw in items:
        name = raw.strip()
        if not name:
            continue
        if name.startswith("user:"):
            users.append(name[5:])
        elif name.startswith("group:"):
            groups.append(name[6:])
        elif name in d.groups:
            groups.append(name)
        elif name in d.users:
            users.append(name)
        else:
            raise ShareRefused(f"unknown group or user {name!r} (groups: {', '.join(sorted(d.groups))})")
    return sorted(set(groups)), sorted(set(users))


def check_share(d: Deployment, username: str, groups: list[str], users: list[str]) -> None:
    """Raise ShareRefused naming the target, the publisher's groups and what they allow."""
    project = d.project_of(username)
    if username not in d.users and project is None:
        raise ShareRefused(f"{username} is not a user of this deployment")
    mine = publisher_groups(d, username)
    if project is None and not any(d.groups[g].role in PUBLISHER_ROLES for g in mine):
        raise ShareRefused(f"{username} may not publish dashboards (groups {', '.join(mine)} have no lab)")
    allowed = allowed_groups(d, username)
    allowed_text = ", ".join(sorted(allowed)) or "nobody"
    whose = (f"project {project!r} share with what every member's groups ({', '.join(mine)}) allow: "
             if project else f"your groups ({', '.join(mine)}) share with ")
    for g in groups:
        if g not in d.groups:
            raise ShareRefused(f"unknown group {g!r}")
        if g not in allowed:
            raise ShareRefused(
                f"{username} may not share with group {g!r}: the deployment file lets "
                f"{whose}{allowed_text} (groups.<group>.share_with)")
    for u in users:
        if u not in d.users:
            raise ShareRefused(f"unknown user {u!r}")
        if not set(d.users[u].groups) & set(allowed):
            raise ShareRefused(
                f"{username} may not share with user {u!r} (groups {', '.join(d.users[u].groups)}): "
                f"{'the project' if project else 'your groups'} may share with members of {allowed_text}")


def may_view(d: Deployment, info: dict, username: str, user_groups: list[str]) -> bool:
    """Listing rule of the gallery (the hub's shares decide actual access)."""
    if info.get("owner") == username:
        return True
    targets = info.get("share_groups", []), info.get("share_users", [])
    return bool(set(targets[0]) & set(user_groups)) or username in targets[1]


def may_view_dashboard(d: Deployment, dash: Any, username: str, user_groups: list[str]) -> bool:
    """may_view, counting only the shares the dashboard's lineage still allows today: between an
    edit that tightens a policy and the re-check revoking the share, the gallery (pages,
    thumbnails, JSON API, comments) already answers 404."""
    from lunarhub.dashboards import lineage

    if dash.owner == username:
        return True
    lin = lineage.current(d, lineage.dashboard_lineage(dash))
    groups, users = lineage.allowed_audiences(d, lin, dash.info.get("share_groups", []),
                                              dash.info.get("share_users", []))
    return may_view(d, {"share_groups": groups, "share_users": users}, username, user_groups)
