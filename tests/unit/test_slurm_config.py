"""A site's Slurm compute: the model's checks, the generated slurm.conf, the munge key checks, the
site gateway's rendered config (what `lunarhub render hpc` prints is what the site runs)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
import yaml
from traitlets.config import Config

from lunarhub import config
from lunarhub.compute import render, site_gateway, slurm
from lunarhub.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
NODE = slurm.Node(name="node1", cpus=2, sockets=1, cores_per_socket=2, threads_per_core=1, real_memory_mb=20000)


def demo(tmp_path: Path, **compute: object) -> config.Deployment:
    data = yaml.safe_load((ROOT / "hub" / "lunarhub.yaml").read_text())
    data["state_dir"] = str(tmp_path / "state")
    data["sites"]["ru"]["compute"].update(compute)
    return config.parse(yaml.safe_dump(data), source="test.yaml", base_dir=ROOT / "hub")


def problems_of(tmp_path: Path, mutate) -> list[tuple[str, str]]:
    data = yaml.safe_load((ROOT / "hub" / "lunarhub.yaml").read_text())
    data["state_dir"] = str(tmp_path / "state")
    mutate(data)
    with pytest.raises(ConfigError) as info:
        config.parse(yaml.safe_dump(data), source="test.yaml", base_dir=ROOT / "hub")
    return info.value.problems


# ---------------------------------------------------------------- the model


def test_demo_ru_site_runs_slurm(tmp_path: Path) -> None:
    d = demo(tmp_path)
    assert slurm.sites(d) == ["ru"] and d.sites["cn"].compute.kind == "local"
    assert {"sites.ru.compute.gateway_port", "sites.ru.compute.slurmctld_port"} <= set(d.ports())


def test_slurm_without_ports_refused_naming_the_key(tmp_path: Path) -> None:
    errs = problems_of(tmp_path, lambda data: data["sites"]["ru"]["compute"].pop("gateway_port"))
    assert any(w.startswith("sites.ru.compute") and "gateway_port" in why for w, why in errs), errs


def test_partition_for_unknown_group_or_group_without_dask(tmp_path: Path) -> None:
    def bad(data: dict) -> None:
        data["sites"]["ru"]["compute"]["partitions"] = {"ru-sceince": "a", "reviewers": "b"}

    errs = {w.split(" (line")[0]: why for w, why in problems_of(tmp_path, bad)}
    assert "unknown group 'ru-sceince'" in errs["sites.ru.compute.partitions.ru-sceince"]
    assert "no dask block (groups.reviewers.dask)" in errs["sites.ru.compute.partitions.reviewers"]


def test_compute_port_clash_names_both_keys(tmp_path: Path) -> None:
    def clash(data: dict) -> None:
        data["sites"]["ru"]["compute"]["slurmd_port"] = data["hub"]["port"]

    errs = problems_of(tmp_path, clash)
    assert any(w.startswith("sites.ru.compute.slurmd_port") and "hub.port" in why for w, why in errs), errs


def test_remote_site_cannot_run_slurm_here(tmp_path: Path) -> None:
    def remote(data: dict) -> None:
        data["sites"]["cn"] = {"institution": "naoc", "kind": "remote", "url": "https://data.example.cn/",
                               "compute": {"kind": "slurm", "gateway_port": 18111, "scheduler_proxy_port": 18112}}

    errs = problems_of(tmp_path, remote)
    assert any(w.startswith("sites.cn") and "render hpc" in why for w, why in errs), errs


# ---------------------------------------------------------------- slurm.conf


def _conf(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines()
                if line and not line.startswith("#") and not line.startswith(("NodeName", "PartitionName")))


def test_slurm_conf_one_node_and_a_partition_per_group(tmp_path: Path) -> None:
    d = demo(tmp_path, slurmctld_port=16817, slurmd_port=16818)
    text = slurm.slurm_conf(d, "ru", NODE)
    conf = _conf(text)
    lay = slurm.layout(d, "ru")
    assert conf["SlurmctldPort"] == "16817" and conf["SlurmdPort"] == "16818"
    assert conf["AuthInfo"] == f"socket={lay.socket}" and str(lay.socket).startswith(str(d.state_path))
    assert conf["EnforcePartLimits"] == "ALL" and conf["ProctrackType"] == "proctrack/cgroup"
    nodes = [line for line in text.splitlines() if line.startswith("NodeName=")]
    assert nodes == ["NodeName=node1 NodeAddr=127.0.0.1 CPUs=2 Sockets=1 CoresPerSocket=2 ThreadsPerCore=1 "
                     "RealMemory=20000 State=UNKNOWN"]
    parts = {line.split()[0].split("=")[1]: line for line in text.splitlines() if line.startswith("PartitionName=")}
    # Every group with a dask block, none without; each carries its group's memory limit.
    assert set(parts) == {"ru-science", "cn-science", "instructors", "students"}
    assert "MaxMemPerNode=12288" in parts["ru-science"] and "MaxMemPerNode=2048" in parts["students"]
    assert all("OverSubscribe=FORCE:2" in line for line in parts.values())


def test_shared_partition_takes_the_largest_memory_and_node_caps_it(tmp_path: Path) -> None:
    d = demo(tmp_path, partitions={"students": "teach", "instructors": "teach", "ru-science": "ru"})
    small = slurm.Node("n", 2, 1, 2, 1, real_memory_mb=8000)
    text = slurm.slurm_conf(d, "ru", small)
    lines = [line for line in text.splitlines() if line.startswith("PartitionName=")]
    assert len(lines) == 2
    teach = next(line for line in lines if line.startswith("PartitionName=teach "))
    assert "MaxMemPerNode=4096" in teach  # instructors' 4 GB over students' 2
    ru = next(line for line in lines if line.startswith("PartitionName=ru "))
    assert "MaxMemPerNode=8000" in ru  # 12 GB asked, the node has 8000 MB
    assert slurm.partition_for(d, "ru", "ru-scientist") == "ru"
    assert slurm.partition_for(d, "ru", "cn-scientist") is None


# ---------------------------------------------------------------- start checks


def test_missing_packages_named_with_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = demo(tmp_path)
    monkeypatch.setattr(slurm, "SBIN", tmp_path / "no-sbin")
    (where, why), = [p for p in slurm.problems(d) if "packages" in p[1]]
    assert where == "sites.ru.compute" and "munge" in why and "slurm-wlm" in why and "apt-get install" in why


def test_unreadable_munge_key_named(tmp_path: Path) -> None:
    munge = pwd.getpwnam("munge")
    d = demo(tmp_path)
    lay = slurm.layout(d, "ru")
    lay.munge.mkdir(parents=True)
    lay.key.write_bytes(os.urandom(64))
    os.chmod(lay.key, 0o400)
    assert "not munge" in (slurm.key_problem(lay) or "")  # root's: munged cannot read it
    os.chown(lay.key, munge.pw_uid, munge.pw_gid)
    assert slurm.key_problem(lay) is None
    os.chmod(lay.key, 0o444)
    assert "only munge may read it" in (slurm.key_problem(lay) or "")
    os.chmod(lay.key, 0o400)
    lay.key.write_bytes(b"short")
    assert "at least 32" in (slurm.key_problem(lay) or "")
    msgs = [why for _, why in slurm.problems(d)]
    assert any("site 'ru'" in m and str(lay.key) in m for m in msgs), msgs


def test_wait_ready_names_the_site_and_the_log(tmp_path: Path) -> None:
    d = demo(tmp_path)
    with pytest.raises(slurm.SlurmError) as info:
        slurm.wait_ready(d, "ru", timeout=0.5)
    msg = str(info.value)
    assert "site 'ru': slurmctld did not come up" in msg and "slurm-ru-ctld.log" in msg


# ---------------------------------------------------------------- the site gateway


def _exec(code: str) -> Config:
    c = Config()
    exec(compile(code, "<rendered>", "exec"), {"c": c, "__name__": "rendered"})
    return c


def test_render_hpc_is_what_the_site_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = demo(tmp_path)
    cfg = tmp_path / "lunarhub.yaml"
    cfg.write_text(yaml.safe_dump(d.model_dump(mode="json", exclude_none=True)))
    d = config.load(cfg)
    assert render.main(["--config", str(cfg), "hpc", "--site", "ru", "--with-secrets"]) == 0
    printed = capsys.readouterr().out
    runs = site_gateway.local_config(d, "ru")
    assert runs.startswith(printed) and site_gateway.EPILOGUE_MARK in runs[len(printed):]
    assert "configure_local" not in printed  # the epilogue is this machine's, not the site's config
    lay = slurm.layout(d, "ru")
    assert f'c.SlurmBackend.submit_command = "{lay.command("sbatch")}"' in printed
    assert 'jupyterhub_service_name = "dask-gateway-ru"' in printed


def test_rendered_site_config_loads_into_slurm_backend(tmp_path: Path) -> None:
    from dask_gateway_server.backends.jobqueue.slurm import SlurmBackend, SlurmClusterConfig
    from dask_gateway_server.models import User

    d = demo(tmp_path, partitions={"ru-science": "ru-science", "cn-science": "cn-guests"})
    c = _exec(site_gateway.rendered_config(d, "ru", with_secrets=True))
    assert issubclass(c.DaskGateway.backend_class, SlurmBackend)
    unknown = set(c["SlurmBackend"]) - set(SlurmBackend.class_trait_names(config=True))
    assert not unknown, unknown
    assert SlurmClusterConfig(config=c).scheduler_cmd[0].endswith("/bin/dask")
    backend = SlurmBackend(config=c)
    assert backend.submit_command == slurm.layout(d, "ru").command("sbatch")

    def overrides(user: User, **asked: float) -> dict:
        opts = backend.cluster_options(user)
        return opts.get_configuration(opts.parse_options(asked), user)

    assert overrides(User("ru-scientist", groups=["ru-science"]))["partition"] == "ru-science"
    assert overrides(User("cn-scientist", groups=["cn-science"]))["partition"] == "cn-guests"
    with pytest.raises(ValueError, match=r"no account at site 'ru'.*sites\.ru\.compute\.partitions"):
        overrides(User("instructor", groups=["instructors"]))
    with pytest.raises(ValueError, match=r"groups\.ru-science\.dask\.max_cores"):
        overrides(User("ru-scientist", groups=["ru-science"]), worker_cores=8)


def test_spawn_environment_and_hub_service(tmp_path: Path) -> None:
    d = demo(tmp_path, partitions={"ru-science": "ru-science"})
    env = site_gateway.spawn_environment(d, "ru-scientist")
    assert env["LUNARHUB_GATEWAY_RU_ADDRESS"] == f"{d.public_url}/services/dask-gateway-ru"
    assert env["LUNARHUB_GATEWAY_RU_PROXY_ADDRESS"] == f"tcp://127.0.0.1:{d.sites['ru'].compute.scheduler_proxy_port}"
    # No account at ru: only which sites have a gateway of their own (placement names the reason).
    assert site_gateway.spawn_environment(d, "cn-scientist") == {"LUNARHUB_SITE_GATEWAYS": "ru"}
    assert site_gateway.spawn_environment(d, "reviewer") == {"LUNARHUB_SITE_GATEWAYS": "ru"}
    (svc,), (role,) = site_gateway.hub_services(d)
    assert svc["name"] == "dask-gateway-ru" and svc["url"].endswith(f":{d.sites['ru'].compute.gateway_port}")
    assert role["services"] == ["dask-gateway-ru"]


def test_stopped_controller_refusal_is_one_line_naming_site_and_log(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    d = demo(tmp_path)
    said = "Slurmctld(primary) at vm is DOWN\n*****\n** RESTORE SLURMCTLD DAEMON TO SERVICE **"
    monkeypatch.setattr(slurm, "controller_state", lambda d, site, timeout=5: (False, said))
    why = site_gateway.controller_refusal(d, "ru")
    assert why is not None and "\n" not in why  # the gateway sends it as an HTTP reason
    assert "site 'ru' does not answer" in why and "is DOWN" in why and "slurm-ru-ctld.log" in why
    monkeypatch.setattr(slurm, "controller_state", lambda d, site, timeout=5: (True, "UP"))
    assert site_gateway.controller_refusal(d, "ru") is None


def test_state_dir_closed_to_users_named() -> None:
    import shutil
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="lunarhub-slurm-unit-"))  # pytest's own tmp is closed to others
    try:
        os.chmod(top, 0o755)
        assert not [p for p in slurm.problems(demo(top)) if "closed" in p[1]]
        closed = top / "closed"
        closed.mkdir(mode=0o700)
        msgs = [why for _, why in slurm.problems(demo(closed))]
        assert any(f"{closed} is closed to other accounts" in m for m in msgs), msgs
    finally:
        shutil.rmtree(top)
