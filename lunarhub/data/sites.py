"""The national data sites: one nginx per local site, access rules enforced by the server.

A site serves its `data_dir` over HTTP with range reads (206). The first folder
of every path is the dataset's access policy (`open/`, `partners/`, `ru-only/`,
`cn-only/`); nginx checks the caller against that policy for each request, so
a restricted dataset is refused by the storage server itself, not hidden by the
notebook. Every request is logged as one JSON line naming the hub user.

Authentication is HTTP Basic with one random secret per hub user per site,
kept under `<secrets>/sites/<site>/users.json` (mode 0600). The generated nginx
config maps the exact `Authorization` header to the user name (in a 0600 file
only the master process reads), then maps the user to each policy. That gives
the distinction clients need: no or wrong credentials -> 401, valid user
without the entitlement -> 403 naming the policy. (htpasswd + auth_basic can't
tell the two apart, and its files must be readable by the unprivileged
workers.)

The server's workers run as the site's own service account (`lh-site-<name>`,
created here when the master runs as root) and serve a copy of the site's data
placed in `<state>/sites/<name>/data` (owned by that account, 0750/0640): no other
account on the host reads a site's files from disk. The configured `data_dir` is
only the source of that copy; `up` locks its restricted folders (data/build.py).

A `remote` site (an institute's own endpoint) contributes only its URL, plus
credentials if the operator put the institute-issued ones in the same
users.json layout.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import secrets
import shutil
import signal
import stat
from dataclasses import dataclass
from pathlib import Path

from lunarhub.config import Deployment
from lunarhub.data import entitlement
from lunarhub.data.policy import POLICIES, env_prefix
from lunarhub.files import write_atomic, write_private


class SiteError(Exception):
    """A site that cannot be configured or started, with what to do about it."""


# ---------------------------------------------------------------- paths


def site_state_dir(deployment: Deployment, name: str) -> Path:
    return deployment.state_path / "sites" / name


def site_secrets_dir(deployment: Deployment, name: str) -> Path:
    return deployment.secrets_path / "sites" / name


def _private_secrets_dir(deployment: Deployment, name: str) -> Path:
    # Every level root's alone (mkdir(parents=True) would leave <secrets>/sites at 0755).
    path = site_secrets_dir(deployment, name)
    for level in (path.parent, path):
        level.mkdir(parents=True, exist_ok=True)
        os.chmod(level, 0o700)
    return path


def site_url(deployment: Deployment, name: str) -> str:
    site = _site(deployment, name)
    if site.kind == "remote":
        return str(site.url).rstrip("/")
    return f"{deployment.scheme}://127.0.0.1:{site.port}"


def data_dir(deployment: Deployment, name: str) -> Path:
    """The configured source of a local site's data (the build's output); not what nginx serves."""
    site = _site(deployment, name)
    if not site.data_dir:
        raise SiteError(f"site {name}: no data_dir (remote sites hold their data themselves)")
    return deployment.path(site.data_dir)


def served_dir(deployment: Deployment, name: str) -> Path:
    """The copy of the site's data that its server reads: only the site's account enters it."""
    return site_state_dir(deployment, name) / "data"


def site_account(name: str) -> str:
    return f"lh-site-{name}"


def _site(deployment: Deployment, name: str):
    try:
        return deployment.sites[name]
    except KeyError:
        raise SiteError(f"unknown site {name!r}; the deployment defines {sorted(deployment.sites)}") from None


# ---------------------------------------------------------------- entitlement


def entitled_policies(deployment: Deployment, username: str, site: str) -> set[str]:
    """The policies `username` may read on `site` (lunarhub.data.entitlement.user_policies)."""
    _site(deployment, site)
    return entitlement.user_policies(deployment, username, site)


# ---------------------------------------------------------------- secrets


def site_passwords(deployment: Deployment, name: str, create: bool = True) -> dict[str, str]:
    """Per-principal secrets of a site (hub users and projects, entitlement.principals): created
    for new ones, dropped for removed ones."""
    path = site_secrets_dir(deployment, name) / "users.json"
    current: dict[str, str] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    if not create or _site(deployment, name).kind == "remote":
        return current
    wanted = {u: current.get(u) or secrets.token_urlsafe(24) for u in entitlement.principals(deployment)}
    if wanted != current:
        _private_secrets_dir(deployment, name)
        write_private(path, json.dumps(wanted, indent=1))
    return wanted


def basic_auth_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def credentials_for(deployment: Deployment, username: str) -> dict[str, str]:
    """Environment for `username`'s server (a hub user or a project's hub user): each site's URL
    and, where it has credentials, user/password/Authorization header and entitled policies."""
    env: dict[str, str] = {"LUNARHUB_SITES": ",".join(deployment.sites)}
    for name in deployment.sites:
        p = env_prefix(name)
        env[f"{p}_URL"] = site_url(deployment, name)
        known = site_passwords(deployment, name, create=False)
        password = site_passwords(deployment, name).get(username)
        if password is None:
            continue
        if username not in known and deployment.sites[name].kind == "local":
            # A user new to this site: the running server must learn the secret now.
            try:
                prepare_site(deployment, name)
            except SiteError:
                pass  # site not built/started yet; `up` prepares it
        env[f"{p}_USER"] = username
        env[f"{p}_PASSWORD"] = password
        # Ready-made header so a plain intake YAML can template it with env().
        env[f"{p}_AUTH"] = basic_auth_header(username, password)
        env[f"{p}_POLICIES"] = ",".join(p2 for p2 in POLICIES if p2 in entitled_policies(deployment, username, name))
        at_site = entitlement.at_site_paths(deployment, username, name)
        if at_site:
            # Shown in the catalog, computed on at the site only (lunarhub.data.catalog, AtSiteOnly).
            env[f"{p}_AT_SITE"] = ",".join(at_site)
    return env


# ---------------------------------------------------------------- nginx


def find_nginx() -> str:
    exe = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                         if os.access(p, os.X_OK)), None)
    if not exe:
        raise SiteError("nginx is not installed: the data sites need it (apt-get install nginx-light)")
    return exe


def _q(s: str) -> str:
    """Quote a string for nginx config (our values never contain quotes or newlines)."""
    if any(c in s for c in "\"'\n\\;{}$"):
        raise SiteError(f"unsafe value for nginx config: {s!r}")
    return f'"{s}"'


def _bare(path: str) -> str:
    """A site path for an nginx location/message: validated in the model, checked again here."""
    if not all(c.isalnum() or c in "-_./" for c in path):
        raise SiteError(f"unsafe at-site path for nginx config: {path!r}")
    return path


def _var(policy: str) -> str:
    return "$lh_" + policy.replace("-", "_")


def _users_conf(deployment: Deployment, name: str, passwords: dict[str, str]) -> str:
    # Dashboards' and trusted runs' credentials (lunarhub.data.scoped_credentials) sit beside the
    # users': a policy only within their owner's entitlement, and $lh_out_of_scope for other files.
    from lunarhub.data import scoped_credentials

    scoped = scoped_credentials.nginx_maps(deployment, name)
    lines = ["map $http_authorization $lh_user {", '    default "";']
    for user, pw in sorted(passwords.items()):
        lines.append(f"    {_q(basic_auth_header(user, pw))} {_q(user)};")
    lines.extend(scoped.headers)
    lines.append("}")
    for policy in POLICIES[1:]:
        lines.append(f"map $lh_user {_var(policy)} {{")
        lines.append("    default 0;")
        for user in sorted(passwords):
            if policy in entitled_policies(deployment, user, name):
                lines.append(f"    {_q(user)} 1;")
        for cred, granted in sorted(scoped.grants.items()):
            if policy in granted:
                lines.append(f"    {_q(cred)} 1;")
        lines.append("}")
    lines.extend(scoped.maps)
    return "\n".join(lines) + "\n"


def _nginx_conf(deployment: Deployment, name: str, users_conf: Path, account: Account | None = None) -> str:
    site = _site(deployment, name)
    state = site_state_dir(deployment, name)
    root = served_dir(deployment, name)
    # The master stays root (it binds and reads the users map); its workers, which open
    # the data files, are the site's own account.
    user = f"user {account.name} {account.name};\n" if account else ""
    listen = f"127.0.0.1:{site.port}"
    tls = ""
    if deployment.tls.mode != "off":
        from lunarhub.platform import tls as certificates

        # The master (root) reads the key before its workers drop to the site's account.
        files = certificates.server_files(deployment)
        listen += " ssl"
        tls = (f"        ssl_certificate {_q(str(files.cert))};\n        ssl_certificate_key {_q(str(files.key))};\n"
               "        ssl_protocols TLSv1.2 TLSv1.3;\n")
    realm = f"lunarhub data site {name}"
    locations = []
    for policy in POLICIES:
        checks = ['        if ($lh_user = "") { return 401; }', "        if ($lh_out_of_scope) { return 403; }"]
        if policy != "open":
            checks.append(f"        if ({_var(policy)} = 0) {{ return 403; }}")
        locations.append(
            f"    location /{policy}/ {{\n" + "\n".join(checks) + "\n"
            "        error_page 401 @unauthorized;\n"
            f"        error_page 403 @forbidden_{policy.replace('-', '_')};\n"
            "    }\n"
            f"    location @forbidden_{policy.replace('-', '_')} {{\n"
            "        add_header X-Lunarhub-Refusal policy always;\n"
            f'        return 403 "403 not entitled to \'{policy}\' data on site {name} (user $lh_user)$lh_scope_note\\n";\n'
            "    }\n"
        )
    for i, path in enumerate(sorted(site.at_site)):
        # The same checks as its policy folder; a refusal says it is computed on here, not downloaded.
        policy = path.split("/", 1)[0]
        checks = ['        if ($lh_user = "") { return 401; }', "        if ($lh_out_of_scope) { return 403; }"]
        if policy != "open":
            checks.append(f"        if ({_var(policy)} = 0) {{ return 403; }}")
        locations.append(
            f"    location = /{_bare(path)} {{\n" + "\n".join(checks) + "\n"
            "        error_page 401 @unauthorized;\n"
            f"        error_page 403 @at_site_{i};\n"
            "    }\n"
            f"    location @at_site_{i} {{\n"
            "        add_header X-Lunarhub-Refusal policy always;\n"
            f'        return 403 "403 not entitled to \'{policy}\' data on site {name} (user $lh_user): {_bare(path)} '
            f'is at-site data, computed on at the site by the groups it names (lunarhub.at_site), never '
            f'downloaded$lh_scope_note\\n";\n'
            "    }\n"
        )
    return f"""# Generated by lunarhub.data.sites.prepare_site for site {name}; edits are overwritten.
daemon off;
{user}worker_processes 1;
pid {state}/nginx.pid;
error_log {state}/error.log warn;
events {{ worker_connections 512; }}

http {{
    default_type application/octet-stream;
    types {{
        image/tiff tif tiff;
        application/json json geojson zarray zattrs zgroup zmetadata;
        text/csv csv;
        text/yaml yaml yml;
        text/markdown md;
        application/xml xml 2bl lbl;
        application/vnd.apache.parquet parquet;
    }}
    sendfile on;
    charset utf-8;
    charset_types text/csv text/yaml text/markdown application/json application/xml;
    map_hash_bucket_size 512;  # keys are whole Authorization headers, or credential:path
    server_tokens off;
    client_body_temp_path {state}/tmp/body;
    proxy_temp_path {state}/tmp/proxy;
    fastcgi_temp_path {state}/tmp/fastcgi;
    uwsgi_temp_path {state}/tmp/uwsgi;
    scgi_temp_path {state}/tmp/scgi;

    # user <- exact Authorization header; policy flags <- user (secrets file, 0600)
    include {users_conf};
    map $http_authorization $lh_why {{
        "" "credentials missing";
        default "credentials not valid";
    }}

    log_format lunarhub escape=json '{{"time":"$time_iso8601","site":"{name}","user":"$lh_user",'
        '"claimed":"$remote_user","remote":"$remote_addr","method":"$request_method","uri":"$uri","status":$status,'
        '"bytes":$body_bytes_sent,"range":"$http_range"}}';
    access_log {state}/access.log lunarhub;

    server {{
        listen {listen};
        server_name {name};
{tls}        root {root};
        autoindex off;
        error_page 401 @unauthorized;

        location @unauthorized {{
            add_header WWW-Authenticate 'Basic realm="{realm}"' always;
            return 401 "401 $lh_why for site {name}\\n";
        }}
        location = /healthz {{ access_log off; return 200 "ok\\n"; }}
        # The site's own catalog and provenance: readable by every hub user.
        location = /catalog.yaml {{ if ($lh_user = "") {{ return 401; }} }}
        location = /PROVENANCE.md {{ if ($lh_user = "") {{ return 401; }} }}
{"".join(locations)}        location / {{ return 404; }}
    }}
}}
"""


def served_catalog_text(deployment: Deployment, name: str) -> str | None:
    """catalogs/<name>.yaml rewritten so its paths are relative to the site root."""
    src = deployment.location("catalogs") / f"{name}.yaml"
    if not src.exists():
        return None
    # Convention: catalogs/<site>.yaml addresses its data as {{ CATALOG_DIR }}/data/<site>/...
    return src.read_text(encoding="utf-8").replace("{{ CATALOG_DIR }}/data/" + name + "/", "{{ CATALOG_DIR }}/")


def prepare_site(deployment: Deployment, name: str) -> Path:
    """Write the site's nginx config, user map and served catalog; reload a running
    server. Idempotent. Returns the nginx.conf path."""
    site = _site(deployment, name)
    if site.kind == "remote":
        raise SiteError(f"site {name} is remote ({site.url}): nothing to prepare here")
    root = data_dir(deployment, name)
    if not root.is_dir():
        raise SiteError(f"site {name}: data_dir {root} does not exist (run the data build)")
    account = ensure_site_account(deployment, name)
    state = site_state_dir(deployment, name)
    _lock_state_dir(state, account)
    passwords = site_passwords(deployment, name)
    users_conf = _private_secrets_dir(deployment, name) / "users.conf"
    write_private(users_conf, _users_conf(deployment, name, passwords))
    catalog = served_catalog_text(deployment, name)
    if catalog is not None and (not (root / "catalog.yaml").exists()
                                or (root / "catalog.yaml").read_text(encoding="utf-8") != catalog):
        (root / "catalog.yaml").write_text(catalog, encoding="utf-8")
    place_data(deployment, name, account)
    _check_reachable(served_dir(deployment, name), name, account)
    if account is not None and site.compute.kind == "slurm":
        # The site's own workers read the copy by local path with their owner's entitlement.
        from lunarhub.data import local_reads

        try:
            local_reads.apply(deployment, name, served_dir(deployment, name), state)
        except local_reads.LocalReadsError as exc:
            raise SiteError(str(exc)) from None
    if deployment.tls.mode != "off":
        from lunarhub.platform import tls

        tls.ensure(deployment)  # kept when current: `up` made them before the sites
    conf = state / "nginx.conf"
    text = _nginx_conf(deployment, name, users_conf, account)
    if not conf.exists() or conf.read_text(encoding="utf-8") != text:
        write_atomic(conf, text, 0o600)
    os.chmod(conf, 0o600)
    reload_site(deployment, name)
    return conf


# ---------------------------------------------------------------- the site's account and files


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int


def ensure_site_account(deployment: Deployment, name: str) -> Account | None:
    """The site's service account, created if missing; None when not root (nginx cannot
    switch users then, and the operator's own account serves the copy)."""
    if os.geteuid() != 0:
        return None
    account = site_account(name)
    if account in deployment.users:
        raise SiteError(f"site {name}: hub user {account!r} has the name of the site's service account; "
                        f"rename that user in the deployment's `users` (names {site_account('*')} are reserved)")
    try:
        entry = pwd.getpwnam(account)
    except KeyError:
        entry = _create_account(name, account)
    if entry.pw_uid == 0 or entry.pw_uid >= _uid_min():
        raise SiteError(f"site {name}: account {account} exists but is not a system account "
                        f"(uid {entry.pw_uid}); lunarhub serves a site only as a system account it made: "
                        f"remove that account (userdel {account}) and run lunarhub up again")
    return Account(account, entry.pw_uid, entry.pw_gid)


def _create_account(name: str, account: str) -> pwd.struct_passwd:
    from lunarhub.platform.accounts import AccountError, create_account

    try:
        return create_account(account, f"lunarhub data site {name}")
    except AccountError as exc:
        raise SiteError(f"site {name}: service account {account} is missing and could not be created: {exc}; "
                        "create it by hand") from None


def _uid_min() -> int:
    try:
        for line in Path("/etc/login.defs").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "UID_MIN":
                return int(parts[1])
    except (OSError, ValueError):
        pass
    return 1000


def _chown(path: Path | int, account: Account | None, uid: int | None = None) -> None:
    if account is None:
        return
    owner = account.uid if uid is None else uid
    if isinstance(path, int):
        os.fchown(path, owner, account.gid)
    else:
        os.chown(path, owner, account.gid, follow_symlinks=False)


def _lock_state_dir(state: Path, account: Account | None) -> None:
    """<state>/sites/<name>: root's, entered by the site's workers (group) and nobody else.
    The logs are root's alone; an old, world-readable layout is fixed on the way."""
    state.mkdir(parents=True, exist_ok=True)
    _chown(state, account, uid=0)
    os.chmod(state, 0o750)
    tmp = state / "tmp"
    tmp.mkdir(exist_ok=True)
    _chown(tmp, account, uid=0)
    os.chmod(tmp, 0o750)
    for log in ("access.log", "error.log"):
        # Who read which restricted file is itself restricted: made before nginx opens it
        # (nginx creates logs 0644) and tightened if an older run left it open.
        fd = os.open(state / log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    for leftover in ("nginx.conf", "nginx.pid"):
        if (state / leftover).exists():
            os.chmod(state / leftover, 0o600 if leftover == "nginx.conf" else 0o640)


def place_data(deployment: Deployment, name: str, account: Account | None = None) -> Path:
    """Copy the site's data from its `data_dir` into the served folder, owned by the site's
    account, folders 0750, files 0640. Only files that changed (size or mtime) are copied, each
    through a temp name and a rename, so a running server never serves half a file; files
    gone from the source are removed. Idempotent; returns the served folder."""
    src = data_dir(deployment, name)
    dst = served_dir(deployment, name)
    dst.mkdir(parents=True, exist_ok=True)
    _chown(dst, account)
    os.chmod(dst, 0o750)
    wanted: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        here = Path(dirpath)
        rel = here.relative_to(src)
        for entry in (*dirnames, *filenames):
            if (here / entry).is_symlink():
                raise SiteError(f"site {name}: {here / entry} in data_dir is a link; a site's data must be "
                                "regular files and folders (links could point anywhere on the host)")
        for sub in dirnames:
            target = dst / rel / sub
            wanted.add(rel / sub)
            if not target.is_dir() or target.is_symlink():
                if target.exists() or target.is_symlink():
                    target.unlink()
                target.mkdir()
            _chown(target, account)
            os.chmod(target, 0o750)
        for fname in filenames:
            wanted.add(rel / fname)
            _place_file(here / fname, dst / rel / fname, account)
    for dirpath, dirnames, filenames in os.walk(dst, topdown=False):
        here = Path(dirpath)
        for entry in (*filenames, *dirnames):
            rel = (here / entry).relative_to(dst)
            if rel not in wanted:
                if (here / entry).is_dir() and not (here / entry).is_symlink():
                    shutil.rmtree(here / entry)
                else:
                    (here / entry).unlink()
    return dst


def _place_file(src: Path, dst: Path, account: Account | None) -> None:
    st = src.stat()
    try:
        cur = os.lstat(dst)
        same = (stat.S_ISREG(cur.st_mode) and cur.st_size == st.st_size and cur.st_mtime_ns == st.st_mtime_ns)
    except FileNotFoundError:
        same = False
    if not same:
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, dst)
    _chown(dst, account)
    os.chmod(dst, 0o640)


def _check_reachable(path: Path, name: str, account: Account | None) -> None:
    """Refuse at start, naming the folder, when the site's workers could not enter the served
    data (every request would otherwise fail as a bare 403/404)."""
    if account is None:
        return
    for parent in reversed(path.parents):
        st = parent.stat()
        if st.st_uid == account.uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid == account.gid:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            raise SiteError(f"site {name}: its account {account.name} cannot enter {parent} "
                            f"(mode {stat.S_IMODE(st.st_mode):04o}, owner uid {st.st_uid}); the state dir must "
                            "lie under folders other accounts may traverse (o+x)")


def site_command(deployment: Deployment, name: str) -> list[str]:
    """The foreground command the process supervisor runs for a local site."""
    conf = prepare_site(deployment, name)
    return [find_nginx(), "-p", str(conf.parent), "-c", str(conf), "-e", str(conf.parent / "error.log")]


def running_pid(deployment: Deployment, name: str) -> int | None:
    pidfile = site_state_dir(deployment, name) / "nginx.pid"
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def reload_site(deployment: Deployment, name: str) -> bool:
    """SIGHUP a running site so new users/entitlements apply without downtime."""
    pid = running_pid(deployment, name)
    if pid is None:
        return False
    os.kill(pid, signal.SIGHUP)
    return True


def read_log(deployment: Deployment, name: str) -> list[dict]:
    """The site's read log: one dict per request (time, user, uri, status, bytes, range)."""
    path = site_state_dir(deployment, name) / "access.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
