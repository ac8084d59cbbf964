"""The ru site's real Slurm cluster and its own dask-gateway, through a real lunarhub stack.

One stack (hub, proxy, supervisor, both sites, the hub's gateway, and for ru: munged, slurmctld,
slurmd, dask-gateway-ru) as root; jobs run as the users' own accounts. Run it under
`flock /tmp/lunarhub-stack.lock` like every real-stack test.
"""

from __future__ import annotations

import gc
import getpass
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
from support.stack import Stack, make_stack, open_tmpdir, require_root

pytestmark = pytest.mark.integration

dask_gateway = pytest.importorskip("dask_gateway", reason="install dask-gateway (pip install -e .)")
from dask_gateway import Gateway, JupyterHubAuth  # noqa: E402

SITE = "ru"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    require_root()
    tmp = open_tmpdir("slurm")
    s = make_stack(tmp, dask_gateway=True, slurm=True)
    # Instructors have dask limits but no account at ru: what a user without one gets.
    s.data["sites"][SITE]["compute"]["partitions"] = {"ru-science": "ru-science", "cn-science": "cn-guests"}
    import yaml

    s.config.write_text(yaml.safe_dump(s.data, allow_unicode=True, sort_keys=False))
    try:
        up = s.cli("up", timeout=300, check=False)
        assert up.returncode == 0, f"lunarhub up: {up.returncode}\n{up.stdout}\n{up.stderr}"
        yield s
    finally:
        s.cli("down", check=False, timeout=240)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def tokens(stack: Stack) -> dict[str, str]:
    return {u: stack.token(u) for u in ("ru-scientist", "cn-scientist", "instructor")}


def _ru(s: Stack, token: str) -> Gateway:
    """The notebook-side client of the ru site's gateway: the address a user's server gets."""
    from lunarhub.compute import site_gateway

    env = site_gateway.spawn_environment(s.deployment(), "ru-scientist")
    address = env["LUNARHUB_GATEWAY_RU_ADDRESS"]
    assert address == f"{s.url}/services/dask-gateway-ru"
    return Gateway(address=address, proxy_address=env["LUNARHUB_GATEWAY_RU_PROXY_ADDRESS"],
                   auth=JupyterHubAuth(api_token=token))


def _local(s: Stack, token: str) -> Gateway:
    gw = s.data["services"]["dask_gateway"]
    return Gateway(address=f"{s.url}/services/dask-gateway",
                   proxy_address=f"tcp://127.0.0.1:{gw['scheduler_proxy_port']}",
                   auth=JupyterHubAuth(api_token=token))


def _slurm(s: Stack, cmd: str, *args: str) -> str:
    from lunarhub.compute import slurm

    r = subprocess.run([slurm.layout(s.deployment(), SITE).command(cmd), *args], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, f"{cmd} {' '.join(args)}: {r.stderr}"
    return r.stdout


def _jobs(s: Stack, user: str) -> list[tuple[str, str, str]]:
    """(job id, partition, state) of `user`'s jobs at ru, as `squeue -u` lists them."""
    out = _slurm(s, "squeue", "-h", "-u", user, "-o", "%i %P %T")
    return [tuple(line.split()) for line in out.splitlines() if line.strip()]  # type: ignore[misc]


def _wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def _refusal(gw: Gateway, **options) -> str:
    try:
        cluster = gw.new_cluster(**options)
    except ValueError as exc:
        msg = str(exc)
    else:
        cluster.shutdown()
        raise AssertionError(f"new_cluster({options}) was not refused")
    exc = None  # noqa: F841 - see test_gateway._refusal: collect the refused client here
    gc.collect()
    return msg


def test_cluster_runs_as_slurm_jobs_of_the_user(stack: Stack, tokens: dict[str, str]) -> None:
    gw = _ru(stack, tokens["ru-scientist"])
    t0 = time.monotonic()
    cluster = gw.new_cluster()
    started = time.monotonic() - t0
    try:
        t0 = time.monotonic()
        cluster.scale(2)
        client = cluster.get_client()
        client.wait_for_workers(2, timeout=120)
        scaled = time.monotonic() - t0
        jobs = _jobs(stack, "ru-scientist")
        # The scheduler and two workers, in the group's partition, running.
        assert len(jobs) == 3 and {p for _, p, _ in jobs} == {"ru-science"}, jobs
        assert {st for _, _, st in jobs} == {"RUNNING"}, jobs
        assert _jobs(stack, "cn-scientist") == []
        assert client.submit(sum, range(101)).result() == 5050
        import dask.array as da

        x = da.arange(1_000_000, chunks=100_000)
        assert int(x.sum().compute()) == 999_999 * 1_000_000 // 2
        assert set(client.run(getpass.getuser).values()) == {"ru-scientist"}
        # On one machine the jobs listen on loopback only (lunarhub.upstream.dask_gateway_bind_host).
        workers = list(client.scheduler_info()["workers"])
        here = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.address)
        assert all(a.startswith("tls://127.0.0.1:") for a in [*workers, here]), (workers, here)
        assert cluster.dashboard_link.startswith(f"{stack.url}/services/dask-gateway-ru/clusters/")
        print(f"slurm cluster start {started:.2f} s, scale to 2 {scaled:.2f} s")
        client.close()
    finally:
        cluster.shutdown()
    _wait(lambda: _jobs(stack, "ru-scientist") == [], 60, "ru-scientist's jobs to leave squeue")


def test_over_the_group_limits_refused_naming_the_limit(stack: Stack, tokens: dict[str, str]) -> None:
    gw = _ru(stack, tokens["ru-scientist"])
    assert "groups.ru-science.dask.max_cores" in _refusal(gw, worker_cores=8)
    assert "groups.ru-science.dask.max_memory_gb" in _refusal(gw, worker_memory=64)
    first, second = gw.new_cluster(), gw.new_cluster()
    try:
        msg = _refusal(gw)
        assert "groups.ru-science.dask.max_clusters" in msg and "2" in msg, msg
    finally:
        first.shutdown()
        second.shutdown()
    assert _jobs(stack, "ru-scientist") == [] or _wait(
        lambda: _jobs(stack, "ru-scientist") == [], 60, "jobs to end")


def test_cn_scientist_gets_the_partition_of_their_group(stack: Stack, tokens: dict[str, str]) -> None:
    gw = _ru(stack, tokens["cn-scientist"])
    cluster = gw.new_cluster()
    try:
        jobs = _wait(lambda: _jobs(stack, "cn-scientist"), 60, "cn-scientist's scheduler job")
        assert {p for _, p, _ in jobs} == {"cn-guests"}, jobs
    finally:
        cluster.shutdown()


def test_user_without_an_account_at_the_site_refused(stack: Stack, tokens: dict[str, str]) -> None:
    msg = _refusal(_ru(stack, tokens["instructor"]))
    assert "no account at site 'ru'" in msg and "sites.ru.compute.partitions" in msg, msg
    assert _jobs(stack, "instructor") == []


def _as(user: str, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", user, "--", *cmd], capture_output=True, text=True, timeout=30)


def test_another_account_cannot_see_cancel_or_forge_ru_scientists_jobs(stack: Stack,
                                                                       tokens: dict[str, str]) -> None:
    from lunarhub.compute import slurm

    lay = slurm.layout(stack.deployment(), SITE)
    cluster = _ru(stack, tokens["ru-scientist"]).new_cluster()
    try:
        (job, _, _), = _wait(lambda: _jobs(stack, "ru-scientist"), 60, "ru-scientist's scheduler job")
        # The munge key signs every credential of the cluster: only munge reads it.
        r = _as("cn-scientist", "cat", str(lay.key))
        assert r.returncode != 0 and "Permission denied" in r.stderr, r
        # Another account sees none of ru-scientist's jobs and cannot cancel them.
        r = _as("cn-scientist", lay.command("squeue"), "-h", "-u", "ru-scientist")
        assert r.returncode == 0 and r.stdout.strip() == "", r
        r = _as("cn-scientist", lay.command("scancel"), job)
        assert "denied" in (r.stderr + r.stdout).lower() or r.returncode != 0, r
        r = _as("cn-scientist", lay.command("scontrol"), "show", "job", job)
        assert job not in r.stdout or "denied" in (r.stdout + r.stderr).lower(), r
        assert [j for j, _, _ in _jobs(stack, "ru-scientist")] == [job]  # still there
        # The owner sees it with their own account.
        r = _as("ru-scientist", lay.command("squeue"), "-h", "-u", "ru-scientist", "-o", "%i")
        assert r.stdout.split() == [job], r
    finally:
        cluster.shutdown()


def test_worker_job_cancelled_mid_computation_result_still_correct(stack: Stack, tokens: dict[str, str]) -> None:
    gw = _ru(stack, tokens["ru-scientist"])
    cluster = gw.new_cluster()
    try:
        cluster.scale(2)
        client = cluster.get_client()
        client.wait_for_workers(2, timeout=120)

        def slow_square(i: int) -> int:
            time.sleep(0.25)
            return i * i

        futures = client.map(slow_square, range(40), pure=False)
        total = client.submit(sum, futures)
        # Both workers are busy; the newest job is a worker (the scheduler was submitted first).
        _wait(lambda: sum(len(v) for v in client.processing().values()) > 0, 30, "tasks to run")
        jobs = sorted(_jobs(stack, "ru-scientist"), key=lambda j: int(j[0]))
        assert len(jobs) == 3, jobs
        victim = jobs[-1][0]
        _slurm(stack, "scancel", victim)
        assert total.result(timeout=180) == sum(i * i for i in range(40))
        _wait(lambda: victim not in {j for j, _, _ in _jobs(stack, "ru-scientist")}, 30, f"job {victim} to end")
        client.close()
    finally:
        cluster.shutdown()
    _wait(lambda: _jobs(stack, "ru-scientist") == [], 60, "ru-scientist's jobs to leave squeue")


def test_slurmctld_stopped_clear_error_others_keep_working(stack: Stack, tokens: dict[str, str]) -> None:
    from lunarhub.compute import slurm
    from lunarhub.platform import supervisor

    d = stack.deployment()
    r = supervisor.ctl(d, "stop", slurm.program_name(SITE, "slurmctld"))
    assert "stopped" in r.stdout, r.stdout + r.stderr
    try:
        msg = _refusal(_ru(stack, tokens["ru-scientist"]))
        assert "Slurm cluster of site 'ru' does not answer" in msg, msg
        assert "Gateway()" in msg  # says what still works
        # `lunarhub status` names the site and the log.
        status = stack.cli("status", check=False).stdout
        assert any(line.startswith("slurm ru") and "UNHEALTHY" in line and "slurm-ru-ctld.log" in line
                   for line in status.splitlines()), status
        # The hub and the hub's own gateway are unaffected.
        assert stack.request("GET", "/hub/health", None).status_code == 200
        local = _local(stack, tokens["cn-scientist"]).new_cluster(workers=1)
        try:
            client = local.get_client()
            client.wait_for_workers(1, timeout=90)
            assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
            client.close()
        finally:
            local.shutdown()
    finally:
        supervisor.ctl(d, "start", slurm.program_name(SITE, "slurmctld"))
    _wait(lambda: slurm.controller_state(d, SITE)[0], 60, "slurmctld to answer again")
    # Back: a cluster starts at ru again.
    cluster = _ru(stack, tokens["ru-scientist"]).new_cluster()
    try:
        client = cluster.get_client()
        cluster.scale(1)
        client.wait_for_workers(1, timeout=120)
        assert client.submit(sum, range(10)).result(timeout=60) == 45
        client.close()
    finally:
        cluster.shutdown()


def test_clusters_end_with_their_owners_last_server(stack: Stack, tokens: dict[str, str]) -> None:
    stack.start_server("ru-scientist")
    cluster = _ru(stack, tokens["ru-scientist"]).new_cluster()
    try:
        _wait(lambda: _jobs(stack, "ru-scientist"), 60, "ru-scientist's scheduler job")
        stack.stop_server("ru-scientist")
        # The site gateway's cleanup (every 5 s) ends the cluster; Slurm drops its jobs.
        _wait(lambda: _jobs(stack, "ru-scientist") == [], 90, "the jobs to end with the server")
    finally:
        cluster.shutdown()


# ---------------------------------------------------------------- placement and at-site data

BOGUSLAWSKY = "ru-only/polar/boguslawsky_sps.tif"


def _entry(s: Stack, user: str, site: str, name: str):
    """The catalog entry as `user`'s server sees it (the site's own catalog, the user's credentials)."""
    from lunarhub.data import catalog, sites

    return catalog.open_catalog(environ=sites.credentials_for(s.deployment(), user))[site][name]


def _slope_histogram():
    """A terrain statistic: the site returns 10 counts, not the DEM. (Nested functions travel by
    value: the site's scheduler cannot import this test module.)"""

    def histogram(da):
        import numpy as np

        z = np.asarray(da.values[0], dtype="float64")
        gy, gx = np.gradient(z, 2000.0)
        slope = np.degrees(np.arctan(np.hypot(gx, gy)))
        counts, _ = np.histogram(slope[np.isfinite(slope)], bins=10, range=(0, 30))
        return counts

    return histogram


def _whoami():
    def whoami(da):
        import getpass
        import grp
        import os

        return getpass.getuser(), grp.getgrgid(os.getgid()).gr_name, float(da.mean())

    return whoami


def test_placement_from_the_catalog_reads_by_local_path_as_the_users_job_group(stack: Stack,
                                                                                  tokens: dict[str, str]) -> None:
    from lunarhub.compute import placement
    from lunarhub.data import local_reads, sites

    d = stack.deployment()
    entry = _entry(stack, "ru-scientist", SITE, "boguslawsky_dem")
    assert entry.relpath == BOGUSLAWSKY and not entry.at_site_only
    cluster = placement.cluster_for(entry, gateway=_ru(stack, tokens["ru-scientist"]))
    try:
        before = len(sites.read_log(d, SITE))
        user, group, mean = placement.at_site(entry, _whoami(), cluster=cluster)
        assert (user, group) == ("ru-scientist", local_reads.job_group(SITE, "ru-scientist"))
        import rasterio

        with rasterio.open(sites.data_dir(d, SITE) / BOGUSLAWSKY) as src:
            import numpy as np

            assert abs(mean - float(np.nanmean(src.read(1)))) < 1e-3
        # Read from the site's disk: the site's nginx served ru-scientist nothing meanwhile.
        assert [r for r in sites.read_log(d, SITE)[before:] if r["user"] == "ru-scientist"] == []
        # The jobs are the user's, in their group's partition.
        assert {p for _, p, _ in _jobs(stack, "ru-scientist")} == {"ru-science"}
    finally:
        cluster.shutdown()


def test_the_job_group_is_no_one_elses_and_gives_the_shell_nothing(stack: Stack) -> None:
    from lunarhub.data import local_reads, sites

    d = stack.deployment()
    path = sites.served_dir(d, SITE) / BOGUSLAWSKY
    for user in ("cn-scientist", "ru-scientist", "student"):
        r = _as(user, "head", "-c16", str(path))
        assert r.returncode != 0 and "Permission denied" in r.stderr, (user, r)
    import grp

    group = local_reads.job_group(SITE, "ru-scientist")
    assert grp.getgrnam(group).gr_mem == []
    r = _as("ru-scientist", "sg", group, "-c", f"head -c16 {path}")
    assert r.returncode != 0, r
    # The ACLs give the job groups exactly the entitlement: cn-scientist's job only the at-site file.
    acl = subprocess.run(["getfacl", "-p", str(path)], capture_output=True, text=True).stdout
    assert f"group:{group}:r--" in acl and f"group:{local_reads.job_group(SITE, 'cn-scientist')}:r--" in acl
    partners = sites.served_dir(d, SITE) / "partners/polar/manzinus_sps.tif"
    acl = subprocess.run(["getfacl", "-p", str(partners)], capture_output=True, text=True).stdout
    assert f"group:{local_reads.job_group(SITE, 'cn-scientist')}:r--" in acl  # cn-science reads partners
    acl = subprocess.run(["getfacl", "-p", str(sites.served_dir(d, SITE) / "ru-only")], capture_output=True,
                         text=True).stdout
    assert f"group:{local_reads.job_group(SITE, 'cn-scientist')}:--x" in acl  # only the way to its file


def test_at_site_data_computed_on_not_taken_away(stack: Stack, tokens: dict[str, str]) -> None:
    import requests

    from lunarhub.compute import egress, placement, site_gateway
    from lunarhub.data import catalog, sites
    from lunarhub.platform import audit

    d = stack.deployment()
    env = sites.credentials_for(d, "cn-scientist")
    p = sites.env_prefix(SITE)
    assert env[f"{p}_AT_SITE"] == BOGUSLAWSKY
    # The site's storage refuses the raw file to cn-scientist, saying why.
    r = requests.get(f"{env[f'{p}_URL']}/{BOGUSLAWSKY}", headers={"Authorization": env[f"{p}_AUTH"]}, timeout=30)
    assert r.status_code == 403 and "is at-site data, computed on at the site" in r.text, r.text
    entry = _entry(stack, "cn-scientist", SITE, "boguslawsky_dem")
    assert entry.at_site_only
    with pytest.raises(catalog.AtSiteOnly, match="compute on it at site ru"):
        entry.read()
    cluster = placement.cluster_for(entry, gateway=_ru(stack, tokens["cn-scientist"]))
    try:
        import dask.config

        before = dask.config.get("scheduler", None)
        counts = entry.at_site(_slope_histogram(), cluster=cluster)
        assert len(counts) == 10 and counts.sum() > 20_000  # 150 x 150 px less the edges' nodata
        # The caller's own dask computations keep their scheduler: at_site's client is not the default.
        assert dask.config.get("scheduler", None) == before
        # On the site's worker, outside lunarhub.at_site, the same entry is refused: its result is unmetered.
        client = cluster.get_client()
        with pytest.raises(catalog.AtSiteOnly, match="only inside lunarhub.at_site"):
            client.submit(lambda e: e.read().values, entry, pure=False).result()
        # The raw DEM: refused, naming the budget and how much was asked.
        with pytest.raises(egress.EgressRefused) as err:
            entry.at_site(lambda da: da.values, cluster=cluster)
        msg = str(err.value)
        assert "groups.cn-science.egress_budget_mb" in msg and "50,000 bytes" in msg and "90,000 bytes" in msg, msg
    finally:
        cluster.shutdown()
    # The site's audit log: bytes per user per dataset, what was sent and what was refused.
    events = audit.read(d, [site_gateway.egress_component(SITE)], user="cn-scientist")
    assert [(e["dataset"], e["refused"]) for e in events] == [(BOGUSLAWSKY, False), (BOGUSLAWSKY, True)], events
    assert 0 < events[0]["bytes"] < 1000 and events[1]["bytes"] == 90_000
    # What was taken counts in the next cluster too.
    assert site_gateway.egress_taken(d, SITE, "cn-scientist") == {BOGUSLAWSKY: events[0]["bytes"]}
    # ru-science keeps full access: the same raw read comes back unmetered.
    ru_entry = _entry(stack, "ru-scientist", SITE, "boguslawsky_dem")
    cluster = placement.cluster_for(ru_entry, gateway=_ru(stack, tokens["ru-scientist"]))
    try:
        assert placement.at_site(ru_entry, lambda da: da.values, cluster=cluster).shape == (1, 150, 150)
    finally:
        cluster.shutdown()
    assert audit.read(d, [site_gateway.egress_component(SITE)], user="ru-scientist") == []


def test_a_job_over_its_memory_is_ended_and_the_user_told_why(stack: Stack, tokens: dict[str, str]) -> None:
    from lunarhub.compute import placement

    entry = _entry(stack, "ru-scientist", SITE, "landing_sites")

    def hog(table):
        import numpy as np

        block = np.ones(800_000_000 // 8)  # 0.8 GB: over the 0.5 GiB job
        return float(block.sum()) + len(table)

    cluster = placement.cluster_for(entry, gateway=_ru(stack, tokens["ru-scientist"]), worker_memory=0.5)
    try:
        with pytest.raises(placement.WorkerLost) as err:
            placement.at_site(entry, hog, cluster=cluster)
        msg = str(err.value)
        assert "site 'ru'" in msg and "0.50 GiB" in msg and "worker_memory" in msg and "OUT_OF_MEMORY" in msg, msg
        # The jobs asked Slurm for that memory, and the worker's log says it was ended for it.
        jobs = [j for j, _, _ in _jobs(stack, "ru-scientist")]
        shown = "".join(_slurm(stack, "scontrol", "show", "job", j) for j in jobs)
        assert "MinMemoryNode=512M" in shown, shown
        import pwd
        from pathlib import Path

        home = Path(pwd.getpwnam("ru-scientist").pw_dir)
        logs = "".join(p.read_text(errors="replace") for p in home.glob(".dask-gateway/*/dask-worker-*.log"))
        assert any(s in logs for s in ("oom-kill", "killed by signal 9", "memory budget")), logs[-2000:]
    finally:
        cluster.shutdown()
