"""No "Authorize access" page for published dashboards and joint project servers (a hook into
JupyterHub's OAuth).

Upstream: no bug; the hook is `jupyterhub/apihandlers/auth.py::
OAuthAuthorizeHandler.needs_oauth_confirm` (no config can exempt a *user's* server; the
`oauth_no_confirm_list` setting lists fixed client ids, and dashboards come and go).
Applies to: jupyterhub>=6.1,<6.2 (checked on 6.1.1).
Remove when: JupyterHub lets a config decide per client (e.g. a hook or a callable
no-confirm list); until then, widen the range after checking the method's signature.

The hub asks a viewer to confirm before another user's server may learn who they are, and
asks again after each restart of that server (its tokens are deleted when it stops), so a
reviewer re-confirmed after every cull. Two kinds of server skip the page:

- a `dash-<slug>` server: it only exists because its owner published it to that viewer;
- a joint project's lab (lunarhub.platform.projects): members open it from their hub home,
  and who may is the project's roles' to decide; the page would only ask a member to trust
  a server that is theirs as much as anyone's. Matched on the spawner's user being one of the
  deployment's project hub users (`apply(project_users=...)`, from the deployment file), the
  default server and its exact client id: never on a name pattern, since a user may be
  called `project-x` in a deployment that has no such project.

Access itself is still checked by the hub (the share, the project roles); only the page is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from lunarhub.upstream import versions

RANGES = {"jupyterhub": ">=6.1,<6.2"}
UPSTREAM = "the hook on jupyterhub.apihandlers.auth.OAuthAuthorizeHandler.needs_oauth_confirm"
# OAuth client of a named server `dash-<slug>` (see lunarhub.dashboards.gallery.servers).
DASHBOARD_CLIENT = re.compile(r"^jupyterhub-user-.+-dash-[a-z0-9][a-z0-9-]*$")
# The deployment's project hub users (set by apply): the hub's config passes them at each start.
_project_users: frozenset[str] = frozenset()


def is_dashboard_client(oauth_client: Any) -> bool:
    # The server's own name, not the client id alone: a user could be called "x-dash-y".
    spawner = getattr(oauth_client, "spawner", None)
    return (spawner is not None and (spawner.name or "").startswith("dash-")
            and bool(DASHBOARD_CLIENT.match(oauth_client.identifier or "")))


def is_project_client(oauth_client: Any, project_users: Iterable[str] | None = None) -> bool:
    """The OAuth client of a joint project's lab: the default server of a project hub user."""
    users = _project_users if project_users is None else frozenset(project_users)
    spawner = getattr(oauth_client, "spawner", None)
    user = getattr(spawner, "user", None)
    name = getattr(user, "name", None)
    # The id as JupyterHub makes it for a default server (jupyterhub.user.User.__init__).
    return (name in users and not (spawner.name or "")
            and oauth_client.identifier == f"jupyterhub-user-{quote(name)}")


def apply(project_users: Iterable[str] = ()) -> None:
    """Install the hook (once per process); `project_users` replaces the project hub users known."""
    global _project_users
    versions.require(__name__, RANGES, UPSTREAM)
    _project_users = frozenset(project_users)
    from jupyterhub.apihandlers.auth import OAuthAuthorizeHandler

    original = OAuthAuthorizeHandler.needs_oauth_confirm
    if getattr(original, "__lunarhub_patch__", False):
        return

    def needs_oauth_confirm(self, user, oauth_client, requested_scopes):  # type: ignore[no-untyped-def]
        if is_dashboard_client(oauth_client) or is_project_client(oauth_client):
            return False
        return original(self, user, oauth_client, requested_scopes)

    needs_oauth_confirm.__lunarhub_patch__ = True  # type: ignore[attr-defined]
    OAuthAuthorizeHandler.needs_oauth_confirm = needs_oauth_confirm
