"""The course pages (tornado, hub OAuth). Each handler checks who asks (lunarhub.courses.records:
a course's instructors and admins only; anybody else gets 403, and a course one does not teach
looks exactly like one that does not exist) and runs the work of lunarhub.courses.ops in a thread.

Runs as root (a hub-managed service, like the gallery): it writes the roster overlay, the secrets'
password hashes and the system accounts, as `lunarhub users` does. It never opens a path in a home
as root (ops does that as the student).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import jinja2
from jupyterhub.services.auth import HubOAuthCallbackHandler
from markupsafe import Markup
from tornado import ioloop, web

from lunarhub import config
from lunarhub.config import ConfigError, Deployment, secrets
from lunarhub.courses import material, ops, records
from lunarhub.courses.records import LANGS, Course, CourseError, Forbidden
from lunarhub.courses.service import PREFIX, i18n
from lunarhub.platform import hub_service
from lunarhub.platform.hub_service import ServicePage, deployment

log = logging.getLogger("lunarhub.courses")
TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("lunarhub.courses.service", "templates"),
                               autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True)
NAME = r"([a-z][a-z0-9-]{1,30})"
MAX_ROSTER = 1_000_000


def base_deployment() -> Deployment:
    return config.load()


class Page(ServicePage):
    templates = TEMPLATES
    texts = i18n.TEXTS

    def show(self, template: str, title: str, status: int = 200, **values: Any) -> None:
        """A page in the reader's language, with the form's xsrf field, never cached."""
        self.set_header("Cache-Control", "no-store")  # passwords and rosters: never from a cache
        self.render_page(template, self.lang(), title, status, xsrf_form=Markup(self.xsrf_form_html()), **values)

    def message(self, text: str, status: int = 200, course: str = "", problems: list[str] | None = None) -> None:
        self.show("message.html", i18n.t("courses", self.lang()), status, text=text, course=course,
                  problems=problems or [])

    def forbidden(self) -> None:
        self.message(i18n.t("forbidden", self.lang()), 403)

    def course_or_403(self, d: Deployment, name: str) -> Course | None:
        try:
            return records.require(d, name, self.username)
        except Forbidden:
            self.message(i18n.t("no_course", self.lang()), 403)
            return None

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await ioloop.IOLoop.current().run_in_executor(None, fn, *args)

    async def refused(self, course: str, fn: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
        """Run ``fn``; on a refusal show what is wrong (by line for a roster) with status 400."""
        try:
            return True, await self.in_thread(fn, *args)
        except ConfigError as exc:
            self.message(i18n.t("refused", self.lang()), 400, course, [f"{w}: {why}" for w, why in exc.problems])
        except Forbidden:
            self.message(i18n.t("no_course", self.lang()), 403)
        except CourseError as exc:
            self.message(i18n.t("refused", self.lang()), 400, course, [str(exc)])
        return False, None


class ListHandler(Page):
    @web.authenticated
    async def get(self) -> None:
        d = deployment()
        if not records.may_create(d, self.username):
            return self.forbidden()
        lang = self.lang()
        courses = [{"name": c.name, "title": c.title.get(lang) or c.name, "students": len(c.students),
                    "ended": c.ended, "url": f"{self.prefix}c/{c.name}"}
                   for c in records.visible_to(d, self.username)]
        self.show("list.html", i18n.t("courses", lang), courses=courses, langs=LANGS)


class NewHandler(Page):
    @web.authenticated
    async def post(self) -> None:
        d = deployment()
        if not records.may_create(d, self.username):
            return self.forbidden()
        name = self.get_body_argument("name", "").strip()
        title = {lang: self.get_body_argument(f"title_{lang}", "")[:200] for lang in LANGS}
        git_url = self.get_body_argument("git_url", "").strip()
        branch = self.get_body_argument("branch", "").strip() or material.BRANCH
        ok, _ = await self.refused("", ops.create_course, d, name, self.username, title, git_url, branch)
        if ok:
            self.redirect(f"{self.prefix}c/{name}")


class CourseHandler(Page):
    @web.authenticated
    async def get(self, name: str) -> None:
        d = deployment()
        course = self.course_or_403(d, name)
        if course is None:
            return
        lang = self.lang()
        await self.in_thread(ops.ensure_material, d, course)
        rows = await self.in_thread(ops.class_progress, d, course)
        notebooks = material.notebooks(d, course.name)
        batch = self.settings["batches"].get(name)
        self.show(
            "course.html", course.title.get(lang) or name, course=course, rows=rows, notebooks=notebooks,
            links={nb: material.pull_link(d, name, nb) for nb in notebooks},
            server_urls={s: d.server_url(s) + "lab" for s in course.students},
            batch=batch.to_json() if batch else None, notice=self.get_query_argument("notice", ""))


class ProgressApi(Page):
    """The same table as JSON (scripts, the CLI's tests, the page's refresh)."""

    @web.authenticated
    async def get(self, name: str) -> None:
        d = deployment()
        try:
            course = records.require(d, name, self.username)
        except Forbidden:
            raise web.HTTPError(403) from None
        rows = await self.in_thread(ops.class_progress, d, course)
        batch = self.settings["batches"].get(name)
        self.finish({"students": [r.to_json() for r in rows], "batch": batch.to_json() if batch else None})


class RosterHandler(Page):
    """POST: a CSV (textarea `csv` or file `file`), or one student (`username`, `full_name`)."""

    @web.authenticated
    async def post(self, name: str) -> None:
        d = deployment()
        if self.course_or_403(d, name) is None:
            return
        upload = self.request.files.get("file")
        if upload:
            text, source = upload[0]["body"][:MAX_ROSTER + 1].decode("utf-8", "replace"), upload[0]["filename"][:80]
        elif self.get_body_argument("username", ""):
            user = self.get_body_argument("username", "").strip()
            full = self.get_body_argument("full_name", "").strip().replace(",", " ")
            text, source = f"{user},{full}\n" if full else f"{user}\n", "the form"
        else:
            text, source = self.get_body_argument("csv", "")[:MAX_ROSTER + 1], "the roster"
        ok, result = await self.refused(name, ops.import_roster, base_deployment(), name, text, source, self.username)
        if ok:
            self.show("imported.html", i18n.t("courses", self.lang()), course=name, result=result)


class ActionHandler(Page):
    """POST c/<name>/<action>: remove, reset, material, end, start, stop."""

    @web.authenticated
    async def post(self, name: str, action: str) -> None:
        d = deployment()
        course = self.course_or_403(d, name)
        if course is None:
            return
        lang = self.lang()
        if action in ("start", "stop"):
            batches = self.settings["batches"]
            running = batches.get(name)
            if running is None or running.finished is not None:
                batch = ops.Batch(action, list(course.students))
                batches[name] = batch
                ioloop.IOLoop.current().run_in_executor(None, ops.run_batch, d, course, action, batch)
            return self.redirect(f"{self.prefix}c/{name}")
        student = self.get_body_argument("student", "")
        if action == "remove":
            ok, _ = await self.refused(name, ops.remove_student, base_deployment(), name, student, self.username)
            notice = f"{student}: {i18n.t('remove', lang)} ✓"
        elif action == "reset":
            nb = self.get_body_argument("notebook", "")
            ok, backup = await self.refused(name, ops.reset_notebook, base_deployment(), name, student, nb,
                                            self.username)
            notice = f"{student}, {nb}: " + (f"{i18n.t('reset_done', lang)} {backup}" if backup
                                             else i18n.t("reset_none", lang))
        elif action == "material":
            ok, changed = await self.refused(name, ops.update_material, d, course)
            notice = i18n.t("changed" if changed else "unchanged", lang)
        elif action == "end":
            ok, _ = await self.refused(name, ops.end_course, base_deployment(), name, self.username)
            notice = i18n.t("ended", lang)
        else:
            raise web.HTTPError(404)
        if ok:
            self.redirect(f"{self.prefix}c/{name}?{_q(notice=notice)}")


def _q(**kw: str) -> str:
    from urllib.parse import urlencode

    return urlencode(kw)


def make_app(d: Deployment, prefix: str) -> web.Application:
    p = prefix
    routes: list[Any] = [
        (p, ListHandler),
        (p + "oauth_callback", HubOAuthCallbackHandler),
        (p + "new", NewHandler),
        (p + rf"c/{NAME}", CourseHandler),
        (p + rf"c/{NAME}/progress", ProgressApi),
        (p + rf"c/{NAME}/roster", RosterHandler),
        (p + rf"c/{NAME}/(remove|reset|material|end|start|stop)", ActionHandler),
    ]
    return web.Application(routes, prefix=p, batches={},
                           cookie_secret=secrets.token(d, "courses-cookie-secret"))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[courses %(asctime)s %(levelname)s] %(message)s")
    d = deployment()
    hub_service.start(lambda prefix: make_app(d, prefix), PREFIX, d.services.courses.port, MAX_ROSTER + 64 * 1024,
                      log, "courses service")
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
