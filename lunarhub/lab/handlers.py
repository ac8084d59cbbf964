"""The extension's API (under `<base_url>lunarhub-lab/api/`), in the user's own server.

Every handler is a jupyter_server APIHandler behind `@authenticated`: only who may use this
server (its owner, through the hub's OAuth or the server's token) gets an answer; the server
itself listens on loopback behind the loopback filter (docs/security.md).

Our modules are imported by the first request that needs them, not at server start: the catalog
library and the deployment model (pydantic) cost about half a CPU-second to import, paid by every
server start otherwise (docs/benchmarks.md, "Hub pages and start cost").
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web


class CatalogHandler(APIHandler):
    @web.authenticated
    async def get(self) -> None:
        from lunarhub.data.catalog import sites_from_env
        from lunarhub.lab import catalog_view, state

        d, why = state.deployment()
        groups = state.user_groups()
        out = await asyncio.get_running_loop().run_in_executor(
            None, lambda: catalog_view.listing(d, groups, sites_from_env()))
        if why:
            out["notice"] = why
        self.finish(json.dumps(out))


class PublishOptionsHandler(APIHandler):
    @web.authenticated
    async def get(self) -> None:
        from lunarhub.lab import publish_jobs, state

        d, why = state.deployment()
        self.finish(json.dumps(publish_jobs.options(d, state.username(), why)))


class PublishHandler(APIHandler):
    @web.authenticated
    async def post(self) -> None:
        from lunarhub.lab import publish_jobs

        body = self.get_json_body() or {}
        root = Path(self.settings.get("server_root_dir") or os.getcwd()).expanduser()
        try:
            job = publish_jobs.start(root, body)
        except publish_jobs.BadRequest as exc:
            raise web.HTTPError(400, str(exc)) from None
        self.set_status(202)
        self.finish(json.dumps(job))


class PublishJobHandler(APIHandler):
    @web.authenticated
    def get(self, job_id: str) -> None:
        from lunarhub.lab import publish_jobs

        job = publish_jobs.get(job_id)
        if job is None:
            raise web.HTTPError(404, f"no publish run {job_id!r} in this server")
        self.finish(json.dumps(job))


class DashboardsHandler(APIHandler):
    @web.authenticated
    async def get(self) -> None:
        from lunarhub.lab import publish_jobs

        out = await asyncio.get_running_loop().run_in_executor(None, publish_jobs.my_dashboards)
        self.finish(json.dumps(out))


class DashboardHandler(APIHandler):
    @web.authenticated
    async def delete(self, slug: str) -> None:
        from lunarhub.lab import publish_jobs

        out = await asyncio.get_running_loop().run_in_executor(None, lambda: publish_jobs.unpublish(slug))
        if "error" in out:
            self.set_status(422)
        self.finish(json.dumps(out))


class ComputeHandler(APIHandler):
    @web.authenticated
    def get(self) -> None:
        from lunarhub.lab import publish_jobs

        self.finish(json.dumps(publish_jobs.compute_limits()))


def setup(web_app: Any) -> None:
    base = url_path_join(web_app.settings["base_url"], "lunarhub-lab", "api")
    web_app.add_handlers(".*$", [
        (url_path_join(base, "catalog"), CatalogHandler),
        (url_path_join(base, "publish", "options"), PublishOptionsHandler),
        (url_path_join(base, "publish"), PublishHandler),
        (url_path_join(base, "publish", r"jobs/([0-9a-f]+)"), PublishJobHandler),
        (url_path_join(base, "dashboards"), DashboardsHandler),
        (url_path_join(base, "dashboards", r"([a-z0-9-]+)"), DashboardHandler),
        (url_path_join(base, "compute"), ComputeHandler),
    ])
