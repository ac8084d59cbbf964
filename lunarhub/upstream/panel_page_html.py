"""A hook on the HTML page Panel renders for a session (for shared BokehJS/Panel scripts).

Upstream: no bug; Panel has no setting for where a page loads BokehJS and panel.min.js
from other than per server (`--static-dirs`, CDN), so lunarhub.dashboards.server.shared_static
replaces `panel/io/server.py::server_html_page_for_session` (a module global the page
handler `DocHandler.get` looks up at each call) and rewrites its script tags with regular
expressions, which depend on the tag layout of Bokeh's page template.
Applies to: panel>=1.5,<1.10 and bokeh>=3.5,<3.10 (checked on panel 1.9.4, bokeh 3.9.2;
the lower bounds are the project's declared minimum).
Remove when: Panel can point a page's scripts at another URL (a resources setting); before
widening the range, run tests/unit/test_upstream.py, which renders a real page.
"""

from __future__ import annotations

from collections.abc import Callable

from lunarhub.upstream import versions

RANGES = {"panel": ">=1.5,<1.10", "bokeh": ">=3.5,<3.10"}
UPSTREAM = "the replaced panel.io.server.server_html_page_for_session and Bokeh's page template"


def apply(rewrite: Callable[[str], str]) -> None:
    """Pass every page this Panel process renders through `rewrite` (this process only)."""
    versions.require(__name__, RANGES, UPSTREAM)
    from panel.io import server as pn_server

    original = pn_server.server_html_page_for_session

    def page(*args: object, **kwargs: object) -> str:
        return rewrite(original(*args, **kwargs))

    pn_server.server_html_page_for_session = page
