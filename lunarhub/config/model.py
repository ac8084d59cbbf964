"""The deployment model: one YAML file -> one typed, validated object.

Every component (hub, sites, gateway, dashboards) reads this model; none reads
the YAML itself. Errors carry the key path and, where the YAML gives it, the
line, so an operator can fix the file without guessing.

The field descriptions are the documentation of the file: docs/config-reference.md
is generated from them (lunarhub.config.reference).
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from lunarhub.config.errors import ConfigError, CrossFieldErrors, Problem
from lunarhub.config.locations import DEFAULT_CONFIG, PACKAGE_ROOT

__all__ = [
    "ACCOUNT_MARKER", "DEFAULT_CONFIG", "DEFAULT_PATHS", "NAME_RE", "RESERVED_NAMES", "account_refusal", "PACKAGE_ROOT", "Auth", "ConfigError", "CrossFieldErrors", "DaskGateway",
    "DashboardLimits", "Dashboards", "Deployment", "Group", "GroupLimits", "HubSettings", "IdleCuller", "Institution",
    "LDAPAuth", "OAuthProvider", "PasswordAuth", "PathKey", "Paths", "Policy", "Problem", "Profile", "Project", "PROJECT_ACCOUNT_PREFIX", "PROJECT_HUB_PREFIX", "Role",
    "Services", "Site", "SiteCompute", "Strict", "TLS", "Texts", "User", "default_location", "load", "parse", "project_account", "project_hub_name",
]

# POSIX portable user names, as adduser accepts them; also safe in URLs and paths.
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")

# A hub user's server runs as the system account of the same name, so a user called `backup` or
# `slurm` would run as (and own the files, sockets and sudo rules of) that service. These are
# refused on any host, existing or not; `lh-` is lunarhub's own (team groups, site accounts).
RESERVED_NAMES = frozenset({
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy",
    "www-data", "backup", "list", "irc", "gnats", "nobody", "nogroup", "adm", "wheel", "sudo", "staff",
    "operator", "shutdown", "halt", "ftp", "sshd", "messagebus", "syslog", "polkitd", "tss", "uuidd",
    "dnsmasq", "avahi", "ntp", "postfix", "postgres", "mysql", "redis", "nginx", "apache", "httpd",
    "munge", "slurm", "slurmd", "slurmctld", "dask", "jupyter", "jupyterhub", "lunarhub", "docker",
})
RESERVED_PREFIXES = ("systemd-", "lh-")
# The comment (GECOS) lunarhub.platform.accounts gives each account it creates: the only proof
# that an existing account is a hub user's and not someone else's.
ACCOUNT_MARKER = "lunarhub user"
UID_MIN = 1000  # Debian's login.defs: below are system accounts


def account_refusal(name: str, host: bool = True) -> str | None:
    """Why hub user `name` may not map to a system account (None: it may). `host`: also look at
    the accounts that exist on this machine (system-users isolation)."""
    if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES):
        return (f"{name!r} is a reserved system name (a hub user runs as the account of the same name): "
                "choose another user name")
    if not host:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    if entry.pw_uid < UID_MIN:
        return (f"{name!r} is a system account on this host (uid {entry.pw_uid}): hub users map only to "
                "accounts lunarhub creates; choose another user name")
    if entry.pw_gecos.split(",")[0] != f"{ACCOUNT_MARKER} {name}":
        return (f"{name!r} is an existing account on this host (uid {entry.pw_uid}) that lunarhub did not create "
                f"(its comment is {entry.pw_gecos.split(',')[0]!r}, not '{ACCOUNT_MARKER} {name}'): hub users "
                "map only to accounts lunarhub creates; choose another user name")
    return None
# Where the public proxy listens only for this machine, so `localhost` names reach it.
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class Role(StrEnum):
    """What members of a group may do; mapped to JupyterHub roles in lunarhub.platform.hub."""

    science = "science"
    reviewer = "reviewer"
    instructor = "instructor"
    student = "student"
    admin = "admin"


Policy = Literal["open", "partners", "ru-only", "cn-only"]
Language = Literal["en", "ru", "zh"]
LANGUAGES: tuple[Language, ...] = ("en", "ru", "zh")


class Texts(Strict):
    """A text shown to users, in each interface language."""

    en: str = Field(description="English text (always required: the fallback for other languages).")
    ru: str | None = Field(None, description="Russian text; English is shown when missing.")
    zh: str | None = Field(None, description="Chinese text; English is shown when missing.")


class Institution(Strict):
    """A member institute of the data center."""

    name: Texts = Field(description="The institute's name as users see it.",
                        examples=[{"en": "Space Research Institute (IKI RAS)", "ru": "ИКИ РАН"}])
    country: Literal["RU", "CN"] = Field(description="Country of the institute; decides `ru-only`/`cn-only` data.")
    site: str | None = Field(None, description="Name of the institute's data site (a key of `sites`).",
                             examples=["ru"])
    ui_language: Language | None = Field(
        None, description="JupyterLab's language for members (the institute of a user's first group with one "
                          "decides; `users.<name>.ui_language` overrides): written as the user's default at "
                          "server start, changeable in Settings → Language. None: English.",
        examples=["ru"])


class Profile(Strict):
    """Resource limits of a user server (and defaults for dask clusters)."""

    cpu: float = Field(1.0, gt=0, le=64, description="CPU cores of a user server.")
    memory_gb: float = Field(2.0, gt=0, le=512, description="Memory limit of a user server, in GB.")


class GroupLimits(Strict):
    """Per-group dask-gateway limits (issue 4); a user gets the largest limits of their groups."""

    max_clusters: int = Field(1, ge=0, description="Dask clusters a member may run at once.")
    max_cores: float = Field(2, ge=0, description="CPU cores of all of a member's clusters together.")
    max_memory_gb: float = Field(4, ge=0, description="Memory of all of a member's clusters together, in GB.")
    max_workers: int = Field(2, ge=0, description="Workers of one cluster.")


class Group(Strict):
    """A group of users: their role, institute, resources, sharing and data grants."""

    role: Role = Field(description="What members may do: science, reviewer (dashboards only), instructor, "
                                   "student or admin.")
    institution: str | None = Field(None, description="The group's institute (a key of `institutions`); "
                                                      "its country decides national data access.")
    description: Texts | None = Field(None, description="Shown on the hub's pages.")
    profile: str = Field("standard", description="Resource profile of members' servers (a key of `profiles`).")
    share_with: list[str] = Field(
        default_factory=list,
        description="Groups whose members (and the group itself) this group may share servers with.",
        examples=[["ru-science", "cn-science", "reviewers"]],
    )
    project_folder: bool = Field(False, description="Give the group a shared project folder writable by "
                                                    "members only (for teams).")
    teaches: list[str] = Field(default_factory=list, description="Instructors: the student groups whose "
                                                                 "servers they may see and help.",
                               examples=[["students"]])
    grants: list[Policy] = Field(
        default_factory=list,
        description="Data policies granted beyond what the role gives (e.g. a course reading `partners` data).",
        examples=[["partners"]],
    )
    dask: GroupLimits | None = Field(None, description="Dask-gateway limits of members; none: no clusters.")
    core_hours_per_month: float | None = Field(
        None, gt=0, description="Core-hours (servers and dask clusters of all members together, per calendar "
                                "month in UTC) after which members' servers and clusters no longer start; "
                                "none: no quota (`lunarhub usage`, docs/operations.md).")
    egress_budget_mb: float = Field(
        1.0, ge=0,
        description="What a member may take out of a site's cluster from each `at-site` dataset they may only "
                    "compute on (sites.<name>.at_site), in MB (10^6 bytes), summed over all their clusters: "
                    "results over it are refused naming this key (docs/data-sites.md, \"Computed on, not taken away\").",
        examples=[0.05])


class User(Strict):
    """A hub user (more can be added with `lunarhub users` or a CSV roster)."""

    groups: list[str] = Field(min_length=1, description="The user's groups (keys of `groups`), at least one.",
                              examples=[["ru-science"]])
    full_name: str | None = Field(None, description="Shown on the hub's pages.")
    email: str | None = Field(None, description="Contact address (not used for login).")
    ui_language: Language | None = Field(None, description="JupyterLab's default language for this user, "
                                                           "instead of their institute's `ui_language`.",
                                         examples=["zh"])


# A project is a hub user of this name (its server is what members open) running as the system
# account of PROJECT_ACCOUNT_PREFIX + name; lunarhub.platform.projects maps one to the other.
PROJECT_HUB_PREFIX = "project-"
PROJECT_ACCOUNT_PREFIX = "lh-project-"
# Linux account names are at most 32 characters, and the account carries the prefix.
PROJECT_NAME_MAX = 32 - len(PROJECT_ACCOUNT_PREFIX)


class Project(Strict):
    """A joint project: one JupyterLab server its members share. It runs as the project's
    own system account (`lh-project-<name>`, home = the project folder), is the hub user
    `project-<name>` and reads the data sites with the project's own credentials: what every member
    may read, plus `grants`. Members open it from their hub home page; real-time collaboration is on.
    Membership changes take effect at the next hub restart (`lunarhub users` reloads the hub)."""

    members: list[str] = Field(
        min_length=1,
        description="Users and/or groups (keys of `users` / `groups`) who may open the project server. "
                    "A group counts with what membership of it alone gives, so who joins it later "
                    "changes nothing about the project's data. Reviewer groups (no lab) may not be members.",
        examples=[["ru-scientist", "cn-scientist"], ["ru-science", "cn-science"]],
    )
    description: Texts | None = Field(None, description="Shown with the project's link on members' hub home "
                                                        "page, in the reader's language.")
    grants: list[Policy] = Field(
        default_factory=list,
        description="Data policies given to the project beyond the intersection of its members' "
                    "entitlements; each must be one at least one member may read (a grant never gives "
                    "the project what none of its members has).",
        examples=[["partners"]],
    )

    @field_validator("members")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        seen = [m for i, m in enumerate(value) if m in value[:i]]
        if seen:
            raise ValueError(f"{seen[0]!r} is listed twice")
        return value


class HubSettings(Strict):
    """The hub and its proxy."""

    ip: str = Field("127.0.0.1", description="Address the public proxy listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Public port (configurable-http-proxy).")
    hub_port: int = Field(8081, ge=1, le=65535, description="The hub's internal API port.")
    proxy_api_port: int = Field(8001, ge=1, le=65535, description="The proxy's REST API port.")
    isolation: Literal["system-users", "single-account"] = Field(
        "system-users",
        description="`system-users`: one system account per hub user (needs root). `single-account`: every "
                    "server runs as the operator; for unprivileged development only.",
    )
    database_url: str | None = Field(None, description="The hub's database; default: SQLite in `state_dir`.",
                                     examples=["postgresql://hub@db/jupyterhub"])
    # Generous: many servers starting at once on a small machine (a class) take time.
    start_timeout: int = Field(180, ge=5, description="Seconds a user server may take to start.")
    http_timeout: int = Field(120, ge=5, description="Seconds a started server may take to answer HTTP.")
    token_cache_seconds: int = Field(
        5, ge=0, le=600,
        description="Seconds a single-user server trusts a cached token's permissions; short so revoked "
                    "shares take effect within seconds.",
    )
    home_root: str = Field("/home", description="Parent folder of the users' home folders.")
    resource_limits: Literal["cgroups", "none"] = Field(
        "cgroups",
        description="`cgroups`: each user server runs in its own control group with its profile's "
                    "memory and CPU (cgroup v1 controllers under /sys/fs/cgroup/{memory,cpu}, or v2 where "
                    "that is the host's hierarchy); over the memory limit the kernel kills a process of that "
                    "server only, noted in the server's log. Needs root; the hub refuses to start, naming "
                    "what is missing, where the controllers are absent. `none`: limits are only passed to "
                    "the server as MEM_LIMIT/CPU_LIMIT, not enforced (unprivileged development, hosts "
                    "without cgroups).",
    )
    loopback_filter: Literal["nftables", "none"] = Field(
        "nftables",
        description="`nftables`: a host-wide nftables table (`inet lunarhub`) drops what a lunarhub "
                    "account's loopback listeners would send to another lunarhub account, so dask "
                    "dashboards, kernels' pipes and anything a user runs in a terminal answer only their "
                    "owner and root (docs/security.md, loopback). Needs root, the nft command (Debian's "
                    "nftables) and nf_tables in the kernel; the hub refuses to start, naming what is "
                    "missing. Only with `isolation: system-users`. `none`: no filter.",
    )
    proxy_command: str | None = Field(
        None,
        description="configurable-http-proxy executable; default: the project's npm install "
                    "(`paths.node_modules`), then PATH.",
    )
    subdomain_host: str | bool | None = Field(
        None,
        description="The hub's origin, `scheme://host[:port]`; each user's servers (dashboards included) get "
                    "their own origin `scheme://<user>.host[:port]`, so a page one user publishes cannot act as "
                    "its viewer. Needs a wildcard DNS name `*.host` (and a wildcard certificate for https): "
                    "docs/platform.md. Default: `https://localhost:<port>` (`http://` with `tls.mode: off`) when `ip` is a loopback address "
                    "(browsers resolve `*.localhost` themselves); required otherwise. `false`: every server "
                    "on the hub's origin (one origin for all pages: only for a single trusted user).",
        examples=["https://hub.lunar.example.org", False],
    )

    @field_validator("subdomain_host")
    @classmethod
    def _origin(cls, value: str | bool | None) -> str | bool | None:
        if not value:
            return value
        if value is True:
            raise ValueError("write the hub's origin (e.g. https://hub.lunar.example.org), or false to turn "
                             "per-user origins off")
        # JupyterHub would quietly assume https for a bare host name.
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in ("http", "https"):
            raise ValueError(f"{value!r} has no scheme: write http://{rest or value} or https://{rest or value}")
        host, _, port = rest.partition(":")
        if not host or "/" in rest or "?" in rest or "#" in rest or "@" in rest:
            raise ValueError(f"{value!r} is not an origin: write scheme://host[:port], without a path")
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"{value!r}: port {port!r} is not a port number")
        if host.replace(".", "").isdigit() or host.startswith("["):
            raise ValueError(f"{value!r} is an IP address: users' servers need names below it "
                             "(<user>.host), so use a DNS name with a wildcard record")
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*", host):
            raise ValueError(f"{value!r}: {host!r} is not a lowercase DNS name")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _subdomain_default(self) -> HubSettings:
        if self.subdomain_host is None and self.ip not in LOOPBACK:
            raise CrossFieldErrors([(("hub", "subdomain_host"), (
                f"hub.ip is {self.ip!r}, so browsers do not reach the hub as localhost: set subdomain_host "
                "to the hub's public origin with a wildcard DNS name (e.g. https://hub.lunar.example.org, "
                "*.hub.lunar.example.org pointing at this machine), or false for a single origin"))])
        return self

    @property
    def origin(self) -> str:
        """The hub's origin as browsers reach it."""
        if isinstance(self.subdomain_host, str) and self.subdomain_host:
            return self.subdomain_host
        if self.subdomain_host is None:
            return f"http://localhost:{self.port}"
        return f"http://{self.ip}:{self.port}"


class PasswordAuth(Strict):
    """Hub-managed passwords (the demo's login)."""

    min_password_length: int = Field(12, ge=8, description="Shortest password a user may set.")


class OAuthProvider(Strict):
    """GenericOAuthenticator settings for an institute's identity provider (docs/auth.md)."""

    client_id: str = Field(description="OAuth client id registered at the provider.")
    client_secret_file: str = Field(description="File holding the client secret (relative: to the "
                                                "deployment file's folder).",
                                    examples=["/etc/lunarhub/oauth-secret"])
    authorize_url: str = Field(description="The provider's authorization endpoint.")
    token_url: str = Field(description="The provider's token endpoint.")
    userdata_url: str = Field(description="The provider's user-info endpoint.")
    username_claim: str = Field("preferred_username", description="User-info claim that gives the hub user name.")
    scope: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"],
                             description="OAuth scopes requested at login.")
    groups_claim: str | None = Field("groups", description="User-info claim listing the user's groups "
                                                           "(not read yet: groups come from this file).")


class LDAPAuth(Strict):
    """LDAP login against an institute's directory (docs/auth.md)."""

    server_address: str = Field(description="LDAP server host name.", examples=["ldap.iki.rssi.ru"])
    server_port: int = Field(636, description="LDAP server port.")
    use_ssl: bool = Field(True, description="Connect with TLS (LDAPS).")
    bind_dn_template: list[str] = Field(description="DN templates tried at login; `{username}` is replaced.",
                                        examples=[["uid={username},ou=people,dc=iki,dc=ru"]])


class Auth(Strict):
    """How users log in."""

    kind: Literal["password", "oauth", "ldap"] = Field(
        "password", description="`password` (hub-managed), `oauth` (GenericOAuthenticator) or `ldap`; "
                                "the matching section below is then required.",
    )
    password: PasswordAuth = Field(default_factory=PasswordAuth, description="Settings of `kind: password`.")
    oauth: OAuthProvider | None = Field(None, description="Settings of `kind: oauth`.")
    ldap: LDAPAuth | None = Field(None, description="Settings of `kind: ldap`.")

    @model_validator(mode="after")
    def _needs_section(self) -> Auth:
        if self.kind == "oauth" and self.oauth is None:
            raise ValueError("auth.kind is 'oauth' but the 'oauth' section is missing")
        if self.kind == "ldap" and self.ldap is None:
            raise ValueError("auth.kind is 'ldap' but the 'ldap' section is missing")
        return self


class IdleCuller(Strict):
    """Stops idle user servers (jupyterhub-idle-culler)."""

    enabled: bool = Field(True, description="Run the idle culler.")
    timeout_seconds: int = Field(3600, ge=60, description="A server idle this long is stopped.")
    every_seconds: int = Field(300, ge=10, description="How often servers are checked.")


class DaskGateway(Strict):
    """The dask-gateway service (docs/scale-out.md)."""

    enabled: bool = Field(True, description="Run dask-gateway for users' clusters.")
    port: int = Field(8010, ge=1, le=65535, description="The gateway's API port.")
    scheduler_proxy_port: int = Field(8786, ge=1, le=65535, description="Port of the gateway's scheduler proxy.")
    idle_timeout_seconds: int = Field(1800, ge=0, description="An idle cluster is stopped after this; 0: never.")
    backend: Literal["local", "kubernetes", "pbs", "slurm"] = Field(
        "local", description="Where clusters run: local processes here, or rendered for Kubernetes/PBS/Slurm "
                             "(`lunarhub render`).",
    )


class DashboardLimits(Strict):
    """What one user can make the gallery store and other users render (issue 12). Each refusal
    names the limit it met, as `services.dashboards.limits.<name>`."""

    max_dashboards: int = Field(20, ge=1, le=10_000, description="Dashboards one user may have published at "
                                                                 "once (unpublished ones do not count).")
    max_versions: int = Field(
        30, ge=1, le=1000,
        description="Versions one dashboard keeps; at the limit, publishing changed content is refused until "
                    "an old version is deleted (`lunarhub unpublish <slug> --version N`).",
    )
    max_snapshot_mb: float = Field(
        50, gt=0, le=200,
        description="Size of one version's files (the notebook and the files it declares), in MiB. A publish "
                    "request larger than this (base64 in JSON: about 4/3 of it) is refused before it is read.",
    )
    max_user_mb: float = Field(500, gt=0, le=100_000, description="All stored versions of one user together, "
                                                                  "in MiB.")
    max_title_chars: int = Field(120, ge=10, le=1000, description="Length of a dashboard's title, in characters.")
    max_description_chars: int = Field(4000, ge=0, le=100_000, description="Length of a dashboard's description, "
                                                                           "in characters.")
    max_comment_chars: int = Field(5000, ge=10, le=100_000, description="Length of one reviewer comment, in "
                                                                        "characters.")


class Dashboards(Strict):
    """The dashboards gallery and servers (docs/dashboards.md)."""

    enabled: bool = Field(True, description="Run the dashboards service.")
    port: int = Field(8020, ge=1, le=65535, description="Port of the dashboards service.")
    ready_sessions: int = Field(
        32, ge=0, le=256,
        description="Sessions of a dashboard's latest version built ahead while its server is idle, so a crowd "
                    "of reviewers opening it together does not queue. 0: off.",
    )
    limits: DashboardLimits = Field(default_factory=DashboardLimits,
                                    description="Per-user caps on what the gallery stores and shows.")


class CoursesService(Strict):
    """The course page for instructors (/services/courses/, docs/tutorials.md)."""

    enabled: bool = Field(True, description="Run the courses service (instructors' classes without a root shell).")
    port: int = Field(8040, ge=1, le=65535, description="The service's port on 127.0.0.1 (hub-authenticated).")
    start_concurrency: int = Field(0, ge=0, le=64, description="How many students' servers **start all** starts "
                                                               "at once; 0: one per CPU core.")


class Services(Strict):
    """Hub services."""

    idle_culler: IdleCuller = Field(default_factory=IdleCuller, description="Stops idle user servers.")
    dask_gateway: DaskGateway = Field(default_factory=DaskGateway, description="Dask clusters for users.")
    dashboards: Dashboards = Field(default_factory=Dashboards, description="Published Panel dashboards.")
    courses: CoursesService = Field(default_factory=CoursesService, description="Instructors' course page.")


class SiteCompute(Strict):
    """Where a site's dask clusters run (docs/scale-out.md §3). `local`: the hub's own gateway
    (`services.dask_gateway`, what `Gateway()` reaches). `slurm`: a Slurm cluster at the site with
    its own dask-gateway (dask-gateway's Slurm backend, jobs submitted as the user); on one machine
    `lunarhub up` runs munged, slurmctld and slurmd for a local site, and `lunarhub render hpc
    --site <name>` writes the same gateway configuration for the institute's real cluster."""

    kind: Literal["local", "slurm"] = Field("local", description="`local`: clusters run on the hub's gateway; "
                                                                 "`slurm`: on the site's Slurm cluster.")
    gateway_port: int | None = Field(None, ge=1, le=65535, description="Port of the site gateway's hub service "
                                     "(required for `slurm`); the hub serves it at `/services/dask-gateway-<site>`.")
    scheduler_proxy_port: int | None = Field(None, ge=1, le=65535, description="Port of the site gateway's "
                                             "scheduler proxy (required for `slurm`).")
    slurmctld_port: int = Field(6817, ge=1, le=65535, description="Port of the site's slurmctld (`SlurmctldPort`).")
    slurmd_port: int = Field(6818, ge=1, le=65535, description="Port of the site's slurmd (`SlurmdPort`).")
    partitions: dict[str, str] | None = Field(
        None,
        description="Group -> Slurm partition: the groups with an account at the site, each partition "
                    "carrying its group's `groups.<g>.dask` limits (memory per job). Default: every group "
                    "with a `dask` block, in a partition named after it. A user none of whose groups is "
                    "listed has no account at the site and is refused by its gateway.",
        examples=[{"ru-science": "ru-science", "cn-science": "guests"}],
    )
    reserved_memory_gb: float = Field(2.0, ge=0, description="Memory of this machine left out of the one "
                                                             "Slurm node (for the hub and the OS), in GB.")

    @model_validator(mode="after")
    def _ports(self) -> SiteCompute:
        if self.kind == "slurm" and (self.gateway_port is None or self.scheduler_proxy_port is None):
            raise ValueError("slurm compute needs 'gateway_port' and 'scheduler_proxy_port'")
        return self


class Site(Strict):
    """A national data site. `local` sites are started by `lunarhub up`; `remote`
    sites are an institute's own endpoint, only their URL is configured."""

    institution: str = Field(description="The institute that runs the site (a key of `institutions`).")
    kind: Literal["local", "remote"] = Field("local", description="`local`: served here by nginx; `remote`: "
                                                                  "an institute's own endpoint.")
    port: int | None = Field(None, ge=1, le=65535, description="Port of a local site (required when local).")
    url: str | None = Field(None, description="URL of a remote site (required when remote).",
                            examples=["https://data.nao.cas.cn/lunar/"])
    data_dir: str | None = Field(None, description="Data folder of a local site (required when local).",
                                 examples=["../catalogs/data/ru"])
    embargo_until: str | None = Field(None, description="Date (YYYY-MM-DD) from which the site's own `<country>-only` "
                                                        "data open to everyone entitled to `partners`.",
                                      examples=["2026-01-01"])
    compute: SiteCompute = Field(default_factory=SiteCompute,
                                 description="Where the site's dask clusters run (`kind: local|slurm`).")
    at_site: dict[str, list[str]] = Field(
        default_factory=dict,
        description="`at-site` datasets: path on the site (under its policy folder) -> groups that may compute on "
                    "it at the site without being entitled to download it. The site refuses their raw downloads; "
                    "the site's own workers read it for them (with `compute.kind: slurm`; on other sites nobody "
                    "computes on it) and what their clusters return is metered and held to `groups.<g>.egress_budget_mb` (docs/data-sites.md).",
        examples=[{"ru-only/polar/boguslawsky_sps.tif": ["cn-science"]}])

    @model_validator(mode="after")
    def _where(self) -> Site:
        if self.kind == "local" and (self.port is None or self.data_dir is None):
            raise ValueError("a local site needs 'port' and 'data_dir'")
        if self.kind == "remote" and not self.url:
            raise ValueError("a remote site needs 'url'")
        if self.kind == "remote" and self.compute.kind == "slurm":
            raise ValueError("a remote site's Slurm cluster is the institute's own: keep compute.kind local "
                             "here and deploy `lunarhub render hpc --site <name>` there")
        return self


# Where the checkout keeps each `paths` entry, relative to hub/lunarhub.yaml.
DEFAULT_PATHS = {
    "templates": "templates",
    "kernels": "../kernels",
    "catalogs": "../catalogs",
    "tutorials": "../notebooks/tutorials",
    "hub_config": "jupyterhub_config.py",
    "gateway_config": "dask_gateway_config.py",
    "node_modules": "../node_modules",
}
PathKey = Literal["templates", "kernels", "catalogs", "tutorials", "hub_config", "gateway_config", "node_modules"]


def _layout(key: str) -> str:
    return f"Default: `{DEFAULT_PATHS[key]}` seen from the default deployment file (the checkout's layout)."


class Paths(Strict):
    """Files of the deployment outside the Python package. A path set here is relative to
    the deployment file's folder; one left out is where the default deployment file
    (lunarhub.config.locations) has it, so an installed wheel with its own deployment
    file sets these and a checkout needs none of them."""

    templates: str | None = Field(None, description="Folder of the hub's page templates. " + _layout("templates"))
    kernels: str | None = Field(
        None,
        description="Folder of the kernel spec (`lunar-python3/`) and the servers' Jupyter config (`config/`); "
                    "must be named `kernels`, as its parent goes on JUPYTER_PATH. " + _layout("kernels"),
        examples=["/usr/share/lunarhub/kernels"],
    )
    catalogs: str | None = Field(None, description="Folder of the site catalogs (`<site>.yaml`, `root.yaml`) "
                                                   "and their sample data sources. " + _layout("catalogs"))
    tutorials: str | None = Field(None, description="Folder of the tutorial notebooks courses copy to "
                                                    "students. " + _layout("tutorials"))
    hub_config: str | None = Field(None, description="JupyterHub config file `lunarhub up` starts the hub with. "
                                                     + _layout("hub_config"))
    gateway_config: str | None = Field(None, description="dask-gateway-server config file `lunarhub up` starts "
                                                         "the gateway with. " + _layout("gateway_config"))
    node_modules: str | None = Field(None, description="npm install holding configurable-http-proxy (used when "
                                                       "`hub.proxy_command` is not set). " + _layout("node_modules"))

    @field_validator("kernels")
    @classmethod
    def _jupyter_data_dir(cls, value: str | None) -> str | None:
        if value is not None and Path(value).name != "kernels":
            raise ValueError("the kernels folder must be named 'kernels' (Jupyter looks for kernels/<name>)")
        return value


BACKUP_SCHEDULE_RE = re.compile(r"^(daily ([01]\d|2[0-3]):[0-5]\d|every [1-9]\d{0,3} (minutes|hours))$")


class BackupPlan(Strict):
    """Scheduled backups, run by the supervisor's `backup` program (`lunarhub backup --scheduled`;
    docs/operations.md)."""

    schedule: str = Field(description="When: `daily HH:MM` (local time), `every N hours` or `every N minutes`.",
                          examples=["daily 02:00"])
    dest: str | None = Field(None, description="Folder the backups go to (relative: to this file); default: "
                                               "`<state_dir>-backups` beside the state dir.",
                             examples=["/var/backups/lunarhub"])
    keep: int = Field(7, ge=1, le=10_000, description="Backups kept in `dest`; older ones are removed after each run.")
    homes: bool = Field(False, description="Include users' and projects' home folders (`lunarhub backup --homes`).")

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        if not BACKUP_SCHEDULE_RE.match(value):
            raise ValueError(f"schedule {value!r}: use 'daily HH:MM', 'every N hours' or 'every N minutes'")
        return value


class Operations(Strict):
    """What the operator's tools do on their own."""

    backup: BackupPlan | None = Field(None, description="Scheduled backups; none: only `lunarhub backup` by hand.")


class Monitoring(Strict):
    """Prometheus and its exporters, started by `lunarhub up` (docs/operations.md, "Monitoring"). Every
    listener is on loopback, answers only with the password in the secrets dir, and runs as the
    `prometheus` account behind the loopback filter (docs/security.md, "Monitoring")."""

    enabled: bool = Field(False, description="Run Prometheus, the node exporter and lunarhub's exporter under "
                                             "the supervisor (Debian's `prometheus` and `prometheus-node-exporter`).")
    port: int = Field(9090, ge=1, le=65535, description="Port of Prometheus on 127.0.0.1 (API and alerts).")
    node_exporter_port: int = Field(9100, ge=1, le=65535,
                                    description="Port of the node exporter on 127.0.0.1 (machine metrics and "
                                                "lunarhub's own: sites, gateways, backups, the state dir's disk).")
    dashboard_port: int = Field(8030, ge=1, le=65535, description="Port of the operators' dashboard on "
                                                                 "127.0.0.1 (the hub serves it at "
                                                                 "`/services/operator-dashboard/`, admins only).")
    scrape_interval_seconds: float = Field(15, ge=0.5, le=3600, description="How often every target is scraped.")
    evaluation_interval_seconds: float = Field(15, ge=0.5, le=3600,
                                               description="How often recording rules and alerts are evaluated.")
    exporter_interval_seconds: float = Field(15, ge=0.5, le=3600,
                                             description="How often lunarhub's exporter reads the sites' access "
                                                         "logs and probes the sites and gateways.")
    alert_for_seconds: float | None = Field(None, ge=0, le=86_400,
                                            description="How long a condition must hold before its alert fires, "
                                                        "for every alert; none: each alert's own `for:` in "
                                                        "hub/monitoring/alerts.yml.")
    spawn_p95_threshold_seconds: float = Field(60, gt=0, description="Alert `SpawnSlow` fires when the 95th "
                                                                     "percentile of server spawn times over 10 "
                                                                     "minutes is above this.")
    disk_full_ratio: float = Field(0.9, gt=0, le=1, description="Alert `StateDiskFull` fires when the state "
                                                                "dir's file system is fuller than this.")
    retention_days: int = Field(30, ge=1, le=3650, description="Days of metrics Prometheus keeps.")


class TLS(Strict):
    """HTTPS of the public proxy and the local data sites (docs/tls.md). Every client the stack runs
    (kernels, dask workers, services, the CLI) verifies with the deployment's CA bundle."""

    mode: Literal["self-signed", "files", "off"] = Field(
        "self-signed",
        description="`self-signed`: `lunarhub up` makes a deployment CA and a server certificate once (kept in "
                    "the secrets dir, re-made when they expire within 30 days or the host names change) for "
                    "localhost, *.localhost, 127.0.0.1 and the hub's and sites' hosts. `files`: the operator's "
                    "own certificate, key and CA (`cert`, `key`, `ca`), checked at load. `off`: plain HTTP "
                    "everywhere; `up` and `status` warn.",
    )
    cert: str | None = Field(None, description="`files` only: the server certificate (PEM, leaf first, then "
                                               "intermediates); for per-user origins a wildcard certificate for "
                                               "`*.<hub host>` and `<hub host>`, plus `127.0.0.1` for the sites.",
                             examples=["/etc/ssl/lunarhub/hub.crt"])
    key: str | None = Field(None, description="`files` only: the certificate's private key (PEM, unencrypted), "
                                              "readable by root only.",
                            examples=["/etc/ssl/private/lunarhub-hub.key"])
    ca: str | None = Field(None, description="`files` only: the CA certificate(s) that issued `cert` (PEM); "
                                             "clients verify with the system CAs plus these.",
                           examples=["/etc/ssl/lunarhub/ca.crt"])

    @model_validator(mode="after")
    def _files(self) -> TLS:
        keys = ("cert", "key", "ca")
        if self.mode == "files":
            missing = [(("tls", k), "required with tls.mode: files") for k in keys if not getattr(self, k)]
            if missing:
                raise CrossFieldErrors(missing)
        else:
            given = [(("tls", k), f"only used with tls.mode: files (mode is {self.mode!r})")
                     for k in keys if getattr(self, k)]
            if given:
                raise CrossFieldErrors(given)
        return self


def default_location(key: PathKey) -> Path:
    """Where the default deployment file has a `paths` entry: for code that runs without a
    deployment at hand (a kernel's `lunarhub catalog validate`, the data build, a doctor)."""
    return (DEFAULT_CONFIG.parent / DEFAULT_PATHS[key]).resolve()


class Deployment(Strict):
    """The deployment file (hub/lunarhub.yaml). Relative paths resolve against its folder."""

    name: str = Field("lunarhub", description="The deployment's name, shown on the hub's pages.",
                      examples=["Joint Lunar Data Center"])
    title: Texts | None = Field(None, description="The deployment's name in each interface language, on the "
                                                  "hub's pages (title, header, login); default: `name` in every "
                                                  "language.",
                                examples=[{"en": "Joint Lunar Data Center", "ru": "Совместный центр лунных данных",
                                           "zh": "联合月球数据中心"}])
    state_dir: str = Field("../.state", description="Hub database, secrets, logs, dashboards store.")
    secrets_dir: str | None = Field(None, description="Folder of generated secrets; default: "
                                                      "`<state_dir>/secrets`.")
    languages: list[Language] = Field(default_factory=lambda: list(LANGUAGES),
                                                       description="Interface languages offered.")
    hub: HubSettings = Field(default_factory=HubSettings, description="The hub and its proxy.")
    auth: Auth = Field(default_factory=Auth, description="How users log in (docs/auth.md).")
    institutions: dict[str, Institution] = Field(description="Member institutes, by short name.")
    groups: dict[str, Group] = Field(description="User groups, by name (lowercase letters, digits, '-').")
    users: dict[str, User] = Field(default_factory=dict, description="Hub users, by user name (lowercase "
                                                                     "letters, digits, '-').")
    projects: dict[str, Project] = Field(
        default_factory=dict,
        description=f"Joint project servers, by project name (lowercase letters, digits, '-', at most "
                    f"{PROJECT_NAME_MAX} characters); what a project server may read and expose: docs/security.md, "
                    "\"Joint project servers\".",
    )
    profiles: dict[str, Profile] = Field(default_factory=lambda: {"standard": Profile()},
                                         description="Resource profiles of user servers, by name.")
    services: Services = Field(default_factory=Services, description="Hub services.")
    sites: dict[str, Site] = Field(default_factory=dict, description="National data sites, by name "
                                                                     "(docs/data-sites.md).")
    paths: Paths = Field(default_factory=Paths, description="Files outside the Python package.")
    operations: Operations = Field(default_factory=Operations, description="Scheduled operator tasks "
                                                                           "(backups: docs/operations.md).")
    monitoring: Monitoring = Field(default_factory=Monitoring, description="Prometheus, alerts and the "
                                                                           "exporters (docs/operations.md).")
    tls: TLS = Field(default_factory=TLS, description="HTTPS of the public proxy and the local sites "
                                                      "(docs/tls.md).")

    # Where the file was loaded from; relative paths in it resolve against it.
    _base_dir: Path = PrivateAttr(default=DEFAULT_CONFIG.parent)
    _config_file: Path | None = PrivateAttr(default=None)

    @field_validator("groups", "users")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not NAME_RE.match(name):
                raise ValueError(
                    f"invalid name {name!r}: use lowercase letters, digits and '-', "
                    "starting with a letter, at most 31 characters"
                )
        return value

    @field_validator("projects")
    @classmethod
    def _project_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not NAME_RE.match(name) or len(name) > PROJECT_NAME_MAX:
                raise ValueError(
                    f"invalid project name {name!r}: use lowercase letters, digits and '-', starting with a "
                    f"letter, at most {PROJECT_NAME_MAX} characters (the account is {PROJECT_ACCOUNT_PREFIX}<name>)"
                )
        return value

    @model_validator(mode="after")
    def _tls_scheme(self) -> Deployment:
        origin = self.hub.subdomain_host
        if isinstance(origin, str) and origin and not origin.startswith(self.scheme + "://"):
            raise CrossFieldErrors([(("hub", "subdomain_host"), (
                f"{origin!r} does not match tls.mode {self.tls.mode!r}: write {self.scheme}://"
                f"{origin.partition('://')[2]}"))])
        return self

    @model_validator(mode="after")
    def _accounts(self) -> Deployment:
        host = self.hub.isolation == "system-users"
        problems = [(("users", name), why) for name in self.users if (why := account_refusal(name, host))]
        if problems:
            raise CrossFieldErrors(problems)
        return self

    @model_validator(mode="after")
    def _references(self) -> Deployment:
        problems: list[tuple[tuple[str, ...], str]] = []
        for gname, group in self.groups.items():
            if group.institution and group.institution not in self.institutions:
                problems.append((("groups", gname, "institution"), f"unknown institution {group.institution!r}"))
            if group.profile not in self.profiles:
                problems.append((("groups", gname, "profile"), f"unknown profile {group.profile!r}"))
            for other in group.share_with:
                if other not in self.groups:
                    problems.append((("groups", gname, "share_with"), f"unknown group {other!r}"))
            for other in group.teaches:
                if other not in self.groups:
                    problems.append((("groups", gname, "teaches"), f"unknown group {other!r}"))
                elif self.groups[other].role is not Role.student:
                    problems.append((("groups", gname, "teaches"), f"{other!r} is not a student group"))
        for uname, user in self.users.items():
            if uname in self.groups:
                problems.append((("users", uname), "a user may not share a name with a group"))
            for g in user.groups:
                if g not in self.groups:
                    problems.append((("users", uname, "groups"), f"user is in undefined group {g!r}"))
        for sname, site in self.sites.items():
            if site.institution not in self.institutions:
                problems.append((("sites", sname, "institution"), f"unknown institution {site.institution!r}"))
            for gname in (site.compute.partitions or {}):
                if gname not in self.groups:
                    problems.append((("sites", sname, "compute", "partitions", gname), f"unknown group {gname!r}"))
                elif self.groups[gname].dask is None:
                    problems.append((("sites", sname, "compute", "partitions", gname),
                                     f"group {gname!r} has no dask block (groups.{gname}.dask): it may not run clusters"))
            for path, groups in site.at_site.items():
                akey = ("sites", sname, "at_site", path)
                parts = path.split("/")
                if parts[0] not in get_args(Policy) or len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
                    problems.append((akey, f"not a file under a policy folder ({', '.join(get_args(Policy))}): "
                                          "write it as on the site, e.g. ru-only/polar/boguslawsky_sps.tif"))
                for g in groups:
                    if g not in self.groups:
                        problems.append((akey, f"unknown group {g!r}"))
        for iname, inst in self.institutions.items():
            if inst.site and inst.site not in self.sites:
                problems.append((("institutions", iname, "site"), f"unknown site {inst.site!r}"))
        ports: dict[int, str] = {}
        for key, port in self._port_keys():
            dotted = ".".join(key)
            if port in ports:
                problems.append((key, f"port {port} is already used by {ports[port]}"))
            else:
                ports[port] = dotted
        if problems:
            raise CrossFieldErrors(problems)
        return self

    @model_validator(mode="after")
    def _projects(self) -> Deployment:
        # Runs after _references: groups' institutions and roles are known to be sound here.
        from lunarhub.data import entitlement  # the rules live there; it imports this module

        problems: list[tuple[tuple[str, ...], str]] = []
        hub_names = {project_hub_name(p): p for p in self.projects}
        for pname, project in self.projects.items():
            key = ("projects", pname)
            for clash in (pname, project_hub_name(pname)):
                if clash in self.users:
                    problems.append((key, f"project {pname!r} clashes with user {clash!r}: a project's "
                                          f"hub user is {project_hub_name(pname)!r}; rename one"))
                elif clash in self.groups:
                    problems.append((key, f"project {pname!r} clashes with group {clash!r}; rename one"))
            for i, member in enumerate(project.members):
                mkey = (*key, "members", str(i))
                if member in hub_names:
                    problems.append((mkey, f"{member!r} is a project: members are users and groups"))
                elif member in self.groups:
                    if self.groups[member].role is Role.reviewer:
                        problems.append((mkey, f"group {member!r} has the reviewer role (dashboards only): "
                                               "a project server runs code, so its members need a lab role"))
                elif member in self.users:
                    if self.user_roles(member) == {Role.reviewer}:
                        problems.append((mkey, f"user {member!r} is only a reviewer (dashboards only): a "
                                               "project server runs code, so its members need a lab role"))
                else:
                    problems.append((mkey, f"project member {member!r} is neither a user nor a group "
                                           f"(users: {', '.join(sorted(self.users)) or 'none'}; groups: "
                                           f"{', '.join(sorted(self.groups))})"))
        if problems:
            raise CrossFieldErrors(problems)
        for pname, project in self.projects.items():
            for i, policy in enumerate(project.grants):
                holders = entitlement.members_holding(self, pname, policy)
                if not holders:
                    problems.append((("projects", pname, "grants", str(i)), (
                        f"no member of project {pname!r} may read {policy!r} data on any site "
                        f"({', '.join(project.members)}): a grant may only give what a member has")))
        if problems:
            raise CrossFieldErrors(problems)
        return self

    # ---- derived views (read-only helpers other modules use) ----

    def project_of(self, hub_user: str) -> str | None:
        """The project whose hub user is `hub_user`, or None for anyone else."""
        name = hub_user.removeprefix(PROJECT_HUB_PREFIX)
        return name if hub_user.startswith(PROJECT_HUB_PREFIX) and name in self.projects else None

    def project_members(self, project: str) -> list[str]:
        """The users who may open `project`'s server now: its member users and the members of its groups."""
        out: set[str] = set()
        for member in self.projects[project].members:
            out |= set(self.members(member)) if member in self.groups else ({member} & set(self.users))
        return sorted(out)

    def _port_keys(self) -> list[tuple[tuple[str, ...], int]]:
        out: list[tuple[tuple[str, ...], int]] = [(("hub", "port"), self.hub.port), (("hub", "hub_port"), self.hub.hub_port),
               (("hub", "proxy_api_port"), self.hub.proxy_api_port)]
        if self.services.dask_gateway.enabled:
            out.append((("services", "dask_gateway", "port"), self.services.dask_gateway.port))
            out.append((("services", "dask_gateway", "scheduler_proxy_port"),
                        self.services.dask_gateway.scheduler_proxy_port))
        if self.services.dashboards.enabled:
            out.append((("services", "dashboards", "port"), self.services.dashboards.port))
        if self.services.courses.enabled:
            out.append((("services", "courses", "port"), self.services.courses.port))
        if self.monitoring.enabled:
            out.append((("monitoring", "port"), self.monitoring.port))
            out.append((("monitoring", "node_exporter_port"), self.monitoring.node_exporter_port))
            out.append((("monitoring", "dashboard_port"), self.monitoring.dashboard_port))
        for sname, site in self.sites.items():
            if site.kind == "local" and site.port:
                out.append((("sites", sname, "port"), site.port))
            if site.compute.kind == "slurm":
                for key in ("gateway_port", "scheduler_proxy_port", "slurmctld_port", "slurmd_port"):
                    out.append((("sites", sname, "compute", key), getattr(site.compute, key)))
        return out

    def ports(self) -> dict[str, int]:
        """Every TCP port this deployment listens on, by key path."""
        return {".".join(key): port for key, port in self._port_keys()}

    def path(self, value: str) -> Path:
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (self._base_dir / p).resolve()

    def location(self, key: PathKey) -> Path:
        """A `paths` entry: relative to this file when set, else where the default layout has it."""
        value = getattr(self.paths, key)
        return self.path(value) if value is not None else default_location(key)

    @property
    def state_path(self) -> Path:
        return self.path(self.state_dir)

    @property
    def secrets_path(self) -> Path:
        return self.path(self.secrets_dir) if self.secrets_dir else self.state_path / "secrets"

    @property
    def scheme(self) -> str:
        """`https` unless tls.mode is off: the public proxy's and the local sites' scheme."""
        return "http" if self.tls.mode == "off" else "https"

    @property
    def public_url(self) -> str:
        """The hub as users' browsers (and API clients) reach it."""
        if isinstance(self.hub.subdomain_host, str) and self.hub.subdomain_host:
            return self.hub.origin
        return self.scheme + "://" + self.hub.origin.partition("://")[2]

    @property
    def proxy_url(self) -> str:
        """The public proxy as this machine reaches it (health checks; the hub API answers on any host)."""
        return f"{self.scheme}://{'127.0.0.1' if self.hub.ip in ('', '0.0.0.0') else self.hub.ip}:{self.hub.port}"

    def server_origin(self, user: str) -> str:
        """Origin of every server of `user` (lab and dashboards): `scheme://<user>.<hub host>[:port]`,
        the name the hub gives it (lunarhub.platform.hub.network), or the hub's origin when off."""
        if self.hub.subdomain_host is False:
            return self.public_url
        scheme, _, host = self.public_url.partition("://")
        return f"{scheme}://{user}.{host}"

    def server_url(self, user: str, server: str = "") -> str:
        """Full URL of a user's (named) server, as a browser opens it."""
        return f"{self.server_origin(user)}/user/{user}/{server + '/' if server else ''}"

    def members(self, group: str) -> list[str]:
        return sorted(u for u, user in self.users.items() if group in user.groups)

    def groups_with_role(self, role: Role) -> list[str]:
        return sorted(g for g, group in self.groups.items() if group.role is role)

    def user_roles(self, username: str) -> set[Role]:
        user = self.users.get(username)
        return {self.groups[g].role for g in user.groups} if user else set()

    def with_users(self, users: dict[str, User]) -> Deployment:
        """A copy with a different user table, validated like the file itself."""
        data = self.model_dump(mode="json")
        data["users"] = {k: v.model_dump(mode="json", exclude_none=True) for k, v in users.items()}
        model = Deployment.model_validate(data)
        model._base_dir = self._base_dir
        model._config_file = self._config_file
        return model

    @property
    def config_file(self) -> Path | None:
        return self._config_file



def project_hub_name(project: str) -> str:
    """The hub user whose server is `project`'s."""
    return PROJECT_HUB_PREFIX + project


def project_account(project: str) -> str:
    """The system account `project`'s server runs as."""
    return PROJECT_ACCOUNT_PREFIX + project


def _line_index(text: str) -> dict[tuple[str, ...], int]:
    """Map key paths to their 1-based line in the YAML, for error messages."""
    index: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, val in node.value:
                kpath = path + (str(key.value),)
                index[kpath] = key.start_mark.line + 1
                walk(val, kpath)
        elif isinstance(node, yaml.SequenceNode):
            for i, val in enumerate(node.value):
                index[path + (str(i),)] = val.start_mark.line + 1
                walk(val, path + (str(i),))

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return index
    if root is not None:
        walk(root, ())
    return index


class _UniqueKeyLoader(yaml.SafeLoader):
    """Rejects duplicate keys: a second `ru-scientist:` would silently win otherwise."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first defined on line {seen[key]})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def parse(text: str, source: str = "<string>", base_dir: Path | None = None) -> Deployment:
    """Validate YAML text into a Deployment or raise ConfigError naming key and line."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [(where, f"malformed YAML: {problem}")]) from None
    if not isinstance(data, dict):
        raise ConfigError(source, [("(top level)", "expected a mapping of settings")])
    lines = _line_index(text)
    try:
        model = Deployment.model_validate(data)
    except ValidationError as exc:
        problems: list[Problem] = []
        for err in exc.errors():
            cross = (err.get("ctx") or {}).get("error")
            if isinstance(cross, CrossFieldErrors):
                problems += [Problem(".".join(key), why, _line_for(lines, key)) for key, why in cross.problems]
                continue
            loc = tuple(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            problems.append(Problem(".".join(loc) or "(top level)", msg, _line_for(lines, loc)))
        raise ConfigError(source, problems) from None
    if base_dir is not None:
        model._base_dir = base_dir
    if model.tls.mode == "files":
        from lunarhub.config.tls_files import problems as tls_problems

        found = tls_problems(model)
        if found:
            raise ConfigError(source, [Problem(key, why, _line_for(lines, tuple(key.split(".")))) for key, why in found])
    return model


def _line_for(lines: dict[tuple[str, ...], int], loc: tuple[str, ...]) -> int | None:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None


def load(path: str | os.PathLike | None = None) -> Deployment:
    """Load the deployment file: `path`, else $LUNARHUB_CONFIG, else DEFAULT_CONFIG (lunarhub.config.locations)."""
    p = Path(path or os.environ.get("LUNARHUB_CONFIG") or DEFAULT_CONFIG).resolve()
    if not p.exists():
        raise ConfigError(str(p), [("(file)", "deployment config not found")])
    model = parse(p.read_text(encoding="utf-8"), source=str(p), base_dir=p.parent)
    model._config_file = p
    return model
