"""The dashboards gallery: a hub-managed tornado service at /services/dashboards/.

Its pages are in pages.py (templates in templates/), its JSON API for `lunarhub publish` in
api.py, and the starting, stopping and sharing of dashboard servers in deploy.py. It runs as
root because it writes the store; it never runs notebook code (that happens in the publisher's
own servers, as the publisher).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from jupyterhub.services.auth import HubOAuthCallbackHandler
from tornado import ioloop, web

from lunarhub.config import Deployment, secrets
from lunarhub.dashboards.gallery.api import CommentsApi, DashboardApi, ListApi
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
from lunarhub.dashboards.store import Store
from lunarhub.platform.hubclient import AsyncHubAPI

log = logging.getLogger("lunarhub.dashboards")


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
        (p + rf"api/dashboards/{seg}", DashboardApi),
        (p + rf"api/dashboards/{seg}/v([0-9]+)", DashboardApi),
        (p + rf"api/dashboards/{seg}/v([0-9]+)/comments", CommentsApi),
    ]
    hub = AsyncHubAPI()
    return web.Application(
        routes, store=store, comments=Comments(store.root / "comments.sqlite"), hub=hub, prefix=p,
        servers=Servers(hub, d.state_path / "logs" / "servers"),
        # HubOAuth keeps the login in a signed cookie: a stable secret keeps users logged in
        # across a restart of the service (JupyterHub's own xsrf handling covers forms).
        cookie_secret=secrets.token(d, "dashboards-cookie-secret"))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[dashboards %(asctime)s %(levelname)s] %(message)s")
    d = deployment()
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/dashboards/")
    app = make_app(d, prefix)
    url = os.environ.get("JUPYTERHUB_SERVICE_URL", f"http://127.0.0.1:{d.services.dashboards.port}")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    app.listen(port, "127.0.0.1", max_body_size=256 * 2**20)
    log.info("dashboards gallery on 127.0.0.1:%d%s (store %s)", port, prefix, Store.for_deployment(d).root)
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
