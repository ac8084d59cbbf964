"""The dashboards' named servers and their shares, driven through the hub as their publishers.

Shares are made with a short-lived token *of the publisher*, so the hub checks the publisher's
own sharing rights, not the gallery's.

`recheck` runs every few seconds (service.py): a share whose audience is no longer entitled to
every dataset the dashboard read (an embargo date moved, a group's grants or a catalog entry's
policy changed) is revoked through the hub, recorded in the audit trail and shown to the author
as a notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any, Literal

from lunarhub.config import Deployment
from lunarhub.dashboards import lineage, runtime_account
from lunarhub.dashboards.store import Dashboard, Store
from lunarhub.platform import audit
from lunarhub.platform.hubclient import AsyncHubAPI, HubError
from lunarhub.platform.spawner import log_tail

log = logging.getLogger("lunarhub.dashboards")
# A start the gallery asked for and that is neither running nor pending any more
# within this window failed: show the failure instead of starting again and again.
FAILED_WINDOW = 600


class Servers:
    def __init__(self, hub: AsyncHubAPI, log_dir: Path):
        self.hub = hub
        self.log_dir = log_dir
        # When the gallery last asked for each (owner, server) to start: tells a failed start
        # from one still to come.
        self.attempts: dict[tuple[str, str], float] = {}

    def log_of(self, owner: str, server: str) -> Path:
        return self.log_dir / f"{owner}--{server}.log"

    @contextlib.asynccontextmanager
    async def as_publisher(self, owner: str) -> AsyncIterator[str]:
        token, token_id = await self.hub.publisher_token(owner)
        try:
            yield token
        finally:
            await self.hub.drop_token(owner, token_id)

    async def deploy(self, d: Deployment, dash: Dashboard, restart: bool) -> None:
        """Run the dashboard's server with its current versions and exactly its shares."""
        owner, server = dash.owner, dash.server
        async with self.as_publisher(owner) as token:
            srv = await self.hub.server(owner, server)
            if srv and (srv.get("ready") or srv.get("pending")) and restart:
                # panel serve reads its list of versions at start: restart to add the new one.
                await self.hub.stop(owner, server, token=token)
                await self.hub.wait(owner, server, ready=False, timeout=60)
                srv = None
            if not srv or not (srv.get("ready") or srv.get("pending")):
                self.attempts[(owner, server)] = time.time()
                await self.hub.start(owner, server, token=token)
            await self.sync_shares(dash, token)
            ready = await self.hub.wait(owner, server, ready=True, timeout=d.hub.start_timeout + 15)
            if ready is None:
                raise HubError(500, "the dashboard server did not start. Last lines of its log:\n"
                                    f"{log_tail(self.log_of(owner, server))}")
            self.attempts.pop((owner, server), None)  # it started: no failure to report

    async def sync_shares(self, dash: Dashboard, token: str) -> None:
        owner, server = dash.owner, dash.server
        current = {(("group", s["group"]["name"]) if s.get("group") else ("user", s["user"]["name"]))
                   for s in await self.hub.shares(owner, server, token)}
        wanted = {("group", g) for g in dash.info["share_groups"]} | {("user", u) for u in dash.info["share_users"]}
        for kind, name in sorted(wanted - current):
            await self.hub.share(owner, server, token, kind, name)
        for kind, name in sorted(current - wanted):
            await self.hub.unshare(owner, server, token, kind, name)

    async def recheck(self, d: Deployment, store: Store, today: date | None = None) -> list[dict[str, Any]]:
        """Revoke every share the lineage no longer allows; returns the revocations made.

        The store is changed first (the gallery hides the dashboard from that audience at
        once), then the hub's share; a hub that fails is retried on the next round
        (`hub_sync_pending`)."""
        revoked: list[dict[str, Any]] = []
        for dash in store.all():
            lin = lineage.current(d, lineage.dashboard_lineage(dash))
            groups, users = list(dash.info.get("share_groups", [])), list(dash.info.get("share_users", []))
            ok_groups, ok_users = lineage.allowed_audiences(d, lin, groups, users, today)
            gone = [("group", g) for g in groups if g not in ok_groups] + \
                   [("user", u) for u in users if u not in ok_users]
            if gone:
                notices = list(dash.info.get("notices", []))
                for kind, name in gone:
                    found = lineage.problems(d, lin, [name] if kind == "group" else [],
                                             [name] if kind == "user" else [], today)
                    datasets = [{"site": ds["site"], "entry": ds.get("entry"), "path": ds.get("path"),
                                 "policy": ds["policy"], "embargo_until": ds.get("embargo_until")}
                                for _who, ds in found]
                    notice = {"kind": "share-revoked", "audience_kind": kind, "audience": name,
                              "datasets": datasets, "time": time.time()}
                    notices.append(notice)
                    revoked.append({"owner": dash.owner, "slug": dash.slug, **notice})
                    audit.record(d, "dashboards", "share-revoked", owner=dash.owner, slug=dash.slug,
                                 audience_kind=kind, audience=name, datasets=datasets,
                                 reason=f"{kind} {name!r} is no longer entitled to "
                                        + ", ".join(f"{x['entry'] or x['path']} ({x['site']}, {x['policy']})"
                                                    for x in datasets))
                    log.info("revoked the share of %s/%s with %s %s: %s", dash.owner, dash.slug, kind, name,
                             datasets)
                dash = store.update_info(dash.owner, dash.slug, share_groups=ok_groups, share_users=ok_users,
                                         share_with=ok_groups + ok_users, notices=notices[-50:],
                                         hub_sync_pending=True)
            if dash.info.get("hub_sync_pending"):
                try:
                    async with self.as_publisher(dash.owner) as token:
                        await self.sync_shares(dash, token)
                    store.update_info(dash.owner, dash.slug, hub_sync_pending=False)
                except HubError as exc:
                    log.warning("unsharing %s/%s through the hub failed (retried): %s", dash.owner, dash.slug, exc)
        return revoked

    async def open(self, owner: str, server: str, retry: bool) -> Literal["ready", "starting", "failed"]:
        """Where a reader opening the dashboard stands; starts a stopped (culled) server."""
        key = (owner, server)
        srv = await self.hub.server(owner, server)
        if srv and srv.get("ready"):
            self.attempts.pop(key, None)
            return "ready"
        pending = bool(srv and srv.get("pending"))
        tried = self.attempts.get(key)
        if not pending and tried and time.time() - tried < FAILED_WINDOW and not retry:
            return "failed"
        if not pending:
            self.attempts[key] = time.time()
            try:
                await self.hub.start(owner, server)
            except HubError as exc:
                log.warning("starting %s/%s failed: %s", owner, server, exc)
                return "failed"
        return "starting"

    async def stop(self, owner: str, server: str, token: str) -> None:
        # Stopped, not restarted: the next open starts it with the versions left.
        self.attempts.pop((owner, server), None)
        await self.hub.stop(owner, server, token=token)

    async def remove_unless_republished(self, store: Store, owner: str, server: str,
                                        d: Deployment | None = None) -> None:
        slug = server.removeprefix("dash-")
        dash = store.get(owner, slug)
        if dash is not None and dash.active:
            return  # republished meanwhile: keep it
        self.attempts.pop((owner, server), None)
        try:
            await self.hub.stop(owner, server, remove=True)
        except HubError as exc:
            log.warning("removing %s/%s after unpublish: %s", owner, server, exc)
        if d is not None:
            # Its scoped site credentials end with it (each start issues new ones anyway).
            try:
                await asyncio.to_thread(runtime_account.revoke, d, owner, slug)
            except Exception as exc:  # noqa: BLE001 - a site down must not keep the server
                log.warning("revoking the site credentials of %s/%s: %s", owner, slug, exc)
