"""The egress meter of a site's scheduler (lunarhub.compute.egress) on a real in-process dask
scheduler and worker: results from at-site data within the budget come back, over it the gather is
refused naming the budget and the amount, and what other tasks return is not metered."""

from __future__ import annotations

import numpy as np
import pytest

from lunarhub.compute import egress
from lunarhub.data.catalog import AT_SITE_KEY

distributed = pytest.importorskip("distributed")

DATASET = "ru-only/polar/boguslawsky_sps.tif"


def _meter(used: int = 0) -> egress.Meter:
    return egress.Meter(user="cn-scientist", site="ru", budget=50_000, budget_key="groups.cn-science.egress_budget_mb",
                        metered={DATASET}, used={DATASET: used} if used else {})


@pytest.fixture
def client():
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as c, \
            distributed.Client(c) as cl:
        yield cl


def _used(client) -> dict[str, int]:
    """The scheduler's own meter (run_on_scheduler installed a copy of the test's)."""
    return client.run_on_scheduler(lambda dask_scheduler: dict(dask_scheduler.lunarhub_egress.used))


def _raw(n: int) -> np.ndarray:
    return np.ones(n, dtype="float32")


def test_small_result_comes_back_large_one_is_refused_naming_budget_and_amount(client):
    meter = _meter()
    client.run_on_scheduler(lambda dask_scheduler: egress.install(dask_scheduler, meter))
    raw = client.submit(_raw, 22_500, key=(AT_SITE_KEY, "ru", DATASET, "a"))  # 90,000 bytes, like the DEM
    with pytest.raises(egress.EgressRefused) as err:
        raw.result()
    msg = str(err.value)
    assert "90,000 bytes" in msg and "50,000 bytes" in msg and "groups.cn-science.egress_budget_mb" in msg
    assert DATASET in msg and "already taken" in msg
    # A statistic computed from it at the site is a dependent: metered, and within the budget.
    mean = client.submit(np.mean, raw)
    assert mean.result() == 1.0
    used = _used(client)
    assert 0 < used[DATASET] < 1000


def test_budget_counts_what_earlier_clusters_took_and_other_data_is_free(client):
    meter = _meter(used=49_990)
    client.run_on_scheduler(lambda dask_scheduler: egress.install(dask_scheduler, meter))
    small = client.submit(_raw, 16, key=(AT_SITE_KEY, "ru", DATASET, "b"))  # 64 bytes > 10 left
    with pytest.raises(egress.EgressRefused, match="49,990 already taken"):
        small.result()
    # Not at-site, or another site's key: not metered.
    assert client.submit(_raw, 100_000).result().nbytes == 400_000
    assert client.submit(_raw, 100_000, key=(AT_SITE_KEY, "cn", DATASET, "c")).result().nbytes == 400_000
    assert _used(client) == {DATASET: 49_990}


def test_meter_from_environment():
    import json

    env = {egress.ENV: json.dumps({"user": "u", "site": "ru", "budget": 7, "budget_key": "k", "metered": [DATASET],
                                   "used": {DATASET: 3}}), "DASK_GATEWAY_CLUSTER_NAME": "c1"}
    m = egress.Meter.from_env(env)
    assert m is not None and m.budget == 7 and m.used == {DATASET: 3} and m.cluster == "c1"
    assert egress.Meter.from_env({}) is None
