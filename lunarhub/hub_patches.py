"""A targeted fix of JupyterHub 6.1 (loaded by hub/jupyterhub_config.py only).

`jupyterhub.scopes.get_scopes_for(token)` adds the owner's *user* shares to what
a token may do, but not shares made with the owner's *groups*
(`owner.shared_with_me` instead of `owner.all_shared_with_me`). A server shared
with the `reviewers` group is then reachable from a browser session but not
through any token, which includes the OAuth token a single-user server checks:
group sharing silently fails. This adds the group shares, still intersected
with the token's own scopes, so a token never gains more than it was issued.
tests/integration/test_hub.py::test_sharing_limited_to_allowed_groups shows it.
"""

from __future__ import annotations

from jupyterhub import orm, scopes

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


def apply() -> None:
    if getattr(scopes.get_scopes_for, "__lunarhub_patch__", False):
        return
    get_scopes_for.__lunarhub_patch__ = True  # type: ignore[attr-defined]
    scopes.get_scopes_for = get_scopes_for
