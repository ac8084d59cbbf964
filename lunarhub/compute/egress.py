"""The egress meter of a site's cluster: runs in its scheduler (`--preload lunarhub.compute.egress`).

What leaves a site's cluster for its client goes through the scheduler's `gather` (the client
cannot reach the workers through the gateway's proxy). For a user who may only compute on a
dataset (sites.<name>.at_site), every result computed from it, i.e. a task whose key says it reads
the dataset (lunarhub.compute.placement.task_key) or one that depends on such a task, is counted
before it is sent: within `groups.<g>.egress_budget_mb` per dataset (over all the user's
clusters: the site gateway passes what was already taken, from the site's audit log) it is sent
and recorded; over it, the gather is refused with the budget and the amount asked, and nothing
is sent. Each decision is reported to the site gateway, which writes it to the site's audit log
(lunarhub.platform.audit, component `egress-<site>`), so the bytes per user per dataset are root's
record, not the job's.

The scheduler runs as the user (a Slurm job): this meters the result channel; it is no sandbox
for code the user sends (docs/security.md, "At-site data").
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from lunarhub.data.catalog import AT_SITE_KEY

ENV = "LUNARHUB_EGRESS"
log = logging.getLogger("lunarhub.egress")


class EgressRefused(PermissionError):
    """A result over the user's egress budget for an at-site dataset."""


@dataclass
class Meter:
    user: str
    site: str
    budget: int
    budget_key: str
    metered: set[str]
    used: dict[str, int] = field(default_factory=dict)
    report_url: str = ""
    cluster: str = ""
    token: str = ""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Meter | None:
        env = os.environ if environ is None else environ
        raw = env.get(ENV)
        if not raw:
            return None
        c = json.loads(raw)
        return cls(user=c["user"], site=c["site"], budget=int(c["budget"]), budget_key=c["budget_key"],
                   metered=set(c["metered"]), used={k: int(v) for k, v in c.get("used", {}).items()},
                   report_url=c.get("report_url", ""), cluster=env.get("DASK_GATEWAY_CLUSTER_NAME", ""),
                   token=env.get("DASK_GATEWAY_API_TOKEN", ""))

    def asked(self, tasks: dict[Any, Any], keys: Iterable[Any]) -> dict[str, int]:
        """dataset -> bytes the gather of `keys` would take out, for the metered datasets."""
        out: dict[str, int] = {}
        for key in keys:
            ts = tasks.get(key)
            if ts is None:
                continue
            for dataset in sorted(self._sources(ts)):
                out[dataset] = out.get(dataset, 0) + max(0, int(ts.nbytes or 0))
        return out

    def _sources(self, ts: Any) -> set[str]:
        found: set[str] = set()
        seen: set[int] = set()
        stack = [ts]
        while stack:
            t = stack.pop()
            if id(t) in seen:
                continue
            seen.add(id(t))
            k = t.key
            if isinstance(k, tuple) and len(k) >= 3 and k[0] == AT_SITE_KEY and k[1] == self.site \
                    and k[2] in self.metered:
                found.add(k[2])
            stack.extend(t.dependencies)
        return found

    def check(self, asked: dict[str, int]) -> str | None:
        """Why this gather is refused (None: within the budget)."""
        for dataset, n in sorted(asked.items()):
            used = self.used.get(dataset, 0)
            if used + n > self.budget:
                return (f"egress budget exceeded: this result would take {n:,} bytes of at-site data "
                        f"{dataset} out of site {self.site}; {self.user}'s budget is {self.budget:,} bytes per "
                        f"dataset ({self.budget_key} = {self.budget / 1e6:g} MB), {used:,} already taken. "
                        f"Reduce it at the site (a statistic, a profile, a coarser grid) and return that")
        return None

    def report(self, asked: dict[str, int], refused: bool) -> None:
        if not self.report_url:
            return
        body = json.dumps({"cluster": self.cluster, "user": self.user, "refused": refused,
                           "datasets": asked}).encode()
        req = urllib.request.Request(self.report_url, data=body, method="POST",
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                r.read()
        except OSError as exc:  # the decision stands; the scheduler log keeps it
            log.warning("egress report to %s failed: %s", self.report_url, exc)


def install(scheduler: Any, meter: Meter) -> None:
    """Wrap the scheduler's `gather` handler with the meter."""
    import asyncio

    original = scheduler.handlers["gather"]

    async def gather(keys: Collection[Any], serializers: list[str] | None = None) -> dict[Any, Any]:
        asked = meter.asked(scheduler.tasks, keys)
        if asked:
            why = meter.check(asked)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, meter.report, asked, why is not None)
            log.info("egress %s %s: %s", meter.user, "refused" if why else "sent", asked)
            if why:
                raise EgressRefused(why)
            for dataset, n in asked.items():
                meter.used[dataset] = meter.used.get(dataset, 0) + n
        return await original(keys=keys, serializers=serializers)

    # A direct gather from the workers (client.gather(direct=True)) passes by this meter: at a real
    # site the workers are not reachable from outside; on one machine they are (docs/security.md).
    scheduler.handlers["gather"] = gather
    scheduler.lunarhub_egress = meter


def dask_setup(scheduler: Any) -> None:
    meter = Meter.from_env()
    if meter is not None:
        install(scheduler, meter)
        log.info("egress meter on for %s at %s: %d bytes per dataset (%s)", meter.user, meter.site,
                 meter.budget, ", ".join(sorted(meter.metered)) or "nothing metered")
