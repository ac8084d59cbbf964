"""A dask-gateway of a site's own, on the site's Slurm cluster (sites.<name>.compute.kind: slurm).

Each such site gets a hub service `dask-gateway-<site>` (external, like the hub's own gateway:
lunarhub.compute.gateway), run by the supervisor from `<state>/gateway-<site>/dask_gateway_config.py`.
That file is `lunarhub render hpc --site <site> --with-secrets` byte for byte (dask-gateway's
SlurmBackend, one partition per group, the per-group limits and per-user cluster cap of
lunarhub/compute/gateway_limits.py), followed by an epilogue for this machine only: the dashboards
behind a hub login (lunarhub.compute.gateway_server's front), clusters ended with their owner's
last server, the owner's site credentials added to each job's environment at submission, and
schedulers/workers listening on loopback only. So what the tests run is what an institute deploys.

The hub's own gateway stays what `Gateway()` with no arguments reaches; a user's server gets
`LUNARHUB_GATEWAY_<SITE>_ADDRESS` / `..._PROXY_ADDRESS`, which `site_gateway.client(site)` reads.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path
from typing import Any

from lunarhub.compute import gateway, slurm
from lunarhub.config import Deployment, secrets

VENV = Path(sys.executable).parent.parent
EPILOGUE_MARK = "# --- lunarhub on this machine"


def sites(d: Deployment) -> list[str]:
    """Sites with a gateway of their own (a local Slurm cluster)."""
    return slurm.sites(d)


def service_name(site: str) -> str:
    return f"{gateway.SERVICE}-{site}"


def prefix(site: str) -> str:
    return f"/services/{service_name(site)}"


def token_name(site: str) -> str:
    return f"{service_name(site)}-api-token"


def service_url(d: Deployment, site: str) -> str:
    return f"http://127.0.0.1:{d.sites[site].compute.gateway_port}"


def workdir(d: Deployment, site: str) -> Path:
    # Under gateway/ (PRIVATE_DIRS of lunarhub.platform.lifecycle): root's alone.
    secrets.ensure_dir(d.state_path / "gateway", 0o700)
    return secrets.ensure_dir(d.state_path / "gateway" / site, 0o700)


def config_path(d: Deployment, site: str) -> Path:
    return d.state_path / "gateway" / site / "dask_gateway_config.py"


def env_prefix(site: str) -> str:
    return f"LUNARHUB_GATEWAY_{site.upper().replace('-', '_')}"


# ---------------------------------------------------------------- rendering


def rendered_config(d: Deployment, site: str, with_secrets: bool = False) -> str:
    """`lunarhub render hpc --site <site>` for a site whose Slurm cluster runs here: its commands,
    partitions, ports and state as `lunarhub up` runs them."""
    from lunarhub.compute import render

    c = d.sites[site].compute
    lay = slurm.layout(d, site)
    return render.hpc_config(
        d, "slurm", site, venv=str(VENV), with_secrets=with_secrets,
        service=service_name(site), token_name=token_name(site), proxy_port=c.scheduler_proxy_port,
        db_dir=str(d.state_path / "gateway" / site), listen="127.0.0.1",
        commands={"submit": lay.command("sbatch"), "cancel": lay.command("scancel"),
                  "status": lay.command("squeue")},
        partitions=slurm.partitions(d, site),
    )


def local_config(d: Deployment, site: str) -> str:
    """The file the site's gateway runs: the rendered config plus this machine's epilogue."""
    return (rendered_config(d, site, with_secrets=True) + "\n\n"
            f"{EPILOGUE_MARK} (not part of `lunarhub render`): hub-login dashboards, cleanup with\n"
            "# the owner's servers, site credentials per job, loopback-only schedulers.\n"
            "from lunarhub.compute import site_gateway as _site_gateway\n\n"
            f"_site_gateway.configure_local(c, {str(d.config_file or '')!r}, {site!r})\n")


def write_config(d: Deployment, site: str) -> Path:
    from lunarhub.files import write_atomic

    workdir(d, site)
    path = config_path(d, site)
    write_atomic(path, local_config(d, site), 0o600)  # holds the service token and the DB key
    return path


def command(d: Deployment, site: str) -> list[str]:
    return [str(Path(sys.executable).parent / "dask-gateway-server"), "-f", str(config_path(d, site))]


# ---------------------------------------------------------------- hub side


def hub_services(d: Deployment) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each site gateway as an external hub service, with the scopes of the hub's own gateway."""
    svcs: list[dict[str, Any]] = []
    roles: list[dict[str, Any]] = []
    for site in sites(d):
        name = service_name(site)
        svcs.append({"name": name, "url": service_url(d, site), "api_token": secrets.token(d, token_name(site)),
                     "oauth_no_confirm": True, "display": False})
        roles.append({"name": name, "scopes": ["list:users", "read:users:name", "read:servers"],
                      "services": [name]})
    return svcs, roles


def spawn_environment(d: Deployment, username: str) -> dict[str, str]:
    """Where a user's server finds each site gateway the user has an account at."""
    env: dict[str, str] = {}
    if sites(d):
        # Which sites compute on their own gateway: lunarhub.compute.placement asks there, or says why not.
        from lunarhub.compute.placement import SITE_GATEWAYS_ENV

        env[SITE_GATEWAYS_ENV] = ",".join(sites(d))
    if gateway.user_limits(d, username) is None:
        return env
    for site in sites(d):
        if slurm.partition_for(d, site, username) is None:
            continue
        c = d.sites[site].compute
        env[f"{env_prefix(site)}_ADDRESS"] = f"{d.public_url}{prefix(site)}"
        env[f"{env_prefix(site)}_PROXY_ADDRESS"] = f"tcp://127.0.0.1:{c.scheduler_proxy_port}"
    return env


def client(site: str, **kwargs: Any) -> Any:
    """In a user's server: a dask_gateway.Gateway of `site`'s own gateway (hub login)."""
    from dask_gateway import Gateway

    key = env_prefix(site)
    if f"{key}_ADDRESS" not in os.environ:
        raise LookupError(f"site {site!r} has no dask-gateway for you: this server has no {key}_ADDRESS "
                          "(the site's compute is not slurm, or none of your groups has an account there)")
    kwargs.setdefault("auth", "jupyterhub")
    return Gateway(address=os.environ[f"{key}_ADDRESS"], proxy_address=os.environ[f"{key}_PROXY_ADDRESS"],
                   **kwargs)


# ---------------------------------------------------------------- in the gateway process


EGRESS_COMPONENT = "egress-{site}"
EGRESS_PATH = "/lunarhub/egress"


def egress_component(site: str) -> str:
    return EGRESS_COMPONENT.format(site=site)


def egress_taken(d: Deployment, site: str, username: str) -> dict[str, int]:
    """dataset -> bytes of at-site results `username` already took from `site` (the audit log)."""
    from lunarhub.platform import audit

    out: dict[str, int] = {}
    for e in audit.read(d, [egress_component(site)], event="egress", user=username, refused=False):
        out[e["dataset"]] = out.get(e["dataset"], 0) + int(e.get("bytes", 0))
    return out


def egress_environment(d: Deployment, site: str, username: str, cluster: str) -> dict[str, str]:
    """LUNARHUB_EGRESS for the scheduler of `username`'s cluster at `site` (lunarhub.compute.egress)."""
    import json

    from lunarhub.compute import egress
    from lunarhub.data import entitlement

    metered = entitlement.at_site_paths(d, username, site)
    conf = {"user": username, "site": site, "budget": entitlement.egress_budget_bytes(d, username),
            "budget_key": entitlement.egress_budget_key(d, username), "metered": metered,
            "used": egress_taken(d, site, username) if metered else {},
            "report_url": f"{service_url(d, site)}{prefix(site)}{EGRESS_PATH}"}
    return {egress.ENV: json.dumps(conf), "LUNARHUB_EGRESS_CLUSTER": cluster}


def record_egress(d: Deployment, site: str, username: str, cluster: str, datasets: dict[str, int],
                  refused: bool) -> None:
    """The site's audit log: bytes per user per dataset taken out (or refused) at `site`."""
    from lunarhub.platform import audit

    for dataset, n in sorted(datasets.items()):
        audit.record(d, egress_component(site), "egress", user=username, site=site, dataset=dataset,
                     bytes=int(n), refused=bool(refused), cluster=cluster)


def controller_refusal(d: Deployment, site: str) -> str | None:
    """Why no cluster can start at `site` now (None: its slurmctld answers)."""
    up, said = slurm.controller_state(d, site, timeout=5)
    if up:
        return None
    # The gateway sends the refusal as the HTTP reason, which must be one line.
    said = said.splitlines()[0].strip() if said.strip() else ""
    return (f"the Slurm cluster of site {site!r} does not answer (slurmctld: {said or 'no reply'}): no dask "
            f"cluster can start at {site} now; the hub's own gateway (Gateway()) and the other sites work. "
            f"Try again later; operators: `lunarhub status`, log {slurm.log_path(d, site, 'slurmctld')}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def configure_local(c: Any, config_file: str, site: str) -> None:
    """The epilogue: wrap the rendered backend (SlurmBackend + the cluster cap) with lunarhub's
    front, cleanup and per-job credentials; loopback only."""
    from dask_gateway_server.backends.base import PublicException

    from lunarhub import config
    from lunarhub.compute.gateway_server import LunarBackendMixin
    from lunarhub.config import roster
    from lunarhub.upstream import dask_gateway_bind_host

    dask_gateway_bind_host.apply()
    d = roster.effective(config.load(config_file or None))
    rendered = c.DaskGateway.backend_class

    # LoopbackJobs: schedulers and workers are reached through the gateway's proxy on this machine only.
    class SiteBackend(LunarBackendMixin, dask_gateway_bind_host.LoopbackJobs, rendered):  # type: ignore[misc, valid-type]
        """The rendered backend; LunarBackendMixin's own limits are replaced by the rendered ones
        (`c.Backend.cluster_options` and the cap class), so only what render writes decides."""

        async def setup(self, app: Any) -> None:
            self._rendered_options = self.cluster_options
            await super().setup(app)
            self.cluster_options = self._rendered_options

        def _options_for(self, user: Any) -> Any:
            return self._rendered_options(user)

        lunarhub_site = site

        async def do_as_user(self, user: str, action: str, **kwargs: Any) -> Any:
            """As upstream's (jobqueue base), but jobs are submitted with the user's job group
            (lunarhub.data.local_reads), which gives them exactly the user's reads on the site's disk."""
            import json

            from lunarhub.data import local_reads

            gid = local_reads.gid_for_jobs(site, user) if action == "start" else None
            cmd = ["sudo", "-nHu", user, *(["-g", f"#{gid}"] if gid is not None else []),
                   self.dask_gateway_jobqueue_launcher]
            kwargs["action"] = action
            proc = await asyncio.create_subprocess_exec(
                *cmd, env={}, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate(json.dumps(kwargs).encode("utf8"))
            stdout, stderr = out.decode("utf8", "replace"), err.decode("utf8", "replace")
            if proc.returncode != 0:
                raise Exception("Error running `dask-gateway-jobqueue-launcher`\n"
                                f"  returncode: {proc.returncode}\n  stdout: {stdout}\n  stderr: {stderr}")
            result = json.loads(stdout)
            if not result["ok"]:
                raise Exception(result["error"])
            return result["returncode"], result["stdout"], result["stderr"]

        def get_worker_env(self, cluster: Any) -> dict[str, str]:
            from lunarhub.data import local_reads

            env = super().get_worker_env(cluster)
            env.update(local_reads.local_root_env(self.deployment(), site))
            return env

        def get_scheduler_env(self, cluster: Any) -> dict[str, str]:
            env = super().get_scheduler_env(cluster)
            env.update(egress_environment(self.deployment(), site, cluster.username, cluster.name))
            return env

        def get_scheduler_command(self, cluster: Any) -> list[str]:
            cmd = super().get_scheduler_command(cluster)
            n = len(cluster.config.scheduler_cmd)
            return [*cmd[:n], "--preload", "lunarhub.compute.egress", *cmd[n:]]

        async def start_cluster(self, user: Any, cluster_options: dict) -> str:
            # Said before anything is submitted: sbatch against a stopped controller only fails
            # after its timeouts, and the client would see "failed to start" without the reason.
            why = await asyncio.get_running_loop().run_in_executor(None, controller_refusal, d, site)
            if why:
                self.log.warning("Refused a cluster for %s: %s", user.name, why)
                raise PublicException(why)
            return await super(LunarBackendMixin, self).start_cluster(user, cluster_options)

    SiteBackend.__name__ = SiteBackend.__qualname__ = f"SiteBackend_{site.replace('-', '_')}"
    c.DaskGateway.backend_class = SiteBackend
    # The private API only talks to schedulers on this machine.
    c.DaskGateway.address = f"127.0.0.1:{_free_port()}"
    db = d.state_path / "gateway" / site / "gateway.sqlite"
    # Root's alone from its creation, before SQLite opens it with the umask (as lunarhub.compute.gateway).
    os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
    os.chmod(db, 0o600)
    for section in ("SlurmBackend",):
        c[section].cluster_status_period = 5
        c[section].worker_status_period = 5
        c[section].check_timeouts_period = 5
        c[section].cluster_heartbeat_period = 5
    front = c.LunarBackendMixin
    front.deployment_file = str(d.config_file or "")
    front.front_address = service_url(d, site).removeprefix("http://")
    front.hub_api_url = f"http://127.0.0.1:{d.hub.hub_port}/hub/api"
    front.hub_api_token = secrets.token(d, token_name(site))
    front.cookie_secret_file = str(secrets.secret_path(d, f"{service_name(site)}-cookie-secret"))
    front.service_name = service_name(site)
