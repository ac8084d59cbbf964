"""Which interface language a page is in: one rule for the hub's pages and the gallery.

An explicit choice (``?lang=``) wins, then the remembered one (the ``lunarhub-lang`` cookie), then
the browser's Accept-Language (by weight), then English."""

from __future__ import annotations

from collections.abc import Sequence

from lunarhub.config.model import LANGUAGES

# One cookie for every page on the hub's origin: a choice made on the login page holds in the gallery.
COOKIE = "lunarhub-lang"


def from_accept_language(header: str | None, offered: Sequence[str] = LANGUAGES) -> str | None:
    ranked = []
    for i, part in enumerate((header or "").split(",")):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        ranked.append((-weight, i, tag.split("-")[0].strip().lower()))
    for weight, _, lang in sorted(ranked):
        if lang in offered and weight < 0:
            return lang
    return None


def pick(query: str | None, cookie: str | None, accept_language: str | None,
         offered: Sequence[str] = LANGUAGES) -> str:
    for cand in (query, cookie):
        if cand is not None and cand in offered:
            return cand
    return from_accept_language(accept_language, offered) or ("en" if "en" in offered else offered[0])
