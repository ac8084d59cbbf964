"""The gallery's JSON API (hub tokens; used by `lunarhub publish`): publish, list, unpublish,
delete a version, comments."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import pwd
from typing import Any

from tornado import ioloop, web

from lunarhub.config import Deployment
from lunarhub.dashboards import lineage as lineage_mod
from lunarhub.dashboards.gallery import limits, policy
from lunarhub.dashboards.gallery.base import Base, deployment
from lunarhub.dashboards.publishing import thumbnail
from lunarhub.dashboards.store import (
    Dashboard,
    StoreError,
    Version,
    check_relpath,
    check_slug,
    content_hash,
    slugify,
)
from lunarhub.platform import audit
from lunarhub.platform.hubclient import HubError

log = logging.getLogger("lunarhub.dashboards")


class ApiBase(Base):
    def get_login_url(self) -> str:  # an API answers 403, never redirects to a login page
        raise web.HTTPError(403, "hub token required")

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "request body is not JSON") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "request body must be a JSON object")
        return data

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        self.finish({"error": getattr(exc, "log_message", None) or self._reason})


def describe(d: Deployment, dash: Dashboard, v: Version, prefix: str) -> dict[str, Any]:
    return {"owner": dash.owner, "slug": dash.slug, "title": dash.title, "version": v.version,
            "hash": v.meta["hash"], "published": v.published, "server": dash.server,
            # On the publisher's own origin (hub.subdomain_host), never the hub's.
            "url": f"{d.server_url(dash.owner, dash.server)}v{v.version}",
            "gallery_url": f"{d.public_url}{prefix}d/{dash.owner}/{dash.slug}/v{v.version}",
            "versions": [x.version for x in dash.versions], "thumbnail": v.thumbnail is not None,
            "share_groups": dash.info.get("share_groups", []), "share_users": dash.info.get("share_users", []),
            "lineage": [{k: ds.get(k) for k in ("site", "entry", "path", "policy", "embargo_until", "version")}
                        for ds in v.meta.get("lineage") or []],
            "notices": dash.info.get("notices", [])}


def record_shares(d: Deployment, dash: Dashboard, before: tuple[list[str], list[str]], by: str) -> None:
    """share-created for each audience the dashboard gained."""
    for kind, key, old in (("group", "share_groups", before[0]), ("user", "share_users", before[1])):
        for name in sorted(set(dash.info.get(key, [])) - set(old)):
            audit.record(d, "dashboards", "share-created", owner=dash.owner, slug=dash.slug, by=by,
                         audience_kind=kind, audience=name)


def refuse_share(d: Deployment, owner: str, slug: str, groups: list[str], users: list[str], by: str,
                 exc: Exception) -> None:
    audit.record(d, "dashboards", "share-refused", owner=owner, slug=slug, by=by, groups=groups, users=users,
                 reason=str(exc))


class ListApi(ApiBase):
    body_kind = "publish"

    @web.authenticated
    async def get(self) -> None:
        d = deployment()
        groups = await self.groups_of(self.username)
        mine = self.get_query_argument("mine", "") == "1"
        out = [describe(d, x, x.latest, self.prefix) for x in self.store.all() if x.latest and (
            x.owner == self.username or (not mine and policy.may_view_dashboard(d, x, self.username, groups)))]
        self.finish({"dashboards": out})

    @web.authenticated
    async def post(self) -> None:
        """Publish: store a snapshot, (re)start the named server, share it as the publisher."""
        if self.current_user.get("kind", "user") != "user":
            return self.json_error(403, "only users publish dashboards")
        owner = self.username
        data = self.body()
        d = deployment()
        slug, groups, users = "", [], []
        try:
            title = str(data.get("title") or "").strip()
            slug = check_slug(data["slug"]) if data.get("slug") else slugify(title)
            groups, users = policy.parse_targets(d, list(data.get("share_with") or []))
            policy.check_share(d, owner, groups, users)
            claimed = data.get("lineage") or []
            run = data.get("run") if isinstance(data.get("run"), dict) else {}
            if not isinstance(claimed, list):
                raise ValueError("lineage must be a list of datasets")
            lineage = lineage_mod.establish(d, owner, slug, claimed, run.get("started"), run.get("finished"))
            lineage_mod.check_audience(d, lineage, groups, users)
            description = str(data.get("description") or "")
            limits.check_texts(d, title, description)
            files = {name: base64.b64decode(content, validate=True)
                     for name, content in dict(data.get("files") or {}).items()}
            # An unchanged republish adds no version (store.publish), so it is never over max_versions.
            current = self.store.get(owner, slug)
            latest = current.latest if current and current.active else None
            changed = latest is None or latest.meta["hash"] != content_hash(
                {str(check_relpath(n)): b for n, b in files.items()})
            limits.check_publish(d, self.store, owner, slug, files, new_version=changed)
        except limits.LimitExceeded as exc:
            return self.json_error(exc.status, str(exc))
        except policy.ShareRefused as exc:
            refuse_share(d, owner, slug, groups, users, owner, exc)
            return self.json_error(403, str(exc))
        except StoreError as exc:
            return self.json_error(400, str(exc))
        except (binascii.Error, TypeError, ValueError) as exc:
            return self.json_error(400, f"bad request: {exc}")
        # What the publisher's own run says (and the sites logged) refused above, before the
        # slower run the gallery makes itself, which the publisher cannot forge.
        try:
            trusted, trusted_error = await ioloop.IOLoop.current().run_in_executor(
                None, lineage_mod.trusted_run_reads, d, owner, slug, str(data.get("notebook") or ""), files)
        except StoreError as exc:
            return self.json_error(400, str(exc))
        lineage = lineage_mod.establish(d, owner, slug, claimed, run.get("started"), run.get("finished"),
                                        trusted=trusted)
        try:
            lineage_mod.check_audience(d, lineage, groups, users)
        except policy.ShareRefused as exc:
            refuse_share(d, owner, slug, groups, users, owner, exc)
            return self.json_error(403, str(exc))
        thumb, refused = self.checked_thumbnail(owner, slug, data.get("thumbnail"))
        before = self.store.get(owner, slug)
        shared_before = ((before.info.get("share_groups", []), before.info.get("share_users", []))
                         if before and before.active else ([], []))
        try:
            version, created = self.store.publish(
                owner, slug, title=title, description=description,
                notebook=str(data.get("notebook") or ""), files=files, share_with=groups + users,
                environment=dict(data.get("environment") or {}), gid=_gid(d, owner),
                extra={"share_groups": groups, "share_users": users, "notices": []}, thumbnail=thumb,
                lineage=lineage)
        except StoreError as exc:
            return self.json_error(400, str(exc))
        dash = self.store.get(owner, slug)
        assert dash is not None
        if created:
            audit.record(d, "dashboards", "lineage", owner=owner, slug=slug, version=version.version,
                         datasets=[{k: ds.get(k) for k in ("site", "entry", "path", "policy", "sources")}
                                   for ds in lineage], trusted_run_error=trusted_error)
        record_shares(d, dash, shared_before, owner)
        try:
            await self.servers.deploy(d, dash, restart=created)
        except HubError as exc:
            status = 403 if exc.status == 403 else 502
            return self.json_error(status, f"stored as v{version.version}, but the hub refused: {exc}")
        self.set_status(201 if created else 200)
        self.finish({**describe(d, dash, version, self.prefix), "created": created,
                     **({"thumbnail_refused": refused} if refused and created else {})})

    @staticmethod
    def checked_thumbnail(owner: str, slug: str, sent: Any) -> tuple[bytes | None, str | None]:
        """The client's thumbnail if it is a sane PNG; a bad one costs the picture, not the publish."""
        if not sent:
            return None, None
        try:
            if not isinstance(sent, str):
                raise thumbnail.NotAThumbnail("not base64 text")
            if len(sent) > (thumbnail.MAX_ACCEPTED + 2) // 3 * 4:
                raise thumbnail.NotAThumbnail(f"more than {thumbnail.MAX_ACCEPTED} bytes")
            try:
                raw = base64.b64decode(sent, validate=True)
            except binascii.Error:
                raise thumbnail.NotAThumbnail("not base64") from None
            return thumbnail.check_png(raw), None
        except thumbnail.NotAThumbnail as exc:
            log.warning("thumbnail of %s/%s refused: %s", owner, slug, exc)
            return None, f"refused by the gallery: {exc}"


class DashboardApi(ApiBase):
    @web.authenticated
    async def delete(self, owner: str, slug: str, number: str | None = None) -> None:
        """Unpublish (or delete one version). Shares go first, so access ends even
        before the server is stopped; the token cache of the server is seconds."""
        if owner != self.username and not self.current_user.get("admin"):
            return self.json_error(403, "only the author (or an admin) may unpublish")
        try:
            dash = self.store.get(owner, slug)
        except StoreError as exc:
            return self.json_error(400, str(exc))
        if dash is None:
            return self.json_error(404, f"no dashboard {owner}/{slug}")
        async with self.servers.as_publisher(owner) as token:
            if number is not None:
                self.store.delete_version(owner, slug, int(number))
                dash = self.store.get(owner, slug)
                assert dash is not None
                if dash.versions:
                    await self.servers.stop(owner, dash.server, token)
                    return self.finish({"deleted_version": int(number), "versions": [v.version for v in dash.versions]})
            await self.hub.unshare_all(owner, dash.server, token)
            self.store.unpublish(owner, slug)
        # Access ends with the shares (the server re-checks tokens every token_cache_seconds
        # and then answers 403). The server itself stops a little later, which also closes
        # open Bokeh websockets; stopped at once, its URL would fall through to the
        # owner's lab (404) and a reviewer would not be told plainly that access ended.
        d = deployment()
        delay = d.hub.token_cache_seconds + 5
        ioloop.IOLoop.current().call_later(delay, self.servers.remove_unless_republished, self.store, owner,
                                           dash.server, d)
        self.finish({"unpublished": f"{owner}/{slug}", "server_stops_in": delay})


class SharesApi(ApiBase):
    """PUT {"share_with": [...]}: who a published dashboard is shared with, checked as at publish
    (the deployment's share_with and every dataset its versions read)."""

    @web.authenticated
    async def put(self, owner: str, slug: str) -> None:
        if owner != self.username:
            return self.json_error(403, "only the author changes who a dashboard is shared with")
        d = deployment()
        try:
            dash = self.store.get(owner, slug)
        except StoreError as exc:
            return self.json_error(400, str(exc))
        if dash is None or not dash.active or dash.latest is None:
            return self.json_error(404, f"no dashboard {owner}/{slug}")
        groups: list[str] = []
        users: list[str] = []
        try:
            groups, users = policy.parse_targets(d, list(self.body().get("share_with") or []))
            policy.check_share(d, owner, groups, users)
            lineage_mod.check_audience(d, lineage_mod.current(d, lineage_mod.dashboard_lineage(dash)),
                                       groups, users)
        except policy.ShareRefused as exc:
            refuse_share(d, owner, slug, groups, users, owner, exc)
            return self.json_error(403, str(exc))
        before = (dash.info.get("share_groups", []), dash.info.get("share_users", []))
        dash = self.store.update_info(owner, slug, share_groups=groups, share_users=users,
                                      share_with=groups + users)
        try:
            async with self.servers.as_publisher(owner) as token:
                await self.servers.sync_shares(dash, token)
        except HubError as exc:
            return self.json_error(403 if exc.status == 403 else 502, f"the hub refused: {exc}")
        record_shares(d, dash, before, owner)
        self.finish(describe(d, dash, dash.latest, self.prefix))


class LimitsApi(ApiBase):
    """The limits and the caller's use of them: `lunarhub publish` checks before it uploads."""

    @web.authenticated
    async def get(self) -> None:
        self.finish(limits.as_dict(deployment(), self.store, self.username))


class CommentsApi(ApiBase):
    body_kind = "comment"

    async def _dash(self, owner: str, slug: str, number: str) -> None:
        try:
            dash = self.store.get(owner, slug)
        except StoreError:
            dash = None
        if not await self.visible(dash) or dash is None or not dash.version(int(number)):
            raise web.HTTPError(404, "no such dashboard version, or it is not shared with you")

    @web.authenticated
    async def get(self, owner: str, slug: str, number: str) -> None:
        await self._dash(owner, slug, number)
        self.finish({"comments": self.comments.list(owner, slug, int(number))})

    @web.authenticated
    async def post(self, owner: str, slug: str, number: str) -> None:
        await self._dash(owner, slug, number)
        try:
            text = str(self.body().get("text", ""))
            limits.check_comment(deployment(), text)
            c = self.comments.add(owner, slug, int(number), self.username, text)
        except ValueError as exc:
            return self.json_error(400, str(exc))
        self.set_status(201)
        self.finish(c)


def _gid(d: Deployment, owner: str) -> int | None:
    """The publisher's own group (a project: its account's), which the store's files keep."""
    if d.hub.isolation != "system-users" or os.geteuid() != 0:
        return None
    from lunarhub.platform import accounts

    project = d.project_of(owner)
    if project is not None:
        # Never a system account named after the hub user: the project's is lh-project-<name>.
        return accounts.ensure_project_account(d, project).pw_gid
    try:
        return pwd.getpwnam(owner).pw_gid
    except KeyError:
        return accounts.ensure_system_user(d, owner).pw_gid
