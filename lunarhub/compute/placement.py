"""Placement from the catalog, in a user's kernel: compute where the data is.

- ``cluster_for(entry)`` (or ``entry.cluster()``): a dask-gateway cluster at the entry's site: the
  site's own gateway when the site runs a Slurm cluster (lunarhub.compute.site_gateway), the hub's
  gateway (what ``Gateway()`` reaches) when its compute is ``local``.
- ``at_site(entry, fn)`` (or ``entry.at_site(fn)``): ``fn(entry.read())`` runs as one task on a
  worker at the site. There the same entry resolves to the site's local path (lunarhub.data.catalog,
  ``Entry.local_path``), read with the job's group, i.e. exactly the owner's entitlement
  (lunarhub.data.local_reads); only ``fn``'s result comes back. The task's key says which at-site
  dataset it reads, so the site's scheduler meters it (lunarhub.compute.egress).
- ``per_site({entry: fn, ...})``: the parts of a computation that mixes sites, each at its own
  site, all at once; the client combines the (small) results.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from lunarhub.data.catalog import AT_SITE_KEY

if TYPE_CHECKING:
    from lunarhub.data.catalog import Entry

# Set in every user's server: the sites whose clusters run on a gateway of their own.
SITE_GATEWAYS_ENV = "LUNARHUB_SITE_GATEWAYS"
# A Slurm site may queue a worker job for a while; past this, the at-site call gives up.
WORKER_TIMEOUT = 300


class PlacementError(RuntimeError):
    """No cluster can be had at the data's site; says why and what to do."""


def _site(entry: Entry | str) -> str:
    site = entry if isinstance(entry, str) else entry.site_name
    if not site:
        raise PlacementError(f"{entry!r} names no site (metadata.site): no place to compute on it")
    return site


def gateway_for(entry: Entry | str, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Any:
    """The dask_gateway.Gateway that starts clusters at the entry's site."""
    from lunarhub.compute import site_gateway

    env = os.environ if environ is None else environ
    site = _site(entry)
    own = [s for s in env.get(SITE_GATEWAYS_ENV, "").split(",") if s]
    if site in own:
        if f"{site_gateway.env_prefix(site)}_ADDRESS" not in env:
            raise PlacementError(f"site {site!r} computes on its own Slurm cluster and none of your groups has an "
                                 f"account there (sites.{site}.compute.partitions): ask its operators")
        return site_gateway.client(site, **kwargs)
    from dask_gateway import Gateway

    return Gateway(**kwargs)


def cluster_for(entry: Entry | str, gateway: Any = None, workers: int = 1, **options: Any) -> Any:
    """A new cluster at the entry's (or the named site's) site with `workers` workers asked for."""
    gw = gateway if gateway is not None else gateway_for(entry)
    cluster = gw.new_cluster(**options) if options else gw.new_cluster()
    if workers:
        cluster.scale(workers)
    return cluster


def _run(entry: Entry, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """On the worker: read by local path, reduce, and compute here (threads of this worker only,
    so no intermediate ever becomes a task result of its own)."""
    import dask

    with dask.config.set(scheduler="threads"):
        out = fn(entry.read(), *args, **kwargs)
        compute = getattr(out, "compute", None)
        return compute() if callable(compute) else out


def task_key(entry: Entry, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple:
    from dask.base import tokenize

    return (AT_SITE_KEY, _site(entry), entry.relpath, tokenize(entry.name, fn, args, kwargs, os.urandom(8)))


def at_site(entry: Entry, fn: Callable[..., Any], *args: Any, cluster: Any = None, **kwargs: Any) -> Any:
    """`fn(data, *args, **kwargs)` computed at the entry's site; returns its result.

    Without `cluster`, one is started at the site for this call and shut down after it."""
    from distributed import KilledWorker

    own = cluster is None
    cluster = cluster if cluster is not None else cluster_for(entry)
    # Not the default client: the user's own dask computations keep their scheduler, and none is
    # left pointing at a cluster this call shuts down ("no Client active" afterwards).
    client = None
    try:
        client = cluster.get_client(set_as_default=False)
        # Known before the task runs: once its workers died, nobody is left to ask.
        client.wait_for_workers(1, timeout=WORKER_TIMEOUT)
        limits = _memory_limits(client)
        future = client.submit(_run, entry, fn, args, kwargs, key=task_key(entry, fn, args, kwargs), pure=False)
        try:
            return future.result()
        except KilledWorker as exc:
            raise WorkerLost(_why_lost(limits, _site(entry), exc)) from None
    finally:
        if client is not None:
            client.close()
        if own:
            cluster.shutdown()


class WorkerLost(RuntimeError):
    """The workers running an at-site task died (at a Slurm site: most often over their memory)."""


def _memory_limits(client: Any) -> set[int]:
    try:
        return {int(w["memory_limit"]) for w in client.scheduler_info()["workers"].values() if w.get("memory_limit")}
    except Exception:  # noqa: BLE001 - only for the explanation of a later failure
        return set()


def _why_lost(limits: set[int], site: str, exc: Exception) -> str:
    limit = ", ".join(f"{n / 2**30:.2f} GiB" for n in sorted(x for x in limits if x)) or "unknown"
    return (f"the task ran on workers at site {site!r} that died each time ({exc}). A worker that uses more "
            f"memory than its job's --mem is ended by the site's Slurm cgroup (OUT_OF_MEMORY); these "
            f"workers have {limit} each (cluster option worker_memory): reduce the data per task or start "
            f"the cluster with more worker_memory, within your group's limit")


def pool(entry: Entry | str, environ: Mapping[str, str] | None = None) -> str:
    """Which gateway computes for the entry's site: the site's name for its own gateway, "" for the
    hub's (shared by every `local` site, so their parts may share one cluster)."""
    env = os.environ if environ is None else environ
    site = _site(entry)
    return site if site in env.get(SITE_GATEWAYS_ENV, "").split(",") else ""


def per_site(parts: Mapping[Entry, Callable[..., Any]], clusters: Mapping[str, Any] | None = None) -> list[Any]:
    """Each entry's part at its own site, all sites at once; the results in the order given.

    `clusters` (site -> cluster) reuses running clusters; the others are started here (one per
    gateway: sites computing on the hub's share one) and ended at the end."""
    given = dict(clusters or {})
    started: dict[str, Any] = {}
    chosen: dict[str, Any] = {}
    for entry in parts:
        site = _site(entry)
        if site in given:
            chosen[site] = given[site]
        else:
            gateway = pool(site)
            if gateway not in started:
                started[gateway] = cluster_for(entry)
            chosen[site] = started[gateway]
    try:
        with ThreadPoolExecutor(max_workers=max(1, len(parts))) as threads:
            futures = [threads.submit(at_site, e, fn, cluster=chosen[_site(e)]) for e, fn in parts.items()]
            return [f.result() for f in futures]
    finally:
        for c in started.values():
            c.shutdown()
