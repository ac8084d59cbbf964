"""No "Authorize access" page for published dashboards (a hook into JupyterHub's OAuth).

Upstream: no bug; the hook is `jupyterhub/apihandlers/auth.py::
OAuthAuthorizeHandler.needs_oauth_confirm` (no config can exempt a *user's* server; the
`oauth_no_confirm_list` setting lists fixed client ids, and dashboards come and go).
Applies to: jupyterhub>=6.1,<6.2 (checked on 6.1.1).
Remove when: JupyterHub lets a config decide per client (e.g. a hook or a callable
no-confirm list); until then, widen the range after checking the method's signature.

The hub asks a viewer to confirm before another user's server may learn who they are, and
asks again after each restart of that server (its tokens are deleted when it stops), so a
reviewer re-confirmed after every cull. A `dash-<slug>` server only exists because its
owner published it to that viewer; access itself is still checked by the hub (the
share), only the page is skipped.
"""

from __future__ import annotations

import re
from typing import Any

from lunarhub.upstream import versions

RANGES = {"jupyterhub": ">=6.1,<6.2"}
UPSTREAM = "the hook on jupyterhub.apihandlers.auth.OAuthAuthorizeHandler.needs_oauth_confirm"
# OAuth client of a named server `dash-<slug>` (see lunarhub.dashboards.gallery.servers).
DASHBOARD_CLIENT = re.compile(r"^jupyterhub-user-.+-dash-[a-z0-9][a-z0-9-]*$")


def is_dashboard_client(oauth_client: Any) -> bool:
    # The server's own name, not the client id alone: a user could be called "x-dash-y".
    spawner = getattr(oauth_client, "spawner", None)
    return (spawner is not None and (spawner.name or "").startswith("dash-")
            and bool(DASHBOARD_CLIENT.match(oauth_client.identifier or "")))


def apply() -> None:
    versions.require(__name__, RANGES, UPSTREAM)
    from jupyterhub.apihandlers.auth import OAuthAuthorizeHandler

    original = OAuthAuthorizeHandler.needs_oauth_confirm
    if getattr(original, "__lunarhub_patch__", False):
        return

    def needs_oauth_confirm(self, user, oauth_client, requested_scopes):  # type: ignore[no-untyped-def]
        if is_dashboard_client(oauth_client):
            return False
        return original(self, user, oauth_client, requested_scopes)

    needs_oauth_confirm.__lunarhub_patch__ = True  # type: ignore[attr-defined]
    OAuthAuthorizeHandler.needs_oauth_confirm = needs_oauth_confirm
