"""The hub's pages in en/ru/zh: a Jinja extension loaded into JupyterHub's template environment.

JupyterHub (6.1) has no translations (jupyterhub/jupyterhub#1604) and gives templates no request:
`template_vars` callables get only the user. So:

- the language is read per render from the handler behind the page's `static_url` (a bound method
  JupyterHub puts in every page's namespace): `?lang=` (then remembered in the shared cookie), the
  cookie, Accept-Language (lunarhub.config.languages.pick);
- JupyterHub's own templates are rewritten as they load (`Extension.preprocess`): each English text,
  attribute value or script string literal found in the STOCK catalog becomes a lookup, so the
  pages keep JupyterHub's markup, forms and scripts of whatever version is installed. Our own
  templates (hub/templates/) extend those and use `lh_text(key)` for our texts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, pass_context
from jinja2.ext import Extension
from jinja2.runtime import Context, Undefined
from markupsafe import Markup, escape

from lunarhub.config.languages import COOKIE, ENDONYMS, pick, translator
from lunarhub.config.model import LANGUAGES
from lunarhub.platform.hub.i18n_texts import OURS, STOCK

LANG_INDEX = {"ru": 0, "zh": 1}
COOKIE_DAYS = 365


def normalize(text: str) -> str:
    return " ".join(text.split())


def lookup(msgid: str, lang: str) -> str:
    """JupyterHub's English `msgid` in `lang` (itself when the catalog lacks it)."""
    entry = STOCK.get(normalize(msgid))
    if entry is None or lang not in LANG_INDEX:
        return msgid
    return entry[LANG_INDEX[lang]]


our_text = translator(OURS)


def handler_of(ctx: Context) -> Any:
    # JupyterHub's template namespace carries `static_url=self.static_url`: its __self__ is the
    # page's RequestHandler. tests/unit/test_hub_pages.py renders every page to keep this true.
    handler = getattr(ctx.get("static_url"), "__self__", None)
    return handler if hasattr(handler, "request") else None


def request_language(handler: Any, offered: Sequence[str]) -> str:
    query = handler.get_query_argument("lang", None)
    lang = pick(query, handler.get_cookie(COOKIE), handler.request.headers.get("Accept-Language"), offered)
    if query == lang and handler.get_cookie(COOKIE) != lang:
        # The switcher's links carry ?lang=; later pages (and the gallery) remember it.
        handler.set_cookie(COOKIE, lang, path="/", expires_days=COOKIE_DAYS, samesite="Lax")
    return lang


@pass_context
def lh_lang(ctx: Context) -> str:
    offered = ctx.get("lunarhub_languages") or LANGUAGES
    handler = handler_of(ctx)
    return request_language(handler, offered) if handler is not None else offered[0]


@pass_context
def lh_t(ctx: Context, msgid: Any) -> Any:
    if not isinstance(msgid, str) or isinstance(msgid, Undefined):
        return msgid
    translated = lookup(msgid, lh_lang(ctx))
    # Markup in, Markup out (messages JupyterHub marked safe stay unescaped).
    return Markup(escape(translated)) if isinstance(msgid, Markup) else translated


@pass_context
def lh_text(ctx: Context, key: str) -> str:
    return our_text(key, lh_lang(ctx))


@pass_context
def lh_html(ctx: Context, html: Any) -> Markup:
    """HTML JupyterHub builds in Python (the token page's expiry options): its element texts."""
    lang = lh_lang(ctx)

    def one(m: re.Match[str]) -> str:
        return f">{m.group(1)}{escape(lookup(m.group(2), lang))}{m.group(3)}<"

    return Markup(TEXT_NODE.sub(one, str(html or "")))


@pass_context
def lh_switch_url(ctx: Context, lang: str) -> str:
    """This page's URL with ?lang= set (other query arguments, e.g. next=, kept)."""
    handler = handler_of(ctx)
    if handler is None:
        return f"?lang={lang}"
    from urllib.parse import urlencode

    args = [(k, v.decode()) for k, vs in handler.request.query_arguments.items() if k != "lang" for v in vs]
    return handler.request.path + "?" + urlencode([*args, ("lang", lang)])


# --- rewriting JupyterHub's templates as they load -------------------------------------------------

STOCK_DIR = None  # resolved on first use: the installed JupyterHub's template folder


def stock_dir() -> Path:
    global STOCK_DIR
    if STOCK_DIR is None:
        from jupyterhub._data import DATA_FILES_PATH

        STOCK_DIR = Path(DATA_FILES_PATH, "templates").resolve()
    return STOCK_DIR


def _alternation() -> str:
    ids = sorted(STOCK, key=len, reverse=True)
    return "|".join(r"\s+".join(re.escape(w) for w in m.split()) for m in ids)


ALT = _alternation()
# Element text: between tags (or a Jinja tag, which ends a piece), surrounding blanks kept.
TEXT_NODE = re.compile(rf"(?:(?<=>)|^)(\s*)({ALT})(\s*)(?=<|$)")
ATTRIBUTE = re.compile(rf"\b((?:title|alt|placeholder|aria-label|value)=)([\"'])({ALT})\2")
JS_STRING = re.compile(rf"([\"'])({ALT})\1")
JINJA_TAG = re.compile(r"{%.*?%}|{{.*?}}|{#.*?#}", re.S)
SCRIPT_EDGE = re.compile(r"(<script\b[^>]*>|</script\s*>)", re.I)
# Values JupyterHub's handlers compute in English, shown through these expressions.
EXPRESSIONS = {
    "login_error": "{{ lh_t(login_error) }}",
    "status_message": "{{ lh_t(status_message) }}",
    "message": "{{ lh_t(message) }}",
    "token_expires_in_options_html | safe": "{{ token_expires_in_options_html | lh_html }}",
    # page.html's `modal(title, btn_label)` macro (the hidden error dialog): its shown texts; the
    # element ids built from the title stay English.
    "title": "{{ lh_t(title) }}",
    "btn_label": "{{ lh_t(btn_label) }}",
}
HTML_LANG = '<html lang="en">'


def _call(msgid: str, tail: str = "") -> str:
    return "{{ lh_t(" + json.dumps(normalize(msgid)) + ")" + tail + " }}"


def _rewrite_text(piece: str, in_script: bool) -> str:
    if in_script:
        return JS_STRING.sub(lambda m: _call(m.group(2), " | tojson"), piece)
    piece = piece.replace(HTML_LANG, '<html lang="{{ lh_lang() }}">')
    piece = ATTRIBUTE.sub(lambda m: f"{m.group(1)}{m.group(2)}{_call(m.group(3))}{m.group(2)}", piece)
    return TEXT_NODE.sub(lambda m: f"{m.group(1)}{_call(m.group(2))}{m.group(3)}", piece)


def rewrite(source: str) -> str:
    """A JupyterHub template with its catalogued English turned into lookups."""
    out: list[str] = []
    in_script = False
    pos = 0
    for tag in [*JINJA_TAG.finditer(source), None]:
        end = tag.start() if tag else len(source)
        for part in SCRIPT_EDGE.split(source[pos:end]):
            if SCRIPT_EDGE.fullmatch(part):
                in_script = not part.startswith("</")
                out.append(part)
            else:
                out.append(_rewrite_text(part, in_script))
        if tag is None:
            break
        text = tag.group(0)
        if text.startswith("{{"):
            text = EXPRESSIONS.get(text[2:-2].strip(), text)
        out.append(text)
        pos = tag.end()
    return "".join(out)


class HubPages(Extension):
    """`c.JupyterHub.jinja_environment_options = {"extensions": [<this class's path>]}`."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.globals.update(lh_lang=lh_lang, lh_t=lh_t, lh_text=lh_text, lh_switch_url=lh_switch_url,
                                   lh_endonyms=ENDONYMS)
        environment.filters["lh_html"] = lh_html

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        if filename is None or not Path(filename).resolve().is_relative_to(stock_dir()):
            return source
        return rewrite(source)


EXTENSION = f"{HubPages.__module__}.{HubPages.__qualname__}"
