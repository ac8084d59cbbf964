"""Deployment model -> JupyterHub settings (authenticator, spawner, RBAC, services).

hub/jupyterhub_config.py only calls `configure(c, deployment)`.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from lunarhub.config import REPO_ROOT, ConfigError, Deployment, Role, secrets
from lunarhub.platform import accounts, components

VENV_BIN = Path(sys.executable).parent
LAB_ROLES = {Role.science, Role.instructor, Role.student, Role.admin}
CLI_SERVICE = "lunarhub-cli"


def proxy_command(d: Deployment) -> str:
    """configurable-http-proxy from the deployment file, the project's npm install, or PATH."""
    if d.hub.proxy_command:
        path = d.path(d.hub.proxy_command)
        if path.exists() and os.access(path, os.X_OK):
            return str(path)
        raise ConfigError(str(d.config_file or "deployment"), [(
            "hub.proxy_command",
            f"configurable-http-proxy not found at {path}; install it with `npm ci` in {REPO_ROOT} "
            "(or `make install`), or fix the path",
        )])
    local = REPO_ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
    if local.exists():
        return str(local)
    found = shutil.which("configurable-http-proxy")
    if found:
        return found
    raise ConfigError(
        "hub.proxy",
        [(
            "configurable-http-proxy",
            f"not found (looked in {local} and PATH); install it with `npm ci` in {REPO_ROOT} "
            "(or `make install`)",
        )],
    )


def hub_state(d: Deployment) -> Path:
    return secrets.ensure_dir(d.state_path / "hub", 0o700)


def roles(d: Deployment) -> list[dict[str, Any]]:
    """RBAC roles derived from group roles in the deployment file."""
    out: list[dict[str, Any]] = [
        # Everyone: see themselves and use services (gallery, gateway); no server by default.
        {
            "name": "user",
            "scopes": ["read:users!user", "read:users:activity!user", "tokens!user", "access:services"],
        },
        # The token inside a user's server: call hub services (dask-gateway) from notebooks.
        {
            "name": "server",
            "scopes": ["users:activity!user", "access:servers!server", "access:services"],
        },
    ]
    lab_groups = sorted(g for g, grp in d.groups.items() if grp.role in LAB_ROLES)
    if lab_groups:
        out.append({"name": "lab-user", "scopes": ["self"], "groups": lab_groups})
    admin_groups = d.groups_with_role(Role.admin)
    if admin_groups:
        out.append({"name": "admin", "groups": admin_groups})
    for gname, group in sorted(d.groups.items()):
        if group.share_with and group.role in LAB_ROLES:
            # Sharing needs to name the target; only the allowed groups are nameable,
            # so the hub itself refuses shares with anyone else.
            scopes = ["shares!user", "read:shares!user"]
            for target in group.share_with:
                scopes += [f"read:groups:name!group={target}", f"read:users:name!group={target}"]
            out.append({"name": f"share-{gname}", "scopes": scopes, "groups": [gname]})
        if group.teaches:
            scopes = []
            for students in group.teaches:
                scopes += [
                    f"admin:servers!group={students}",
                    f"access:servers!group={students}",
                    f"read:users!group={students}",
                    f"read:users:activity!group={students}",
                ]
                # Single-user servers cannot resolve group filters (jupyterhub.services.auth.
                # check_scopes), so entering a student's server needs a per-user filter too.
                scopes += [f"access:servers!user={u}" for u in d.members(students)]
            out.append({"name": f"teach-{gname}", "scopes": scopes, "groups": [gname]})
    return out


def services(d: Deployment) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Hub services and the roles they hold."""
    svc: list[dict[str, Any]] = [
        # The operator's CLI (lunarhub users/token): an external service with a stored token.
        {"name": CLI_SERVICE, "api_token": secrets.token(d, "cli-api-token")},
    ]
    svc_roles: list[dict[str, Any]] = [
        {"name": "lunarhub-cli", "scopes": ["admin:users", "admin:groups", "tokens", "admin:servers",
                                            "list:users", "read:users", "read:groups", "shares",
                                            "read:roles", "read:hub", "list:services"],
         "services": [CLI_SERVICE]},
    ]
    culler = d.services.idle_culler
    if culler.enabled:
        svc.append({
            "name": "idle-culler",
            "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                        f"--timeout={culler.timeout_seconds}", f"--cull-every={culler.every_seconds}"],
        })
        svc_roles.append({
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["idle-culler"],
        })
    for component in components.enabled(d):
        more, more_roles = component.hub_services(d)
        svc += more
        svc_roles += more_roles
    return svc, svc_roles


def load_groups(d: Deployment) -> dict[str, dict[str, Any]]:
    return {
        g: {"users": d.members(g), "properties": {"role": grp.role.value,
                                                  "institution": grp.institution or ""}}
        for g, grp in d.groups.items()
    }


def _default_url(d: Deployment):
    lab_groups = {g for g, grp in d.groups.items() if grp.role in LAB_ROLES}
    dashboards = "/services/dashboards/" if d.services.dashboards.enabled else "/hub/home"

    def default_url(handler) -> str:
        user = handler.current_user
        if user is None:
            return "/hub/home"
        # From the hub's own group table, so users added since the hub started count too.
        if not user.admin and not lab_groups & {g.name for g in user.groups}:
            return dashboards
        # /hub/spawn starts the default server (no options form) and then opens it.
        return "/hub/spawn"

    return default_url


def spawn_environment(d: Deployment, username: str) -> dict[str, str]:
    """Environment of a user's server; data-site credentials come from the sites module."""
    env = {
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
        "LUNARHUB_HUB_URL": d.public_url,
        "LUNARHUB_USER_GROUPS": ",".join(d.users[username].groups) if username in d.users else "",
        # A broken ~/.jupyter config stops the server with its error shown on the spawn
        # page, instead of being ignored with the user none the wiser.
        "TRAITLETS_APPLICATION_RAISE_CONFIG_FILE_ERROR": "1",
    }
    for component in components.enabled(d):
        env.update(component.spawn_environment(d, username))
    return env


def configure(c: Any, d: Deployment) -> None:
    """Set JupyterHub traitlets on config object `c` from deployment `d`."""
    state = hub_state(d)
    logs = d.state_path / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    c.JupyterHub.ip = d.hub.ip
    c.JupyterHub.port = d.hub.port
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = d.hub.hub_port
    c.JupyterHub.db_url = d.hub.database_url or f"sqlite:///{state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(secrets.secret_path(d, "cookie_secret"))
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
    # A hub restart (config change, roster change touching instructors, crash) must not
    # stop users' servers or the proxy: `lunarhub down` stops them explicitly instead.
    c.JupyterHub.cleanup_servers = False
    c.JupyterHub.cleanup_proxy = False
    c.JupyterHub.allow_named_servers = True
    c.JupyterHub.named_server_limit_per_user = 5
    c.JupyterHub.default_url = _default_url(d)
    c.JupyterHub.template_paths = [str(REPO_ROOT / "hub" / "templates")]
    c.JupyterHub.template_vars = {
        "lunarhub_name": d.name,
        "lunarhub_lab_groups": sorted(g for g, grp in d.groups.items() if grp.role in LAB_ROLES),
        "lunarhub_dashboards_url": "/services/dashboards/" if d.services.dashboards.enabled else "",
    }

    # The proxy outlives a crashed hub (own session, pid file) so users keep working;
    # a restarted hub finds it through the pid file and reuses it.
    c.ConfigurableHTTPProxy.command = [proxy_command(d)]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{d.hub.proxy_api_port}"
    c.ConfigurableHTTPProxy.auth_token = secrets.token(d, "proxy-auth-token")
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")

    # Authentication
    if d.auth.kind == "password":
        c.JupyterHub.authenticator_class = "lunarhub.platform.auth.LunarPasswordAuthenticator"
        cfg = d.config_file
        c.LunarPasswordAuthenticator.deployment_file = str(cfg) if cfg else ""
    elif d.auth.kind == "oauth":
        o = d.auth.oauth
        assert o is not None
        c.JupyterHub.authenticator_class = "generic-oauth"
        c.GenericOAuthenticator.client_id = o.client_id
        c.GenericOAuthenticator.client_secret = d.path(o.client_secret_file).read_text().strip()
        c.GenericOAuthenticator.authorize_url = o.authorize_url
        c.GenericOAuthenticator.token_url = o.token_url
        c.GenericOAuthenticator.userdata_url = o.userdata_url
        c.GenericOAuthenticator.username_claim = o.username_claim
        c.GenericOAuthenticator.scope = o.scope
        c.GenericOAuthenticator.oauth_callback_url = f"{d.public_url}/hub/oauth_callback"
    else:
        ldap = d.auth.ldap
        assert ldap is not None
        c.JupyterHub.authenticator_class = "ldapauthenticator.LDAPAuthenticator"
        c.LDAPAuthenticator.server_address = ldap.server_address
        c.LDAPAuthenticator.server_port = ldap.server_port
        c.LDAPAuthenticator.tls_strategy = "on_connect" if ldap.use_ssl else "before_bind"
        c.LDAPAuthenticator.bind_dn_template = ldap.bind_dn_template
    c.Authenticator.allowed_users = set(d.users)
    c.Authenticator.admin_users = {u for g in d.groups_with_role(Role.admin) for u in d.members(g)}

    c.JupyterHub.load_groups = load_groups(d)
    hub_services, service_roles = services(d)
    c.JupyterHub.services = hub_services
    c.JupyterHub.load_roles = roles(d) + service_roles

    # Spawner
    if d.hub.isolation == "system-users":
        if os.geteuid() != 0:
            raise ConfigError(
                str(d.config_file or "deployment"),
                [("hub.isolation", "'system-users' needs the hub to run as root; "
                  "use 'single-account' for unprivileged development")],
            )
        c.JupyterHub.spawner_class = "lunarhub.platform.spawner.LunarLocalProcessSpawner"
        spawner = c.LunarLocalProcessSpawner
    else:
        c.JupyterHub.spawner_class = "lunarhub.platform.spawner.LunarSingleAccountSpawner"
        spawner = c.LunarSingleAccountSpawner
        spawner.home_dir_template = str(d.state_path / "homes" / "{username}")
    spawner.log_dir = str(logs / "servers")
    c.Spawner.cmd = [str(VENV_BIN / "jupyterhub-singleuser")]
    c.Spawner.default_url = "/lab"
    c.Spawner.start_timeout = d.hub.start_timeout
    c.Spawner.http_timeout = d.hub.http_timeout
    args = [f"--HubOAuth.cache_max_age={d.hub.token_cache_seconds}"]
    if os.geteuid() == 0 and d.hub.isolation == "single-account":
        args.append("--allow-root")
    c.Spawner.args = args

    def pre_spawn_hook(spawner: Any) -> None:
        live = _live(d)
        username = spawner.user.name
        home = accounts.prepare_user(live, username)
        spawner.notebook_dir = str(home)
        group = _user_profile(live, username)
        if group is not None:
            prof = live.profiles[group]
            spawner.mem_limit = int(prof.memory_gb * 1024**3)
            spawner.cpu_limit = prof.cpu
        spawner.environment.update(spawn_environment(live, username))
        if live.services.dashboards.enabled:
            from lunarhub import dashboards

            # A `dash-<slug>` named server serves a published dashboard instead of a lab.
            dashboards.spawn_override(live, spawner)

    c.Spawner.pre_spawn_hook = pre_spawn_hook


def _live(d: Deployment) -> Deployment:
    """The user table as it is now (the CLI may have changed it since the hub started)."""
    from lunarhub.config import roster

    return roster.effective(d)


def _user_profile(d: Deployment, username: str) -> str | None:
    user = d.users.get(username)
    if not user:
        return None
    # The largest profile among the user's groups wins.
    profiles = [d.groups[g].profile for g in user.groups]
    return max(profiles, key=lambda p: (d.profiles[p].memory_gb, d.profiles[p].cpu))
