"""The hub's own pages in en/ru/zh: every page of the installed JupyterHub, rendered through the
template environment JupyterHub builds (its loaders, our template path, our Jinja extension).

In ru and zh no text of our English catalog may remain (every text node, attribute and script
string is compared with the catalog); in en they are there (so the comparison can fail). A text
JupyterHub renames in an upgrade is named by the canary test below."""

from __future__ import annotations

import datetime
import html.parser
import re
import types
from pathlib import Path
from typing import Any

import pytest
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader

from lunarhub import config
from lunarhub.platform.hub import i18n, pages
from lunarhub.platform.hub.i18n_texts import OURS, STOCK

ROOT = Path(__file__).resolve().parents[2]
EN_CATALOG = {i18n.normalize(m) for m in STOCK} | {i18n.normalize(t["en"]) for t in OURS.values()}
PAGES = ["login.html", "home.html", "spawn_pending.html", "error.html", "404.html", "logout.html",
         "token.html", "not_running.html", "stop_pending.html"]


class Handler:
    """What lh_lang reads of a tornado RequestHandler: query, cookies, headers; what it sets."""

    def __init__(self, accept: str | None = None, cookie: str | None = None, query: dict | None = None,
                 path: str = "/hub/login") -> None:
        self.request = types.SimpleNamespace(
            headers={"Accept-Language": accept} if accept else {}, path=path,
            query_arguments={k: [v.encode()] for k, v in (query or {}).items()})
        self.cookie = cookie
        self.set_cookies: dict[str, tuple[str, dict]] = {}

    def get_query_argument(self, name: str, default: Any = None) -> Any:
        values = self.request.query_arguments.get(name)
        return values[-1].decode() if values else default

    def get_cookie(self, name: str) -> str | None:
        return self.cookie if name == "lunarhub-lang" else None

    def set_cookie(self, name: str, value: str, **kw: Any) -> None:
        self.set_cookies[name] = (value, kw)

    def static_url(self, path: str, include_version: bool = True) -> str:
        return f"/hub/static/{path}"


@pytest.fixture(scope="module")
def deployment():
    return config.load(ROOT / "hub" / "lunarhub.yaml")


@pytest.fixture(scope="module")
def env(deployment) -> Environment:
    c = types.SimpleNamespace(JupyterHub=types.SimpleNamespace())
    pages.configure_pages(c, deployment)
    # As JupyterHub.init_tornado_settings (6.1) builds it.
    from jupyterhub._data import DATA_FILES_PATH

    base = str(Path(DATA_FILES_PATH, "templates"))
    loader = ChoiceLoader([PrefixLoader({"templates": FileSystemLoader([base])}, "/"),
                           FileSystemLoader([*c.JupyterHub.template_paths, base])])
    e = Environment(loader=loader, autoescape=True, **c.JupyterHub.jinja_environment_options)
    e.globals["_template_vars"] = c.JupyterHub.template_vars
    return e


def fake_user(admin: bool = False, groups: tuple[str, ...] = ("scientists-ru",)):
    now = datetime.datetime(2026, 12, 1, 12, 0)
    spawner = types.SimpleNamespace(name="dash-x", display_name="", ready=True, active=True, pending=None,
                                    last_activity=now, options_form=None)
    return types.SimpleNamespace(
        name="ru-scientist", admin=admin, json_escaped_name="ru-scientist",
        groups=[types.SimpleNamespace(name=g) for g in groups], spawner=spawner,
        all_spawners=lambda include_default=False: [spawner], server_url=lambda name="": f"/user/ru-scientist/{name}")


def namespace(env: Environment, handler: Handler, user: Any) -> dict[str, Any]:
    now = datetime.datetime(2026, 12, 1, 12, 0)
    token = types.SimpleNamespace(api_id="a1", note="n", scopes=["read:users"], last_activity=None, created=now,
                                  expires_at=None)
    ns: dict[str, Any] = dict(
        base_url="/hub/", prefix="/", user=user, login_url="/hub/login", logout_url="/hub/logout",
        login_service="", static_url=handler.static_url, version_hash="", services=[],
        parsed_scopes={"admin-ui"} if user else set(), expanded_scopes=set(), xsrf="x", xsrf_token="x",
        # login
        authenticator_login_url="/hub/login?next=", authenticator=types.SimpleNamespace(request_otp=False),
        login_error="Invalid username or password", username="",
        # home
        default_server=types.SimpleNamespace(active=True), url="/hub/user/ru-scientist/",
        allow_named_servers=True, named_server_limit_per_user=5, invalid_server_names=[],
        # spawn pending, not running
        progress_url="/hub/api/users/ru-scientist/server/progress", spawner=user.spawner if user else None,
        failed=False, server_name="", spawn_url="/hub/spawn/ru-scientist", implicit_spawn_seconds=0,
        # error pages
        status_code=403, status_message="Forbidden", message="", extra_error_html="",
        # token
        api_tokens=[token], oauth_clients=[{"token_id": "o1", "description": "Server at /user/ru-scientist/",
                                            "tokens": [token], "last_activity": None, "created": now}],
        token_expires_in_options_html='<option value="3600">1 Hour</option>\n<option value="">Never</option>',
    )
    for key, value in env.globals["_template_vars"].items():
        ns[key] = value(user) if callable(value) else value
    return ns


def render(env: Environment, page: str, accept: str | None = None, **handler_kw: Any) -> tuple[str, Handler]:
    handler = Handler(accept, **handler_kw)
    user = None if page in ("login.html", "logout.html") else fake_user()
    return env.get_template(page).render(**namespace(env, handler, user)), handler


class Strings(html.parser.HTMLParser):
    """Every text a reader meets: element texts, the attributes shown, script string literals."""

    SHOWN = ("title", "alt", "placeholder", "aria-label", "value")

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.script = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.script = tag == "script"
        self.found += [i18n.normalize(v) for k, v in attrs if k in self.SHOWN and v]

    def handle_endtag(self, tag: str) -> None:
        self.script = False if tag == "script" else self.script

    def handle_data(self, data: str) -> None:
        if self.script:
            self.found += [i18n.normalize(m[1]) for m in re.findall(r"([\"'])((?:(?!\1).)*)\1", data)]
        elif data.strip():
            self.found.append(i18n.normalize(data))


def strings(page_html: str) -> list[str]:
    parser = Strings()
    parser.feed(page_html)
    return parser.found


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("lang,accept", [("ru", "ru-RU,ru;q=0.9,en;q=0.5"), ("zh", "zh-CN,zh;q=0.9")])
def test_no_english_of_our_catalog_in_ru_and_zh_pages(env, page, lang, accept) -> None:
    out, _ = render(env, page, accept)
    english = [s for s in strings(out) if s in EN_CATALOG]
    assert english == [], f"{page} in {lang} still says {english}"
    assert f'<html lang="{lang}">' in out
    script = {"ru": "[а-яё]", "zh": "[\u4e00-\u9fff]"}[lang]
    assert re.search(script, out, re.I), f"{page} has no {lang} text at all"


@pytest.mark.parametrize("page", PAGES)
def test_english_pages_say_what_jupyterhub_says(env, page) -> None:
    out, _ = render(env, page, "en-US")
    found = set(strings(out)) & EN_CATALOG
    assert len(found) >= 3, f"{page}: {found}"
    assert not re.search("[а-яё\u4e00-\u9fff]", out.replace("Русский", "").replace("中文", ""), re.I)


def test_every_catalogued_text_is_in_the_installed_jupyterhub() -> None:
    """An upgrade that renames a text shows up here (the page would fall back to English)."""
    import jupyterhub
    from jupyterhub._data import DATA_FILES_PATH

    sources = [p.read_text() for p in Path(DATA_FILES_PATH, "templates").glob("*.html")]
    sources += [p.read_text() for p in Path(jupyterhub.__file__).parent.glob("handlers/*.py")]
    import http.client

    haystack = i18n.normalize(" ".join(sources))
    missing = [m for m in STOCK if i18n.normalize(m) not in haystack and m not in http.client.responses.values()]
    assert missing == []


def test_the_login_form_is_jupyterhubs_own(env) -> None:
    out, _ = render(env, "login.html", "ru")
    assert re.search(r'<form action="/hub/login\?next=" method="post"', out)
    for name in ("_xsrf", "username", "password"):
        assert f'name="{name}"' in out
    assert 'id="login_submit"' in out and "value='Вход'" in out
    assert "Совместный центр лунных данных (демо)" in out  # the deployment's title
    assert "Институт космических исследований РАН" in out and "中国科学院国家天文台" not in out
    assert out.count('class="lunarhub-institute"') == 2  # above the form, not again in the footer
    zh, _ = render(env, "login.html", "zh")
    assert "联合月球数据中心（演示）" in zh and "中国科学院国家天文台" in zh


def test_language_from_query_is_remembered_and_cookie_beats_header(env) -> None:
    out, handler = render(env, "login.html", "ru", query={"lang": "zh", "next": "/hub/home"})
    assert '<html lang="zh">' in out
    value, kw = handler.set_cookies["lunarhub-lang"]
    assert value == "zh" and kw["path"] == "/"
    out, handler = render(env, "login.html", "ru", cookie="en")
    assert '<html lang="en">' in out and handler.set_cookies == {}
    # Unknown choices fall through to the header.
    out, _ = render(env, "login.html", "ru", query={"lang": "xx"})
    assert '<html lang="ru">' in out


def test_switcher_links_keep_the_page_and_its_query(env) -> None:
    out, _ = render(env, "login.html", "ru", query={"next": "/hub/home"})
    links = dict(re.findall(r'data-lang="(\w+)" href="([^"]+)"', out))
    assert set(links) == {"en", "zh"}  # ru is the current one, shown without a link
    assert links["zh"] == "/hub/login?next=%2Fhub%2Fhome&amp;lang=zh"


def test_a_hostile_query_is_escaped(env) -> None:
    out, _ = render(env, "login.html", "ru", query={"next": '"><script>alert(1)</script>'})
    assert "<script>alert(1)" not in out


def test_reviewer_home_keeps_the_gallery_and_projects(env) -> None:
    handler = Handler("zh")
    user = fake_user(groups=("reviewers",))
    user.name = "cn-scientist"
    ns = namespace(env, handler, user)
    out = env.get_template("home.html").render(**ns)
    assert 'id="lunarhub-no-lab"' in out and "仪表板" in out and "Start My Server" not in out


def test_rewrite_leaves_jinja_and_unknown_text_alone() -> None:
    src = ('<p>Sign in</p>{% if x %}Start{% endif %} My Server <b title="Home">Hello</b>'
           '<script>var a = "Hide password", b = "Hello";</script>{{ login_error }}')
    out = i18n.rewrite(src)
    assert '<p>{{ lh_t("Sign in") }}</p>' in out
    assert '{% if x %}{{ lh_t("Start") }}{% endif %} {{ lh_t("My Server") }} ' in out
    assert 'title="{{ lh_t("Home") }}">Hello</b>' in out
    assert 'var a = {{ lh_t("Hide password") | tojson }}, b = "Hello";' in out
    assert out.endswith("{{ lh_t(login_error) }}")
