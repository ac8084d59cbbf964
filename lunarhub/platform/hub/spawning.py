"""Users' servers: which spawner (by isolation), its command and limits, and what each start gets
(home, resource profile, environment, a dashboard instead of a lab)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from lunarhub.config import ConfigError, Deployment
from lunarhub.lab import environment as lab
from lunarhub.platform import accounts, cgroups, components, projects, tls

VENV_BIN = Path(sys.executable).parent
KERNEL_TRANSPORT = "ipc"
RTC_ON = "--YDocExtension.disable_rtc=False"


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
    # GDAL /vsicurl/, requests, fsspec/aiohttp and dask-gateway verify the sites and the proxy with it.
    env.update(tls.client_environment(d))
    for component in components.enabled(d):
        env.update(component.spawn_environment(d, username))
    env.update(lab.spawn_environment(d, username))  # the lab extension (extensions/lunarhub-lab)
    return env


def configure_spawner(c: Any, d: Deployment) -> None:
    logs = d.state_path / "logs"
    logs.mkdir(parents=True, exist_ok=True)
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
    _require_resource_limits(d)
    # Through a stand-in that spares each start ~1.7 CPU-s of grammar compiling (upstream bug).
    c.Spawner.cmd = [str(VENV_BIN / "python"), "-m", "lunarhub.upstream.jsonschema_iri",
                     str(VENV_BIN / "jupyterhub-singleuser")]
    c.Spawner.default_url = "/lab"
    c.Spawner.start_timeout = d.hub.start_timeout
    c.Spawner.http_timeout = d.hub.http_timeout
    args = [
        f"--HubOAuth.cache_max_age={d.hub.token_cache_seconds}",
        # Kernels talk over Unix sockets in the user's runtime dir (0700): on TCP any account
        # on the host could subscribe to a kernel's iopub (readable without the key).
        # On the command line, so a ~/.jupyter config cannot put the user's kernels back on TCP by accident.
        f"--KernelManager.transport={KERNEL_TRANSPORT}",
    ]
    if os.geteuid() == 0 and d.hub.isolation == "single-account":
        args.append("--allow-root")
    c.Spawner.args = args
    c.Spawner.pre_spawn_hook = pre_spawn_hook(d)


def _require_resource_limits(d: Deployment) -> None:
    """Refuse to start a hub that would promise limits it cannot enforce."""
    if d.hub.resource_limits != "cgroups":
        return
    key = "hub.resource_limits"
    if os.geteuid() != 0:
        problem = ("'cgroups' needs the hub to run as root to create control groups; "
                   "set hub.resource_limits: none on an unprivileged development hub (limits are then not enforced)")
    else:
        try:
            cgroups.detect()
            return
        except cgroups.Unavailable as exc:
            problem = str(exc)
    raise ConfigError(str(d.config_file or "deployment"), [(key, problem)])


def pre_spawn_hook(d: Deployment) -> Any:
    """The hook run before each start; it reads the roster anew at every start."""

    def hook(spawner: Any) -> None:
        live = _live(d)
        username = spawner.user.name
        if not (spawner.name or "").startswith("dash-"):
            from lunarhub.operations import usage

            # A group over its monthly core-hours starts no lab (its published dashboards still open).
            usage.check_quota(live, username, "server")
        project = live.project_of(username)
        if project is not None:
            home = _prepare_project(live, project, spawner)
        else:
            home = accounts.prepare_user(live, username)
        spawner.notebook_dir = str(home)
        group = _user_profile(live, username)
        if group is not None:
            prof = live.profiles[group]
            spawner.mem_limit = int(prof.memory_gb * 1024**3)
            spawner.cpu_limit = prof.cpu
            show_memory_limit(spawner, spawner.mem_limit)
        spawner.enforce_limits = live.hub.resource_limits == "cgroups"
        spawner.environment.update(spawn_environment(live, username))
        if live.services.dashboards.enabled:
            from lunarhub import dashboards

            # A `dash-<slug>` named server serves a published dashboard instead of a lab.
            dashboards.spawn_override(live, spawner)

    return hook


MEM_LIMIT_ARG = "--ResourceUseDisplay.mem_limit="


def show_memory_limit(spawner: Any, limit_bytes: int) -> None:
    """jupyter-resource-usage's status bar shows memory against the profile's limit; on the command
    line (the spawner's args outlive one start: the previous start's value is replaced)."""
    args = [a for a in spawner.args if not a.startswith(MEM_LIMIT_ARG)]
    spawner.args = [*args, f"{MEM_LIMIT_ARG}{limit_bytes}"]


def _live(d: Deployment) -> Deployment:
    """The user table as it is now (the CLI may have changed it since the hub started)."""
    from lunarhub.config import roster

    return roster.effective(d)


def _prepare_project(d: Deployment, project: str, spawner: Any) -> Path:
    """A joint project's server: its own account and folder, real-time collaboration forced on."""
    if spawner.name and not spawner.name.startswith("dash-"):
        raise RuntimeError(f"project {project!r} has one lab server; named servers other than "
                           "dashboards (dash-<slug>) are not started for it")
    home, account, env = projects.prepare(d, project)
    spawner.account = account or ""
    spawner.environment.update(env)
    # On the command line, after the shared args: a config file in the (member-writable) project
    # folder cannot turn collaboration off for the others.
    if RTC_ON not in spawner.args:  # the spawner object, and its args, outlive one start
        spawner.args = [*spawner.args, RTC_ON]
    return home


def _user_profile(d: Deployment, username: str) -> str | None:
    project = d.project_of(username)
    if project is not None:
        # A project server gets the largest profile among its members' groups.
        groups = [m for m in d.projects[project].members if m in d.groups]
        groups += [g for m in d.projects[project].members if m in d.users for g in d.users[m].groups]
        profiles = [d.groups[g].profile for g in groups]
        return max(profiles, key=lambda p: (d.profiles[p].memory_gb, d.profiles[p].cpu)) if profiles else None
    user = d.users.get(username)
    if not user:
        return None
    # The largest profile among the user's groups wins.
    profiles = [d.groups[g].profile for g in user.groups]
    return max(profiles, key=lambda p: (d.profiles[p].memory_gb, d.profiles[p].cpu))
