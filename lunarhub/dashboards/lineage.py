"""A dashboard's data lineage: which datasets its published version read, and who may see it.

A lineage is the list of datasets one version read during its publish validation, stored with
the version (immutable, `lunarhub.dashboards.store`). Each dataset is a dict:

    site, entry (catalog entry or None for a path no entry serves), path (on the site),
    policy (the path's first folder), embargo_until (the site's date or None),
    version ({etag, last_modified, size, sha256}: what the site served), sources
    (who saw the read: "library", "site-log", "trusted-run")

Whoever a dashboard is shared with sees what it read through its publisher's eyes, so an
audience must be entitled to every policy in the lineage; the rules come from
lunarhub.data.entitlement (group grants, embargo dates), never re-derived here.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from email.utils import formatdate
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from lunarhub.config import Deployment
from lunarhub.dashboards.gallery.policy import ShareRefused
from lunarhub.data import entitlement
from lunarhub.data.policy import POLICIES

Dataset = dict[str, Any]
Lineage = list[Dataset]
Needed = dict[str, set[str]]

# A publish run longer than this is not believed: its window is cut (validation's own limit
# is minutes; --timeout may raise it).
MAX_RUN_SECONDS = 3600
# The sites log whole seconds: a window edge is widened by this much.
LOG_SLACK = 2.0
# Files up to this size get a sha256 of what the site serves; larger ones their ETag and size.
HASH_MAX_BYTES = 64 * 2**20
# Answers that served (part of) a file.
SERVED = {200, 206, 304}


class LineageRefused(ShareRefused):
    """A share the lineage does not allow; `problems` lists (audience, dataset, site, policy)."""

    def __init__(self, message: str, problems: list[tuple[str, str, str, str]]):
        super().__init__(message)
        self.problems = problems


def needed(lineage: Iterable[Mapping[str, Any]]) -> Needed:
    """site -> the policies the datasets of `lineage` carry."""
    out: Needed = {}
    for ds in lineage:
        out.setdefault(str(ds["site"]), set()).add(str(ds["policy"]))
    return out


def lineage_of(d: Deployment, owner: str, slug: str) -> Lineage | None:
    """What owner/slug's served versions read (``[]``: no site data), with today's policies; None
    if there is no such published dashboard. Every version the server serves counts, not only
    the newest: a share opens them all."""
    from lunarhub.dashboards.store import Store, StoreError

    try:
        dash = Store.for_deployment(d).get(owner, slug)
    except StoreError:
        return None
    if dash is None or dash.latest is None or not dash.active:
        return None
    return current(d, dashboard_lineage(dash))


def needed_policies(d: Deployment, owner: str, slug: str) -> Needed | None:
    """site -> the policies owner/slug's current versions read; None if no such dashboard."""
    lin = lineage_of(d, owner, slug)
    return None if lin is None else needed(lin)


def audience_policies(d: Deployment, audience: str, kind: str, today: date | None = None) -> Needed:
    """site -> what a group (kind "group") or a user (kind "user") may read."""
    if kind == "group":
        if audience not in d.groups:
            return {}
        return entitlement.of_group(d, audience, today)
    return entitlement.everything(d, audience, today)


def _as_datasets(lineage: Iterable[Mapping[str, Any]] | Mapping[str, Iterable[str]]) -> list[Mapping[str, Any]]:
    if isinstance(lineage, Mapping):
        # site -> policies (what needed_policies returns): no entry names to give
        return [{"site": s, "policy": p, "entry": None} for s, pols in lineage.items() for p in sorted(pols)]
    return list(lineage)


def _describe(d: Deployment, ds: Mapping[str, Any], today: date | None) -> str:
    name = ds.get("entry") or ds.get("path") or f"{ds.get('policy')} data"
    text = f"dataset {name!r} (site {ds['site']}, policy {ds['policy']}"
    until = d.sites[ds["site"]].embargo_until if ds["site"] in d.sites else None
    if until and ds["policy"].endswith("-only") and not entitlement.embargo_over(d, ds["site"], today):
        text += f", embargoed until {until}"
    return text + ")"


def problems(d: Deployment, lineage: Iterable[Mapping[str, Any]] | Mapping[str, Iterable[str]],
             groups: Iterable[str], users: Iterable[str],
             today: date | None = None) -> list[tuple[str, Mapping[str, Any]]]:
    """(audience label, dataset) for each dataset an audience may not read."""
    datasets = _as_datasets(lineage)
    out: list[tuple[str, Mapping[str, Any]]] = []
    for kind, names in (("group", groups), ("user", users)):
        for name in names:
            has = audience_policies(d, name, kind, today)
            for ds in datasets:
                if ds["policy"] not in has.get(ds["site"], set()):
                    out.append((f"{kind} {name!r}", ds))
    return out


def check_audience(d: Deployment, lineage: Iterable[Mapping[str, Any]] | Mapping[str, Iterable[str]],
                   groups: Iterable[str], users: Iterable[str], today: date | None = None) -> None:
    """Raise LineageRefused (a ShareRefused) naming each dataset, its policy and the audience
    that lacks it; return quietly when every audience is entitled to the whole lineage."""
    found = problems(d, lineage, groups, users, today)
    if not found:
        return
    lines = []
    seen = set()
    for who, ds in found:
        line = f"{who} may not see {_describe(d, ds, today)}"
        if line not in seen:
            seen.add(line)
            lines.append(line)
    raise LineageRefused(
        "sharing refused: the dashboard shows data its audience may not read: " + "; ".join(lines),
        [(who, str(ds.get("entry") or ds.get("path") or ""), str(ds["site"]), str(ds["policy"]))
         for who, ds in found])


def allowed_audiences(d: Deployment, lineage: Iterable[Mapping[str, Any]] | Mapping[str, Iterable[str]],
                      groups: Iterable[str], users: Iterable[str],
                      today: date | None = None) -> tuple[list[str], list[str]]:
    """The (groups, users) among those given that the lineage still allows."""
    datasets = _as_datasets(lineage)
    ok_groups = [g for g in groups if not problems(d, datasets, [g], [], today)]
    ok_users = [u for u in users if not problems(d, datasets, [], [u], today)]
    return ok_groups, ok_users


# ---------------------------------------------------------------- what the sites serve


_catalog_cache: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}


def served_entries(d: Deployment, site: str) -> dict[str, dict[str, Any]]:
    """The site's catalog as it serves it: path on the site -> {entry, policy, title, citation,
    license}. Re-read when the catalog file changes (the gallery asks every few seconds)."""
    src = d.location("catalogs") / f"{site}.yaml"
    try:
        mtime = src.stat().st_mtime
    except OSError:
        return {}
    key = str(src)
    cached = _catalog_cache.get(key)
    if cached and cached[0] == mtime:
        return cached[1]
    try:
        data = yaml.safe_load(src.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return cached[1] if cached else {}  # a half-saved edit: keep what was known
    prefix = "{{ CATALOG_DIR }}/data/" + site + "/"
    out: dict[str, dict[str, Any]] = {}
    for name, spec in (data.get("sources") or {}).items():
        if not isinstance(spec, dict):
            continue
        url = str((spec.get("args") or {}).get("urlpath") or "")
        if not url.startswith(prefix):
            continue
        md = spec.get("metadata") or {}
        out[url[len(prefix):].rstrip("/")] = {
            "entry": name, "policy": md.get("policy"), "title": md.get("title"),
            "citation": md.get("citation"), "license": md.get("license")}
    _catalog_cache[key] = (mtime, out)
    return out


def _entry_of(entries: Mapping[str, dict[str, Any]], path: str) -> tuple[str, dict[str, Any] | None]:
    """The catalog entry a path on the site belongs to (a zarr chunk belongs to its store)."""
    if path in entries:
        return path, entries[path]
    for base, info in entries.items():
        if path.startswith(base + "/"):
            return base, info
    return path, None


def policy_of_path(path: str) -> str | None:
    first = PurePosixPath(path).parts[0] if PurePosixPath(path).parts else ""
    return first if first in POLICIES else None


def _served_version(d: Deployment, site: str, path: str) -> dict[str, Any]:
    """ETag (as nginx computes it), Last-Modified, size and, for a file of moderate size, sha256
    of what the site serves now (read at publish, as root, from the site's served copy)."""
    from lunarhub.data.sites import served_dir

    target = served_dir(d, site) / path
    try:
        st = os.stat(target, follow_symlinks=False)
    except OSError:
        return {}
    if not os.path.isfile(target):
        return {}
    out: dict[str, Any] = {"etag": f'"{int(st.st_mtime):x}-{st.st_size:x}"',
                           "last_modified": formatdate(st.st_mtime, usegmt=True), "size": st.st_size}
    if st.st_size <= HASH_MAX_BYTES:
        h = hashlib.sha256()
        with open(target, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        out["sha256"] = "sha256:" + h.hexdigest()
    return out


def _log_time(entry: Mapping[str, Any]) -> float | None:
    try:
        return datetime.fromisoformat(str(entry["time"])).timestamp()
    except (KeyError, ValueError):
        return None


def site_reads(d: Deployment, user: str, lo: float, hi: float) -> list[tuple[str, str]]:
    """(site, path) of every file the sites served to `user` between lo and hi (their access logs)."""
    from lunarhub.data.sites import read_log

    out: list[tuple[str, str]] = []
    for site, spec in d.sites.items():
        if spec.kind != "local":
            continue  # a remote site's log is the institute's; only the library's records count there
        try:
            lines = read_log(d, site)
        except (OSError, ValueError):
            continue
        for e in lines:
            t = _log_time(e)
            if (e.get("user") != user or t is None or not lo - LOG_SLACK <= t <= hi + LOG_SLACK
                    or int(e.get("status", 0)) not in SERVED):
                continue
            path = str(e.get("uri", "")).lstrip("/")
            if policy_of_path(path):
                out.append((site, path))
    return out


def trusted_run_reads(d: Deployment, owner: str, slug: str, notebook: str, files: Mapping[str, bytes],
                      timeout: float | None = None) -> tuple[list[tuple[str, str]], str | None]:
    """The one call site of the validation run the gallery starts itself
    (lunarhub.dashboards.trusted_run.observed_reads, under a credential minted for the run):
    (site, path) of what the sites saw it read, and why the run failed (None: it did not). The
    candidate snapshot is laid out as a version (metadata.json, files/) in a folder of root's."""
    import json
    import shutil
    import tempfile

    from lunarhub.dashboards import trusted_run
    from lunarhub.dashboards.store import check_relpath

    work = Path(tempfile.mkdtemp(prefix="lunarhub-candidate-"))
    try:
        (work / "metadata.json").write_text(json.dumps({"notebook": str(check_relpath(notebook))}),
                                            encoding="utf-8")
        for name, data in files.items():
            target = work / "files" / str(check_relpath(name))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        observed = trusted_run.observed_reads(d, owner, slug, work,
                                              timeout=timeout or trusted_run.DEFAULT_TIMEOUT)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [(str(r["site"]), str(r["path"])) for r in observed], observed.error


def establish(d: Deployment, owner: str, slug: str, claimed: Iterable[Any], started: Any, finished: Any,
              now: float | None = None, trusted: Iterable[tuple[str, str]] = ()) -> Lineage:
    """The lineage the gallery stores for a new version: the UNION of what the publisher's
    catalog library says it read (`claimed`), what the sites served to the publisher during
    the run's window (their logs: a read around the library is still seen) and what a run the
    gallery started itself saw (`trusted`). A claim only adds (the stricter way); policies come
    from the path's first folder (what the site enforces), entries, citations and licences from
    the catalog the site serves, versions from the served file."""
    now = time.time() if now is None else now
    try:
        lo = float(started)
    except (TypeError, ValueError):
        lo = now - MAX_RUN_SECONDS
    lo = min(max(lo, now - MAX_RUN_SECONDS), now)
    # The window ends now, not at the claimed end: whatever the publisher read since counts too.
    found: dict[tuple[str, str], Dataset] = {}

    def add(site: str, path: str, source: str, version: Mapping[str, Any] | None = None) -> None:
        if site not in d.sites:
            return
        path = str(PurePosixPath(path.lstrip("/")))
        policy = policy_of_path(path)
        if policy is None or ".." in PurePosixPath(path).parts:
            return
        key_path, info = _entry_of(served_entries(d, site), path)
        key = (site, key_path)
        ds = found.get(key)
        if ds is None:
            ds = found[key] = {
                "site": site, "entry": info["entry"] if info else None, "path": key_path,
                "policy": (info or {}).get("policy") if (info or {}).get("policy") in POLICIES else policy,
                "embargo_until": d.sites[site].embargo_until, "title": (info or {}).get("title"),
                "citation": (info or {}).get("citation"), "license": (info or {}).get("license"),
                "version": _served_version(d, site, key_path), "sources": []}
        # The path itself decides the policy the site enforced: a stricter folder wins.
        if POLICIES.index(policy) > POLICIES.index(ds["policy"]):
            ds["policy"] = policy
        if source not in ds["sources"]:
            ds["sources"].append(source)
        for k, v in (version or {}).items():
            ds["version"].setdefault(f"claimed_{k}" if k in ds["version"] and ds["version"][k] != v else k, v)

    for rec in claimed:
        if isinstance(rec, Mapping) and isinstance(rec.get("site"), str) and isinstance(rec.get("path"), str):
            ver = rec.get("version") if isinstance(rec.get("version"), Mapping) else None
            add(rec["site"], rec["path"], "library", ver)
    for site, path in site_reads(d, owner, lo, now):
        add(site, path, "site-log")
    for site, path in trusted:
        add(site, path, "trusted-run")
    return sorted(found.values(), key=lambda x: (x["site"], x["path"]))


def current(d: Deployment, lineage: Iterable[Mapping[str, Any]]) -> Lineage:
    """The lineage with today's policies and embargo dates: a dataset whose catalog entry moved
    to a stricter (or looser) policy counts with the policy it has now."""
    out = []
    for ds in lineage:
        now = dict(ds)
        site = str(ds.get("site"))
        if site in d.sites:
            now["embargo_until"] = d.sites[site].embargo_until
            entries = served_entries(d, site)
            entry = ds.get("entry")
            info = next((i for i in entries.values() if entry and i["entry"] == entry), None)
            if info and info.get("policy") in POLICIES:
                now["policy"] = info["policy"]
        out.append(now)
    return out


def dashboard_lineage(dash: Any) -> Lineage:
    """Every dataset any served version of `dash` (a store.Dashboard) read: a share opens the
    whole server, older versions included."""
    out: Lineage = []
    for v in dash.versions:
        out.extend(v.meta.get("lineage") or [])
    return out
