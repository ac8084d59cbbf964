"""The hub's own pages: our templates, and where a user lands after login (lab or gallery)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lunarhub.config import Deployment
from lunarhub.config.model import LANGUAGES
from lunarhub.platform import projects
from lunarhub.platform.hub import i18n
from lunarhub.platform.hub.rbac import lab_groups


def default_url(d: Deployment) -> Callable[[Any], str]:
    labs = set(lab_groups(d))
    dashboards = "/services/dashboards/" if d.services.dashboards.enabled else "/hub/home"

    def url_for(handler: Any) -> str:
        user = handler.current_user
        if user is None:
            return "/hub/home"
        # From the hub's own group table, so users added since the hub started count too.
        if not user.admin and not labs & {g.name for g in user.groups}:
            return dashboards
        # /hub/spawn starts the default server (no options form) and then opens it.
        return "/hub/spawn"

    return url_for


def title_texts(d: Deployment) -> dict[str, str]:
    """The deployment's name in every interface language (`title`, else `name`)."""
    if d.title is None:
        return {lang: d.name for lang in LANGUAGES}
    return {lang: getattr(d.title, lang) or d.title.en for lang in LANGUAGES}


def institute_texts(d: Deployment) -> list[dict[str, str]]:
    return [{lang: getattr(inst.name, lang) or inst.name.en for lang in LANGUAGES}
            for inst in d.institutions.values()]


def configure_pages(c: Any, d: Deployment) -> None:
    c.JupyterHub.default_url = default_url(d)
    c.JupyterHub.template_paths = [str(d.location("templates"))]
    # Translates JupyterHub's own templates as they load and gives ours lh_lang/lh_text (i18n.py).
    c.JupyterHub.jinja_environment_options = {"extensions": [i18n.EXTENSION]}
    c.JupyterHub.template_vars = {
        "lunarhub_name": d.name,
        "lunarhub_title": title_texts(d),
        "lunarhub_institutes": institute_texts(d),
        "lunarhub_languages": list(d.languages),
        "lunarhub_lab_groups": lab_groups(d),
        "lunarhub_dashboards_url": "/services/dashboards/" if d.services.dashboards.enabled else "",
        # Called with the page's user (JupyterHub.template_vars): the joint projects they are in.
        "lunarhub_projects": projects.links_for(d),
    }
