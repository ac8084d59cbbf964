"""Group shares reach tokens (a fix of JupyterHub; loaded by hub/jupyterhub_config.py only).

Upstream: not reported upstream yet. The code is `jupyterhub/scopes.py::get_scopes_for`,
token branch: it adds the owner's *user* shares (`owner.shared_with_me`) to what a token
may do, but not the shares made with the owner's *groups*, which the user branch of the
same function does add. Present since sharing came in (JupyterHub 5.0, PR #4594).
Applies to: jupyterhub>=6.1,<6.2 (checked on 6.1.1).
Remove when: tests/unit/test_upstream.py::test_jupyterhub_token_misses_group_shares fails,
i.e. a release counts group shares for tokens itself.

Why it matters here: a dashboard shared with the `reviewers` group is reachable from a
browser session but not through any token, which includes the OAuth token a single-user
server checks: group sharing silently fails. The fix adds the group shares, intersected
with the token's own scopes, so a token never gains more than it was issued.
tests/integration/test_hub.py::test_sharing_limited_to_allowed_groups shows it.

`from ..scopes import get_scopes_for` in `jupyterhub.apihandlers.base` (the token model of
the REST API) binds the original function at import, before any config file runs; so the
replacement goes into every loaded module that holds the original, not only `scopes`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from lunarhub.upstream import versions

RANGES = {"jupyterhub": ">=6.1,<6.2"}
UPSTREAM = "the token branch of jupyterhub.scopes.get_scopes_for (not reported upstream yet)"
# Modules known to import the name itself (grep "get_scopes_for" in jupyterhub/ of 6.1.1);
# imported before the scan below so that they are among the loaded modules it patches.
IMPORTERS = ("jupyterhub.apihandlers.base",)


def _group_share_scopes(user: Any) -> set[str]:
    from jupyterhub import scopes

    out: set[str] = set()
    for group in user.groups:
        for share in group.shared_with_me:
            out |= set(scopes.expand_share_scopes(share))
    return out


def with_group_shares(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`get_scopes_for` that also counts, for a user's token, the shares of the user's groups."""
    from jupyterhub import orm, scopes

    def get_scopes_for(orm_object):  # type: ignore[no-untyped-def]
        result = original(orm_object)
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

    get_scopes_for.__lunarhub_patch__ = True  # type: ignore[attr-defined]
    get_scopes_for.__wrapped__ = original  # type: ignore[attr-defined]
    return get_scopes_for


def holders_of(function: Callable[..., Any], prefix: str = "jupyterhub") -> list[str]:
    """Loaded modules under `prefix` whose global `get_scopes_for` is `function`."""
    return sorted(name for name, module in list(sys.modules.items())
                  if module is not None and (name == prefix or name.startswith(prefix + "."))
                  and getattr(module, "get_scopes_for", None) is function)


def apply() -> list[str]:
    """Replace get_scopes_for wherever it is bound; returns the modules patched."""
    versions.require(__name__, RANGES, UPSTREAM)
    from jupyterhub import scopes

    if getattr(scopes.get_scopes_for, "__lunarhub_patch__", False):
        return []
    for name in IMPORTERS:
        importlib.import_module(name)
    original = scopes.get_scopes_for
    patched = with_group_shares(original)
    modules = holders_of(original)
    for name in modules:
        sys.modules[name].get_scopes_for = patched
    return modules
