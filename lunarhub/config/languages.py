"""Which interface language a page is in, and a text of a catalogue in it: one rule for every page
lunarhub serves (the hub's, the gallery, the courses page, the operators' dashboard).

An explicit choice (``?lang=``) wins, then the remembered one (the ``lunarhub-lang`` cookie), then
the browser's Accept-Language (by weight), then English. The catalogues themselves stay with their
pages; each maps a key to its texts by language, English always present."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

from lunarhub.config.model import LANGUAGES

# One cookie for every page on the hub's origin: a choice made on the login page holds in the gallery.
COOKIE = "lunarhub-lang"
# How each language names itself in a page's switcher (never translated).
ENDONYMS = {"en": "English", "ru": "Русский", "zh": "中文"}
SWITCHER = tuple(ENDONYMS.items())

Catalogue = Mapping[str, Mapping[str, str]]


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


def text(catalogue: Catalogue, key: str, lang: str) -> str:
    """`key`'s text in `lang`, else its English. A key the catalogue lacks raises KeyError: a
    misspelt key fails its page's test instead of showing the key."""
    entry = catalogue[key]
    return entry.get(lang) or entry["en"]


def translator(catalogue: Catalogue) -> Callable[[str, str], str]:
    """`text` bound to one catalogue: ``t = translator(TEXTS)``, then ``t(key, lang)``."""
    return functools.partial(text, catalogue)
