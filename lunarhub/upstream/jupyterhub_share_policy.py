"""A policy for JupyterHub's own sharing API (a hook into JupyterHub's internals; hub process only).

Upstream: no bug; JupyterHub has no hook that decides whether a share may be made: the
`shares` scope lets a user share any of their servers with anyone they may name. Every share
row is made by `jupyterhub/orm.py::Share.grant` (from `POST /hub/api/shares/<owner>/<server>`
and from `ShareCode.exchange`, i.e. accepting a code at `/hub/accept-share`) and every share
code by `ShareCode.new` (`POST /hub/api/share-codes/...`), so those two are wrapped: a refusal
is an HTTP 403 whose message is the policy's reason. `Share.revoke` (PATCH) and the three
DELETE handlers of `jupyterhub/apihandlers/shares.py` are wrapped to report revocations; the
share handlers and `AcceptShareHandler.post` tell the hooks who is asking (`actor`).
`JupyterHub.init_groups` is wrapped to re-check existing shares at hub start, once users and
groups are loaded and before any request is served.
Applies to: jupyterhub>=6.1,<6.2 (checked on 6.1.1).
Remove when: JupyterHub offers a share-policy hook (move `refusal` there). Before widening the
range, run tests/unit/test_upstream.py: its canary checks that these are still the only
places shares and share codes are made, and that the wrapped names and signatures exist.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lunarhub.upstream import versions

RANGES = {"jupyterhub": ">=6.1,<6.2"}
UPSTREAM = ("jupyterhub.orm.Share.grant / ShareCode.new and the handlers of jupyterhub/apihandlers/shares.py "
            "(JupyterHub has no share-policy hook)")
# What apply() replaces (module, class, attribute); the canary checks each still exists.
TARGETS = (
    ("jupyterhub.orm", "Share", "grant"), ("jupyterhub.orm", "Share", "revoke"),
    ("jupyterhub.orm", "ShareCode", "new"), ("jupyterhub.app", "JupyterHub", "init_groups"),
    ("jupyterhub.apihandlers.shares", "ServerShareAPIHandler", "post"),
    ("jupyterhub.apihandlers.shares", "ServerShareAPIHandler", "patch"),
    ("jupyterhub.apihandlers.shares", "ServerShareAPIHandler", "delete"),
    ("jupyterhub.apihandlers.shares", "ServerShareCodeAPIHandler", "post"),
    ("jupyterhub.apihandlers.shares", "UserShareAPIHandler", "delete"),
    ("jupyterhub.apihandlers.shares", "GroupShareAPIHandler", "delete"),
    ("jupyterhub.handlers.pages", "AcceptShareHandler", "post"),
)
# Who made the request being handled ("" outside a request: the hub itself).
ACTOR: contextvars.ContextVar[str] = contextvars.ContextVar("lunarhub_share_actor", default="")


@dataclass(frozen=True)
class ShareRequest:
    """One share of `owner`'s server `server` ("" for the default server) with a user or a
    group (`kind` "user"/"group", `audience` its name), or a share code (`kind` "code",
    audience "": whoever accepts it)."""

    owner: str
    server: str
    kind: str
    audience: str
    actor: str = ""


Refusal = Callable[[ShareRequest], str | None]
Record = Callable[[str, ShareRequest, str], None]


def request_for(spawner: Any, share_with: Any | None, actor: str = "") -> ShareRequest:
    """The ShareRequest of an orm.Spawner and an orm.User/orm.Group (None: a share code)."""
    if share_with is None:
        return ShareRequest(spawner.user.name, spawner.name, "code", "", actor)
    return ShareRequest(spawner.user.name, spawner.name, share_with.kind, share_with.name, actor)


def _share_target(share: Any) -> Any:
    return share.user if share.user is not None else share.group


def revoke_disallowed(db: Any, refusal: Refusal, record: Record) -> list[tuple[ShareRequest, str]]:
    """Delete every share and share code `refusal` no longer allows; returns what went, why."""
    from jupyterhub import orm

    gone: list[tuple[ShareRequest, str]] = []
    rows = [(s, request_for(s.spawner, _share_target(s))) for s in db.query(orm.Share)]
    rows += [(c, request_for(c.spawner, None)) for c in db.query(orm.ShareCode)]
    for row, req in rows:
        reason = refusal(req)
        if reason:
            db.delete(row)
            gone.append((req, reason))
    db.commit()
    for req, reason in gone:
        record("share-revoked", req, reason)
    return gone


def _actor_of(handler: Any) -> str:
    user = getattr(handler, "current_user", None)
    return str(getattr(user, "name", "") or "")


def _as_actor(method: Callable[..., Any], before: Callable[..., list[ShareRequest]] | None = None,
              record: Record | None = None) -> Callable[..., Any]:
    """`method` of a handler run with ACTOR set to the requester; with `before`, the shares it
    names are reported as revoked once the method succeeded. The share handlers' methods are
    plain functions returning a coroutine (needs_scope's wrapper), so both cases are handled."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        actor = _actor_of(self)
        token = ACTOR.set(actor)
        try:
            doomed = before(self, *args) if before else []
            result = method(self, *args, **kwargs)
            if not inspect.isawaitable(result):
                _report(doomed)
                return result
        finally:
            ACTOR.reset(token)

        # The coroutine's body runs where it is awaited, maybe in another context: set it there.
        async def finish() -> Any:
            inner = ACTOR.set(actor)
            try:
                out = await result
                _report(doomed)
                return out
            finally:
                ACTOR.reset(inner)
        return finish()

    def _report(doomed: list[ShareRequest]) -> None:
        for req in doomed:
            assert record is not None
            record("share-revoked", req, "revoked by request")

    wrapper.__lunarhub_patch__ = True  # type: ignore[attr-defined]
    return wrapper


def apply(refusal: Refusal, record: Record) -> None:
    """Make every share, share code and accepted code pass `refusal` (a reason refuses it,
    None allows it), report each to `record(event, request, reason)` with event
    "share-created" / "share-refused" / "share-revoked", and revoke at hub start what
    `refusal` no longer allows. Once per process."""
    versions.require(__name__, RANGES, UPSTREAM)
    from jupyterhub import orm
    from jupyterhub.apihandlers import shares as api
    from jupyterhub.app import JupyterHub
    from jupyterhub.handlers.pages import AcceptShareHandler
    from tornado import web

    if getattr(orm.Share.grant, "__lunarhub_patch__", False):
        return
    original_grant = orm.Share.__dict__["grant"].__func__
    original_revoke = orm.Share.__dict__["revoke"].__func__
    original_new = orm.ShareCode.__dict__["new"].__func__
    original_init_groups = JupyterHub.init_groups

    def refuse_unless_allowed(req: ShareRequest) -> None:
        reason = refusal(req)
        if reason:
            record("share-refused", req, reason)
            raise web.HTTPError(403, reason)

    def grant(cls, db, spawner, share_with, scopes=None):  # type: ignore[no-untyped-def]
        req = request_for(spawner, share_with, ACTOR.get())
        refuse_unless_allowed(req)
        share = original_grant(cls, db, spawner, share_with, scopes=scopes)
        try:
            record("share-created", req, "")
        except BaseException:
            # No share the audit trail does not know about.
            original_revoke(cls, db, spawner, share_with)
            raise
        return share

    def new(cls, db, spawner, *, scopes, expires_in=None, **kwargs):  # type: ignore[no-untyped-def]
        req = request_for(spawner, None, ACTOR.get())
        refuse_unless_allowed(req)
        out = original_new(cls, db, spawner, scopes=scopes, expires_in=expires_in, **kwargs)
        record("share-created", req, "")
        return out

    def revoke(cls, db, spawner, share_with, scopes=None):  # type: ignore[no-untyped-def]
        existed = cls.find(db, spawner, share_with) is not None
        out = original_revoke(cls, db, spawner, share_with, scopes=scopes)
        if existed:
            req = request_for(spawner, share_with, ACTOR.get())
            record("share-revoked", req, "revoked by request" if out is None
                   else f"scopes revoked by request: {sorted(scopes or [])}")
        return out

    async def init_groups(self):  # type: ignore[no-untyped-def]
        await original_init_groups(self)
        for req, reason in revoke_disallowed(self.db, refusal, record):
            self.log.warning("revoked share of %s/%s with %s %s: %s", req.owner, req.server, req.kind,
                             req.audience, reason)

    def all_of_server(handler: Any, user_name: str, server_name: str | None = None) -> list[ShareRequest]:
        spawner = handler._lookup_spawner(user_name, server_name, raise_404=False) if server_name is not None else None
        return [request_for(spawner, _share_target(s), ACTOR.get()) for s in (spawner.shares if spawner else [])]

    def one_share(handler: Any, who: str, owner_name: str, server_name: str) -> list[ShareRequest]:
        try:
            share = handler._lookup_share(who, owner_name, server_name)
        except web.HTTPError:
            return []  # the handler answers 404 itself
        return [request_for(share.spawner, _share_target(share), ACTOR.get())]

    for marked in (grant, new, revoke, init_groups):
        marked.__lunarhub_patch__ = True  # type: ignore[attr-defined]
    orm.Share.grant = classmethod(grant)  # type: ignore[method-assign,assignment]
    orm.Share.revoke = classmethod(revoke)  # type: ignore[method-assign,assignment]
    orm.ShareCode.new = classmethod(new)  # type: ignore[method-assign,assignment]
    JupyterHub.init_groups = init_groups  # type: ignore[method-assign]
    for cls, name, before in (
        (api.ServerShareAPIHandler, "post", None), (api.ServerShareAPIHandler, "patch", None),
        (api.ServerShareAPIHandler, "delete", all_of_server), (api.ServerShareCodeAPIHandler, "post", None),
        (api.UserShareAPIHandler, "delete", one_share), (api.GroupShareAPIHandler, "delete", one_share),
        (AcceptShareHandler, "post", None),
    ):
        setattr(cls, name, _as_actor(getattr(cls, name), before, record))
