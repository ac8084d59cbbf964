"""Site credentials narrower than a hub user's: a dashboard's (exactly the files its lineage
names) and a trusted run's (what its publisher may read, for one run).

A hub user's site credential opens every file of the policies they are entitled to. A published
dashboard must read only the datasets its version read at publish (docs/security.md, "A dashboard
reads only its lineage"), and the gallery's own run of a snapshot needs a credential nobody else
holds, so that what the site logged under it is what that run read. Both are kept here, per site,
in `<secrets>/sites/<site>/scoped.json` (0600, root's):

    {"dash/<owner>/<slug>": {"password", "owner", "policies": [...], "paths": ["open/a.tif", ...],
                             "purpose", "issued"},
     "run/<owner>/<slug>/<nonce>": {..., "paths": null}}

`paths` null: any file of `policies`; otherwise exactly those files (a folder: everything in it, as
a zarr store is many files). Either way a scoped credential is never worth more than its owner's
own: the generated nginx maps (lunarhub.data.sites._users_conf) grant a policy only while the
owner is entitled to it. No or a wrong header is a 401 as for users; a path outside the scope is a
403 with `X-Lunarhub-Refusal: policy`, which the catalog library raises as NotEntitled.

Names hold a '/', which no hub user name does, so a scoped credential never collides with a user's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lunarhub.config import Deployment
from lunarhub.data import sites
from lunarhub.data.policy import POLICIES
from lunarhub.files import write_private

FILE = "scoped.json"
NAME_RE = re.compile(r"^(dash|run)/[a-z0-9][a-z0-9-]{0,40}/[a-z0-9][a-z0-9-]{0,40}(/[0-9a-f]{8,32})?$")
PATH_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$")
MAX_PATH = 300  # nginx map keys are bounded by map_hash_bucket_size (sites._nginx_conf)


class ScopeError(ValueError):
    """A scope that cannot be issued; the message names the credential, path and reason."""


@dataclass(frozen=True)
class Scoped:
    name: str
    password: str
    owner: str
    policies: frozenset[str]
    paths: tuple[str, ...] | None  # None: every file of `policies`
    purpose: str = ""

    def header(self) -> str:
        return sites.basic_auth_header(self.name, self.password)

    def as_json(self) -> dict[str, Any]:
        return {"password": self.password, "owner": self.owner, "policies": sorted(self.policies),
                "paths": None if self.paths is None else list(self.paths), "purpose": self.purpose,
                "issued": round(time.time(), 3)}


def dashboard_name(owner: str, slug: str) -> str:
    return f"dash/{owner}/{slug}"


def run_name(owner: str, slug: str) -> str:
    return f"run/{owner}/{slug}/{secrets.token_hex(8)}"


def check_path(name: str, path: str) -> str:
    """A site-relative path as lineages carry it ('open/lola/dem.tif'; a leading '/' is dropped),
    refused unless its first folder is a policy and it holds only plain file-name characters."""
    clean = path.lstrip("/")
    if len(clean) > MAX_PATH or not PATH_RE.match(clean) or ".." in clean.split("/"):
        raise ScopeError(f"credential {name}: path {path!r} is not a plain site path "
                         f"(letters, digits, '.', '_', '-' and '/', at most {MAX_PATH} characters)")
    if clean.split("/")[0] not in POLICIES:
        raise ScopeError(f"credential {name}: path {path!r} does not start with a policy folder {POLICIES}")
    return clean


def _file(d: Deployment, site: str) -> Path:
    return sites.site_secrets_dir(d, site) / FILE


@contextlib.contextmanager
def _locked(d: Deployment, site: str) -> Iterator[None]:
    # The gallery (trusted runs) and the hub (dashboard starts) both write the file.
    folder = sites.site_secrets_dir(d, site)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(folder / f".{FILE}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load(d: Deployment, site: str) -> dict[str, Scoped]:
    path = _file(d, site)
    if not path.exists():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {name: Scoped(name, v["password"], v["owner"], frozenset(v["policies"]),
                         None if v.get("paths") is None else tuple(v["paths"]), v.get("purpose", ""))
            for name, v in raw.items()}


def _save(d: Deployment, site: str, creds: dict[str, Scoped]) -> None:
    write_private(_file(d, site), json.dumps({n: c.as_json() for n, c in sorted(creds.items())}, indent=1))


def issue(d: Deployment, site: str, name: str, owner: str, policies: Iterable[str],
          paths: Iterable[str] | None, purpose: str = "") -> Scoped:
    """A new secret for `name` on `site` with this scope (replacing any earlier one of that
    name), in force at the site when this returns (users map rewritten, site reloaded)."""
    if not NAME_RE.match(name):
        raise ScopeError(f"invalid scoped credential name {name!r}")
    if site not in d.sites:
        raise ScopeError(f"credential {name}: unknown site {site!r}; the deployment defines {sorted(d.sites)}")
    pols = frozenset(policies)
    unknown = pols - set(POLICIES)
    if unknown:
        raise ScopeError(f"credential {name}: unknown policies {sorted(unknown)} (known: {POLICIES})")
    clean = None if paths is None else tuple(sorted({check_path(name, p) for p in paths}))
    if clean is not None:
        pols = pols | {p.split("/")[0] for p in clean}
    cred = Scoped(name, secrets.token_urlsafe(24), owner, pols, clean, purpose)
    with _locked(d, site):
        creds = load(d, site)
        creds[name] = cred
        _save(d, site, creds)
        old = _serving_workers(d, site)
        if apply(d, site):
            _wait_until(d, site, cred.header(), accepted=True, old=old)
    return cred


def revoke(d: Deployment, site: str, name: str, prefix: bool = False) -> list[str]:
    """Drop `name` (or, with prefix, every credential whose name starts with it); returns the
    names dropped. The site stops accepting them when this returns."""
    with _locked(d, site):
        creds = load(d, site)
        gone = [n for n in creds if (n.startswith(name) if prefix else n == name)]
        if not gone:
            return []
        dropped = [creds.pop(n) for n in gone]
        _save(d, site, creds)
        old = _serving_workers(d, site)
        if apply(d, site):
            for cred in dropped:
                _wait_until(d, site, cred.header(), accepted=False, old=old)
    return gone


def apply(d: Deployment, site: str) -> bool:
    """Rewrite the site's users map with the scoped credentials and reload a running site
    (nothing else of prepare_site: data and config stay as `up` left them)."""
    if d.sites[site].kind != "local":
        return False
    conf = sites.site_secrets_dir(d, site) / "users.conf"
    write_private(conf, sites._users_conf(d, site, sites.site_passwords(d, site, create=False)))
    return sites.reload_site(d, site)


def _serving_workers(d: Deployment, site: str) -> set[int]:
    """The site's workers that take new connections (not those finishing after a reload)."""
    import psutil

    pid = sites.running_pid(d, site)
    if pid is None:
        return set()
    out = set()
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children():
            with contextlib.suppress(psutil.Error):
                title = " ".join(child.cmdline())
                if "worker process" in title and "shutting down" not in title:
                    out.add(child.pid)
    return out


def _wait_until(d: Deployment, site: str, header: str, accepted: bool, old: set[int],
                timeout: float = 10.0) -> None:
    """nginx applies a reload in new workers while the old ones finish: wait until no old worker
    takes connections and the site answers this header as wanted, so the caller's next
    request already meets the new scope."""
    import requests

    url = sites.site_url(d, site) + "/catalog.yaml"
    deadline = time.monotonic() + timeout
    while True:
        serving = _serving_workers(d, site)
        if serving and not serving & old:
            try:
                status = requests.head(url, headers={"Authorization": header}, timeout=2).status_code
                if (status != 401) == accepted:
                    return
            except requests.RequestException:
                pass  # restarting: ask again
        if time.monotonic() > deadline:
            raise ScopeError(f"site {site}: the reloaded site did not {'accept' if accepted else 'drop'} "
                             f"the credential within {timeout:g} s (see its error.log)")
        time.sleep(0.05)


# ---------------------------------------------------------------- nginx


def _regex(text: str) -> str:
    return re.sub(r"([.\-])", r"\\\1", text)


@dataclass
class NginxMaps:
    headers: list[str]  # entries of the $lh_user map: a scoped Authorization header -> its name
    grants: dict[str, set[str]]  # name -> the policies it may read now (for the policy maps)
    maps: list[str]  # $lh_out_of_scope (and the refusal's note): is a scoped request in scope


def nginx_maps(d: Deployment, site: str) -> NginxMaps:
    """What sites._users_conf adds for the scoped credentials of `site`. A scope's policies
    count only while its owner is entitled to them (sites.entitled_policies, checked anew at
    every rewrite of the map)."""
    creds = load(d, site)
    headers = [f"    {sites._q(c.header())} {sites._q(n)};" for n, c in sorted(creds.items())]
    grants: dict[str, set[str]] = {}
    scoped = ["map $lh_user $lh_scoped {", "    default 0;"]
    in_scope = ['map "$lh_user:$uri" $lh_in_scope {', "    default 0;"]
    folder = sites.served_dir(d, site)
    for n, c in sorted(creds.items()):
        try:
            grants[n] = set(c.policies) & sites.entitled_policies(d, c.owner, site)
        except (KeyError, sites.SiteError):
            grants[n] = set()  # an owner the deployment no longer has: nothing
        if c.paths is None:
            continue
        scoped.append(f"    {sites._q(n)} 1;")
        for p in c.paths:
            if (folder / p).is_dir():  # a zarr store and the like: the files in it
                in_scope.append(f'    "~^{_regex(n)}:/{_regex(p)}/" 1;')
            else:
                in_scope.append(f"    {sites._q(f'{n}:/{p}')} 1;")
    maps = [*scoped, "}", *in_scope, "}",
            'map "$lh_scoped$lh_in_scope" $lh_out_of_scope {', "    default 0;", '    "10" 1;', "}",
            "map $lh_out_of_scope $lh_scope_note {", '    default "";',
            "    1 \"; $uri is outside this credential's data lineage\";", "}"]
    return NginxMaps(headers, grants, maps)
