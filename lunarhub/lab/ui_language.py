"""Each user's JupyterLab language defaults from the deployment (the institute's `ui_language`,
overridable per user): the hub puts it in the server's environment (LUNARHUB_UI_LANGUAGE) and
this, at server start and as the user, writes JupyterLab's language setting if the user has none
yet. A choice made later in Settings → Language is the user's file and is never overwritten.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

ENV = "LUNARHUB_UI_LANGUAGE"
# Deployment language -> JupyterLab locale (the installed language packs' names).
LOCALES = {"en": "en", "ru": "ru_RU", "zh": "zh_CN"}
PLUGIN = Path("@jupyterlab") / "translation-extension" / "plugin.jupyterlab-settings"


def settings_dir() -> Path:
    """JupyterLab's user-settings folder, as jupyterlab_server finds it."""
    from jupyter_core.paths import jupyter_config_dir

    return Path(os.environ.get("JUPYTERLAB_SETTINGS_DIR") or Path(jupyter_config_dir()) / "lab" / "user-settings")


def apply_default(log: logging.Logger | None = None, language: str | None = None,
                  where: Path | None = None) -> Path | None:
    """Write {"locale": ...} for the deployment's language unless the user has a language setting;
    the file written, or None (nothing to do, or it could not be written: the lab stays in English)."""
    lang = language if language is not None else os.environ.get(ENV, "")
    locale = LOCALES.get(lang)
    if not locale:
        if lang and log:
            log.warning("lunarhub: unknown %s=%r (known: %s); JupyterLab's language left as is",
                        ENV, lang, ", ".join(LOCALES))
        return None
    path = (where or settings_dir()) / PLUGIN
    if path.exists() or path.is_symlink():
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: a file that appeared meanwhile (the user saving Settings) wins.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if log:
            log.warning("lunarhub: cannot write the default language setting %s: %s", path, exc)
        return None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"locale": locale}, f)
    return path
