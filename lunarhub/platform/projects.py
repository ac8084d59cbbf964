"""Joint project servers (issue 13): one JupyterLab per `projects.<name>` that its members share.

A project is the hub user `project-<name>` (lunarhub.config.project_hub_name). Its server runs as
the system account `lh-project-<name>` (home: the project folder), with the project's own data-site
credentials (lunarhub.data.entitlement.project_policies: what every member may read, plus grants),
so neither institute's private data is readable in it. Members reach it only through the hub:
RBAC roles generated here give them `access:servers` / `servers` on that one hub user. The roles go
into `c.JupyterHub.load_roles`, whose member lists JupyterHub makes exact at every start
(jupyterhub.app.init_role_assignment: `setattr(role, kind, bearers)`, and roles dropped from the
config are deleted), so a member removed from the file loses the server at the next hub restart;
other users' servers keep running through it (lunarhub.platform.lifecycle.restart_hub).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lunarhub.config import Deployment, Project, project_account, project_hub_name
from lunarhub.config.model import LANGUAGES

# The role every project's hub user holds: what its server's own token needs (the `server` role's
# scopes are cut to what the owner has; the default `user` role here gives no server rights).
ACCOUNT_ROLE = "project-account"


def member_role(project: str) -> str:
    return f"project-member-{project}"


def member_scopes(project: str) -> list[str]:
    """What a member may do with the project's hub user: open, start and stop its server."""
    hub_user = project_hub_name(project)
    # A user filter, not a group one: single-user servers cannot resolve group filters
    # (jupyterhub.services.auth.check_scopes), and a group member's token carries this as is.
    return [f"access:servers!user={hub_user}", f"servers!user={hub_user}",
            f"read:servers!user={hub_user}", f"read:users:name!user={hub_user}"]


def roles(d: Deployment) -> list[dict[str, Any]]:
    """The projects' RBAC roles, for c.JupyterHub.load_roles (after lunarhub.platform.hub.rbac's)."""
    if not d.projects:
        return []
    out: list[dict[str, Any]] = [{
        "name": ACCOUNT_ROLE,
        "description": "A joint project's hub user: its server may answer its members and report activity",
        "scopes": ["access:servers!user", "users:activity!user", "read:users:activity!user"],
        # Listing them here also creates the hub users at the first start (they never log in:
        # they are not in Authenticator.allowed_users and have no password).
        "users": [project_hub_name(p) for p in sorted(d.projects)],
    }]
    for name, project in sorted(d.projects.items()):
        out.append(publisher_role(d, name))
        out.append({
            "name": member_role(name),
            "description": f"Members of joint project {name}: open its server",
            "scopes": member_scopes(name),
            # Always both lists: a kind left out would keep whoever held the role before.
            "users": sorted(m for m in project.members if m in d.users),
            "groups": sorted(m for m in project.members if m in d.groups),
        })
    return out


def publisher_role(d: Deployment, project: str) -> dict[str, Any]:
    """What the gallery's short-lived token of the project (lunarhub.dashboards.gallery.deploy)
    needs to run and share the project's dashboards (`dash-<slug>` servers): start them, and name
    only the groups the project may share with (lunarhub.dashboards.gallery.policy.project_targets).
    The project's lab itself is never shareable (lunarhub.platform.hub.lab_shares)."""
    from lunarhub.dashboards.gallery.policy import project_targets

    scopes = ["servers!user", "shares!user", "read:shares!user"]
    for target in project_targets(d, project):
        scopes += [f"read:groups:name!group={target}", f"read:users:name!group={target}"]
    return {"name": f"project-publisher-{project}",
            "description": f"Joint project {project}: publish and share its dashboards",
            "scopes": scopes, "users": [project_hub_name(project)]}


def configure_projects(c: Any, d: Deployment) -> None:
    """Add the projects' roles to those configure_rbac set (JupyterHub config object `c`), and bring
    the running sites' user maps up to date with the projects' members."""
    c.JupyterHub.load_roles = [*c.JupyterHub.get("load_roles", []), *roles(d)]
    refresh_sites(d)


def refresh_sites(d: Deployment) -> list[str]:
    """A member added to a project can narrow what the project may read: the sites must know at
    the same restart that changes who may open the server, not at the next `lunarhub up` (a
    running project server keeps its credentials; the site decides per request). Returns the
    sites updated; a site that is not running is left to `up`."""
    from lunarhub.data import sites

    if not d.projects:
        return []
    done = []
    for name, site in d.sites.items():
        if site.kind != "local" or sites.running_pid(d, name) is None:
            continue
        try:
            sites.prepare_site(d, name)
        except sites.SiteError as exc:  # the hub still starts; the operator sees why in its log
            print(f"lunarhub.platform.projects: site {name} not updated for the projects: {exc}")
            continue
        done.append(name)
    return done


def home(d: Deployment, project: str) -> Path:
    """The project folder: the project account's home (single-account: under the state dir)."""
    if d.hub.isolation == "system-users":
        return Path(d.hub.home_root) / project_account(project)
    return d.state_path / "homes" / project_hub_name(project)


def prepare(d: Deployment, project: str) -> tuple[Path, str | None, dict[str, str]]:
    """The project's account and folder before its server starts: (home, system account or None
    when every server runs as the operator, environment the server needs for them)."""
    from lunarhub.platform import accounts

    if d.hub.isolation == "system-users":
        entry = accounts.ensure_project_account(d, project)
        runtime = accounts.project_runtime_dir(entry)
        return Path(entry.pw_dir), entry.pw_name, {"JUPYTER_RUNTIME_DIR": str(runtime)}
    folder = home(d, project)
    folder.mkdir(parents=True, exist_ok=True)
    return folder, None, {}


@dataclass
class ProjectLinks:
    """Template variable `lunarhub_projects` (JupyterHub calls it with the page's user): the projects
    the user is a member of, from the hub's own group table (as the roles resolve them), each with
    its texts in en/ru/zh. A value, not a closure: two configurations of one file compare equal."""

    projects: dict[str, Project]

    def __call__(self, user: Any) -> list[dict[str, Any]]:
        if user is None:
            return []
        mine = {user.name} | {g.name for g in getattr(user, "groups", [])}
        out = []
        for name, project in sorted(self.projects.items()):
            if not mine & set(project.members):
                continue
            desc = project.description
            texts = {lang: (getattr(desc, lang, None) or desc.en) if desc else "" for lang in LANGUAGES}
            out.append({"name": name, "hub_user": project_hub_name(name), "description": texts})
        return out


def links_for(d: Deployment) -> ProjectLinks:
    return ProjectLinks(dict(d.projects))
