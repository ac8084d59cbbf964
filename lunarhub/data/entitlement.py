"""Who may read which data: the one place the deployment's access rules are computed.

A site's folders are its policies (`open/`, `partners/`, `ru-only/`, `cn-only/`, see
lunarhub.data.policy). Users are entitled through their groups; an audience (a group a
dashboard or a server is shared with) is entitled to what membership of that group alone
gives, so sharing with a group never relies on who happens to be in it today.

The site's nginx (lunarhub.data.sites), the gallery's share checks and the hub's lab-share
checks all ask here, so they cannot disagree.
"""

from __future__ import annotations

from datetime import date

from lunarhub.config import Deployment, Role
from lunarhub.data.policy import POLICIES

# Roles that count as an institute's own team for its embargoed data.
TEAM_ROLES = {Role.science, Role.instructor, Role.admin}
# Roles that see data the two institutes share (reviewers see dashboards built on it).
PARTNER_ROLES = {Role.science, Role.reviewer, Role.admin}


class UnknownSite(KeyError):
    pass


def _site(d: Deployment, site: str):  # noqa: ANN202 - the config model's Site
    try:
        return d.sites[site]
    except KeyError:
        raise UnknownSite(f"unknown site {site!r}; the deployment defines {sorted(d.sites)}") from None


def embargo_over(d: Deployment, site: str, today: date | None = None) -> bool:
    """True once the site's `embargo_until` date has come (its national data opens to partners)."""
    until = _site(d, site).embargo_until
    return bool(until) and date.fromisoformat(str(until)) <= (today or date.today())


def group_policies(d: Deployment, group: str, site: str, today: date | None = None) -> set[str]:
    """The policies membership of `group` alone gives on `site`.

    open: everyone. partners: science, reviewer and admin roles. <cc>-only: science,
    instructor and admin groups of an institute in country cc. A group's `grants` add
    policies explicitly. After the site's `embargo_until` its own <cc>-only data opens to
    whoever reads partners data there.
    """
    g = d.groups[group]
    out = {"open"}
    if g.role in PARTNER_ROLES:
        out.add("partners")
    if g.role in TEAM_ROLES and g.institution:
        out.add(f"{d.institutions[g.institution].country.lower()}-only")
    out.update(str(p) for p in g.grants)
    return _with_embargo(d, site, out, today)


def user_policies(d: Deployment, username: str, site: str, today: date | None = None) -> set[str]:
    """The policies `username` may read on `site`: the union over the user's groups."""
    user = d.users.get(username)
    if user is None:
        return set()
    out = {"open"}
    for g in user.groups:
        out |= group_policies(d, g, site, today)
    return _with_embargo(d, site, out, today)


def _with_embargo(d: Deployment, site: str, policies: set[str], today: date | None) -> set[str]:
    if "partners" in policies and embargo_over(d, site, today):
        home = d.institutions[_site(d, site).institution].country
        policies = policies | {f"{home.lower()}-only"}
    return {p for p in POLICIES if p in policies}


def missing(d: Deployment, needed: dict[str, set[str]], audience: dict[str, set[str]]) -> dict[str, set[str]]:
    """site -> the policies in `needed` that `audience` lacks (empty when the audience is entitled)."""
    out = {site: set(pols) - audience.get(site, set()) for site, pols in needed.items()}
    return {site: pols for site, pols in out.items() if pols}


def everything(d: Deployment, username: str, today: date | None = None) -> dict[str, set[str]]:
    """site -> what `username` may read there."""
    return {site: user_policies(d, username, site, today) for site in d.sites}


def of_group(d: Deployment, group: str, today: date | None = None) -> dict[str, set[str]]:
    """site -> what membership of `group` gives there."""
    return {site: group_policies(d, group, site, today) for site in d.sites}
