"""The dashboards gallery: a hub-managed tornado service at /services/dashboards/.

Its pages are in pages.py (templates in templates/), its JSON API for `lunarhub publish` in
api.py, and the starting, stopping and sharing of dashboard servers in deploy.py. It runs as
root because it writes the store; it never runs notebook code (that happens in the publisher's
own servers, as the publisher).
"""

from __future__ import annotations

import logging
from typing import Any

from jupyterhub.services.auth import HubOAuthCallbackHandler
from tornado import httputil, ioloop, web

from lunarhub.config import ConfigError, DashboardLimits, Deployment, secrets
from lunarhub.dashboards import PREFIX
from lunarhub.dashboards.gallery import limits
from lunarhub.dashboards.gallery.api import CommentsApi, DashboardApi, LimitsApi, ListApi, SharesApi
from lunarhub.dashboards.gallery.base import deployment
from lunarhub.dashboards.gallery.comments import Comments
from lunarhub.dashboards.gallery.deploy import Servers
from lunarhub.dashboards.gallery.pages import (
    CommentFormHandler,
    GalleryHandler,
    OpenHandler,
    ThumbnailHandler,
    VersionHandler,
)
from lunarhub.dashboards.server.shared_static import FILE_RE, directories
from lunarhub.dashboards.store import MAX_BYTES, Store
from lunarhub.platform import hub_service
from lunarhub.platform.hubclient import AsyncHubAPI

log = logging.getLogger("lunarhub.dashboards")
# How often existing shares are checked against the deployment and the catalogs (cheap: local
# files only; the hub is called only for a share to revoke).
RECHECK_SECONDS = 3


class GalleryApplication(web.Application):
    """Refuses a request body from its declared length, before tornado reads it into memory
    (it buffers a whole body before a handler runs): each handler class says what its body
    holds (`body_kind`), the deployment's limits say how large that may be."""

    def find_handler(self, request: httputil.HTTPServerRequest, **kwargs: Any) -> Any:
        delegate = super().find_handler(request, **kwargs)
        declared = request.headers.get("Content-Length")
        if declared is None:
            if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
                return self.get_handler_delegate(request, TooLarge, {
                    "status": 411, "message": "send the request body with a Content-Length (not chunked)",
                    "declared": 0})
            return delegate
        if not declared.strip().isdigit() or int(declared) <= limits.SMALL_BODY:
            return delegate  # tornado itself answers 400 to a malformed length
        kind = getattr(delegate.handler_class, "body_kind", "small")
        try:
            d = deployment()
        except ConfigError:
            return delegate  # the handler reports the broken deployment file as it does for any request
        lim = d.services.dashboards.limits
        allowed = {"publish": limits.publish_body_limit(lim),
                   "comment": limits.comment_body_limit(lim)}.get(kind, limits.SMALL_BODY)
        if int(declared) <= allowed:
            return delegate
        message = limits.body_refusal(d, int(declared), allowed, kind)
        log.info("refused a %s-byte body to %s: %s", declared, request.path, message)
        return self.get_handler_delegate(request, TooLarge, {"status": 413, "message": message,
                                                             "declared": int(declared)})


@web.stream_request_body
class TooLarge(web.RequestHandler):
    """The answer to a body over its limit; the body itself is dropped as it arrives."""

    def initialize(self, status: int, message: str, declared: int) -> None:
        self.status, self.message, self.declared = status, message, declared

    def prepare(self) -> None:
        if not self.declared or self.declared > limits.DRAIN_MAX:
            self.refuse()  # the connection closes after the answer; the client may be cut off
        else:
            # Read to the end and drop it: a client still sending (configurable-http-proxy answers
            # `Expect: 100-continue` itself) then reads the answer instead of a reset.
            self.request.connection.set_max_body_size(self.declared)  # type: ignore[union-attr]

    def data_received(self, chunk: bytes) -> None:
        pass

    def refuse(self, *args: Any) -> None:
        self.set_status(self.status)
        self.finish({"error": self.message})

    get = post = put = patch = delete = refuse  # type: ignore[assignment]


def make_app(d: Deployment, prefix: str) -> web.Application:
    store = Store.for_deployment(d)
    store.root.mkdir(parents=True, exist_ok=True)
    p = prefix
    seg = r"([a-z][a-z0-9-]{0,30})/([a-z0-9][a-z0-9-]{0,39})"
    static_dirs = directories()
    routes: list[Any] = [
        (p, GalleryHandler),
        (p + "oauth_callback", HubOAuthCallbackHandler),
        (p + rf"d/{seg}/v([0-9]+)", VersionHandler),
        (p + rf"d/{seg}/v([0-9]+)/comments", CommentFormHandler),
        (p + rf"thumb/{seg}/v([0-9]+)\.png", ThumbnailHandler),
        (p + rf"open/{seg}/v([0-9]+)", OpenHandler),
        # BokehJS and Panel for every dashboard's pages (shared_static.py): public library
        # files, no login needed, cached for good (the ?v= hash changes with an upgrade).
        (p + "static/bokeh/" + FILE_RE["bokeh"], web.StaticFileHandler, {"path": str(static_dirs["bokeh"])}),
        (p + "static/panel/" + FILE_RE["panel"], web.StaticFileHandler, {"path": str(static_dirs["panel"])}),
        (p + "api/dashboards", ListApi),
        (p + "api/limits", LimitsApi),
        (p + rf"api/dashboards/{seg}", DashboardApi),
        (p + rf"api/dashboards/{seg}/v([0-9]+)", DashboardApi),
        (p + rf"api/dashboards/{seg}/shares", SharesApi),
        (p + rf"api/dashboards/{seg}/v([0-9]+)/comments", CommentsApi),
    ]
    hub = AsyncHubAPI()
    return GalleryApplication(
        routes, store=store, comments=Comments(store.root / "comments.sqlite"), hub=hub, prefix=p,
        servers=Servers(hub, d.state_path / "logs" / "servers"),
        # HubOAuth keeps the login in a signed cookie: a stable secret keeps users logged in
        # across a restart of the service (JupyterHub's own xsrf handling covers forms).
        cookie_secret=secrets.token(d, "dashboards-cookie-secret"))


class Rechecker:
    """Runs Servers.recheck every RECHECK_SECONDS, one round at a time, with the deployment
    as it is now (the file and the roster are re-read: an edit applies without a restart)."""

    def __init__(self, app: web.Application):
        self.app = app
        self.running = False

    async def __call__(self) -> None:
        if self.running:
            return
        self.running = True
        try:
            await self.app.settings["servers"].recheck(deployment(), self.app.settings["store"])
        except ConfigError as exc:
            log.warning("shares not re-checked: the deployment file does not load: %s", exc)
        except Exception:  # noqa: BLE001 - the next round tries again; the gallery keeps serving
            log.exception("re-checking shares failed")
        finally:
            self.running = False


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[dashboards %(asctime)s %(levelname)s] %(message)s")
    d = deployment()
    # The backstop: no handler's limit (GalleryApplication) exceeds a publish of the largest
    # snapshot the store takes.
    largest = limits.publish_body_limit(DashboardLimits(max_snapshot_mb=MAX_BYTES / limits.MIB))
    app = hub_service.start(lambda prefix: make_app(d, prefix), PREFIX, d.services.dashboards.port, largest, log,
                            f"dashboards gallery (store {Store.for_deployment(d).root})")
    check = Rechecker(app)
    loop = ioloop.IOLoop.current()
    loop.add_callback(check)  # at start: a restart after an edit applies it at once
    ioloop.PeriodicCallback(check, RECHECK_SECONDS * 1000).start()
    loop.start()


if __name__ == "__main__":
    main()
