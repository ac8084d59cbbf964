"""Per-group dask limits for a gateway without lunarhub installed (Kubernetes, HPC sites).

Not imported by lunarhub: `lunarhub render` (lunarhub.compute.render) emits this file's
source, with the deployment's values in place of the block marked below and a closing
`lunarhub_configure(c)`, as part of a dask-gateway-server config (the daskhub chart's
gateway.extraConfig, or the HPC config file). It runs with `c` in scope, after the line
that sets `c.DaskGateway.backend_class`, possibly concatenated with other snippets: hence no
`from __future__` import and underscored helper names.

Same rules as lunarhub.compute.gateway (a user's limit is the max over their groups; the
scheduler is not counted) and lunarhub.compute.gateway_server (max_clusters checked when a
cluster is created); tests/unit/test_gateway_config.py runs the rendered text against the
real backends.
"""

from time import monotonic as _monotonic

from dask_gateway_server.backends.base import PublicException as _PublicException
from dask_gateway_server.models import ClusterStatus as _ClusterStatus
from dask_gateway_server.options import Float as _Float
from dask_gateway_server.options import Integer as _Integer
from dask_gateway_server.options import Options as _Options
from traitlets.utils.importstring import import_item as _import_item

# --- rendered values (lunarhub.compute.render.limits_snippet writes the deployment's here)
GROUP_LIMITS: dict = {}
SCHEDULER_CORES = 1
SCHEDULER_MEMORY_GB = 1
EXTRA_ENVIRONMENT: dict = {}
BACKEND_CLASS = "dask_gateway_server.backends.local.LocalBackend"
IDLE_TIMEOUT = 1800.0
GROUP_PARTITIONS: dict = {}
SITE = ""
# --- end of rendered values

_ACTIVE = [_ClusterStatus.PENDING, _ClusterStatus.RUNNING]


def _user_limits(groups):
    blocks = [(g, GROUP_LIMITS[g]) for g in groups if g in GROUP_LIMITS]
    if not blocks:
        return None
    out = {}
    for key in ("max_clusters", "max_cores", "max_memory_gb", "max_workers"):
        g, lim = max(blocks, key=lambda b, key=key: b[1][key])
        out[key] = (lim[key], f"groups.{g}.dask.{key}")
    return out


def _refuse(what, lim, key, unit):
    value, where = lim[key]
    raise ValueError(f"{what} exceeds the limit of {value:g} {unit} per cluster ({where})")


def _partition(groups):
    """The Slurm partition of the user's first group (by name) with an account at the site."""
    for g in sorted(groups):
        if g in GROUP_PARTITIONS:
            return GROUP_PARTITIONS[g]
    raise ValueError("you have no account at site {!r}: none of your groups ({}) has a partition there; "
                     "groups with one: {} (sites.{}.compute.partitions)".format(
                         SITE, ", ".join(sorted(groups)) or "none",
                         ", ".join(sorted(GROUP_PARTITIONS)), SITE))


def _cluster_options(user):
    lim = _user_limits(user.groups)

    def handler(options, user):
        if lim is None:
            raise ValueError("dask clusters are not enabled for your groups ({}); groups with a dask "
                             "block: {}".format(", ".join(user.groups), ", ".join(sorted(GROUP_LIMITS))))
        cores, mem = options.worker_cores, options.worker_memory
        if cores > lim["max_cores"][0]:
            _refuse(f"worker_cores={cores}", lim, "max_cores", "cores")
        if mem > lim["max_memory_gb"][0]:
            _refuse(f"worker_memory={mem:g} GiB", lim, "max_memory_gb", "GiB")
        out = {"partition": _partition(user.groups)} if GROUP_PARTITIONS else {}
        return {
            **out,
            "worker_cores": int(cores),
            "worker_memory": int(mem * 2**30),
            "cluster_max_cores": float(lim["max_cores"][0] + SCHEDULER_CORES),
            "cluster_max_memory": int((lim["max_memory_gb"][0] + SCHEDULER_MEMORY_GB) * 2**30),
            "cluster_max_workers": int(lim["max_workers"][0]),
            "environment": dict(EXTRA_ENVIRONMENT),
        }

    return _Options(
        _Integer("worker_cores", default=1, min=1, label="Worker cores"),
        _Float("worker_memory", default=2, min=0.25, label="Worker memory (GiB)"),
        handler=handler,
    )


def _with_cluster_cap(base):
    """`base` + lunarhub's per-user cluster cap (groups.<g>.dask.max_clusters).

    No dask-gateway backend has one, so the configured backend is subclassed and refuses
    start_cluster for a user at their cap, as lunarhub.compute.gateway_server does on one
    machine. Clusters this gateway created that its backend does not list yet (Kubernetes:
    the informer has not seen the DaskCluster object) count too."""

    class LunarhubClusterCap(base):
        _lunarhub_recent = None  # user name -> {cluster name: monotonic time created}

        async def _lunarhub_active(self, username):
            active = await self.list_clusters(username=username, statuses=_ACTIVE)
            names = {cl.name for cl in active}
            recent = (self._lunarhub_recent or {}).get(username, {})
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
                    why = (f"you already have {n} active dask cluster(s); the limit is {cap} ({where}). "
                           "Shut one down first (cluster.shutdown() or Gateway().stop_cluster(name)).")
                    self.log.info("Refused a cluster for %s: %s", user.name, why)
                    raise _PublicException(why)
            name = await super().start_cluster(user, cluster_options)
            if self._lunarhub_recent is None:
                self._lunarhub_recent = {}
            self._lunarhub_recent.setdefault(user.name, {})[name] = _monotonic()
            return name

    LunarhubClusterCap.__doc__ = f"{base.__name__} + lunarhub's per-user cluster cap (rendered by `lunarhub render`)."
    return LunarhubClusterCap


def lunarhub_configure(c):
    """Set the backend, options and timeouts on the gateway's config `c`."""
    c.DaskGateway.backend_class = _with_cluster_cap(_import_item(BACKEND_CLASS))
    c.Backend.cluster_options = _cluster_options
    c.ClusterConfig.idle_timeout = IDLE_TIMEOUT
    c.ClusterConfig.scheduler_cores = SCHEDULER_CORES
    c.ClusterConfig.scheduler_memory = int(SCHEDULER_MEMORY_GB * 2**30)
