"""'Publish dashboard' in JupyterLab's launcher: a form over `publish()` in the user's own server.

jupyter-server-proxy starts it on first use (entry point `jupyter_serverproxy_servers`
in pyproject.toml) as the user, behind their server's login, at
/user/<name>/lunarhub-publish/. It lists the user's notebooks, takes title,
description, sharing and declared files, and calls the same `publish()` as the CLI
(validation by execution, snapshot, share), showing the gallery link or the cell and
error that stopped it. No JupyterLab build step: a launcher tile, not a TypeScript
extension.
"""

from __future__ import annotations

import asyncio
import html
import os
import secrets
import sys
from pathlib import Path
from typing import Any

NAME = "lunarhub-publish"
ICON = Path(__file__).with_name("publish.svg")  # the launcher tile's icon (package data)
MAX_NOTEBOOKS = 500


def setup() -> dict[str, Any]:
    """The jupyter-server-proxy server process (entry point).

    On a Unix socket in a fresh 0700 folder (jupyter-server-proxy makes it): a loopback port
    would let any account on the host load the form, read its token and publish as the user;
    the socket is reached only through the user's server, which authenticates via the hub."""
    return {
        "command": [sys.executable, "-m", "lunarhub.dashboards.publishing.form", "{unix_socket}"],
        "unix_socket": True,
        "timeout": 60,
        "new_browser_tab": True,
        "launcher_entry": {"enabled": True, "title": "Publish dashboard", "category": launcher_category(),
                           "icon_path": str(ICON)},
    }


# JupyterLab draws a tile's icon URL only in its kernels' section, which it names in the UI language
# ("Notebook" through the language packs: tests/unit/test_hub_pages_start.py checks these).
NOTEBOOK_SECTION = {"ru_RU": "Блокнот", "zh_CN": "笔记本"}
UI_LOCALES = {"ru": "ru_RU", "zh": "zh_CN"}


def launcher_category(settings_dir: Path | None = None) -> str:
    """The kernels' section as this user's JupyterLab names it: their language setting, else the
    deployment's default for them (LUNARHUB_UI_LANGUAGE), else English."""
    import re

    if settings_dir is None:
        from jupyter_core.paths import jupyter_config_dir

        settings_dir = Path(os.environ.get("JUPYTERLAB_SETTINGS_DIR") or Path(jupyter_config_dir()) / "lab"
                            / "user-settings")
    locale = UI_LOCALES.get(os.environ.get("LUNARHUB_UI_LANGUAGE", ""), "")
    try:
        text = (settings_dir / "@jupyterlab" / "translation-extension" / "plugin.jupyterlab-settings").read_text()
        found = re.search(r'"locale"\s*:\s*"([^"]+)"', text)  # JSON5 (comments allowed): no json.loads
        locale = found.group(1) if found else locale
    except (OSError, UnicodeDecodeError):
        pass
    return NOTEBOOK_SECTION.get(locale, "Notebook")


def notebooks(root: Path) -> list[str]:
    """The user's notebooks (relative paths), hidden folders and checkpoints left out."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        for f in sorted(filenames):
            if f.endswith(".ipynb") and not f.startswith("."):
                out.append(str((Path(dirpath) / f).relative_to(root)))
                if len(out) >= MAX_NOTEBOOKS:
                    return out
    return out


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.replace(",", " ").split() if v.strip()]


def make_app(root: Path, publish_fn: Any = None) -> Any:
    from tornado import web

    from lunarhub.dashboards.publishing.actions import PublishError, publish
    from lunarhub.dashboards.publishing.validate import ValidationError
    from lunarhub.dashboards.store import StoreError

    do_publish = publish_fn or publish
    form_token = secrets.token_urlsafe(24)  # the proxy authenticates; this stops cross-site posts

    def page(title: str, body: str) -> str:
        return (f'<!doctype html><html><head><meta charset="utf-8"><title>{esc(title)}</title>'
                "<style>body{font-family:sans-serif;max-width:46em;margin:2em auto}label{display:block;"
                "margin-top:.8em}input,select,textarea{width:100%}pre{background:#f4f4f4;padding:.6em;"
                "overflow:auto}.error{color:#a00}.ok{color:#070}</style></head>"
                f"<body><h1>{esc(title)}</h1>{body}</body></html>")

    class Form(web.RequestHandler):
        def get(self) -> None:
            nbs = notebooks(root)
            options = "".join(f'<option value="{esc(n)}">{esc(n)}</option>' for n in nbs)
            body = (
                "<p>Publishes a snapshot of a notebook that builds a Panel app (<code>.servable()</code>). "
                "It is run first, as you, with your data credentials: a notebook that fails, makes nothing "
                "servable or does not finish is refused with the cell and the error. It may be shared only "
                "with those entitled to every dataset it reads (a refusal names the dataset, its policy and "
                "the audience).</p>"
                + (f'<form method="post" action="publish"><input type="hidden" name="token" value="{form_token}">'
                   f'<label>Notebook <select name="notebook" required>{options}</select></label>'
                   '<label>Title <input name="title" required maxlength="200"></label>'
                   '<label>Description <textarea name="description" rows="3"></textarea></label>'
                   '<label>Share with (groups or users) <input name="share_with" value="reviewers"></label>'
                   '<label>Files it reads, relative to the notebook (e.g. <code>data/*.csv</code>) '
                   '<input name="files"></label>'
                   '<p><button type="submit">Publish</button></p></form>'
                   if nbs else "<p class=\"error\">No notebooks in your home folder.</p>"))
            self.finish(page("Publish dashboard", body))

    class Publish(web.RequestHandler):
        async def post(self) -> None:
            if not secrets.compare_digest(self.get_body_argument("token", ""), form_token):
                raise web.HTTPError(403, "stale or foreign form: reload the page")
            rel = self.get_body_argument("notebook", "")
            if rel not in notebooks(root):
                self.set_status(400)
                return self.finish(page("Not published", f'<p class="error">No notebook {esc(rel)!s} in your '
                                        'home folder.</p><p><a href="./">Back</a></p>'))
            args = dict(title=self.get_body_argument("title", "").strip(),
                        description=self.get_body_argument("description", "").strip(),
                        share_with=_split(self.get_body_argument("share_with", "")),
                        files=_split(self.get_body_argument("files", "")))
            try:
                # Validation runs the notebook (up to its timeout): off the event loop.
                result = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: do_publish(root / rel, **args))
            except ValidationError as exc:
                cell = f" (cell {exc.cell})" if exc.cell else ""
                detail = f"<pre>{esc(exc.detail)}</pre>" if exc.detail else ""
                self.set_status(422)
                return self.finish(page("Not published", f'<p class="error">{esc(exc)}{cell}</p>{detail}'
                                        '<p><a href="./">Back</a></p>'))
            except (PublishError, StoreError) as exc:
                self.set_status(422)
                return self.finish(page("Not published", f'<p class="error">{esc(exc)}</p>'
                                        '<p><a href="./">Back</a></p>'))
            note = result.get("thumbnail_error") and f"No thumbnail: {result['thumbnail_error']}"
            used = "".join(f"<li><code>{esc(x.get('entry') or x.get('path'))}</code> (site {esc(x.get('site'))}, "
                           f"policy {esc(x.get('policy'))})</li>" for x in result.get("lineage") or [])
            body = (f'<p class="ok">Published <b>{esc(result.get("title", ""))}</b> as version '
                    f'v{esc(result.get("version"))}.</p>'
                    f'<p><a href="{esc(result.get("url", ""))}" target="_blank">Open the dashboard</a> · '
                    f'<a href="{esc(result.get("gallery_url", ""))}" target="_blank">Its gallery page</a></p>'
                    + (f"<p>Data used (its audience is entitled to all of it):</p><ul>{used}</ul>" if used else "")
                    + (f"<p>{esc(note)}</p>" if note else "") + '<p><a href="./">Publish another</a></p>')
            self.finish(page("Published", body))

    return web.Application([(r"/", Form), (r"/publish", Publish)])


def main(argv: list[str]) -> int:
    from tornado import ioloop
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_unix_socket

    socket_path = argv[0]
    root = Path(os.environ.get("LUNARHUB_PUBLISH_ROOT") or Path.home())
    server = HTTPServer(make_app(root))
    server.add_socket(bind_unix_socket(socket_path, mode=0o600))
    ioloop.IOLoop.current().start()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
