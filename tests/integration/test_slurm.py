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
