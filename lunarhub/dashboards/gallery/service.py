"""The dashboards gallery: a hub-managed tornado service at /services/dashboards/.

Browser pages (hub OAuth login): the gallery, a page per dashboard version with
its comments, and /open/... which starts a culled dashboard server and shows a
'starting…' page. JSON API (hub tokens, used by `lunarhub publish`): publish,
unpublish, delete a version, list, comments. It runs as root because it writes
the store; it never runs notebook code (that happens in the publisher's own
servers, as the publisher).
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import logging
import os
import pwd
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import ioloop, web

from lunarhub import config
from lunarhub.config import Deployment, roster, secrets
from lunarhub.dashboards.gallery import policy
from lunarhub.dashboards.gallery.comments import Comments
from lunarhub.dashboards.gallery.hubclient import Hub, HubError
from lunarhub.dashboards.gallery.i18n import pick, t
from lunarhub.dashboards.publishing import thumbnail
from lunarhub.dashboards.server.shared_static import FILE_RE, directories
from lunarhub.dashboards.store import Dashboard, Store, StoreError, Version, check_slug, server_name, slugify
from lunarhub.platform.spawner import log_tail

log = logging.getLogger("lunarhub.dashboards")
# A start the gallery asked for and that is neither running nor pending any more
# within this window failed: show the failure instead of starting again and again.
FAILED_WINDOW = 600


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
    def hub(self) -> Hub:
        return self.settings["hub"]

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
        return policy.may_view(deployment(), dash.info, self.username, await self.groups_of(self.username))

    def json_error(self, status: int, message: str) -> None:
        self.set_status(status)
        self.finish({"error": message})


# ---------------------------------------------------------------- pages

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;color:#222}
header{display:flex;justify-content:space-between;align-items:baseline}
.card{border:1px solid #ccc;border-radius:6px;padding:.8em 1em;margin:.8em 0}
.meta{color:#555;font-size:.9em}.langs a{margin-left:.5em}pre{background:#f4f4f4;padding:.6em;overflow:auto}
textarea{width:100%;min-height:5em}.btn{display:inline-block;padding:.3em .9em;border:1px solid #36c;
border-radius:4px;color:#36c;text-decoration:none}
.card.dashboard{display:flex;gap:1em;align-items:flex-start}.card .body{flex:1;min-width:0}
.thumb{flex:none;width:240px;height:150px;object-fit:contain;background:#fff;border:1px solid #ddd;border-radius:4px}
.version .thumb{width:480px;height:300px;max-width:100%}
.thumb.placeholder{display:flex;align-items:center;justify-content:center;background:#eef1f6;color:#8a94a6;
font-size:3.5em;font-weight:600}"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


class Page(Base):
    def page(self, lang: str, title: str, body: str, status: int = 200, head: str = "") -> None:
        langs = " ".join(f'<a href="?{urlencode({"lang": code})}" hreflang="{code}">{label}</a>'
                         for code, label in (("en", "English"), ("ru", "Русский"), ("zh", "中文")))
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(f"""<!doctype html><html lang="{lang}"><head><meta charset="utf-8">{head}
<title>{esc(title)}</title><style>{CSS}</style></head><body>
<header><h1>{esc(title)}</h1><nav class="langs">{langs}
<span class="meta">· {esc(self.username)} · <a href="/hub/logout">logout</a></span></nav></header>
{body}</body></html>""")

    def institute(self, d: Deployment, owner: str, lang: str) -> str:
        user = d.users.get(owner)
        for g in user.groups if user else []:
            inst = d.institutions.get(d.groups[g].institution or "")
            if inst:
                return getattr(inst.name, lang) or inst.name.en
        return ""

    def author(self, d: Deployment, owner: str) -> str:
        user = d.users.get(owner)
        return f"{user.full_name} ({owner})" if user and user.full_name else owner

    def url(self, kind: str, v: Version) -> str:
        return f"{self.prefix}{kind}/{v.owner}/{v.slug}/v{v.version}"

    def thumb(self, v: Version, title: str, lang: str) -> str:
        if v.thumbnail is None:
            # Nothing drawable was published: a neutral tile with the title's first letter.
            return f'<div class="thumb placeholder" aria-hidden="true">{esc(title.strip()[:1].upper())}</div>'
        return (f'<img class="thumb" src="{self.url("thumb", v)}.png" alt="{esc(t("thumb_alt", lang))}: {esc(title)}"'
                f' width="{thumbnail.WIDTH}" height="{thumbnail.HEIGHT}" loading="lazy">')


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


class GalleryHandler(Page):
    @web.authenticated
    async def get(self) -> None:
        lang = self.lang()
        d = deployment()
        groups = await self.groups_of(self.username)
        dashes = [x for x in self.store.all()
                  if x.owner == self.username or policy.may_view(d, x.info, self.username, groups)]
        dashes.sort(key=lambda x: x.latest.published if x.latest else 0, reverse=True)
        cards = []
        for dash in dashes:
            v = dash.latest
            assert v is not None
            others = " ".join(f'<a href="{self.url("d", o)}">v{o.version}</a>' for o in reversed(dash.versions[:-1]))
            cards.append(f"""<div class="card dashboard" data-owner="{esc(dash.owner)}" data-slug="{esc(dash.slug)}">
{self.thumb(v, dash.title, lang)}<div class="body">
<h2>{esc(dash.title)}</h2><p>{esc(dash.info.get("description", ""))}</p>
<p class="meta">{t("author", lang)}: {esc(self.author(d, dash.owner))} · {t("institute", lang)}:
{esc(self.institute(d, dash.owner, lang))} · {t("version", lang)}: v{v.version} ({t("latest", lang)}) ·
{t("date", lang)}: {when(v.published)}</p>
<a class="btn open" href="{self.url("open", v)}">{t("open", lang)}</a>
<a href="{self.url("d", v)}">{t("details", lang)}</a>
{f'<p class="meta">{t("older", lang)}: {others}</p>' if others else ""}</div></div>""")
        body = "\n".join(cards) or f'<p class="empty">{t("empty", lang)}</p>'
        self.page(lang, t("gallery", lang), body)


class VersionHandler(Page):
    """One version: metadata, environment, comments (visible to the author and viewers)."""

    async def lookup(self, owner: str, slug: str, number: str) -> tuple[Dashboard, Version] | None:
        try:
            dash = self.store.get(owner, slug)
        except StoreError:
            return None
        if not await self.visible(dash):
            return None
        assert dash is not None
        v = dash.version(int(number))
        return (dash, v) if v else None

    @web.authenticated
    async def get(self, owner: str, slug: str, number: str) -> None:
        lang = self.lang()
        found = await self.lookup(owner, slug, number)
        if not found:
            return self.page(lang, t("gallery", lang), f'<p>{t("not_found", lang)}</p>', status=404)
        dash, v = found
        d = deployment()
        comments = "".join(
            f'<div class="card comment"><p class="meta">{esc(c["author"])} · {when(c["created"])}</p>'
            f'<p>{esc(c["text"])}</p></div>' for c in self.comments.list(owner, slug, v.version)
        ) or f'<p>{t("no_comments", lang)}</p>'
        env = v.meta.get("environment", {})
        pkgs = ", ".join(f"{k} {val}" for k, val in sorted(env.get("packages", {}).items()))
        others = " ".join(f'<a href="{self.url("d", o)}">v{o.version}</a>' for o in dash.versions if o is not v)
        shared = ", ".join(dash.info.get("share_groups", []) + dash.info.get("share_users", []))
        body = f"""<p><a href="{self.prefix}">← {t("back", lang)}</a></p>
<h2>{esc(v.meta.get("title", dash.title))} — v{v.version}</h2>
<div class="version">{self.thumb(v, v.meta.get("title", dash.title), lang)}</div>
<p>{esc(v.meta.get("description", ""))}</p>
<p class="meta">{t("author", lang)}: {esc(self.author(d, owner))} · {t("institute", lang)}:
{esc(self.institute(d, owner, lang))} · {t("date", lang)}: {when(v.published)} · {t("shared_with", lang)}: {esc(shared)}</p>
<p class="meta">{t("hash", lang)}: <code>{esc(v.meta["hash"])}</code><br>{t("environment", lang)}:
Python {esc(env.get("python", "?"))}; {esc(pkgs)}</p>
<p><a class="btn open" href="{self.url("open", v)}">{t("open", lang)}</a></p>
{f'<p class="meta">{t("older", lang)}: {others}</p>' if others else ""}
<h3>{t("comments", lang)}</h3>{comments}
<form method="post" action="{self.url("d", v)}/comments">{self.xsrf_form_html()}
<textarea name="text" required maxlength="5000"></textarea><br><button type="submit">{t("add_comment", lang)}</button></form>"""
        self.page(lang, dash.title, body)


class ThumbnailHandler(VersionHandler):
    """A version's thumbnail, to exactly those who may see the version page."""

    @web.authenticated
    async def get(self, owner: str, slug: str, number: str) -> None:
        found = await self.lookup(owner, slug, number)
        path = found[1].thumbnail if found else None
        if path is None:
            raise web.HTTPError(404)
        self.set_header("Content-Type", "image/png")
        self.set_header("X-Content-Type-Options", "nosniff")
        # v<N> never changes and its number is never reused; private: access is per user.
        self.set_header("Cache-Control", "private, max-age=86400, immutable")
        self.finish(path.read_bytes())


class CommentFormHandler(VersionHandler):
    @web.authenticated
    async def post(self, owner: str, slug: str, number: str) -> None:
        found = await self.lookup(owner, slug, number)
        if not found:
            raise web.HTTPError(404)
        try:
            self.comments.add(owner, slug, int(number), self.username, self.get_body_argument("text", ""))
        except ValueError as exc:
            raise web.HTTPError(400, str(exc)) from None
        self.redirect(f"{self.prefix}d/{owner}/{slug}/v{number}")


class OpenHandler(Page):
    """Redirect to a running dashboard; start a stopped one and show 'starting…'."""

    @web.authenticated
    async def get(self, owner: str, slug: str, number: str) -> None:
        lang = self.lang()
        try:
            dash = self.store.get(owner, slug)
        except StoreError:
            dash = None
        if not await self.visible(dash) or dash is None or not dash.version(int(number)):
            return self.page(lang, t("gallery", lang), f'<p>{t("not_found", lang)}</p>', status=404)
        server = server_name(slug)
        key = (owner, server)
        attempts: dict[tuple[str, str], float] = self.settings["attempts"]
        srv = await self.hub.server(owner, server)
        if srv and srv.get("ready"):
            attempts.pop(key, None)
            return self.redirect(f"/user/{quote(owner)}/{quote(server)}/v{number}")
        pending = bool(srv and srv.get("pending"))
        tried = attempts.get(key)
        if not pending and tried and time.time() - tried < FAILED_WINDOW and not self.get_query_argument("retry", ""):
            return self.failed(lang, dash, number)
        if not pending:
            attempts[key] = time.time()
            try:
                await self.hub.start(owner, server)
            except HubError as exc:
                log.warning("starting %s/%s failed: %s", owner, server, exc)
                return self.failed(lang, dash, number)
        again = f"{self.prefix}open/{owner}/{slug}/v{number}"
        self.page(lang, t("starting", lang), f'<p class="starting">{t("starting_note", lang)}</p>', status=202,
                  head=f'<meta http-equiv="refresh" content="2;url={esc(again)}">')

    def failed(self, lang: str, dash: Dashboard, number: str) -> None:
        body = f'<p class="failed">{t("failed", lang)}</p>'
        if self.username == dash.owner:
            logs = Path(self.settings["log_dir"]) / f"{dash.owner}--{server_name(dash.slug)}.log"
            body += f'<h3>{t("log_tail", lang)}</h3><pre class="log">{esc(log_tail(logs, 30))}</pre>'
        else:
            body += f"<p>{t('failed_viewer', lang)}</p>"
        body += f'<p><a class="btn" href="?retry=1">{t("retry", lang)}</a></p>'
        self.page(lang, dash.title, body, status=503)


# ---------------------------------------------------------------- JSON API


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


def describe(dash: Dashboard, v: Version, prefix: str) -> dict[str, Any]:
    return {"owner": dash.owner, "slug": dash.slug, "title": dash.title, "version": v.version,
            "hash": v.meta["hash"], "published": v.published, "server": dash.server,
            "url": f"/user/{dash.owner}/{dash.server}/v{v.version}",
            "gallery_url": f"{prefix}d/{dash.owner}/{dash.slug}/v{v.version}",
            "versions": [x.version for x in dash.versions], "thumbnail": v.thumbnail is not None,
            "share_groups": dash.info.get("share_groups", []), "share_users": dash.info.get("share_users", [])}


class ListApi(ApiBase):
    @web.authenticated
    async def get(self) -> None:
        d = deployment()
        groups = await self.groups_of(self.username)
        mine = self.get_query_argument("mine", "") == "1"
        out = [describe(x, x.latest, self.prefix) for x in self.store.all() if x.latest and (
            x.owner == self.username or (not mine and policy.may_view(d, x.info, self.username, groups)))]
        self.finish({"dashboards": out})

    @web.authenticated
    async def post(self) -> None:
        """Publish: store a snapshot, (re)start the named server, share it as the publisher."""
        if self.current_user.get("kind", "user") != "user":
            return self.json_error(403, "only users publish dashboards")
        owner = self.username
        data = self.body()
        d = deployment()
        try:
            title = str(data.get("title") or "").strip()
            slug = check_slug(data["slug"]) if data.get("slug") else slugify(title)
            groups, users = policy.parse_targets(d, list(data.get("share_with") or []))
            policy.check_share(d, owner, groups, users)
            files = {name: base64.b64decode(content, validate=True)
                     for name, content in dict(data.get("files") or {}).items()}
        except (policy.ShareRefused, StoreError) as exc:
            return self.json_error(403 if isinstance(exc, policy.ShareRefused) else 400, str(exc))
        except (binascii.Error, TypeError, ValueError) as exc:
            return self.json_error(400, f"bad files: {exc}")
        thumb, refused = self.checked_thumbnail(owner, slug, data.get("thumbnail"))
        try:
            version, created = self.store.publish(
                owner, slug, title=title, description=str(data.get("description") or ""),
                notebook=str(data.get("notebook") or ""), files=files, share_with=groups + users,
                environment=dict(data.get("environment") or {}), gid=_gid(d, owner),
                extra={"share_groups": groups, "share_users": users}, thumbnail=thumb)
        except StoreError as exc:
            return self.json_error(400, str(exc))
        dash = self.store.get(owner, slug)
        assert dash is not None
        try:
            await self.deploy(d, dash, restart=created)
        except HubError as exc:
            status = 403 if exc.status == 403 else 502
            return self.json_error(status, f"stored as v{version.version}, but the hub refused: {exc}")
        self.set_status(201 if created else 200)
        self.finish({**describe(dash, version, self.prefix), "created": created,
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

    async def deploy(self, d: Deployment, dash: Dashboard, restart: bool) -> None:
        owner, server = dash.owner, dash.server
        token, token_id = await self.hub.publisher_token(owner)
        try:
            srv = await self.hub.server(owner, server)
            if srv and (srv.get("ready") or srv.get("pending")) and restart:
                # panel serve reads its list of versions at start: restart to add the new one.
                await self.hub.stop(owner, server, token=token)
                await self.hub.wait(owner, server, ready=False, timeout=60)
                srv = None
            if not srv or not (srv.get("ready") or srv.get("pending")):
                self.settings["attempts"][(owner, server)] = time.time()
                await self.hub.start(owner, server, token=token)
            # Shares are made with the publisher's own token: the hub checks the publisher's rights.
            current = {(("group", s["group"]["name"]) if s.get("group") else ("user", s["user"]["name"]))
                       for s in await self.hub.shares(owner, server, token)}
            wanted = {("group", g) for g in dash.info["share_groups"]} | {("user", u) for u in dash.info["share_users"]}
            for kind, name in sorted(wanted - current):
                await self.hub.share(owner, server, token, kind, name)
            for kind, name in sorted(current - wanted):
                await self.hub.unshare(owner, server, token, kind, name)
            ready = await self.hub.wait(owner, server, ready=True, timeout=d.hub.start_timeout + 15)
            if ready is None:
                logs = Path(self.settings["log_dir"]) / f"{owner}--{server}.log"
                raise HubError(500, f"the dashboard server did not start. Last lines of its log:\n{log_tail(logs)}")
            self.settings["attempts"].pop((owner, server), None)  # it started: no failure to report
        finally:
            await self.hub.drop_token(owner, token_id)


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
        token, token_id = await self.hub.publisher_token(owner)
        try:
            if number is not None:
                self.store.delete_version(owner, slug, int(number))
                dash = self.store.get(owner, slug)
                assert dash is not None
                if dash.versions:
                    # Stopped, not restarted: the next open starts it without the deleted version.
                    self.settings["attempts"].pop((owner, dash.server), None)
                    await self.hub.stop(owner, dash.server, token=token)
                    return self.finish({"deleted_version": int(number), "versions": [v.version for v in dash.versions]})
            await self.hub.unshare_all(owner, dash.server, token)
            self.store.unpublish(owner, slug)
        finally:
            await self.hub.drop_token(owner, token_id)
        # Access ends with the shares (the server re-checks tokens every token_cache_seconds
        # and then answers 403). The server itself stops a little later, which also closes
        # open Bokeh websockets; stopped at once, its URL would fall through to the
        # owner's lab (404) and a reviewer would not be told plainly that access ended.
        delay = deployment().hub.token_cache_seconds + 5
        ioloop.IOLoop.current().call_later(delay, self._remove_server, owner, dash.server)
        self.finish({"unpublished": f"{owner}/{slug}", "server_stops_in": delay})

    async def _remove_server(self, owner: str, server: str) -> None:
        store = self.store
        slug = server.removeprefix("dash-")
        dash = store.get(owner, slug)
        if dash is not None and dash.active:
            return  # republished meanwhile: keep it
        self.settings["attempts"].pop((owner, server), None)
        try:
            await self.hub.stop(owner, server, remove=True)
        except HubError as exc:
            log.warning("removing %s/%s after unpublish: %s", owner, server, exc)


class CommentsApi(ApiBase):
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
            c = self.comments.add(owner, slug, int(number), self.username, str(self.body().get("text", "")))
        except ValueError as exc:
            return self.json_error(400, str(exc))
        self.set_status(201)
        self.finish(c)


def _gid(d: Deployment, owner: str) -> int | None:
    """The publisher's own group: their dashboard server (running as them) reads the snapshot."""
    if d.hub.isolation != "system-users" or os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(owner).pw_gid
    except KeyError:
        from lunarhub.platform import accounts

        return accounts.ensure_system_user(d, owner).pw_gid


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
    return web.Application(
        routes, store=store, comments=Comments(store.root / "comments.sqlite"), hub=Hub(), prefix=p,
        attempts={}, log_dir=str(d.state_path / "logs" / "servers"),
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
