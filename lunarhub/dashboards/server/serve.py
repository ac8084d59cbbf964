"""`panel serve` with a pool of ready sessions (session_pool.py): what a dashboard server runs.

    python -m lunarhub.dashboards.server.serve POOL_SIZE apps/v1.py apps/v2.py ... [panel serve options]

In a dashboard server the options put it on a Unix socket (`--unix-socket PATH`, see
lunarhub/dashboards/gallery/servers.py); the pool's hooks are on Bokeh's application, not its
listener, so they work the same on a socket or a port.

POOL_SIZE 0 is plain `panel serve`; otherwise the latest version's app keeps POOL_SIZE
sessions ready. With LUNARHUB_SHARED_STATIC set (a URL prefix), the pages load BokehJS and
Panel's scripts from the gallery's shared copy (shared_static.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    size, *rest = argv
    apps = [a for a in rest if a.endswith(".py") and not a.startswith("-")]
    if int(size) > 0 and apps:
        from lunarhub.dashboards.server.session_pool import install
        from lunarhub.dashboards.store import VERSION_RE

        # `panel serve` names each app after its file: apps/v1.py is served at /v1. Only the
        # latest version (the one the gallery opens) keeps ready sessions; older ones are
        # built per visit.
        latest = max(apps, key=lambda a: int(m.group(1)) if (m := VERSION_RE.match(Path(a).stem)) else -1)
        install(int(size), {"/" + Path(latest).stem: latest})
    static = os.environ.get("LUNARHUB_SHARED_STATIC")
    if static:
        from lunarhub.dashboards.server.shared_static import install as share_static

        share_static(static)
    from panel.command import main as panel_main

    sys.argv = ["panel", "serve", *rest]
    return panel_main() or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
