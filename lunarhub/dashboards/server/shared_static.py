"""BokehJS and Panel's scripts from one URL for every dashboard, served by the gallery.

Each dashboard's Panel process would serve its own copy of the 2.8 MiB of scripts under
its own URL (/user/<owner>/dash-<slug>/static/...), through two proxies, and a browser
would fetch them again for every dashboard. All dashboards run the same installed Bokeh
and Panel as the gallery service, so the page's script tags are pointed at the gallery's
copy instead: cached once per browser for every dashboard (the `?v=` content hash is
kept, so an upgrade is fetched anew), and a crowd of first-time visitors no longer
queues behind the dashboard's own event loop for them.
"""

from __future__ import annotations

import re
from pathlib import Path

# Only the big scripts move; stylesheets and Panel's bundled extras stay with the dashboard
# (they are resolved relative to the app by Panel's own resource logic).
BOKEH_RE = re.compile(r'src="[^"]*?static/js/(bokeh(?:-[a-z]+)?(?:\.min)?\.js)(\?v=[0-9a-f]+)?"')
PANEL_RE = re.compile(r'src="[^"]*?static/extensions/panel/(panel(?:\.min)?\.js)(\?v=[0-9a-f]+)?"')
FILE_RE = {"bokeh": r"(bokeh(?:-[a-z]+)?(?:\.min)?\.js)", "panel": r"(panel(?:\.min)?\.js)"}


def directories() -> dict[str, Path]:
    from bokeh.util.paths import bokehjs_path
    from panel.io.resources import DIST_DIR

    return {"bokeh": Path(bokehjs_path()) / "js", "panel": Path(DIST_DIR)}


def rewrite(html: str, prefix: str) -> str:
    """Point the page's BokehJS/Panel script tags at `prefix` (e.g. /services/dashboards/static/)."""
    html = BOKEH_RE.sub(lambda m: f'src="{prefix}bokeh/{m.group(1)}{m.group(2) or ""}"', html)
    return PANEL_RE.sub(lambda m: f'src="{prefix}panel/{m.group(1)}{m.group(2) or ""}"', html)


def install(prefix: str) -> None:
    """Rewrite every page this Panel process renders (the hook, with its version range, is
    lunarhub.upstream.panel_page_html)."""
    from lunarhub.upstream import panel_page_html

    panel_page_html.apply(lambda html: rewrite(html, prefix))
