"""What every gallery handler shares: hub login and language (lunarhub.platform.hub_service), the
store, the reader's rights."""

from __future__ import annotations

from lunarhub.dashboards.gallery import policy
from lunarhub.dashboards.gallery.comments import Comments
from lunarhub.dashboards.gallery.deploy import Servers
from lunarhub.dashboards.store import Dashboard, Store
from lunarhub.platform.hub_service import ServicePage, deployment
from lunarhub.platform.hubclient import AsyncHubAPI

__all__ = ["Base", "deployment"]


class Base(ServicePage):
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
