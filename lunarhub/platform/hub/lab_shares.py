"""Who a server may be shared with, decided in the hub for every share its API makes.

A lab server (the default server and any named server that is not a published dashboard)
runs code as its owner with the owner's site credentials: whoever it is shared with can read
everything the owner can. So its audience must itself be entitled to everything the owner may
read (lunarhub.data.entitlement); in the demo deployment that is the owner's own team. A
dashboard server `dash-<slug>` shows what its newest version read when it was published (its
lineage, lunarhub.dashboards.lineage): its audience must be entitled to that. A share code can
be accepted by anyone, so lab servers get none; a dashboard's code is checked when it is
accepted, against the user accepting it.

The rule runs inside the hub (lunarhub.upstream.jupyterhub_share_policy hooks it into
JupyterHub's own sharing), so the REST API, share codes and the gallery all meet it. It reads
the deployment file and roster afresh for each decision, so users added live are judged by
their groups, and every decision is in the audit trail (component "hub").
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from lunarhub import config
from lunarhub.config import ConfigError, Deployment, roster
from lunarhub.dashboards.store import SERVER_PREFIX, slug_of_server
from lunarhub.data import entitlement
from lunarhub.platform import audit
from lunarhub.upstream.jupyterhub_share_policy import ShareRequest

COMPONENT = "hub"


def is_dashboard(server: str) -> bool:
    return server.startswith(SERVER_PREFIX)


def describe(owner: str, server: str) -> str:
    """How a refusal names the server: "cn-scientist's lab", "...'s server 'analysis'"."""
    if not server:
        return f"{owner}'s lab"
    if is_dashboard(server):
        return f"{owner}'s dashboard {server[len(SERVER_PREFIX):]!r}"
    return f"{owner}'s lab server {server!r}"


def _audience_label(req: ShareRequest) -> str:
    return "a share code" if req.kind == "code" else f"{req.kind} {req.audience!r}"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _reads(gap: dict[str, set[str]]) -> str:
    """"cn-only data on sites cn and ru, partners data on site ru": policy by policy."""
    sites: dict[str, list[str]] = {}
    for site, pols in sorted(gap.items()):
        for pol in pols:
            sites.setdefault(pol, []).append(site)
    return ", ".join(f"{pol} data on site{'s' if len(where) > 1 else ''} {_and(where)}"
                     for pol, where in sorted(sites.items()))


def needed(d: Deployment, owner: str, server: str) -> dict[str, set[str]] | None:
    """site -> what an audience of owner/server must be entitled to; None: unknown dashboard."""
    if not is_dashboard(server):
        return entitlement.everything(d, owner)
    slug = slug_of_server(server)
    if slug is None:
        return None
    from lunarhub.dashboards import lineage  # the gallery's side; imported when a dashboard is shared

    return lineage.needed_policies(d, owner, slug)


def refusal(d: Deployment, req: ShareRequest, today: date | None = None) -> str | None:
    """Why `req` may not be made (one sentence naming site, policy and audience), or None."""
    what = describe(req.owner, req.server)
    head = f"{what} may not be shared with {_audience_label(req)}"
    if req.owner not in entitlement.principals(d):  # a user, or a joint project's hub user
        return f"{head}: {req.owner} is not a user of the deployment"
    project = d.project_of(req.owner)
    if project is not None and not is_dashboard(req.server):
        # Its members are the file's to decide (project roles), whatever the audience may read.
        return (f"{head}: who opens joint project {project!r}'s server is decided by "
                f"projects.{project}.members in the deployment file, never by a share")
    if req.kind == "code":
        if is_dashboard(req.server):
            return None  # checked when accepted: the code becomes a share with the accepting user
        return (f"{head}: whoever accepts a code would run code as {req.owner} with {req.owner}'s data; "
                f"share with a user or a group instead")
    if req.kind == "user" and req.audience == req.owner:
        return None
    want = needed(d, req.owner, req.server)
    if want is None:
        return f"{head}: it is not a published dashboard of {req.owner}"
    if req.kind == "group":
        if req.audience not in d.groups:
            return f"{head}: {req.audience!r} is not a group of the deployment"
        has = entitlement.of_group(d, req.audience, today)
    elif req.kind == "user":
        if req.audience not in d.users:
            return f"{head}: {req.audience!r} is not a user of the deployment"
        has = entitlement.everything(d, req.audience, today)
    else:
        return f"{head}: unknown kind of audience {req.kind!r}"
    gap = entitlement.missing(d, want, has)
    if not gap:
        return None
    subject = "it shows" if is_dashboard(req.server) else "its owner reads"
    return f"{head}: {subject} {_reads(gap)}, which {req.audience} may not read"


def record(d: Deployment, event: str, req: ShareRequest, reason: str = "") -> None:
    """One audit line: event "share-created" / "share-refused" / "share-revoked"."""
    audience = "share-code" if req.kind == "code" else f"{req.kind}:{req.audience}"
    audit.record(d, COMPONENT, event, actor=req.actor or "hub", owner=req.owner, server=req.server,
                 audience=audience, reason=reason)


class SharePolicy:
    """The hub's share hooks for one deployment file (re-read at each decision)."""

    def __init__(self, d: Deployment):
        self.started_with = d
        self.config_file: Path | None = d.config_file

    def deployment(self) -> Deployment:
        if self.config_file is None:
            return self.started_with
        return roster.effective(config.load(self.config_file))

    def refusal(self, req: ShareRequest) -> str | None:
        try:
            d = self.deployment()
        except ConfigError as exc:
            # Fail closed: without a valid deployment nobody's entitlements are known.
            return (f"{describe(req.owner, req.server)} may not be shared now: the deployment file does not "
                    f"validate ({exc})")
        return refusal(d, req)

    def record(self, event: str, req: ShareRequest, reason: str) -> None:
        # The audit folder is the one the hub started with: state_dir is not changed live.
        record(self.started_with, event, req, reason)


def install(d: Deployment) -> SharePolicy:
    """Hook the policy into this (the hub's) process; hub/jupyterhub_config.py calls it."""
    from lunarhub.upstream import jupyterhub_share_policy

    policy = SharePolicy(d)
    jupyterhub_share_policy.apply(policy.refusal, policy.record)
    return policy
