"""Hooks that let lunarhub's session pool hand out sessions built before the visit.

Upstream: no bug; Bokeh and Panel have no API to create a session without a request or to
give an existing session to a new visitor, so lunarhub.dashboards.server.session_pool
replaces two methods and uses private names, all of them here:
- replaced: `panel/io/server.py::DocHandler.get_session` (a visit's session) and
  `bokeh/server/tornado.py::BokehTornado.start` (when the apps are known);
- private: `DocHandler._generate_token_payload` (Panel), `bokeh.server.contexts._RequestProxy`,
  `ApplicationContext._session_contexts`, `SessionContext._token` and `._request`,
  `ServerSession._token` and `._last_unsubscribe_time` (Bokeh), a Panel handler's `_runner`.
Applies to: bokeh>=3.5,<3.10 and panel>=1.5,<1.10 (checked on bokeh 3.9.2, panel 1.9.4;
the lower bounds are the project's declared minimum).
Remove when: Panel can pre-build sessions itself (then drop the pool); before widening the
range, run tests/unit/test_upstream.py (the private names) and tests/unit/test_dashboards_pool.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from lunarhub.upstream import versions

RANGES = {"bokeh": ">=3.5,<3.10", "panel": ">=1.5,<1.10"}
UPSTREAM = "the replaced DocHandler.get_session / BokehTornado.start and Bokeh's private session names"


async def build_session(ctx: Any, tornado_app: Any) -> tuple[Any, str | None]:
    """A session built without a visitor (no cookies, headers or arguments), and the error
    if the app's code failed while building it (Panel then shows an error page instead)."""
    from bokeh.util.token import generate_jwt_token, generate_session_id
    from tornado.httputil import HTTPHeaders, HTTPServerRequest

    session_id = generate_session_id(secret_key=tornado_app.secret_key, signed=tornado_app.sign_sessions)
    token = generate_jwt_token(session_id, secret_key=tornado_app.secret_key, signed=tornado_app.sign_sessions,
                               expiration=tornado_app.session_token_expiration,
                               extra_payload={"headers": {}, "cookies": {}, "arguments": {}})
    request = HTTPServerRequest(method="GET", uri=ctx.url or "/", headers=HTTPHeaders())
    session = await ctx.create_session_if_needed(session_id, request, token)
    # The app's runner is shared by its sessions but runs one at a time: right after the
    # build it still holds this build's outcome.
    for handler in ctx.application.handlers:
        runner = getattr(handler, "_runner", None)
        if runner is not None and runner.failed:
            return session, runner.error or "the app failed"  # left unblocked: bokeh discards it
    if not session.document.roots:
        return session, "the app made nothing servable"
    session.block_expiration()  # a spare is not an 'unused' session: keep it until a visitor takes it
    return session, None


def hand_over(session: Any, ctx: Any, handler: Any) -> str:
    """Give a spare session to the visitor behind `handler` (a Panel DocHandler): a fresh
    token for its id carrying the visitor's own headers and cookies, and the session's
    request context switched to them (for callbacks that look at them later)."""
    from bokeh.server.contexts import _RequestProxy
    from bokeh.server.session import current_time
    from bokeh.util.token import generate_jwt_token

    app = handler.application
    payload = handler._generate_token_payload()
    token = generate_jwt_token(session.id, secret_key=app.secret_key, signed=app.sign_sessions,
                               expiration=app.session_token_expiration, extra_payload=payload)
    session._token = token
    session_context = ctx._session_contexts.get(session.id)
    if session_context is not None:
        session_context._token = token
        session_context._request = _RequestProxy(handler.request, arguments=payload.get("arguments"),
                                                 cookies=payload.get("cookies"), headers=payload.get("headers"))
    # The browser connects its websocket in a second or so; until then the session must
    # not look long-unused to bokeh's cleanup (which counts from the last unsubscribe).
    session._last_unsubscribe_time = current_time()
    session.unblock_expiration()
    return token


def apply(on_start: Callable[[Any], None],
          get_session: Callable[[Any, Callable[[], Awaitable[Any]]], Awaitable[Any]]) -> None:
    """Call `on_start(tornado_app)` after Bokeh's server start, and let `get_session(handler,
    build)` choose a visit's session (`build()` is Panel's own way); this process only."""
    versions.require(__name__, RANGES, UPSTREAM)
    from bokeh.server.tornado import BokehTornado
    from panel.io import server as pn_server

    original_get_session = pn_server.DocHandler.get_session
    original_start = BokehTornado.start

    def start(self: Any) -> None:
        original_start(self)
        on_start(self)

    async def doc_get_session(self: Any) -> Any:
        return await get_session(self, lambda: original_get_session(self))

    BokehTornado.start = start  # type: ignore[method-assign]
    pn_server.DocHandler.get_session = doc_get_session  # type: ignore[method-assign]
