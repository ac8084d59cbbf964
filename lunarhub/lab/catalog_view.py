"""The Data panel's listing: both sites' catalogs as this user sees them, computed in the user's
own server (as the user) with the project's own rules.

What the user may read is `lunarhub.data.entitlement` over the user's groups (the hub gives them
at spawn, LUNARHUB_USER_GROUPS), intersected with what the server's site credentials carry
(`LUNARHUB_SITE_<NAME>_POLICIES`): the panel never calls readable what the site would refuse.
An entry the user may not read is listed with its policy and whom to ask, and nothing that
locates its data: no URL, no path, no label, no credentials (docs/security.md, "The lab's Data
panel").
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

from lunarhub.config import Deployment
from lunarhub.data import entitlement
from lunarhub.data.catalog import CatalogError, SiteAccess, SiteCatalog, open_site
from lunarhub.data.policy import POLICIES

# Metadata an entry shows whether or not the user may read it: what it is, never where it is.
PUBLIC_FIELDS = ("title", "description", "mission", "instrument", "crs", "units", "extent", "citation",
                 "license", "format")

Opener = Callable[[SiteAccess], SiteCatalog]


def readable_policies(d: Deployment | None, groups: list[str], site: str, access: SiteAccess,
                      today: date | None = None) -> tuple[set[str], set[str]]:
    """(what the deployment entitles the groups to on `site`, what the server's credentials carry).

    Without the deployment (not readable from this server) the credentials alone decide."""
    carried = set(access.policies) if access.auth else {"open"}
    if d is None or site not in d.sites:
        return set(carried), carried
    out = {"open"}
    for g in groups:
        if g in d.groups:
            out |= entitlement.group_policies(d, g, site, today)
    return {p for p in POLICIES if p in out}, carried


def holders(d: Deployment | None, site: str, policy: str, today: date | None = None) -> list[str]:
    """The groups whose membership gives `policy` on `site` (whom a refusal points to)."""
    if d is None or site not in d.sites:
        return []
    return sorted(g for g in d.groups if policy in entitlement.group_policies(d, g, site, today))


def _texts(value: Any) -> dict[str, str]:
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items() if v}
    return {"en": str(value)} if value else {}


def owner_of(d: Deployment | None, site: str) -> dict[str, Any]:
    """The institute that runs `site` (its names in each language), who grants access to its data."""
    if d is None or site not in d.sites:
        return {"key": None, "name": {}}
    key = d.sites[site].institution
    inst = d.institutions.get(key)
    return {"key": key, "name": inst.name.model_dump(exclude_none=True) if inst else {"en": key}}


def variable_name(entry: str) -> str:
    name = re.sub(r"\W", "_", entry) or "data"
    if name[0].isdigit() or keyword.iskeyword(name):
        name = "ds_" + name
    return name


def open_code(site: str, entry: str) -> str:
    """What "open in notebook" inserts: the catalog library's lazy (dask-backed) read, no URL."""
    var = variable_name(entry)
    return (f"import lunarhub\n\n"
            f"# {site}/{entry}: lazy, dask-backed (computed only when values are needed)\n"
            f"{var} = lunarhub.open_catalog()[{site!r}][{entry!r}].read()\n"
            f"{var}")


def _entry(d: Deployment | None, site: str, name: str, metadata: Mapping[str, Any], entitled: set[str],
           carried: set[str], today: date | None) -> dict[str, Any]:
    policy = str(metadata.get("policy") or "")
    readable = policy in entitled and policy in carried
    out: dict[str, Any] = {"site": site, "name": name, "policy": policy, "readable": readable}
    for key in PUBLIC_FIELDS:
        if key in ("title", "description"):
            out[key] = _texts(metadata.get(key))
        elif metadata.get(key) is not None:
            out[key] = metadata[key]
    if isinstance(out.get("citation"), str):
        out["citation"] = [out["citation"]]
    if readable:
        out["code"] = open_code(site, name)
        return out
    reason: dict[str, Any] = {"policy": policy, "groups": holders(d, site, policy, today),
                              "ask": owner_of(d, site)["name"]}
    if policy in entitled:
        # Entitled by the deployment but not by this server's credentials (groups changed since
        # the server started): a restart brings the new credentials.
        reason["restart"] = True
    until = d.sites[site].embargo_until if d is not None and site in d.sites else None
    if until and policy.endswith("-only") and not entitlement.embargo_over(d, site, today):  # type: ignore[arg-type]
        reason["embargo_until"] = str(until)
    out["reason"] = reason
    return out


def listing(d: Deployment | None, groups: list[str], access: Mapping[str, SiteAccess],
            opener: Opener | None = None, today: date | None = None) -> dict[str, Any]:
    """{"sites": [...], "entries": [...]}: every site's state (a site that cannot be reached says
    which and why, the others are listed) and every entry with `readable` and, when not, `reason`."""
    opener = opener or (lambda site: open_site(site, filter_policies=False))

    def one(name: str) -> tuple[str, SiteCatalog | CatalogError]:
        try:
            return name, opener(access[name])
        except CatalogError as exc:
            return name, exc

    # The sites answer independently: one that hangs until its timeout does not delay the other.
    with ThreadPoolExecutor(max_workers=max(1, len(access))) as pool:
        results = list(pool.map(one, list(access)))
    sites: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    for name, result in results:
        info: dict[str, Any] = {"name": name, "owner": owner_of(d, name)}
        if isinstance(result, CatalogError):
            sites.append({**info, "ok": False, "error": str(result)})
            continue
        entitled, carried = readable_policies(d, groups, name, access[name], today)
        sites.append({**info, "ok": True, "title": _texts(result.metadata.get("title")),
                      "readable_policies": sorted(entitled & carried, key=POLICIES.index)})
        for ename, e in result.entries.items():
            entries.append(_entry(d, name, ename, e.metadata, entitled, carried, today))
    return {"sites": sites, "entries": entries, "groups": groups}
