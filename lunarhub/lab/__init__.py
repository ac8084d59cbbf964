"""The server side of lunarhub's JupyterLab extension (extensions/lunarhub-lab): a small API in
the user's own server, running as the user, behind that server's hub authentication.

Enabled by the extension's `jupyter_server_config.d/lunarhub_lab.json`; handlers in
lunarhub.lab.handlers, the Data panel's rules in lunarhub.lab.catalog_view.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "lunarhub.lab"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from lunarhub.lab import handlers, ui_language

    handlers.setup(serverapp.web_app)
    ui_language.apply_default(serverapp.log)
