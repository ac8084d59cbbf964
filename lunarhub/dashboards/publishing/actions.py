"""Publishing from a user's server: validate here (as the publisher), then hand the
snapshot to the gallery service, which stores it, starts the dashboard server and
shares it with the publisher's own (short-lived) token.

Inside a server, JUPYTERHUB_API_TOKEN and LUNARHUB_DASHBOARDS_URL are set by the
hub; elsewhere pass `token=` and `url=` (or set those variables).
"""

from __future__ import annotations

import base64
import glob
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from lunarhub.dashboards.publishing.validate import DEFAULT_TIMEOUT, validate
from lunarhub.dashboards.store import StoreError, check_relpath


class PublishError(RuntimeError):
    pass


def _endpoint(url: str | None, token: str | None) -> tuple[str, str]:
    url = url or os.environ.get("LUNARHUB_DASHBOARDS_URL")
    token = token or os.environ.get("JUPYTERHUB_API_TOKEN")
    if not url or not token:
        raise PublishError("run this in your lunarhub server (it sets LUNARHUB_DASHBOARDS_URL and "
                           "JUPYTERHUB_API_TOKEN), or pass url= and token=")
    return url.rstrip("/") + "/", token


def _call(method: str, url: str, token: str, **kw: Any) -> dict[str, Any]:
    try:
        r = requests.request(method, url, headers={"Authorization": f"token {token}"},
                             timeout=kw.pop("timeout", 300), allow_redirects=False, **kw)
    except requests.ConnectionError as exc:
        raise PublishError(f"the dashboards service at {url} does not answer ({exc.__class__.__name__})") from None
    try:
        data: dict[str, Any] = r.json()
    except ValueError:
        data = {"error": f"{r.status_code} {r.text[:300]}"}
    if r.status_code >= 400:
        raise PublishError(data.get("error") or f"{method} {url}: {r.status_code}")
    return data


def collect_files(notebook: Path, patterns: list[str]) -> dict[str, bytes]:
    """The notebook and the declared files, keyed by path relative to the notebook's folder."""
    base = notebook.parent.resolve()
    out = {notebook.name: notebook.read_bytes()}
    for pattern in patterns:
        check_relpath(pattern)  # no '../' or absolute paths: the snapshot is self-contained
        matches = sorted(glob.glob(str(base / pattern), recursive=True))
        if not matches:
            raise PublishError(f"declared file {pattern!r} matches nothing in {base}")
        for m in matches:
            p = Path(m)
            if p.is_dir():
                continue
            rel = p.resolve().relative_to(base) if p.resolve().is_relative_to(base) else None
            if rel is None:
                raise PublishError(f"declared file {pattern!r} leads outside {base} (symlink?)")
            out[rel.as_posix()] = p.read_bytes()
    return out


def gallery_limits(url: str | None = None, token: str | None = None) -> dict[str, Any] | None:
    """The gallery's limits (services.dashboards.limits) and the caller's use of them; None from
    a gallery too old to say (it still refuses, only after the upload)."""
    endpoint, token = _endpoint(url, token)
    try:
        return _call("GET", endpoint + "api/limits", token, timeout=30)
    except PublishError:
        return None


def check_limits(bounds: dict[str, Any], *, title: str = "", description: str = "",
                 size: int | None = None) -> None:
    """Raise PublishError naming the limit (and where the deployment file sets it) that the
    gallery would refuse, before the notebook runs and before anything is uploaded."""
    lim, where = bounds["limits"], bounds["where"]

    def over(what: str, name: str, unit: str) -> PublishError:
        return PublishError(f"{what}; the gallery's limit is {lim[name]:g} {unit} ({where[name]})")

    if len(title.strip()) > lim["max_title_chars"]:
        raise over(f"the title has {len(title.strip())} characters", "max_title_chars", "characters")
    if len(description) > lim["max_description_chars"]:
        raise over(f"the description has {len(description)} characters", "max_description_chars", "characters")
    if size is not None and size > lim["max_snapshot_mb"] * 2**20:
        raise over(f"the notebook and its files are {size / 2**20:.1f} MiB", "max_snapshot_mb", "MiB")


def _size_on_disk(notebook: Path, patterns: list[str]) -> int:
    """What collect_files would send, from the file sizes alone (no reading)."""
    found = {notebook.resolve()}
    for pattern in patterns:
        found.update(Path(m).resolve() for m in glob.glob(str(notebook.parent / pattern), recursive=True))
    return sum(p.stat().st_size for p in found if p.is_file())


def publish(notebook: str | Path, title: str, *, description: str = "", share_with: list[str] | None = None,
            files: list[str] | None = None, slug: str | None = None, timeout: float = DEFAULT_TIMEOUT,
            url: str | None = None, token: str | None = None,
            on_progress: Callable[[int | None], None] | None = None) -> dict[str, Any]:
    """Validate `notebook` and publish it; returns the version record (url, version, hash).
    `on_progress(cell)` hears which cell the validation run is at (the lab's Publish panel)."""
    endpoint, token = _endpoint(url, token)
    nb = Path(notebook)
    # Told before the notebook runs (which takes a while), not after the upload.
    bounds = gallery_limits(endpoint, token)
    if bounds:
        check_limits(bounds, title=title, description=description,
                     size=_size_on_disk(nb, list(files or [])) if nb.is_file() else None)
    checked = validate(nb, timeout=timeout, on_progress=on_progress)  # raises ValidationError with cell + error
    try:
        payload_files = collect_files(nb, list(files or []))
    except StoreError as exc:
        raise PublishError(str(exc)) from None
    if bounds:  # the run may have written declared files
        check_limits(bounds, size=sum(len(b) for b in payload_files.values()))
    body = {
        "title": title, "description": description, "slug": slug, "notebook": nb.name,
        "share_with": list(share_with or []), "environment": checked.environment,
        "files": {k: base64.b64encode(v).decode() for k, v in payload_files.items()},
        # What the catalog library saw read, and when the run was: the gallery checks both
        # against the sites' own logs (lunarhub.dashboards.lineage.establish).
        "lineage": checked.lineage, "run": {"started": checked.started, "finished": checked.finished},
    }
    if checked.thumbnail:
        # The gallery re-checks it: it is only a picture the client claims to have drawn.
        body["thumbnail"] = base64.b64encode(checked.thumbnail).decode()
    out = _call("POST", endpoint + "api/dashboards", token, json=body)
    if checked.thumbnail_error:
        out["thumbnail_error"] = checked.thumbnail_error
    return out


def unpublish(slug: str, *, version: int | None = None, owner: str | None = None, url: str | None = None,
              token: str | None = None) -> dict[str, Any]:
    endpoint, token = _endpoint(url, token)
    owner = owner or os.environ.get("JUPYTERHUB_USER") or _whoami(endpoint, token)
    path = f"api/dashboards/{owner}/{slug}" + (f"/v{version}" if version else "")
    return _call("DELETE", endpoint + path, token)


def list_dashboards(*, mine: bool = False, url: str | None = None, token: str | None = None) -> list[dict[str, Any]]:
    endpoint, token = _endpoint(url, token)
    dashboards: list[dict[str, Any]] = _call("GET", endpoint + "api/dashboards" + ("?mine=1" if mine else ""),
                                              token)["dashboards"]
    return dashboards


def _whoami(endpoint: str, token: str) -> str:
    hub = endpoint.split("/services/")[0]
    name: str = _call("GET", hub + "/hub/api/user", token)["name"]
    return name
