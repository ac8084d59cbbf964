"""Ready-made Bokeh sessions for a published dashboard, so a crowd does not queue.

Every page load of a Panel app runs the notebook's cells and builds the plot
(~0.2 s of CPU for the LOLA example); one Panel process does that for one
visitor at a time, so 30 reviewers opening a dashboard together waited for 30
of them in turn. A published version is an immutable snapshot, so the session a
visitor would get can be built before they come: while the server is idle it
keeps `size` sessions per app ready; a visit takes one, gets a fresh token for
it (with its own cookies and headers), and the pool refills once the server is
idle again.

Not pooled: apps whose code reads the visitor (`pn.state.user`, cookies,
headers, query arguments, `session_context`): their content depends on who
asks; and apps with periodic callbacks, which every idle ready session would run.
Those apps are built per visit as before (see `depends_on_visitor`).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from lunarhub.upstream import bokeh_session_hooks

log = logging.getLogger("lunarhub.dashboards.pool")

# Anything through which the built page could depend on who is asking, and periodic
# callbacks (a ready session nobody watches would run them for nothing, times the pool size).
VISITOR_RE = re.compile(
    r"state\s*\.\s*(user|user_info|cookies|headers|session_args|location|access_token|refresh_token"
    r"|session_info)\b|session_context|\bcurdoc\s*\(\s*\)\s*\.\s*session|\brequest\s*\."
    r"|add_periodic_callback")
IDLE_SECONDS = 1.0  # quiet for this long: the server may build the next spare session
CONNECT_WAIT = 15.0  # a visitor who got a session but never connects stops holding the pool back
RETRY_SECONDS = 10.0  # after a failed build (e.g. a data site down), try again this much later


def memory_budget() -> int:
    """Bytes the Panel process may grow to while building ready sessions: half the server's
    memory limit (the spawner's MEM_LIMIT, the publisher's profile), else a quarter of the
    machine. Ready sessions are a speed-up; they must never be what runs a server out of memory."""
    limit = int(os.environ.get("MEM_LIMIT") or 0)
    if limit > 0:
        return limit // 2
    import psutil

    return psutil.virtual_memory().total // 4


def process_rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def depends_on_visitor(source: str) -> bool:
    return bool(VISITOR_RE.search(source))


def app_source(app_file: str) -> str:
    """The code an app runs: the generated apps/vN.py and the notebook cells of its snapshot,
    as runner.py runs them."""
    from lunarhub.dashboards.publishing.runner import code_cells
    from lunarhub.dashboards.store import snapshot_notebook, version_dir_of_app

    path = Path(app_file)
    text = path.read_text(encoding="utf-8")
    try:
        text += "\n".join(src for _, src in code_cells(snapshot_notebook(version_dir_of_app(path))))
    except (OSError, ValueError, KeyError):
        pass  # not a snapshot (tests, plain scripts): judge the file alone
    return text


class SessionPool:
    """Spare sessions per application path; one instance per Panel process."""

    def __init__(self, size: int, budget: int | None = None):
        self.size = max(0, size)
        self.budget = memory_budget() if budget is None else budget
        self.over_budget = False
        self.spare: dict[str, deque[Any]] = {}
        self.pooled: dict[str, bool] = {}
        self.last_activity = 0.0
        self.building = False
        self.build_seconds = 0.0
        self.awaiting: list[tuple[float, Any]] = []  # handed out, websocket not connected yet
        self.retry_at: dict[str, float] = {}

    # ---- which apps

    def enable(self, path: str, app_file: str | None) -> None:
        if app_file is None:
            self.pooled[path] = False
            return
        visitor = depends_on_visitor(app_source(app_file))
        self.pooled[path] = self.size > 0 and not visitor
        self.spare.setdefault(path, deque())
        if visitor and self.size > 0:
            log.info("%s reads the visitor (user, cookies, headers or arguments): built per visit", path)

    # ---- visits

    def take(self, path: str) -> Any | None:
        self.last_activity = time.monotonic()
        queue = self.spare.get(path)
        while queue:
            session = queue.popleft()
            if not session.destroyed:
                self.awaiting.append((self.last_activity, session))
                return session
        return None

    def quiet_for(self) -> float:
        """Seconds since the last visit, or 0 while a visitor is still between page and
        websocket (building now would stall their first plot by a whole session)."""
        now = time.monotonic()
        still = []
        for since, session in self.awaiting:
            if session.connection_count > 0:
                self.last_activity = max(self.last_activity, now)  # their document is being sent
            elif now - since < CONNECT_WAIT and not session.destroyed:
                still.append((since, session))
        self.awaiting = still
        return 0.0 if still else now - self.last_activity

    # ---- building while idle

    async def refill(self, tornado_app: Any) -> None:
        """Build one missing spare session (the first pooled app lacking one), if idle.
        Returns quickly; the caller re-schedules while something is missing."""
        if self.building:
            return
        if process_rss() > self.budget:
            if not self.over_budget:
                log.warning("ready sessions: process memory above %d MiB, building no more for now",
                            self.budget // 2**20)
            self.over_budget = True
            return
        self.over_budget = False
        for path, ctx in tornado_app.applications.items():
            queue = self.spare.get(path)
            if not self.pooled.get(path) or queue is None or len(queue) >= self.size:
                continue
            if time.monotonic() < self.retry_at.get(path, 0.0):
                continue
            self.building = True
            started = time.monotonic()
            try:
                session, error = await bokeh_session_hooks.build_session(ctx, tornado_app)
                if error is None:
                    queue.append(session)
                    if len(queue) == self.size:
                        log.info("%s: %d ready sessions", path, self.size)
                else:
                    # Never hand out an error page built during an outage: visitors get a fresh
                    # build (and the real error, if it persists); the pool tries again later.
                    log.warning("%s: building a ready session failed (%s); retry in %g s",
                                path, error.splitlines()[0] if error else "?", RETRY_SECONDS)
                    self.retry_at[path] = time.monotonic() + RETRY_SECONDS
            except Exception:  # noqa: BLE001 - a broken app shows its error to visitors, not here
                log.exception("building a ready session for %s raised; pool for it disabled", path)
                self.pooled[path] = False
            finally:
                self.building = False
                self.build_seconds = time.monotonic() - started
            return

    def missing(self) -> bool:
        return any(self.pooled.get(p) and len(q) < self.size for p, q in self.spare.items())

    def next_retry(self) -> float:
        """Seconds until a backed-off app may be tried again (0 if none waits)."""
        waits = [t - time.monotonic() for t in self.retry_at.values()]
        return max(0.0, min(waits)) if waits else 0.0


def install(size: int, app_files: dict[str, str]) -> SessionPool:
    """Hook the pool into Panel's page handler and Bokeh's server start (this process only;
    the hooks and the private names they need are in lunarhub.upstream.bokeh_session_hooks)."""
    from tornado.ioloop import IOLoop

    pool = SessionPool(size)

    def schedule(tornado_app: Any, delay: float = IDLE_SECONDS) -> None:
        IOLoop.current().call_later(delay, lambda: IOLoop.current().add_callback(tick, tornado_app))

    async def tick(tornado_app: Any) -> None:
        idle_for = pool.quiet_for()
        if idle_for < IDLE_SECONDS:
            return schedule(tornado_app, IDLE_SECONDS - idle_for + 0.05)
        await pool.refill(tornado_app)
        if pool.missing():
            # At most half the loop's time goes to building: documents still being
            # written to a crowd's websockets go out between two builds.
            wait = 5.0 if pool.over_budget else max(0.05, pool.build_seconds, pool.next_retry())
            schedule(tornado_app, wait)

    def on_start(tornado_app: Any) -> None:
        for path in tornado_app.applications:
            pool.enable(path, app_files.get(path))
        schedule(tornado_app, 0.5)

    async def get_session(handler: Any, build: Callable[[], Awaitable[Any]]) -> Any:
        ctx = handler.application_context
        session = pool.take(ctx.url) if pool.pooled.get(ctx.url) else None
        if session is None:
            session = await build()
        else:
            bokeh_session_hooks.hand_over(session, ctx, handler)
        schedule(handler.application)
        return session

    bokeh_session_hooks.apply(on_start, get_session)
    return pool
