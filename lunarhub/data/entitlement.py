"""Who may read which data: the one place the deployment's access rules are computed.

A site's folders are its policies (`open/`, `partners/`, `ru-only/`, `cn-only/`, see
lunarhub.data.policy). Users are entitled through their groups; an audience (a group a
dashboard or a server is shared with) is entitled to what membership of that group alone
gives, so sharing with a group never relies on who happens to be in it today.

A joint project (`projects` in the deployment) reads as its own principal, the hub user
`project-<name>`: what every one of its members may read (a group member counts with what the
group alone gives), plus the project's explicit `grants`. So a project server never shows one
institute's private data to the other's members.

The site's nginx (lunarhub.data.sites), the gallery's share checks and the hub's lab-share
checks all ask here, so they cannot disagree.
"""

from __future__ import annotations

from datetime import date

from lunarhub.config import Deployment, Role, project_hub_name
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
    instructor and admin groups of an institute in country cc, at that country's sites (each
    country keeps its national data at home, so a team is never said to read another
    country's site's "<cc>-only" folder, which refusals would otherwise name). A group's
    `grants` add policies explicitly, at every site. After the site's `embargo_until` its own
    <cc>-only data opens to whoever reads partners data there.
    """
    g = d.groups[group]
    out = {"open"}
    if g.role in PARTNER_ROLES:
        out.add("partners")
    if g.role in TEAM_ROLES and g.institution:
        country = d.institutions[g.institution].country.lower()
        if d.institutions[_site(d, site).institution].country.lower() == country:
            out.add(f"{country}-only")
    out.update(str(p) for p in g.grants)
    return _with_embargo(d, site, out, today)


def user_policies(d: Deployment, username: str, site: str, today: date | None = None) -> set[str]:
    """The policies `username` may read on `site`: the union over the user's groups; for a
    project's hub user (`project-<name>`) the project's policies (project_policies)."""
    user = d.users.get(username)
    if user is None:
        project = d.project_of(username)
        return project_policies(d, project, site, today) if project else set()
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


def _member_policies(d: Deployment, member: str, site: str, today: date | None) -> set[str]:
    if member in d.groups:
        return group_policies(d, member, site, today)
    return user_policies(d, member, site, today)


def project_policies(d: Deployment, project: str, site: str, today: date | None = None) -> set[str]:
    """What `project`'s server may read on `site`: the intersection over its members (each
    with its own embargo dates applied, so embargoed data comes in only when every member
    would read it) plus the project's `grants`."""
    p = d.projects[project]
    common: set[str] | None = None
    for member in p.members:
        mine = _member_policies(d, member, site, today)
        common = mine if common is None else common & mine
    out = (common or {"open"}) | {"open"} | {str(g) for g in p.grants}
    return {pol for pol in POLICIES if pol in out}


def members_holding(d: Deployment, project: str, policy: str, today: date | None = None) -> list[str]:
    """The members of `project` who may read `policy` on at least one site (a grant needs one);
    every member when the deployment has no sites (nothing to read, nothing to check)."""
    if not d.sites:
        return list(d.projects[project].members)
    return [m for m in d.projects[project].members
            if any(policy in _member_policies(d, m, site, today) for site in d.sites)]


def principals(d: Deployment) -> list[str]:
    """Everyone who reads the sites with credentials of their own: hub users and projects."""
    return sorted(set(d.users) | {project_hub_name(p) for p in d.projects})


# ---------------------------------------------------------------- at-site data


def at_site_paths(d: Deployment, username: str, site: str, today: date | None = None) -> list[str]:
    """The `at-site` datasets (sites.<site>.at_site) `username` may compute on at `site` but not
    download: a group of theirs is named there and their policies do not already cover the file.
    Only a site's own workers read them (lunarhub.data.local_reads); the site's nginx refuses them."""
    user = d.users.get(username)
    if user is None:
        return []
    have = user_policies(d, username, site, today)
    return sorted(path for path, groups in _site(d, site).at_site.items()
                  if path.split("/", 1)[0] not in have and set(groups) & set(user.groups))


def egress_budget_bytes(d: Deployment, username: str) -> int:
    """Bytes `username` may take out of a site's cluster per at-site dataset: the largest
    `groups.<g>.egress_budget_mb` of their groups that are named in some site's `at_site`."""
    user = d.users.get(username)
    named = {g for s in d.sites.values() for groups in s.at_site.values() for g in groups}
    budgets = [d.groups[g].egress_budget_mb for g in (user.groups if user else []) if g in named]
    return int(max(budgets, default=0.0) * 1_000_000)


def egress_budget_key(d: Deployment, username: str) -> str:
    """The deployment key that sets `username`'s budget (for refusals that name it)."""
    user = d.users.get(username)
    named = {g for s in d.sites.values() for groups in s.at_site.values() for g in groups}
    groups = [g for g in (user.groups if user else []) if g in named]
    best = max(groups, key=lambda g: d.groups[g].egress_budget_mb, default=None)
    return f"groups.{best}.egress_budget_mb" if best else "groups.<group>.egress_budget_mb"
