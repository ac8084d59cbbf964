"""The gallery's browser pages (hub OAuth login): the gallery, a page per dashboard version with
its comments, a version's thumbnail, and /open/... which starts a culled dashboard server.

The handlers gather plain values; the Jinja2 templates in templates/ lay them out, with
autoescaping on, so nothing a publisher or commenter wrote reaches a page unescaped.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import jinja2
from markupsafe import Markup
from tornado import web

from lunarhub.config import Deployment
from lunarhub.config.languages import SWITCHER
from lunarhub.dashboards.gallery import i18n, limits, policy
from lunarhub.dashboards.gallery.base import Base, deployment
from lunarhub.dashboards.publishing import thumbnail
from lunarhub.dashboards.store import Dashboard, StoreError, Version, server_name
from lunarhub.platform import audit
from lunarhub.platform.spawner import log_tail

LANGUAGES = SWITCHER  # the language switcher's (code, name) pairs, as render_page gives them


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("lunarhub.dashboards.gallery", "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True)
TEMPLATES.filters["when"] = when


class Page(Base):
    templates = TEMPLATES
    texts = i18n.TEXTS

    def message(self, lang: str, title: str, message: str, status: int, css_class: str = "",
                refresh_url: str = "") -> None:
        self.render_page("message.html", lang, title, status, message=message, css_class=css_class,
                         refresh_url=refresh_url)

    def not_found(self, lang: str) -> None:
        self.message(lang, i18n.t("gallery", lang), i18n.t("not_found", lang), 404)

    def url(self, kind: str, v: Version) -> str:
        return f"{self.prefix}{kind}/{v.owner}/{v.slug}/v{v.version}"

    def summary(self, d: Deployment, dash: Dashboard, v: Version, title: str, lang: str) -> dict[str, Any]:
        """What the gallery card and the version page both show of a version."""
        return {
            "owner": dash.owner, "slug": dash.slug, "title": title, "version": v.version,
            "author": author(d, dash.owner, lang), "institute": institute(d, dash.owner, lang),
            "published": v.published, "open_url": self.url("open", v), "details_url": self.url("d", v),
            "thumb_src": f"{self.url('thumb', v)}.png" if v.thumbnail is not None else None,
            "initial": title.strip()[:1].upper(), "width": thumbnail.WIDTH, "height": thumbnail.HEIGHT,
        }


def text_in(value: Any, lang: str) -> str:
    """A catalog text: a {en, ru, zh} mapping, a list (citations), or a plain string."""
    if isinstance(value, dict):
        return str(value.get(lang) or value.get("en") or "")
    if isinstance(value, list):
        return " ".join(str(x) for x in value)
    return "" if value is None else str(value)


def data_used(v: Version, lang: str) -> list[dict[str, Any]]:
    """The version's lineage as the page lists it (what was sealed at publish)."""
    out = []
    for ds in v.meta.get("lineage") or []:
        ver = ds.get("version") or {}
        checksum = ver.get("sha256") or ver.get("etag") or ""
        if ver.get("size") is not None:
            checksum = f"{checksum} ({ver['size']} B)".strip()
        out.append({"entry": ds.get("entry") or ds.get("path"), "title": text_in(ds.get("title"), lang),
                    "path": ds.get("path"), "site": ds.get("site"), "policy": ds.get("policy"),
                    "embargo_until": ds.get("embargo_until"), "checksum": checksum,
                    "citation": text_in(ds.get("citation"), lang), "license": text_in(ds.get("license"), lang),
                    "sources": ", ".join(ds.get("sources") or [])})
    return out


def notices(dash: Dashboard, username: str) -> list[dict[str, Any]]:
    """Why shares were revoked: to the author only (it names the audience and the data)."""
    if username != dash.owner:
        return []
    return [n for n in dash.info.get("notices", []) if n.get("kind") == "share-revoked"]


def institute(d: Deployment, owner: str, lang: str) -> str:
    """The author's institute; a joint project's: its members' institutes, each once."""
    names: list[str] = []
    for g in policy.publisher_groups(d, owner):
        inst = d.institutions.get(d.groups[g].institution or "")
        name = (getattr(inst.name, lang) or inst.name.en) if inst else ""
        if name and name not in names:
            names.append(name)
        if names and d.project_of(owner) is None:
            break  # a user counts with their first institute, as the hub's pages show them
    return " · ".join(names)


def author(d: Deployment, owner: str, lang: str = "en") -> str:
    """"Full Name (user)", or for a joint project's hub user "Project <name> — <description>"
    in the reader's language (as members' hub home names it)."""
    project = d.project_of(owner)
    if project is not None:
        desc = d.projects[project].description
        text = (getattr(desc, lang, None) or desc.en) if desc else ""
        return f"{i18n.t('project', lang)} {project}" + (f" — {text}" if text else "")
    user = d.users.get(owner)
    return f"{user.full_name} ({owner})" if user and user.full_name else owner


class GalleryHandler(Page):
    @web.authenticated
    async def get(self) -> None:
        lang = self.lang()
        d = deployment()
        groups = await self.groups_of(self.username)
        dashes = [x for x in self.store.all()
                  if x.owner == self.username or policy.may_view_dashboard(d, x, self.username, groups)]
        dashes.sort(key=lambda x: x.latest.published if x.latest else 0, reverse=True)
        cards = []
        for dash in dashes:
            v = dash.latest
            assert v is not None
            cards.append({
                **self.summary(d, dash, v, dash.title, lang),
                "description": dash.info.get("description", ""),
                "others": [(self.url("d", o), o.version) for o in reversed(dash.versions[:-1])],
                "notices": notices(dash, self.username),
            })
        self.render_page("gallery.html", lang, i18n.t("gallery", lang), cards=cards)


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
            return self.not_found(lang)
        dash, v = found
        env = v.meta.get("environment", {})
        version = {
            **self.summary(deployment(), dash, v, v.meta.get("title", dash.title), lang),
            "description": v.meta.get("description", ""), "hash": v.meta["hash"],
            "shared": ", ".join(dash.info.get("share_groups", []) + dash.info.get("share_users", [])),
            "python": env.get("python", "?"),
            "packages": ", ".join(f"{k} {val}" for k, val in sorted(env.get("packages", {}).items())),
            "others": [(self.url("d", o), o.version) for o in dash.versions if o is not v],
            "data_used": data_used(v, lang), "notices": notices(dash, self.username),
        }
        self.render_page("version.html", lang, dash.title, v=version,
                         comments=self.comments.list(owner, slug, v.version),
                         xsrf_form=Markup(self.xsrf_form_html()))  # tornado escapes the token itself


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
    body_kind = "comment"  # the largest body GalleryApplication lets through (limits.py)

    @web.authenticated
    async def post(self, owner: str, slug: str, number: str) -> None:
        found = await self.lookup(owner, slug, number)
        if not found:
            raise web.HTTPError(404)
        try:
            text = self.get_body_argument("text", "")
            limits.check_comment(deployment(), text)
            self.comments.add(owner, slug, int(number), self.username, text)
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
            return self.not_found(lang)
        server = server_name(slug)
        audit.record(deployment(), "dashboards", "opened", viewer=self.username, owner=owner, slug=slug,
                     version=int(number))
        state = await self.servers.open(owner, server, retry=bool(self.get_query_argument("retry", "")))
        if state == "ready":
            # The publisher's own origin (hub.subdomain_host): its page cannot act as the reviewer.
            return self.redirect(f"{deployment().server_url(quote(owner), quote(server))}v{number}")
        if state == "failed":
            return self.failed(lang, dash)
        self.message(lang, i18n.t("starting", lang), i18n.t("starting_note", lang), 202, css_class="starting",
                     refresh_url=f"{self.prefix}open/{owner}/{slug}/v{number}")

    def failed(self, lang: str, dash: Dashboard) -> None:
        # Only the author sees the server's log: it may show their code and data paths.
        log = log_tail(self.servers.log_of(dash.owner, server_name(dash.slug)), 30) \
            if self.username == dash.owner else None
        self.render_page("failed.html", lang, dash.title, 503, log=log)
