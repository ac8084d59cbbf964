"""A hub-managed service of lunarhub (the dashboards gallery, the courses page): how the hub declares
it, and what its own process shares — the deployment as it is now, the hub-logged-in page handler
in the reader's language, and the start on the address the hub gave it.

Each such service runs as root in a process of its own, started and restarted by the hub
(`c.JupyterHub.services`); its pages and rights stay in its own package.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import jinja2
from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from lunarhub import config
from lunarhub.config import Deployment, roster, secrets
from lunarhub.config.languages import COOKIE, SWITCHER, Catalogue, pick, text

VENV_BIN = Path(sys.executable).parent


def declaration(d: Deployment, name: str, port: int, module: str, description: str) -> dict[str, Any]:
    """The service's entry in `c.JupyterHub.services`: `python -m module` on 127.0.0.1:`port`, listed on
    the hub's home, logged in without a consent page, with a stable token (`<name>-api-token`) so its
    API calls work right after a hub restart."""
    return {
        "name": name,
        "url": f"http://127.0.0.1:{port}",
        "command": [str(VENV_BIN / "python"), "-m", module],
        "environment": {"LUNARHUB_CONFIG": str(d.config_file or ""), "PYTHONUNBUFFERED": "1"},
        "oauth_no_confirm": True,
        "display": True,
        "info": {"description": description},
        "api_token": secrets.token(d, f"{name}-api-token"),
    }


def deployment() -> Deployment:
    # Re-read per request: `lunarhub users` or a course's roster may have changed groups since the start.
    return roster.effective(config.load())


class ServicePage(HubOAuthenticated, web.RequestHandler):
    """A handler of the service (hub OAuth login). A service's page classes set `templates` (autoescaping
    Jinja2) and `texts` (its catalogue); JSON handlers need neither."""

    templates: ClassVar[jinja2.Environment]
    texts: ClassVar[Catalogue]

    @property
    def prefix(self) -> str:
        return self.settings["prefix"]

    @property
    def username(self) -> str:
        return self.current_user["name"]

    def lang(self) -> str:
        """As on the hub's pages (lunarhub.config.languages.pick); a ?lang= choice is remembered here."""
        asked = self.get_query_argument("lang", None)
        lang = pick(asked, self.get_cookie(COOKIE), self.request.headers.get("Accept-Language"))
        if asked == lang:
            self.set_cookie(COOKIE, lang, path=self.prefix)
        return lang

    def render_page(self, template: str, lang: str, title: str, status: int = 200, **values: Any) -> None:
        html = self.templates.get_template(template).render(
            lang=lang, title=title, languages=SWITCHER, username=self.username, prefix=self.prefix,
            t=lambda key: text(self.texts, key, lang), **values)
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(html)


def start(app_for: Callable[[str], web.Application], default_prefix: str, default_port: int, max_body_size: int,
          log: logging.Logger, what: str) -> web.Application:
    """`app_for(prefix)` listening on the loopback address the hub gave the service
    (JUPYTERHUB_SERVICE_PREFIX and _URL; the defaults when run by hand). The caller starts the loop."""
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", default_prefix)
    url = os.environ.get("JUPYTERHUB_SERVICE_URL", f"http://127.0.0.1:{default_port}")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    app = app_for(prefix)
    app.listen(port, "127.0.0.1", max_body_size=max_body_size)
    log.info("%s on 127.0.0.1:%d%s", what, port, prefix)
    return app
