"""Deployment model -> dask-gateway-server: limits, cluster options, hub wiring.

The gateway runs under supervisord beside the hub as an *external* hub service
(url + api_token registered in the hub), not as a hub-managed service: a
managed service that dies at start takes the hub down with it, an external one
only makes /services/dask-gateway answer 503.

hub/dask_gateway_config.py only calls `configure(c, deployment)`. What runs
inside the gateway process (backends, dashboard auth, cleanup) is in
lunarhub/compute/gateway_server.py; this module stays import-light so the hub and the
CLI can use it without loading dask-gateway-server.
"""

from __future__ import annotations

import base64
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lunarhub.config import Deployment, GroupLimits, secrets
from lunarhub.platform import tls

VENV_BIN = Path(sys.executable).parent
SERVICE = "dask-gateway"
PREFIX = f"/services/{SERVICE}"
# The scheduler is not the user's choice: it is small and not counted in the
# group limits (which are about workers), so the gateway's own caps add it.
SCHEDULER_CORES = 1
SCHEDULER_MEMORY_GB = 1.0
GIB = 2**30


class LimitError(ValueError):
    """A request the deployment's dask limits refuse; the message names the limit."""


# ---------------------------------------------------------------- limits


@dataclass(frozen=True)
class UserLimits:
    """A user's dask limits: the largest of each limit over their groups with a `dask` block."""

    max_clusters: int
    max_cores: float
    max_memory_gb: float
    max_workers: int
    # limit name -> the group whose value won, for messages that say where to change it
    source: dict[str, str]

    def where(self, limit: str) -> str:
        return f"groups.{self.source[limit]}.dask.{limit}"


def user_limits(d: Deployment, username: str) -> UserLimits | None:
    """None when no group of the user may use dask (no `dask` block)."""
    user = d.users.get(username)
    if user is None:
        return None
    groups = [(g, d.groups[g].dask) for g in user.groups if d.groups[g].dask is not None]
    if not groups:
        return None
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    for limit in GroupLimits.model_fields:
        gname, lim = max(groups, key=lambda item, k=limit: getattr(item[1], k))
        values[limit] = getattr(lim, limit)
        source[limit] = gname
    return UserLimits(**values, source=source)


def refusal_for_new_cluster(d: Deployment, username: str, active: int) -> str | None:
    """Why `username` may not start another cluster (None: they may)."""
    limits = user_limits(d, username)
    if limits is None:
        user = d.users.get(username)
        groups = ", ".join(user.groups) if user else "none (unknown user)"
        allowed = ", ".join(sorted(g for g, grp in d.groups.items() if grp.dask)) or "none"
        return (f"dask clusters are not enabled for your groups ({groups}); "
                f"groups with a dask block in the deployment file: {allowed}")
    if active >= limits.max_clusters:
        return (f"you already have {active} active dask cluster(s); the limit is "
                f"{limits.max_clusters} ({limits.where('max_clusters')}). "
                "Shut one down first (cluster.shutdown() or Gateway().stop_cluster(name)).")
    from lunarhub.operations import usage

    # The groups' monthly core-hours (groups.<g>.core_hours_per_month), checked at each start.
    return usage.quota_refusal(d, username, "dask cluster")


def check_request(limits: UserLimits, worker_cores: int, worker_memory_gb: float, workers: int) -> None:
    """Raise LimitError naming the limit a cluster request exceeds."""
    def refuse(what: str, limit: str, unit: str) -> None:
        raise LimitError(f"{what} exceeds the limit of {getattr(limits, limit):g} {unit} per cluster "
                         f"({limits.where(limit)})")

    if worker_cores > limits.max_cores:
        refuse(f"worker_cores={worker_cores}", "max_cores", "cores")
    if worker_memory_gb > limits.max_memory_gb:
        refuse(f"worker_memory={worker_memory_gb:g} GiB", "max_memory_gb", "GiB")
    if workers > limits.max_workers:
        refuse(f"workers={workers}", "max_workers", "workers")
    if workers * worker_cores > limits.max_cores:
        refuse(f"workers x worker_cores = {workers * worker_cores}", "max_cores", "cores")
    if workers * worker_memory_gb > limits.max_memory_gb:
        refuse(f"workers x worker_memory = {workers * worker_memory_gb:g} GiB", "max_memory_gb", "GiB")


def cluster_overrides(d: Deployment, username: str, worker_cores: int, worker_memory_gb: float,
                      workers: int) -> dict[str, Any]:
    """Validated per-cluster ClusterConfig overrides for a request of `username`."""
    limits = user_limits(d, username)
    if limits is None:
        raise LimitError(refusal_for_new_cluster(d, username, 0) or "dask is not enabled for you")
    check_request(limits, worker_cores, worker_memory_gb, workers)
    return {
        # Set here too, first: ClusterConfig computes cluster_max_workers from the
        # scheduler's size as each override is applied, before the file config lands.
        "scheduler_cores": SCHEDULER_CORES,
        "scheduler_memory": int(SCHEDULER_MEMORY_GB * GIB),
        "worker_cores": int(worker_cores),
        "worker_memory": int(worker_memory_gb * GIB),
        # The gateway counts the scheduler in cluster_max_*; the group limits cover workers.
        "cluster_max_cores": float(limits.max_cores + SCHEDULER_CORES),
        "cluster_max_memory": int((limits.max_memory_gb + SCHEDULER_MEMORY_GB) * GIB),
        "cluster_max_workers": int(limits.max_workers),
        "initial_workers": int(workers),
        # The site credentials are not here: overrides are stored in the gateway's database
        # (plain JSON), so the backend adds them when it starts each process (get_env).
        "environment": {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin"},
    }


def worker_environment(d: Deployment, username: str) -> dict[str, str]:
    """The user's data-site credentials, so workers read exactly what the user may read."""
    from lunarhub.data import sites

    env = dict(sites.credentials_for(d, username)) if d.sites else {}
    # A Slurm job starts with an empty environment: the CA variables travel with the credentials.
    env.update(tls.client_environment(d))
    return env


def option_fields(limits: UserLimits | None) -> list[dict[str, Any]]:
    """The cluster options a user sees (name, kind, default, label). No maximum on
    the fields themselves: the handler refuses with a message naming the group limit."""
    cores = int(limits.max_cores) if limits else 1
    memory = limits.max_memory_gb if limits else 1.0
    return [
        {"name": "worker_cores", "kind": "int", "default": 1, "min": 1,
         "label": f"Worker cores (limit {cores} per cluster)"},
        {"name": "worker_memory", "kind": "float", "default": min(2.0, memory), "min": 0.25,
         "label": f"Worker memory, GiB (limit {memory:g} per cluster)"},
        {"name": "workers", "kind": "int", "default": 0, "min": 0,
         "label": f"Workers at start (limit {limits.max_workers if limits else 0})"},
    ]


# ---------------------------------------------------------------- hub side


def service_url(d: Deployment) -> str:
    return f"http://127.0.0.1:{d.services.dask_gateway.port}"


def hub_services(d: Deployment) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The gateway as an external service, and what its token may do: list users and
    their servers (cleanup of clusters whose owner's server stopped). Authenticating
    users needs no scope: the gateway asks the hub about the *user's* token."""
    svc = {
        "name": SERVICE,
        "url": service_url(d),
        "api_token": secrets.token(d, "dask-gateway-api-token"),
        # Dashboards log in through the hub (OAuth); no confirmation page for our own service.
        "oauth_no_confirm": True,
        "display": False,
    }
    role = {
        "name": SERVICE,
        "scopes": ["list:users", "read:users:name", "read:servers"],
        "services": [SERVICE],
    }
    return [svc], [role]


def spawn_environment(d: Deployment, username: str) -> dict[str, str]:
    """Dask config of a user's server: `Gateway()` with no arguments reaches this gateway.

    Both addresses are the hub's origin: the proxy routes by host (hub.subdomain_host), so
    a link relative to the lab would land on the user's own host; LocalClusters started inside the server get their
    dashboard through jupyter-server-proxy (hub-authenticated), as on pangeo hubs.
    """
    if username not in d.users or user_limits(d, username) is None:
        return {}
    return {
        "DASK_GATEWAY__ADDRESS": f"{d.public_url}{PREFIX}",
        "DASK_GATEWAY__PUBLIC_ADDRESS": f"{d.public_url}{PREFIX}",
        "DASK_GATEWAY__PROXY_ADDRESS": f"tcp://127.0.0.1:{d.services.dask_gateway.scheduler_proxy_port}",
        "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
        "DASK_DISTRIBUTED__DASHBOARD__LINK": "{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/status",
    }


# ---------------------------------------------------------------- gateway process


def workdir(d: Deployment) -> Path:
    return secrets.ensure_dir(d.state_path / "gateway", 0o700)


def command(d: Deployment) -> list[str]:
    return [str(VENV_BIN / "dask-gateway-server"), "-f", str(d.location("gateway_config"))]


def fernet_key(d: Deployment) -> str:
    """A Fernet key (urlsafe base64 of 32 random bytes) for the gateway's SQLite state."""
    raw = bytes.fromhex(secrets.token(d, "dask-gateway-db-key", nbytes=32))
    return base64.urlsafe_b64encode(raw).decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backend_class(d: Deployment) -> str:
    # With one system account per user, workers run as that account (LocalBackend,
    # needs root). single-account mode has no accounts to switch to.
    if d.hub.isolation == "system-users":
        return "lunarhub.compute.gateway_server.LunarLocalBackend"
    return "lunarhub.compute.gateway_server.LunarUnsafeLocalBackend"


def configure(c: Any, d: Deployment) -> None:
    """Set dask-gateway-server traitlets on `c` from deployment `d`."""
    gw = d.services.dask_gateway
    if gw.backend != "local":
        raise ValueError(f"services.dask_gateway.backend is {gw.backend!r}: this machine runs the local "
                         "backend; `lunarhub render kubernetes|hpc` writes the config for the others")
    state = workdir(d)
    # The private API only talks to the scheduler proxy on this machine; any free port.
    c.DaskGateway.address = f"127.0.0.1:{_free_port()}"
    c.DaskGateway.backend_class = backend_class(d)
    c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
    c.JupyterHubAuthenticator.jupyterhub_api_token = secrets.token(d, "dask-gateway-api-token")
    c.JupyterHubAuthenticator.jupyterhub_api_url = f"http://127.0.0.1:{d.hub.hub_port}/hub/api"
    # Requires access:services(!service=dask-gateway) on the token: the hub's RBAC decides.
    c.JupyterHubAuthenticator.jupyterhub_service_name = SERVICE

    # One port for the scheduler proxy (TLS, SNI-routed) and its HTTP side (API for
    # schedulers and our front); the hub's route goes to our authenticating front.
    proxy = f"127.0.0.1:{gw.scheduler_proxy_port}"
    c.Proxy.address = proxy
    c.Proxy.tcp_address = proxy
    c.Proxy.prefix = PREFIX

    backend = c.LocalBackend
    # db_encrypt_keys covers only each cluster's token and TLS key: its `config` column is plain
    # JSON. The owner's site passwords are therefore never put there (the backend adds them to a
    # process's environment at start), and the file is root's alone from its creation (0600, in a
    # 0700 folder), before SQLite opens it with the umask.
    db = state / "gateway.sqlite"
    os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
    os.chmod(db, 0o600)
    backend.db_url = f"sqlite:///{db}"
    backend.db_encrypt_keys = [fernet_key(d)]
    backend.cluster_config_class = "lunarhub.compute.gateway_server.LunarClusterConfig"
    # The CA variables (lunarhub.platform.tls): workers read the sites over verified HTTPS.
    backend.inherited_environment = ["PATH", "LANG", "LC_ALL", *tls.CLIENT_VARIABLES]
    backend.cluster_status_period = 5
    backend.worker_status_period = 5
    backend.check_timeouts_period = 5
    backend.cluster_heartbeat_period = 5

    cc = c.ClusterConfig
    cc.scheduler_cmd = [str(VENV_BIN / "dask"), "scheduler"]
    cc.worker_cmd = [str(VENV_BIN / "dask"), "worker"]
    cc.scheduler_cores = SCHEDULER_CORES
    cc.scheduler_memory = int(SCHEDULER_MEMORY_GB * GIB)
    cc.idle_timeout = float(gw.idle_timeout_seconds)

    # Our own traits (lunarhub.compute.gateway_server.LunarBackendMixin).
    front = c.LunarBackendMixin
    front.deployment_file = str(d.config_file or "")
    front.front_address = service_url(d).removeprefix("http://")
    front.hub_api_url = f"http://127.0.0.1:{d.hub.hub_port}/hub/api"
    front.hub_api_token = secrets.token(d, "dask-gateway-api-token")
    front.cookie_secret_file = str(secrets.secret_path(d, "dask-gateway-cookie-secret"))
