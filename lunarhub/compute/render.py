"""`lunarhub render kubernetes|hpc`: the same deployment file, rendered for scale-out.

- kubernetes: Helm values for the daskhub chart (Zero-to-JupyterHub + dask-gateway's
  Kubernetes backend): hub config, groups, roles, profiles, gateway limits.
- hpc: a dask-gateway-server config for a site's batch system (Slurm or PBS), run at
  the site that holds the data, registered in the hub as an external service.

Secrets are placeholders unless --with-secrets (then read from this machine's state).
The per-group limits travel as a self-contained snippet (no lunarhub import on the
gateway's image), the same rules as lunarhub.compute.gateway.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from lunarhub import config
from lunarhub.compute import gateway
from lunarhub.config import Deployment, roster, secrets
from lunarhub.platform import hub

PLACEHOLDER = "CHANGE-ME-openssl-rand-hex-32"

# Options + limits + the per-user cluster cap, executed by dask-gateway-server with `c` in scope,
# after the line that sets c.DaskGateway.backend_class (the daskhub chart's gateway config runs
# gateway.extraConfig last). Mirrors lunarhub.compute.gateway (user's max over their groups; scheduler
# not counted) and lunarhub.compute.gateway_server (max_clusters checked when a cluster is created).
LIMITS_SNIPPET = '''\
# --- lunarhub: per-group dask limits (rendered from the deployment file) ---
from time import monotonic as _monotonic

from dask_gateway_server.backends.base import PublicException as _PublicException
from dask_gateway_server.models import ClusterStatus as _ClusterStatus
from dask_gateway_server.options import Float as _Float, Integer as _Integer, Options as _Options
from traitlets.utils.importstring import import_item as _import_item

_ACTIVE = [_ClusterStatus.PENDING, _ClusterStatus.RUNNING]

GROUP_LIMITS = {group_limits}
SCHEDULER_CORES = {scheduler_cores}
SCHEDULER_MEMORY_GB = {scheduler_memory_gb}
EXTRA_ENVIRONMENT = {environment}


def _user_limits(groups):
    blocks = [(g, GROUP_LIMITS[g]) for g in groups if g in GROUP_LIMITS]
    if not blocks:
        return None
    out = {{}}
    for key in ("max_clusters", "max_cores", "max_memory_gb", "max_workers"):
        g, lim = max(blocks, key=lambda b: b[1][key])
        out[key] = (lim[key], "groups.%s.dask.%s" % (g, key))
    return out


def _refuse(what, lim, key, unit):
    value, where = lim[key]
    raise ValueError("%s exceeds the limit of %g %s per cluster (%s)" % (what, value, unit, where))


def _cluster_options(user):
    lim = _user_limits(user.groups)

    def handler(options, user):
        if lim is None:
            raise ValueError("dask clusters are not enabled for your groups (%s); groups with a dask "
                             "block: %s" % (", ".join(user.groups), ", ".join(sorted(GROUP_LIMITS))))
        cores, mem = options.worker_cores, options.worker_memory
        if cores > lim["max_cores"][0]:
            _refuse("worker_cores=%d" % cores, lim, "max_cores", "cores")
        if mem > lim["max_memory_gb"][0]:
            _refuse("worker_memory=%g GiB" % mem, lim, "max_memory_gb", "GiB")
        return {{
            "worker_cores": int(cores),
            "worker_memory": int(mem * 2**30),
            "cluster_max_cores": float(lim["max_cores"][0] + SCHEDULER_CORES),
            "cluster_max_memory": int((lim["max_memory_gb"][0] + SCHEDULER_MEMORY_GB) * 2**30),
            "cluster_max_workers": int(lim["max_workers"][0]),
            "environment": dict(EXTRA_ENVIRONMENT),
        }}

    return _Options(
        _Integer("worker_cores", default=1, min=1, label="Worker cores"),
        _Float("worker_memory", default=2, min=0.25, label="Worker memory (GiB)"),
        handler=handler,
    )


# Per-user cluster cap (groups.<g>.dask.max_clusters): no dask-gateway backend has one, so the
# configured backend is subclassed and refuses start_cluster for a user at their cap, as
# lunarhub.compute.gateway_server does on one machine. Clusters this gateway created that its backend
# does not list yet (Kubernetes: the informer has not seen the DaskCluster object) count too.
_BaseBackend = _import_item({backend_class!r})


class LunarhubClusterCap(_BaseBackend):
    """{backend_name} + lunarhub's per-user cluster cap (rendered by `lunarhub render`)."""

    _lunarhub_recent = None  # user name -> {{cluster name: monotonic time created}}

    async def _lunarhub_active(self, username):
        active = await self.list_clusters(username=username, statuses=_ACTIVE)
        names = {{cl.name for cl in active}}
        recent = (self._lunarhub_recent or {{}}).get(username, {{}})
        for name, created in list(recent.items()):
            if name in names or _monotonic() - created > 120 or await self.get_cluster(name) is not None:
                del recent[name]  # listed (or known to have ended): list_clusters decides from now on
            else:
                names.add(name)
        return len(names)

    async def start_cluster(self, user, cluster_options):
        lim = _user_limits(user.groups)
        if lim is not None:  # no dask group at all: the options handler refuses with its own message
            cap, where = lim["max_clusters"]
            n = await self._lunarhub_active(user.name)
            if n >= cap:
                why = ("you already have %d active dask cluster(s); the limit is %d (%s). Shut one down "
                       "first (cluster.shutdown() or Gateway().stop_cluster(name))." % (n, cap, where))
                self.log.info("Refused a cluster for %s: %s", user.name, why)
                raise _PublicException(why)
        name = await super().start_cluster(user, cluster_options)
        if self._lunarhub_recent is None:
            self._lunarhub_recent = {{}}
        self._lunarhub_recent.setdefault(user.name, {{}})[name] = _monotonic()
        return name


c.DaskGateway.backend_class = LunarhubClusterCap
c.Backend.cluster_options = _cluster_options
c.ClusterConfig.idle_timeout = {idle_timeout}
c.ClusterConfig.scheduler_cores = SCHEDULER_CORES
c.ClusterConfig.scheduler_memory = int(SCHEDULER_MEMORY_GB * 2**30)
'''


KUBE_BACKEND = "dask_gateway_server.backends.kubernetes.KubeBackend"


def limits_snippet(d: Deployment, backend_class: str, environment: dict[str, str] | None = None) -> str:
    """The limits snippet for a gateway whose backend is `backend_class` (import path)."""
    limits = {g: grp.dask.model_dump() for g, grp in sorted(d.groups.items()) if grp.dask}
    return LIMITS_SNIPPET.format(
        backend_class=backend_class, backend_name=backend_class.rsplit(".", 1)[-1],
        group_limits=json.dumps(limits, indent=4, sort_keys=True),
        scheduler_cores=gateway.SCHEDULER_CORES,
        scheduler_memory_gb=gateway.SCHEDULER_MEMORY_GB,
        environment=json.dumps(environment or {}, sort_keys=True),
        idle_timeout=float(d.services.dask_gateway.idle_timeout_seconds),
    )


def _secret(d: Deployment, name: str, with_secrets: bool) -> str:
    return secrets.token(d, name) if with_secrets else PLACEHOLDER


# ---------------------------------------------------------------- kubernetes


def _memory(gb: float) -> str:
    return f"{gb:g}G"


def kubernetes_values(d: Deployment, release: str = "lunarhub", namespace: str = "lunarhub",
                      image: str = "ghcr.io/lunarhub/singleuser:latest",
                      with_secrets: bool = False) -> dict[str, Any]:
    """daskhub chart values: `jupyterhub:` (z2jh) and `dask-gateway:` sub-charts."""
    gw_token = _secret(d, "dask-gateway-api-token", with_secrets)
    roles = [r for r in hub.roles(d)]
    default_profile = "standard" if "standard" in d.profiles else next(iter(d.profiles))
    profiles = []
    for name, prof in d.profiles.items():
        used_by = sorted(g for g, grp in d.groups.items() if grp.profile == name)
        profiles.append({
            "display_name": f"{name}: {prof.cpu:g} CPU, {prof.memory_gb:g} GB",
            "slug": name,
            "description": "groups: " + (", ".join(used_by) or "none"),
            "default": name == default_profile,
            "kubespawner_override": {
                "cpu_limit": prof.cpu, "cpu_guarantee": prof.cpu / 2,
                "mem_limit": _memory(prof.memory_gb), "mem_guarantee": _memory(prof.memory_gb / 2),
            },
        })
    auth_class = {"password": "lunarhub.platform.auth.LunarPasswordAuthenticator", "oauth": "generic-oauth",
                  "ldap": "ldapauthenticator.LDAPAuthenticator"}[d.auth.kind]
    hub_config: dict[str, Any] = {
        "JupyterHub": {
            "authenticator_class": auth_class,
            "allow_named_servers": True,
            "load_groups": hub.load_groups(d),
            "load_roles": roles,
        },
        "Authenticator": {
            "allowed_users": sorted(d.users),
            "admin_users": sorted({u for g in d.groups_with_role(config.Role.admin) for u in d.members(g)}),
        },
        "KubeSpawner": {"default_url": "/lab"},
    }
    if d.auth.kind == "oauth" and d.auth.oauth:
        o = d.auth.oauth
        hub_config["GenericOAuthenticator"] = {
            "client_id": o.client_id, "client_secret": PLACEHOLDER, "authorize_url": o.authorize_url,
            "token_url": o.token_url, "userdata_url": o.userdata_url, "username_claim": o.username_claim,
            "scope": o.scope,
        }
    gw_address = f"traefik-{release}-dask-gateway.{namespace}"
    culler = d.services.idle_culler
    return {
        "jupyterhub": {
            "hub": {
                "config": hub_config,
                "services": {gateway.SERVICE: {"apiToken": gw_token, "display": False}},
            },
            "singleuser": {
                "image": {"name": image.rsplit(":", 1)[0], "tag": image.rsplit(":", 1)[-1]},
                "profileList": profiles,
                "extraEnv": {
                    "DASK_GATEWAY__ADDRESS": "http://proxy-public/services/dask-gateway",
                    "DASK_GATEWAY__PUBLIC_ADDRESS": "/services/dask-gateway/",
                    "DASK_GATEWAY__PROXY_ADDRESS": f"gateway://{gw_address}:80",
                    "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
                    "DASK_DISTRIBUTED__DASHBOARD__LINK": "{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/status",
                },
            },
            "cull": {"enabled": culler.enabled, "timeout": culler.timeout_seconds,
                     "every": culler.every_seconds},
        },
        "dask-gateway": {
            "gateway": {
                "prefix": gateway.PREFIX,
                "auth": {"type": "jupyterhub",
                         "jupyterhub": {"apiToken": gw_token, "apiUrl": "http://hub:8081/hub/api"}},
                "backend": {
                    "image": {"name": image.rsplit(":", 1)[0], "tag": image.rsplit(":", 1)[-1]},
                    "scheduler": {"cores": {"request": gateway.SCHEDULER_CORES,
                                            "limit": gateway.SCHEDULER_CORES},
                                  "memory": {"request": _memory(gateway.SCHEDULER_MEMORY_GB),
                                             "limit": _memory(gateway.SCHEDULER_MEMORY_GB)}},
                },
                "extraConfig": {"lunarhub-limits": limits_snippet(d, KUBE_BACKEND)},
            },
        },
    }


# ---------------------------------------------------------------- hpc


HPC_TEMPLATE = '''\
# dask-gateway-server config for the {scheduler} batch system at site {site!r}, rendered by
# `lunarhub render hpc` from {source}. Run it at the site (next to the data) as a
# service account allowed to submit jobs as users (sudo rules of dask-gateway's jobqueue
# backends), and register it in the hub as an external service named "dask-gateway".
import os

c.DaskGateway.backend_class = "{backend_class}"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
c.JupyterHubAuthenticator.jupyterhub_api_url = "{hub_api}"
c.JupyterHubAuthenticator.jupyterhub_api_token = os.environ.get("JUPYTERHUB_API_TOKEN", "{token}")
c.JupyterHubAuthenticator.jupyterhub_service_name = "dask-gateway"

# The state DB key is a Fernet key (openssl rand -base64 32).
c.{backend}.db_url = "sqlite:////var/lib/dask-gateway/gateway.sqlite"
c.{backend}.db_encrypt_keys = [{fernet}]
c.Proxy.address = ":{proxy_port}"
c.Proxy.tcp_address = ":{proxy_port}"
c.Proxy.prefix = "{prefix}"

c.{cluster_config}.scheduler_cmd = ["{venv}/bin/dask", "scheduler"]
c.{cluster_config}.worker_cmd = ["{venv}/bin/dask", "worker"]
c.{cluster_config}.staging_directory = "{{home}}/.dask-gateway/"
{queue_lines}
'''


def hpc_config(d: Deployment, scheduler: str, site: str | None = None, venv: str = "/opt/lunarhub/venv",
               queue: str = "dask", account: str = "", with_secrets: bool = False) -> str:
    """A dask-gateway-server Python config for Slurm or PBS at `site`."""
    if scheduler not in ("slurm", "pbs"):
        raise ValueError(f"unknown batch system {scheduler!r}: use slurm or pbs")
    site = site or next(iter(d.sites), "site")
    backend = "SlurmBackend" if scheduler == "slurm" else "PBSBackend"
    cluster_config = "SlurmClusterConfig" if scheduler == "slurm" else "PBSClusterConfig"
    if scheduler == "slurm":
        queue_lines = f'c.SlurmClusterConfig.partition = "{queue}"\n'
        if account:
            queue_lines += f'c.SlurmClusterConfig.account = "{account}"\n'
    else:
        queue_lines = f'c.PBSClusterConfig.queue = "{queue}"\n'
        if account:
            queue_lines += f'c.PBSClusterConfig.account = "{account}"\n'
    # Compute sits where the data is: workers read the site's own files directly.
    s = d.sites.get(site)
    env = {"LUNARHUB_SITE": site}
    if s is not None and s.data_dir:
        env["LUNARHUB_DATA_DIR"] = f"/data/lunarhub/{site}"
    backend_class = f"dask_gateway_server.backends.jobqueue.{scheduler}.{backend}"
    body = HPC_TEMPLATE.format(
        scheduler=scheduler, site=site, source=d.config_file or "the deployment",
        backend_class=backend_class,
        hub_api=f"{d.public_url}/hub/api",
        token=_secret(d, "dask-gateway-api-token", with_secrets),
        backend=backend, cluster_config=cluster_config,
        fernet=(repr(gateway.fernet_key(d)) if with_secrets
                else 'os.environ["DASK_GATEWAY_ENCRYPT_KEYS"]'),
        proxy_port=d.services.dask_gateway.scheduler_proxy_port,
        prefix=gateway.PREFIX, venv=venv, queue_lines=queue_lines,
    )
    return body + "\n" + limits_snippet(d, backend_class, env)


# ---------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lunarhub render", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="deployment YAML (default: $LUNARHUB_CONFIG or hub/lunarhub.yaml)")
    sub = p.add_subparsers(dest="target", required=True)
    k = sub.add_parser("kubernetes", help="daskhub Helm values (YAML)")
    k.add_argument("--release", default="lunarhub")
    k.add_argument("--namespace", default="lunarhub")
    k.add_argument("--image", default="ghcr.io/lunarhub/singleuser:latest")
    h = sub.add_parser("hpc", help="dask-gateway-server config for a Slurm/PBS site (Python)")
    h.add_argument("--scheduler", choices=["slurm", "pbs"], default="slurm")
    h.add_argument("--site", help="the data site the compute belongs to (default: the first)")
    h.add_argument("--venv", default="/opt/lunarhub/venv", help="Python environment on the compute nodes")
    h.add_argument("--queue", default="dask", help="Slurm partition / PBS queue")
    h.add_argument("--account", default="")
    for sp in (k, h):
        sp.add_argument("-o", "--output", help="file to write (default: stdout)")
        sp.add_argument("--with-secrets", action="store_true",
                        help="fill tokens from this machine's secrets instead of placeholders")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        d = roster.effective(config.load(args.config))
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.target == "kubernetes":
        values = kubernetes_values(d, args.release, args.namespace, args.image, args.with_secrets)
        text = (f"# daskhub values rendered by `lunarhub render kubernetes` from {d.config_file}\n"
                "# helm upgrade --install lunarhub dask/daskhub -f this-file.yaml\n"
                + yaml.safe_dump(values, sort_keys=False, allow_unicode=True, width=100))
    else:
        if args.site and args.site not in d.sites:
            print(f"lunarhub render: unknown site {args.site!r}; defined: {', '.join(d.sites) or 'none'}",
                  file=sys.stderr)
            return 2
        text = hpc_config(d, args.scheduler, args.site, args.venv, args.queue, args.account,
                          args.with_secrets)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
