"""What a dashboard named server runs (as the dashboard's own account, runtime_account.py): a hub-authenticated
jupyter-server-proxy in front of `panel serve`.

    python -m lunarhub.dashboards.server.launch CACHE_SECONDS -- [proxy options] --unix-socket=True \
        -- python -m lunarhub.dashboards.server.serve N apps/v1.py ... --unix-socket={unix_socket}

The proxy is the server's only TCP listener (the hub routes to it, it authenticates every
request and websocket through HubOAuth); panel behind it listens on a Unix socket in a
0700 folder jupyter-server-proxy makes for it, which no other account can open.

Why not `jupyter-standaloneproxy` directly: its HubOAuth is created with
`HubOAuth.instance()`, which ignores command-line config, so the token cache
would stay at JupyterHub's 5-minute default and a revoked share would keep
working for minutes. The instance is created here first with the short cache.
Also checks the snapshots up front: a missing or unreadable one ends the start
with a message in the server log (shown to the author), not a blank page later.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lunarhub.dashboards.store import snapshot_notebook, version_dir_of_app


def check_apps(apps: list[str]) -> list[str]:
    problems = []
    for app in apps:
        path = Path(app)
        version_dir = version_dir_of_app(path)
        try:
            notebook = snapshot_notebook(version_dir)
            path.read_text(encoding="utf-8")
        except (OSError, ValueError, KeyError) as exc:
            problems.append(f"{version_dir.name}: snapshot unreadable ({exc.__class__.__name__}: {exc})")
            continue
        if not notebook.is_file():
            name = str(notebook.relative_to(version_dir / "files"))
            problems.append(f"{version_dir.name}: the snapshot's notebook {name!r} is missing")
    return problems


def main(argv: list[str]) -> int:
    cache_seconds, sep, *rest = argv
    assert sep == "--", "usage: launch CACHE_SECONDS -- [proxy options] -- panel serve ..."
    apps = [a for a in rest if a.endswith(".py")]
    problems = check_apps(apps)
    if problems:
        print("lunarhub dashboard: cannot serve:\n  " + "\n  ".join(problems), file=sys.stderr, flush=True)
        return 3
    from jupyter_server_proxy.standalone import StandaloneProxyServer
    from jupyterhub.services.auth import HubOAuth

    HubOAuth.instance(cache_max_age=int(cache_seconds))
    sys.argv = ["jupyter-standaloneproxy", *rest]
    StandaloneProxyServer.launch_instance(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
