"""The deployment model: one YAML file -> one typed, validated object.

Every component (hub, sites, gateway, dashboards) reads this model; none reads
the YAML itself. Errors carry the key path and, where the YAML gives it, the
line, so an operator can fix the file without guessing.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

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

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_ROOT.parent
DEFAULT_CONFIG = REPO_ROOT / "hub" / "lunarhub.yaml"

# POSIX portable user names, as adduser accepts them; also safe in URLs and paths.
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


class ConfigError(Exception):
    """A deployment file that cannot be used, with where and why."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: invalid deployment config"]
        lines += [f"  {where}: {why}" for where, why in problems]
        super().__init__("\n".join(lines))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class Role(StrEnum):
    """What members of a group may do; mapped to JupyterHub roles in hub.py."""

    science = "science"
    reviewer = "reviewer"
    instructor = "instructor"
    student = "student"
    admin = "admin"


class Texts(Strict):
    en: str
    ru: str | None = None
    zh: str | None = None


class Institution(Strict):
    name: Texts
    country: Literal["RU", "CN"]
    site: str | None = None


class Profile(Strict):
    """Resource limits of a user server (and defaults for dask clusters)."""

    cpu: float = Field(1.0, gt=0, le=64)
    memory_gb: float = Field(2.0, gt=0, le=512)


class GroupLimits(Strict):
    """Per-group dask-gateway limits (issue 4)."""

    max_clusters: int = Field(1, ge=0)
    max_cores: float = Field(2, ge=0)
    max_memory_gb: float = Field(4, ge=0)
    max_workers: int = Field(2, ge=0)


class Group(Strict):
    role: Role
    institution: str | None = None
    description: Texts | None = None
    profile: str = "standard"
    # Groups whose members (and the group itself) this group may share servers with.
    share_with: list[str] = Field(default_factory=list)
    # Teams get a shared project folder writable by members only.
    project_folder: bool = False
    # Instructors: the student groups whose servers they may see and help.
    teaches: list[str] = Field(default_factory=list)
    # Data policies granted beyond what the role gives (e.g. a course reading `partners` data).
    grants: list[Literal["open", "partners", "ru-only", "cn-only"]] = Field(default_factory=list)
    dask: GroupLimits | None = None


class User(Strict):
    groups: list[str] = Field(min_length=1)
    full_name: str | None = None
    email: str | None = None


class HubSettings(Strict):
    ip: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    hub_port: int = Field(8081, ge=1, le=65535)
    proxy_api_port: int = Field(8001, ge=1, le=65535)
    # system-users: one system account per hub user (needs root).
    # single-account: every server runs as the operator; for unprivileged development only.
    isolation: Literal["system-users", "single-account"] = "system-users"
    database_url: str | None = None
    # Generous: many servers starting at once on a small machine (a class) take time.
    start_timeout: int = Field(180, ge=5)
    http_timeout: int = Field(120, ge=5)
    # Seconds a single-user server trusts a cached token's permissions; short so
    # revoked shares take effect within seconds.
    token_cache_seconds: int = Field(5, ge=0, le=600)
    home_root: str = "/home"
    # configurable-http-proxy executable; default: the project's npm install, then PATH.
    proxy_command: str | None = None


class PasswordAuth(Strict):
    min_password_length: int = Field(12, ge=8)


class OAuthProvider(Strict):
    """GenericOAuthenticator settings for an institute's identity provider."""

    client_id: str
    client_secret_file: str
    authorize_url: str
    token_url: str
    userdata_url: str
    username_claim: str = "preferred_username"
    scope: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])
    groups_claim: str | None = "groups"


class LDAPAuth(Strict):
    server_address: str
    server_port: int = 636
    use_ssl: bool = True
    bind_dn_template: list[str]


class Auth(Strict):
    kind: Literal["password", "oauth", "ldap"] = "password"
    password: PasswordAuth = Field(default_factory=PasswordAuth)
    oauth: OAuthProvider | None = None
    ldap: LDAPAuth | None = None

    @model_validator(mode="after")
    def _needs_section(self) -> Auth:
        if self.kind == "oauth" and self.oauth is None:
            raise ValueError("auth.kind is 'oauth' but the 'oauth' section is missing")
        if self.kind == "ldap" and self.ldap is None:
            raise ValueError("auth.kind is 'ldap' but the 'ldap' section is missing")
        return self


class IdleCuller(Strict):
    enabled: bool = True
    timeout_seconds: int = Field(3600, ge=60)
    every_seconds: int = Field(300, ge=10)


class DaskGateway(Strict):
    enabled: bool = True
    port: int = Field(8010, ge=1, le=65535)
    scheduler_proxy_port: int = Field(8786, ge=1, le=65535)
    idle_timeout_seconds: int = Field(1800, ge=0)
    backend: Literal["local", "kubernetes", "pbs", "slurm"] = "local"


class Dashboards(Strict):
    enabled: bool = True
    port: int = Field(8020, ge=1, le=65535)
    # Sessions of a dashboard's latest version built ahead while its server is idle, so a
    # crowd of reviewers opening it together does not queue (docs/dashboards.md). 0: off.
    ready_sessions: int = Field(32, ge=0, le=256)


class Services(Strict):
    idle_culler: IdleCuller = Field(default_factory=IdleCuller)
    dask_gateway: DaskGateway = Field(default_factory=DaskGateway)
    dashboards: Dashboards = Field(default_factory=Dashboards)


Policy = Literal["open", "partners", "ru-only", "cn-only"]


class Site(Strict):
    """A national data site. `local` sites are started by `lunarhub up`; `remote`
    sites are an institute's own endpoint, only their URL is configured."""

    institution: str
    kind: Literal["local", "remote"] = "local"
    port: int | None = Field(None, ge=1, le=65535)
    url: str | None = None
    data_dir: str | None = None
    embargo_until: str | None = None

    @model_validator(mode="after")
    def _where(self) -> Site:
        if self.kind == "local" and (self.port is None or self.data_dir is None):
            raise ValueError("a local site needs 'port' and 'data_dir'")
        if self.kind == "remote" and not self.url:
            raise ValueError("a remote site needs 'url'")
        return self


class Deployment(Strict):
    name: str = "lunarhub"
    state_dir: str = "../.state"
    secrets_dir: str | None = None
    languages: list[Literal["en", "ru", "zh"]] = Field(default_factory=lambda: ["en", "ru", "zh"])
    hub: HubSettings = Field(default_factory=HubSettings)
    auth: Auth = Field(default_factory=Auth)
    institutions: dict[str, Institution]
    groups: dict[str, Group]
    users: dict[str, User] = Field(default_factory=dict)
    profiles: dict[str, Profile] = Field(default_factory=lambda: {"standard": Profile()})
    services: Services = Field(default_factory=Services)
    sites: dict[str, Site] = Field(default_factory=dict)

    # Where the file was loaded from; relative paths in it resolve against it.
    _base_dir: Path = PrivateAttr(default=REPO_ROOT / "hub")
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

    @model_validator(mode="after")
    def _references(self) -> Deployment:
        problems: list[str] = []
        for gname, group in self.groups.items():
            if group.institution and group.institution not in self.institutions:
                problems.append(f"groups.{gname}.institution: unknown institution {group.institution!r}")
            if group.profile not in self.profiles:
                problems.append(f"groups.{gname}.profile: unknown profile {group.profile!r}")
            for other in group.share_with:
                if other not in self.groups:
                    problems.append(f"groups.{gname}.share_with: unknown group {other!r}")
            for other in group.teaches:
                if other not in self.groups:
                    problems.append(f"groups.{gname}.teaches: unknown group {other!r}")
                elif self.groups[other].role is not Role.student:
                    problems.append(f"groups.{gname}.teaches: {other!r} is not a student group")
        for uname, user in self.users.items():
            if uname in self.groups:
                problems.append(f"users.{uname}: a user may not share a name with a group")
            for g in user.groups:
                if g not in self.groups:
                    problems.append(f"users.{uname}.groups: user is in undefined group {g!r}")
        for sname, site in self.sites.items():
            if site.institution not in self.institutions:
                problems.append(f"sites.{sname}.institution: unknown institution {site.institution!r}")
        for iname, inst in self.institutions.items():
            if inst.site and inst.site not in self.sites:
                problems.append(f"institutions.{iname}.site: unknown site {inst.site!r}")
        ports: dict[int, str] = {}
        for key, port in self.ports().items():
            if port in ports:
                problems.append(f"{key}: port {port} is already used by {ports[port]}")
            else:
                ports[port] = key
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # ---- derived views (read-only helpers other modules use) ----

    def ports(self) -> dict[str, int]:
        """Every TCP port this deployment listens on, by key path."""
        out = {
            "hub.port": self.hub.port,
            "hub.hub_port": self.hub.hub_port,
            "hub.proxy_api_port": self.hub.proxy_api_port,
        }
        if self.services.dask_gateway.enabled:
            out["services.dask_gateway.port"] = self.services.dask_gateway.port
            out["services.dask_gateway.scheduler_proxy_port"] = self.services.dask_gateway.scheduler_proxy_port
        if self.services.dashboards.enabled:
            out["services.dashboards.port"] = self.services.dashboards.port
        for sname, site in self.sites.items():
            if site.kind == "local" and site.port:
                out[f"sites.{sname}.port"] = site.port
        return out

    def path(self, value: str) -> Path:
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (self._base_dir / p).resolve()

    @property
    def state_path(self) -> Path:
        return self.path(self.state_dir)

    @property
    def secrets_path(self) -> Path:
        return self.path(self.secrets_dir) if self.secrets_dir else self.state_path / "secrets"

    @property
    def public_url(self) -> str:
        return f"http://{self.hub.ip}:{self.hub.port}"

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
        problems = []
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            # Cross-reference errors name their own key paths inside the message.
            if not loc and ": " in msg:
                for part in msg.split("; "):
                    key, _, why = part.partition(": ")
                    kline = _line_for(lines, tuple(key.split(".")))
                    problems.append((key + (f" (line {kline})" if kline else ""), why))
                continue
            key = ".".join(loc) or "(top level)"
            kline = _line_for(lines, loc)
            problems.append((key + (f" (line {kline})" if kline else ""), msg))
        raise ConfigError(source, problems) from None
    if base_dir is not None:
        model._base_dir = base_dir
    return model


def _line_for(lines: dict[tuple[str, ...], int], loc: tuple[str, ...]) -> int | None:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None


def load(path: str | os.PathLike | None = None) -> Deployment:
    """Load the deployment file: `path`, else $LUNARHUB_CONFIG, else hub/lunarhub.yaml."""
    p = Path(path or os.environ.get("LUNARHUB_CONFIG") or DEFAULT_CONFIG).resolve()
    if not p.exists():
        raise ConfigError(str(p), [("(file)", "deployment config not found")])
    model = parse(p.read_text(encoding="utf-8"), source=str(p), base_dir=p.parent)
    model._config_file = p
    return model
