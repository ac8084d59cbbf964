"""`lunarhub render kubernetes|hpc`: the same deployment file, rendered for scale-out.

- kubernetes: Helm values for the daskhub chart (Zero-to-JupyterHub + dask-gateway's
  Kubernetes backend): hub config, groups, roles, profiles, gateway limits.
- hpc: a dask-gateway-server config for a site's batch system (Slurm or PBS), run at
  the site that holds the data, registered in the hub as an external service.

Secrets are placeholders unless --with-secrets (then read from this machine's state).
The per-group limits travel as a self-contained snippet (no lunarhub import on the
gateway's image): the source of lunarhub/compute/gateway_limits.py with the deployment's
values filled in, the same rules as lunarhub.compute.gateway.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from lunarhub import config
from lunarhub.compute import gateway
from lunarhub.config import Deployment, roster, secrets
from lunarhub.platform import hub

PLACEHOLDER = "CHANGE-ME-openssl-rand-hex-32"

KUBE_BACKEND = "dask_gateway_server.backends.kubernetes.KubeBackend"


LIMITS_MODULE = "gateway_limits.py"
BEGIN_VALUES = "# --- rendered values"
END_VALUES = "# --- end of rendered values"


def limits_snippet(d: Deployment, backend_class: str, environment: dict[str, str] | None = None,
                   partitions: dict[str, str] | None = None, site: str = "") -> str:
    """The limits snippet for a gateway whose backend is `backend_class` (import path): the
    source of lunarhub/compute/gateway_limits.py with the deployment's values, then lunarhub_configure(c).
    `partitions` (group -> Slurm partition at `site`): each cluster goes to its owner's group's
    partition, and a user with none is refused (no account at the site)."""
    limits = {g: grp.dask.model_dump() for g, grp in sorted(d.groups.items()) if grp.dask}
    values = "\n".join([
        BEGIN_VALUES + " (from the deployment file) ---",
        f"GROUP_LIMITS = {json.dumps(limits, indent=4, sort_keys=True)}",
        f"SCHEDULER_CORES = {gateway.SCHEDULER_CORES!r}",
        f"SCHEDULER_MEMORY_GB = {gateway.SCHEDULER_MEMORY_GB!r}",
        f"EXTRA_ENVIRONMENT = {json.dumps(environment or {}, sort_keys=True)}",
        f"BACKEND_CLASS = {backend_class!r}",
        f"IDLE_TIMEOUT = {float(d.services.dask_gateway.idle_timeout_seconds)!r}",
        f"GROUP_PARTITIONS = {json.dumps(partitions or {}, indent=4, sort_keys=True)}",
        f"SITE = {site!r}",
        END_VALUES,
    ])
    source = resources.files("lunarhub.compute").joinpath(LIMITS_MODULE).read_text(encoding="utf-8")
    head, rest = source.split(BEGIN_VALUES, 1)
    _, tail = rest.split(END_VALUES, 1)
    return (f"# --- lunarhub: per-group dask limits (rendered from the deployment file; source: "
            f"lunarhub/compute/{LIMITS_MODULE}) ---\n" + _without_docstring(head) + values + tail
            + "\n\nlunarhub_configure(c)\n")


def _without_docstring(source: str) -> str:
    # The module's docstring explains the module; in a rendered config it would be a stray string.
    first = ast.parse(source + "\npass").body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return "".join(source.splitlines(keepends=True)[first.end_lineno:]).lstrip("\n")
    return source


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
# backends), and register it in the hub as an external service named "{service}".
import os

c.DaskGateway.backend_class = "{backend_class}"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
c.JupyterHubAuthenticator.jupyterhub_api_url = "{hub_api}"
c.JupyterHubAuthenticator.jupyterhub_api_token = os.environ.get("JUPYTERHUB_API_TOKEN", "{token}")
c.JupyterHubAuthenticator.jupyterhub_service_name = "{service}"

# The state DB key is a Fernet key (openssl rand -base64 32).
c.{backend}.db_url = "sqlite:///{db_dir}/gateway.sqlite"
c.{backend}.db_encrypt_keys = [{fernet}]
c.Proxy.address = "{listen}:{proxy_port}"
c.Proxy.tcp_address = "{listen}:{proxy_port}"
c.Proxy.prefix = "{prefix}"

c.{cluster_config}.scheduler_cmd = ["{venv}/bin/dask", "scheduler"]
c.{cluster_config}.worker_cmd = ["{venv}/bin/dask", "worker"]
c.{cluster_config}.staging_directory = "{{home}}/.dask-gateway/"
{queue_lines}
'''


def hpc_config(d: Deployment, scheduler: str, site: str | None = None, venv: str = "/opt/lunarhub/venv",
               queue: str = "dask", account: str = "", with_secrets: bool = False, *,
               service: str = gateway.SERVICE, token_name: str = "dask-gateway-api-token",
               proxy_port: int | None = None, db_dir: str = "/var/lib/dask-gateway", listen: str = "",
               commands: dict[str, str] | None = None, partitions: dict[str, str] | None = None,
               environment: dict[str, str] | None = None) -> str:
    """A dask-gateway-server Python config for Slurm or PBS at `site`.

    `partitions` (group -> partition) replaces the one `queue`; `commands` (submit/cancel/status
    -> path) the batch system's own commands; lunarhub.compute.site_gateway.rendered_config passes
    what a local Slurm site runs."""
    if scheduler not in ("slurm", "pbs"):
        raise ValueError(f"unknown batch system {scheduler!r}: use slurm or pbs")
    site = site or next(iter(d.sites), "site")
    backend = "SlurmBackend" if scheduler == "slurm" else "PBSBackend"
    cluster_config = "SlurmClusterConfig" if scheduler == "slurm" else "PBSClusterConfig"
    if scheduler == "slurm" and partitions:
        queue_lines = "# The partition is chosen per cluster from its owner's groups (GROUP_PARTITIONS below).\n"
    elif scheduler == "slurm":
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
    env.update(environment or {})
    for what, path in sorted((commands or {}).items()):
        queue_lines += f'c.{backend}.{what}_command = "{path}"\n'
    if commands:
        queue_lines += f'c.{backend}.dask_gateway_jobqueue_launcher = "{venv}/bin/dask-gateway-jobqueue-launcher"\n'
    backend_class = f"dask_gateway_server.backends.jobqueue.{scheduler}.{backend}"
    body = HPC_TEMPLATE.format(
        scheduler=scheduler, site=site, source=d.config_file or "the deployment",
        backend_class=backend_class,
        hub_api=f"{d.public_url}/hub/api",
        token=_secret(d, token_name, with_secrets), service=service, db_dir=db_dir, listen=listen,
        backend=backend, cluster_config=cluster_config,
        fernet=(repr(gateway.fernet_key(d)) if with_secrets
                else 'os.environ["DASK_GATEWAY_ENCRYPT_KEYS"]'),
        proxy_port=proxy_port or d.services.dask_gateway.scheduler_proxy_port,
        prefix=f"/services/{service}", venv=venv, queue_lines=queue_lines,
    )
    return body + "\n" + limits_snippet(d, backend_class, env, partitions, site)


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
    h.add_argument("--venv", help="Python environment on the compute nodes (default: /opt/lunarhub/venv; "
                                  "for a site whose compute is slurm here: exactly what `lunarhub up` runs)")
    h.add_argument("--queue", help="Slurm partition / PBS queue (default: dask; a slurm site here: one per group)")
    h.add_argument("--account", default="")
    for sp in (k, h):
        sp.add_argument("-o", "--output", help="file to write (default: stdout)")
        sp.add_argument("--with-secrets", action="store_true",
                        help="fill tokens from this machine's secrets instead of placeholders")
    return p


def main(argv: list[str]) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """`lunarhub render` with parsed arguments (the `lunarhub` tree parses them with build_parser's)."""
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
        from lunarhub.compute import site_gateway

        site = args.site or next(iter(d.sites), None)
        if (args.scheduler == "slurm" and site in site_gateway.sites(d) and args.venv is None
                and args.queue is None and not args.account):
            # What the local Slurm site runs, byte for byte (its epilogue aside: site_gateway).
            text = site_gateway.rendered_config(d, site, args.with_secrets)
        else:
            text = hpc_config(d, args.scheduler, args.site, args.venv or "/opt/lunarhub/venv",
                              args.queue or "dask", args.account, args.with_secrets)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
