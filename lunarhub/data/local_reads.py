"""What a user's batch jobs at a site may read from the site's disk: exactly their entitlement.

A site with its own Slurm cluster (sites.<name>.compute.kind: slurm) lets its workers read the
served copy of its data (lunarhub.data.sites.served_dir) by local path instead of over HTTP. The
files stay the site account's, 0640, folders 0750, so a user's shell reads none of them
(tests/security/test_at_rest.py). Each user with an account at the site gets a **job group**
`lh-<site>-j-<user>` with no members: the site's gateway submits the user's jobs with it as their
group (`sudo -g`, lunarhub.compute.site_gateway), and POSIX ACLs give that group read access to
what the user is entitled to on the site (lunarhub.data.entitlement: policy folders, plus the
at-site datasets the user may only compute on). Nothing else on the host carries that group: a
user cannot `sg`/`newgrp` into it (no members, no password), and a process with another group
cannot ptrace or read /proc of the job's processes (the kernel compares gids too).

What the job's own code does with the bytes is not confined: see docs/security.md, "At-site data".
"""

from __future__ import annotations

import grp
import hashlib
import shutil
import subprocess
from pathlib import Path

from lunarhub.config import Deployment
from lunarhub.data import entitlement
from lunarhub.data.policy import POLICIES

GROUP_MAX = 32  # useradd/groupadd's limit on Debian


class LocalReadsError(RuntimeError):
    """The job groups or ACLs of a site could not be set up; says what to install or fix."""


def job_group(site: str, username: str) -> str:
    name = f"lh-{site}-j-{username}"
    if len(name) <= GROUP_MAX:
        return name
    return f"lh-{site}-j-{hashlib.sha256(username.encode()).hexdigest()[:12]}"


def users_at(d: Deployment, site: str) -> list[str]:
    """Hub users with an account (a partition) at the site's Slurm cluster."""
    from lunarhub.compute import slurm

    return [u for u in sorted(d.users) if slurm.partition_for(d, site, u) is not None]


def _gid_min() -> int:
    try:
        for line in Path("/etc/login.defs").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "GID_MIN":
                return int(parts[1])
    except (OSError, ValueError):
        pass
    return 1000


def ensure_job_group(site: str, username: str) -> int:
    """The job group's gid, made (as a system group without members) if missing."""
    name = job_group(site, username)
    try:
        g = grp.getgrnam(name)
    except KeyError:
        groupadd = shutil.which("groupadd") or "/usr/sbin/groupadd"
        r = subprocess.run([groupadd, "--system", name], capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise LocalReadsError(f"site {site}: could not create the job group {name} of {username} "
                                  f"({groupadd} --system {name}: {r.stderr.strip()})") from None
        g = grp.getgrnam(name)
    if g.gr_gid >= _gid_min() or g.gr_mem:
        raise LocalReadsError(f"site {site}: group {name} exists but is not a memberless system group "
                              f"(gid {g.gr_gid}, members {g.gr_mem}); lunarhub gives jobs only groups it made: "
                              f"remove it (groupdel {name}) and run lunarhub up again")
    return g.gr_gid


def grants(d: Deployment, site: str) -> dict[str, tuple[set[str], list[str]]]:
    """job group -> (policies, at-site paths) its jobs may read on the site's disk."""
    return {job_group(site, u): (entitlement.user_policies(d, u, site), entitlement.at_site_paths(d, u, site))
            for u in users_at(d, site)}


def _setfacl(*args: str) -> None:
    exe = shutil.which("setfacl")
    if not exe:
        raise LocalReadsError("setfacl is missing: a Slurm site's workers read its data through ACLs "
                              "(apt-get install acl; `make install` does it)")
    r = subprocess.run([exe, *args], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise LocalReadsError(f"setfacl {' '.join(args)}: {r.stderr.strip()} (does the state dir's file "
                              "system support POSIX ACLs?)")


def apply(d: Deployment, site: str, served: Path, state: Path) -> dict[str, tuple[set[str], list[str]]]:
    """Make the ACLs of the served copy say exactly `grants` (old entries are cleared first)."""
    wanted = grants(d, site)
    for username in users_at(d, site):
        ensure_job_group(site, username)
    # Never across a link: place_data refuses links, and -P keeps setfacl from following any.
    _setfacl("-R", "-P", "-b", str(served))
    if not wanted:
        return wanted
    traverse = ",".join(f"g:{g}:x" for g in sorted(wanted))
    for folder in (state, served):
        _setfacl("-m", traverse, str(folder))
    for policy in POLICIES:
        top = served / policy
        readers = sorted(g for g, (pols, _) in wanted.items() if policy in pols)
        if top.is_dir() and readers:
            _setfacl("-R", "-P", "-m", ",".join(f"g:{g}:rX" for g in readers), str(top))
    for g, (_, paths) in sorted(wanted.items()):
        for rel in paths:
            target = served / rel
            if not target.exists() or target.is_symlink():
                continue  # the validator checked the form; a file not yet built is simply not readable
            for parent in reversed(target.relative_to(served).parents):
                if str(parent) != ".":
                    _setfacl("-m", f"g:{g}:x", str(served / parent))
            _setfacl("-R", "-P", "-m", f"g:{g}:rX", str(target))
    return wanted


def gid_for_jobs(site: str, username: str) -> int | None:
    """The job group's gid, if lunarhub made it (None: the user's jobs get no site reads)."""
    try:
        return grp.getgrnam(job_group(site, username)).gr_gid
    except KeyError:
        return None


def local_root_env(d: Deployment, site: str) -> dict[str, str]:
    """What a worker at `site` needs to resolve an entry to a local path (lunarhub.data.catalog)."""
    from lunarhub.data import sites
    from lunarhub.data.policy import env_prefix

    return {"LUNARHUB_AT_SITE": site, f"{env_prefix(site)}_LOCAL_ROOT": str(sites.served_dir(d, site))}
