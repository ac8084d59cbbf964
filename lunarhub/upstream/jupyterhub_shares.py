"""Targeted changes to JupyterHub 6.1 (loaded by hub/jupyterhub_config.py only).

1. Group shares reach tokens (a fix).

`jupyterhub.scopes.get_scopes_for(token)` adds the owner's *user* shares to what
a token may do, but not shares made with the owner's *groups*
(`owner.shared_with_me` instead of `owner.all_shared_with_me`). A server shared
with the `reviewers` group is then reachable from a browser session but not
through any token, which includes the OAuth token a single-user server checks:
group sharing silently fails. This adds the group shares, still intersected
with the token's own scopes, so a token never gains more than it was issued.
tests/integration/test_hub.py::test_sharing_limited_to_allowed_groups shows it.

2. No "Authorize access" page for published dashboards. The hub asks a viewer to
confirm before another user's server may learn who they are, and asks again
after each restart of that server (its tokens are deleted when it stops), so a
reviewer re-confirmed after every cull. A `dash-<slug>` server only exists
because its owner published it to that viewer; access itself is still checked
by the hub (the share), only the page is skipped.
"""

from __future__ import annotations

import re

from jupyterhub import orm, scopes
from jupyterhub.apihandlers.auth import OAuthAuthorizeHandler

# OAuth client of a named server `dash-<slug>` (see lunarhub.dashboards.gallery.servers).
DASHBOARD_CLIENT = re.compile(r"^jupyterhub-user-.+-dash-[a-z0-9][a-z0-9-]*$")
_original_confirm = OAuthAuthorizeHandler.needs_oauth_confirm

_original = scopes.get_scopes_for


def _group_share_scopes(user: orm.User) -> set[str]:
    out: set[str] = set()
    for group in user.groups:
        for share in group.shared_with_me:
            out |= set(scopes.expand_share_scopes(share))
    return out


def get_scopes_for(orm_object):  # type: ignore[no-untyped-def]
    result = _original(orm_object)
    if isinstance(orm_object, orm.APIToken) and orm_object.user is not None:
        extra = _group_share_scopes(orm_object.user)
        if extra:
            token_scopes = set(orm_object.scopes)
            if "inherit" not in token_scopes:
                allowed = scopes.expand_scopes(
                    token_scopes, owner=orm_object.user, oauth_client=orm_object.oauth_client
                )
                extra &= set(allowed)
            result = frozenset(result) | extra
    return result


def needs_oauth_confirm(self, user, oauth_client, requested_scopes):  # type: ignore[no-untyped-def]
    # The server's own name, not the client id alone: a user could be called "x-dash-y".
    spawner = getattr(oauth_client, "spawner", None)
    if spawner is not None and (spawner.name or "").startswith("dash-") \
            and DASHBOARD_CLIENT.match(oauth_client.identifier or ""):
        return False
    return _original_confirm(self, user, oauth_client, requested_scopes)


def apply() -> None:
    if getattr(scopes.get_scopes_for, "__lunarhub_patch__", False):
        return
    get_scopes_for.__lunarhub_patch__ = True  # type: ignore[attr-defined]
    scopes.get_scopes_for = get_scopes_for
    OAuthAuthorizeHandler.needs_oauth_confirm = needs_oauth_confirm
