"""Who may do what in the hub: RBAC roles and groups derived from the deployment's groups."""

from __future__ import annotations

from typing import Any

from lunarhub.config import Deployment, Role

LAB_ROLES = {Role.science, Role.instructor, Role.student, Role.admin}


def lab_groups(d: Deployment) -> list[str]:
    """Groups whose members get a lab (JupyterLab server) rather than only the gallery."""
    return sorted(g for g, grp in d.groups.items() if grp.role in LAB_ROLES)


def roles(d: Deployment) -> list[dict[str, Any]]:
    """RBAC roles derived from group roles in the deployment file."""
    out: list[dict[str, Any]] = [
        # Everyone: see themselves and use services (gallery, gateway); no server by default.
        {
            "name": "user",
            "scopes": ["read:users!user", "read:users:activity!user", "tokens!user", "access:services"],
        },
        # The token inside a user's server: call hub services (dask-gateway) from notebooks.
        {
            "name": "server",
            "scopes": ["users:activity!user", "access:servers!server", "access:services"],
        },
    ]
    labs = lab_groups(d)
    if labs:
        out.append({"name": "lab-user", "scopes": ["self"], "groups": labs})
    admin_groups = d.groups_with_role(Role.admin)
    if admin_groups:
        out.append({"name": "admin", "groups": admin_groups})
    for gname, group in sorted(d.groups.items()):
        if group.share_with and group.role in LAB_ROLES:
            # Sharing needs to name the target; only the allowed groups are nameable,
            # so the hub itself refuses shares with anyone else.
            scopes = ["shares!user", "read:shares!user"]
            for target in group.share_with:
                scopes += [f"read:groups:name!group={target}", f"read:users:name!group={target}"]
            out.append({"name": f"share-{gname}", "scopes": scopes, "groups": [gname]})
        if group.teaches:
            scopes = []
            for students in group.teaches:
                scopes += [
                    f"admin:servers!group={students}",
                    f"access:servers!group={students}",
                    f"read:users!group={students}",
                    f"read:users:activity!group={students}",
                ]
                # Single-user servers cannot resolve group filters (jupyterhub.services.auth.
                # check_scopes), so entering a student's server needs a per-user filter too.
                scopes += [f"access:servers!user={u}" for u in d.members(students)]
            out.append({"name": f"teach-{gname}", "scopes": scopes, "groups": [gname]})
    return out


def load_groups(d: Deployment) -> dict[str, dict[str, Any]]:
    return {
        g: {"users": d.members(g), "properties": {"role": grp.role.value,
                                                  "institution": grp.institution or ""}}
        for g, grp in d.groups.items()
    }


def configure_rbac(c: Any, d: Deployment) -> None:
    """Groups and the users' roles; configure_services adds the services' roles after these."""
    c.JupyterHub.load_groups = load_groups(d)
    c.JupyterHub.load_roles = roles(d)
