"""What every gallery handler shares: hub login, the store, the reader's language and rights."""

from __future__ import annotations

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from lunarhub import config
from lunarhub.config import Deployment, roster
from lunarhub.dashboards.gallery import policy
from lunarhub.dashboards.gallery.comments import Comments
from lunarhub.dashboards.gallery.deploy import Servers
from lunarhub.dashboards.gallery.i18n import pick
from lunarhub.dashboards.store import Dashboard, Store
from lunarhub.platform.hubclient import AsyncHubAPI


def deployment() -> Deployment:
    # Re-read per request: `lunarhub users` may have changed groups since the hub started.
    return roster.effective(config.load())


class Base(HubOAuthenticated, web.RequestHandler):
    @property
    def store(self) -> Store:
        return self.settings["store"]

    @property
    def comments(self) -> Comments:
        return self.settings["comments"]

    @property
    def hub(self) -> AsyncHubAPI:
        return self.settings["hub"]

    @property
    def servers(self) -> Servers:
        return self.settings["servers"]

    @property
    def prefix(self) -> str:
        return self.settings["prefix"]

    @property
    def username(self) -> str:
        return self.current_user["name"]

    def lang(self) -> str:
        lang = pick(self.get_query_argument("lang", None), self.get_cookie("lunarhub-lang"),
                    self.request.headers.get("Accept-Language"))
        if self.get_query_argument("lang", None) == lang:
            self.set_cookie("lunarhub-lang", lang, path=self.prefix)
        return lang

    async def groups_of(self, name: str) -> list[str]:
        user = await self.hub.user(name)
        return list((user or {}).get("groups", []))

    async def visible(self, dash: Dashboard | None) -> bool:
        if dash is None or not dash.active:
            return False
        if dash.owner == self.username:
            return True
        return policy.may_view_dashboard(deployment(), dash, self.username, await self.groups_of(self.username))

    def json_error(self, status: int, message: str) -> None:
        self.set_status(status)
        self.finish({"error": message})
