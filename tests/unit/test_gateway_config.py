"""Deployment -> dask-gateway config: limits per group, options, rendered configs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from traitlets.config import Config

from lunarhub import config
from lunarhub.compute import gateway, render

REPO = Path(__file__).resolve().parents[2]


def _need(module: str, install: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.fail(f"{module} is missing: pip install '{install}'")


@pytest.fixture
def dep(tmp_path: Path) -> config.Deployment:
    data = yaml.safe_load((REPO / "hub" / "lunarhub.yaml").read_text())
    data["state_dir"] = str(tmp_path / "state")
    data["services"]["dask_gateway"] = {"enabled": True, "port": 18010, "scheduler_proxy_port": 18786,
                                        "idle_timeout_seconds": 900}
    data["sites"] = {}
    for inst in data["institutions"].values():
        inst.pop("site", None)
    # A user in two dask groups gets the larger of each limit.
    data["users"]["teacher-student"] = {"groups": ["students", "instructors"]}
    d = config.Deployment.model_validate(data)
    d._base_dir = REPO / "hub"
    return d


# ---------------------------------------------------------------- limits


def test_limits_come_from_the_users_groups(dep: config.Deployment) -> None:
    ru = gateway.user_limits(dep, "ru-scientist")
    assert ru is not None and (ru.max_clusters, ru.max_cores, ru.max_memory_gb, ru.max_workers) == (2, 4, 12, 4)
    assert ru.where("max_cores") == "groups.ru-science.dask.max_cores"
    student = gateway.user_limits(dep, "student")
    assert student is not None and (student.max_cores, student.max_workers) == (1, 1)
    both = gateway.user_limits(dep, "teacher-student")
    assert both is not None and (both.max_cores, both.max_memory_gb, both.max_workers) == (2, 4, 2)
    assert both.where("max_cores") == "groups.instructors.dask.max_cores"


def test_groups_without_dask_block_are_refused(dep: config.Deployment) -> None:
    assert gateway.user_limits(dep, "reviewer") is None
    assert gateway.user_limits(dep, "admin") is None
    why = gateway.refusal_for_new_cluster(dep, "reviewer", 0)
    assert why and "not enabled for your groups (reviewers)" in why and "ru-science" in why
    with pytest.raises(gateway.LimitError, match="not enabled"):
        gateway.cluster_overrides(dep, "reviewer", 1, 1, 0)


def test_cluster_count_limit(dep: config.Deployment) -> None:
    assert gateway.refusal_for_new_cluster(dep, "ru-scientist", 1) is None
    why = gateway.refusal_for_new_cluster(dep, "ru-scientist", 2)
    assert why and "groups.ru-science.dask.max_clusters" in why
    assert "groups.students.dask.max_clusters" in (gateway.refusal_for_new_cluster(dep, "student", 1) or "")


@pytest.mark.parametrize(("cores", "mem", "workers", "limit"), [
    (8, 1, 0, "max_cores"),
    (1, 13, 0, "max_memory_gb"),
    (1, 1, 5, "max_workers"),
    (2, 1, 3, "max_cores"),      # 3 x 2 cores
    (1, 4, 4, "max_memory_gb"),  # 4 x 4 GiB
])
def test_over_limit_requests_name_the_limit(dep: config.Deployment, cores: int, mem: float, workers: int,
                                            limit: str) -> None:
    with pytest.raises(gateway.LimitError, match=rf"groups\.ru-science\.dask\.{limit}"):
        gateway.cluster_overrides(dep, "ru-scientist", cores, mem, workers)


def test_overrides_load_into_the_real_cluster_config(dep: config.Deployment) -> None:
    _need("dask_gateway_server", "dask-gateway-server[local]")
    from lunarhub.compute.gateway_server import LunarClusterConfig

    over = gateway.cluster_overrides(dep, "ru-scientist", 2, 3, 1)
    cfg = LunarClusterConfig(**over)
    assert cfg.worker_cores == 2 and cfg.worker_memory == 3 * 2**30
    # Scheduler (1 core, 1 GiB) on top of the group's 4 cores / 12 GiB: two 2-core workers fit.
    assert cfg.cluster_max_cores == 5 and cfg.cluster_max_workers == 2
    assert cfg.initial_workers == 1
    assert cfg.environment["PATH"].startswith(str(gateway.VENV_BIN))


def test_option_fields_show_the_limits(dep: config.Deployment) -> None:
    fields = {f["name"]: f for f in gateway.option_fields(gateway.user_limits(dep, "ru-scientist"))}
    assert set(fields) == {"worker_cores", "worker_memory", "workers"}
    assert "limit 4" in fields["worker_cores"]["label"] and "limit 12" in fields["worker_memory"]["label"]


# ---------------------------------------------------------------- hub side


def test_hub_service_and_role(dep: config.Deployment) -> None:
    from lunarhub.platform import hub

    services, roles = hub.services(dep)
    svc = next(s for s in services if s["name"] == "dask-gateway")
    assert svc["url"] == "http://127.0.0.1:18010" and len(svc["api_token"]) == 64
    assert "command" not in svc, "the gateway must be an external service (a crash must not stop the hub)"
    role = next(r for r in roles if r["name"] == "dask-gateway")
    assert role["services"] == ["dask-gateway"] and "read:servers" in role["scopes"]
    # Users and their servers' tokens may call services.
    hub_roles = {r["name"]: r for r in hub.roles(dep)}
    assert "access:services" in hub_roles["server"]["scopes"]
    assert "access:services" in hub_roles["user"]["scopes"]


def test_spawn_environment_makes_gateway_work_without_arguments(dep: config.Deployment,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _need("dask_gateway", "dask-gateway")
    import dask
    from dask_gateway import Gateway, JupyterHubAuth

    env = gateway.spawn_environment(dep, "ru-scientist")
    assert gateway.spawn_environment(dep, "reviewer") == {}
    for k, v in {**env, "JUPYTERHUB_API_TOKEN": "x" * 32}.items():
        monkeypatch.setenv(k, v)
    dask.config.refresh()
    try:
        gw = Gateway()
        assert gw.address == f"{dep.scheme}://localhost:8000/services/dask-gateway"
        assert gw.proxy_address == "gateway://127.0.0.1:18786"
        assert isinstance(gw.auth, JupyterHubAuth)
        del gw
    finally:
        monkeypatch.undo()
        dask.config.refresh()


def test_gateway_config_sets_only_real_traits(dep: config.Deployment, tmp_path: Path) -> None:
    _need("dask_gateway_server", "dask-gateway-server[local]")
    from dask_gateway_server.app import DaskGateway
    from dask_gateway_server.auth import JupyterHubAuthenticator
    from dask_gateway_server.proxy import Proxy

    from lunarhub.compute.gateway_server import LunarBackendMixin, LunarClusterConfig, LunarLocalBackend

    c = Config()
    gateway.configure(c, dep)
    classes = {cls.__name__: cls for cls in (DaskGateway, JupyterHubAuthenticator, Proxy, LunarLocalBackend,
                                             LunarBackendMixin, LunarClusterConfig)}
    classes["LocalBackend"] = LunarLocalBackend
    classes["ClusterConfig"] = LunarClusterConfig
    for section, values in c.items():
        traits = classes[section].class_trait_names(config=True)
        unknown = set(values) - set(traits)
        assert not unknown, f"{section}: {unknown} are not traits"
    assert c.DaskGateway.backend_class.endswith("LunarLocalBackend")
    assert c.ClusterConfig.scheduler_cmd[0].endswith("/dask") and c.ClusterConfig.scheduler_cmd[1] == "scheduler"
    assert c.ClusterConfig.idle_timeout == 900
    assert c.Proxy.prefix == "/services/dask-gateway"
    # The DB key is a valid Fernet key (else the gateway crashes at start).
    from cryptography.fernet import Fernet

    Fernet(c.LocalBackend.db_encrypt_keys[0])
    cc = LunarClusterConfig(config=c)
    assert cc.worker_cmd[1] == "worker"
    single = dep.model_copy(deep=True)
    single.hub.isolation = "single-account"
    assert gateway.backend_class(single).endswith("LunarUnsafeLocalBackend")


def test_chown_guard_refuses_paths_outside(tmp_path: Path) -> None:
    _need("dask_gateway_server", "dask-gateway-server[local]")
    from lunarhub.upstream.dask_gateway_workdir import check_paths_inside

    check_paths_inside([str(tmp_path), str(tmp_path / "x")], str(tmp_path))
    with pytest.raises(RuntimeError, match="refusing to change the owner of '/'"):
        check_paths_inside([str(tmp_path), "/"], str(tmp_path))


# ---------------------------------------------------------------- rendered configs


def _exec_snippet(code: str) -> Config:
    c = Config()
    exec(compile(code, "<rendered>", "exec"), {"c": c, "__name__": "rendered"})
    return c


def test_kubernetes_values(dep: config.Deployment) -> None:
    kubespawner = _need("kubespawner", "jupyterhub-kubespawner>=7")
    from jupyterhub.app import JupyterHub
    from jupyterhub.auth import Authenticator

    values = yaml.safe_load(yaml.safe_dump(render.kubernetes_values(dep)))
    assert set(values) == {"jupyterhub", "dask-gateway"}
    hub_cfg = values["jupyterhub"]["hub"]["config"]
    classes = {"JupyterHub": JupyterHub, "Authenticator": Authenticator, "KubeSpawner": kubespawner.KubeSpawner}
    for section, settings in hub_cfg.items():
        traits = classes[section].class_trait_names(config=True)
        assert not set(settings) - set(traits), f"{section}: {set(settings) - set(traits)}"
    assert {r["name"] for r in hub_cfg["JupyterHub"]["load_roles"]} >= {"user", "server", "lab-user"}
    assert hub_cfg["JupyterHub"]["load_groups"]["ru-science"]["users"] == ["ru-scientist"]
    # The hub would accept these roles and groups as config.
    JupyterHub(config=Config({"JupyterHub": hub_cfg["JupyterHub"]}))
    profiles = values["jupyterhub"]["singleuser"]["profileList"]
    assert {p["slug"] for p in profiles} == {"standard", "science"}
    spawner_traits = kubespawner.KubeSpawner.class_trait_names(config=True)
    for p in profiles:
        assert not set(p["kubespawner_override"]) - set(spawner_traits)
    assert sum(p["default"] for p in profiles) == 1
    env = values["jupyterhub"]["singleuser"]["extraEnv"]
    assert env["DASK_GATEWAY__AUTH__TYPE"] == "jupyterhub"
    gw = values["dask-gateway"]["gateway"]
    assert gw["auth"]["jupyterhub"]["apiToken"] == values["jupyterhub"]["hub"]["services"]["dask-gateway"]["apiToken"]
    assert gw["prefix"] == "/services/dask-gateway"


def test_kubernetes_gateway_limits_load_into_kube_backend(dep: config.Deployment) -> None:
    _need("kubernetes_asyncio", "dask-gateway-server[kubernetes]")
    from dask_gateway_server.backends.kubernetes import KubeBackend, KubeClusterConfig
    from dask_gateway_server.models import User

    snippet = render.kubernetes_values(dep)["dask-gateway"]["gateway"]["extraConfig"]["lunarhub-limits"]
    # What the daskhub chart's gateway config sets before it runs gateway.extraConfig.
    c = _exec_snippet(f'c.DaskGateway.backend_class = "{render.KUBE_BACKEND}"\n' + snippet)
    assert issubclass(c.DaskGateway.backend_class, KubeBackend)
    backend = c.DaskGateway.backend_class(config=c)
    assert KubeClusterConfig(config=c).idle_timeout == 900
    ru = User("ru-scientist", groups=["ru-science"])
    opts = backend.cluster_options(ru)
    over = opts.get_configuration(opts.parse_options({"worker_cores": 2, "worker_memory": 4}), ru)
    cfg = KubeClusterConfig(config=c, **over)
    assert cfg.worker_cores == 2 and cfg.cluster_max_workers == 2
    with pytest.raises(ValueError, match=r"groups\.ru-science\.dask\.max_cores"):
        opts.get_configuration(opts.parse_options({"worker_cores": 8}), ru)
    reviewer = User("reviewer", groups=["reviewers"])
    ropts = backend.cluster_options(reviewer)
    with pytest.raises(ValueError, match="not enabled"):
        ropts.get_configuration(ropts.parse_options({}), reviewer)


def test_kubernetes_values_cap_clusters_per_user(dep: config.Deployment) -> None:
    """groups.<g>.dask.max_clusters on Kubernetes: the rendered backend (a KubeBackend subclass)
    refuses the (cap+1)-th cluster of a user, counting clusters it created that the informer
    has not reported yet, and allows a new one once one has stopped."""
    _need("kubernetes_asyncio", "dask-gateway-server[kubernetes]")
    import asyncio
    from collections import defaultdict

    from dask_gateway_server.backends.base import PublicException
    from dask_gateway_server.models import ClusterStatus, User

    snippet = render.kubernetes_values(dep)["dask-gateway"]["gateway"]["extraConfig"]["lunarhub-limits"]
    c = _exec_snippet(f'c.DaskGateway.backend_class = "{render.KUBE_BACKEND}"\n' + snippet)
    c.KubeBackend.gateway_instance = "lunarhub-dask-gateway"
    c.KubeBackend.api_url = "http://api-lunarhub-dask-gateway.lunarhub:8000/api"
    backend = c.DaskGateway.backend_class(config=c)
    created: list[dict] = []

    class FakeCustomObjects:  # the Kubernetes API: KubeBackend.start_cluster creates a DaskCluster
        async def create_namespaced_custom_object(self, group, version, namespace, plural, obj):
            created.append(obj)
            return obj

    # The informer's view (what setup() would fill from the API server): nothing seen yet.
    backend.custom_client = FakeCustomObjects()
    backend.clusters, backend.username_to_clusters = {}, defaultdict(dict)

    def informer_sees(name: str, username: str, status: ClusterStatus) -> None:
        cl = SimpleNamespace(name=name, username=username, status=status)
        backend.clusters[name] = backend.username_to_clusters[username][name] = cl

    ru, student = User("ru-scientist", groups=["ru-science"]), User("student", groups=["students"])
    reviewer = User("reviewer", groups=["reviewers"])

    async def scenario() -> None:
        cap = gateway.user_limits(dep, "ru-scientist").max_clusters
        assert cap == 2
        names = [await backend.start_cluster(ru, {}) for _ in range(cap)]
        assert len(created) == cap and len(set(names)) == cap
        # Created but not yet reported by the informer: still counted.
        with pytest.raises(PublicException, match=r"already have 2 active dask cluster\(s\); the limit is 2 "
                                                  r"\(groups\.ru-science\.dask\.max_clusters\)"):
            await backend.start_cluster(ru, {})
        informer_sees(names[0], "ru-scientist", ClusterStatus.RUNNING)
        informer_sees(names[1], "ru-scientist", ClusterStatus.PENDING)
        with pytest.raises(PublicException, match="max_clusters"):
            await backend.start_cluster(ru, {})
        assert len(created) == cap  # nothing was created for the refused requests
        # Another user's count is their own (students: 1).
        await backend.start_cluster(student, {})
        with pytest.raises(PublicException, match=r"limit is 1 \(groups\.students\.dask\.max_clusters\)"):
            await backend.start_cluster(student, {})
        # One of ru-scientist's clusters stops: room for one more.
        informer_sees(names[0], "ru-scientist", ClusterStatus.STOPPED)
        await backend.start_cluster(ru, {})
        assert len(created) == cap + 2
        # No dask group: refused by the options handler, with its own message.
        with pytest.raises(PublicException, match="not enabled"):
            await backend.start_cluster(reviewer, {})

    asyncio.run(scenario())


@pytest.mark.parametrize("scheduler", ["slurm", "pbs"])
def test_hpc_config_loads_into_jobqueue_backends(dep: config.Deployment, scheduler: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _need("dask_gateway_server", "dask-gateway-server[local]")
    from dask_gateway_server.backends.jobqueue.pbs import PBSBackend, PBSClusterConfig
    from dask_gateway_server.backends.jobqueue.slurm import SlurmBackend, SlurmClusterConfig
    from dask_gateway_server.models import User

    backend_cls, cc_cls = {"slurm": (SlurmBackend, SlurmClusterConfig),
                           "pbs": (PBSBackend, PBSClusterConfig)}[scheduler]
    text = render.hpc_config(dep, scheduler, queue="lunar", account="lunar-proj")
    monkeypatch.setenv("DASK_GATEWAY_ENCRYPT_KEYS", "x")
    c = _exec_snippet(text)
    # The configured backend, subclassed for the per-user cluster cap.
    assert issubclass(c.DaskGateway.backend_class, backend_cls)
    for section in (backend_cls.__name__, cc_cls.__name__):
        unknown = set(c[section]) - set(
            (backend_cls if section == backend_cls.__name__ else cc_cls).class_trait_names(config=True))
        assert not unknown, f"{section}: {unknown}"
    cc = cc_cls(config=c)
    assert cc.scheduler_cmd == ["/opt/lunarhub/venv/bin/dask", "scheduler"]
    assert (cc.partition if scheduler == "slurm" else cc.queue) == "lunar"
    assert cc.account == "lunar-proj"
    with_keys = _exec_snippet(render.hpc_config(dep, scheduler, with_secrets=True))
    backend = backend_cls(config=with_keys)
    ru = User("ru-scientist", groups=["ru-science"])
    opts = backend.cluster_options(ru)
    over = opts.get_configuration(opts.parse_options({}), ru)
    assert over["environment"]["LUNARHUB_SITE"]
    with pytest.raises(ValueError, match="max_memory_gb"):
        opts.get_configuration(opts.parse_options({"worker_memory": 99}), ru)


def test_render_cli_writes_files(tmp_path: Path) -> None:
    out = tmp_path / "values.yaml"
    assert render.main(["--config", str(REPO / "hub" / "lunarhub.yaml"), "kubernetes", "-o", str(out)]) == 0
    assert "dask-gateway" in yaml.safe_load(out.read_text())
    hpc = tmp_path / "gw.py"
    assert render.main(["hpc", "--scheduler", "pbs", "--site", "cn", "-o", str(hpc)]) == 0
    assert "PBSBackend" in hpc.read_text()
    assert render.main(["hpc", "--site", "moon"]) == 2


def test_smallest_group_limit_still_gets_its_worker():
    """Students (1 core, 2 GiB) must get their one worker: the overrides alone, applied to the
    real ClusterConfig, leave room for the scheduler plus one default worker."""
    from dask_gateway_server.backends.base import ClusterConfig

    from lunarhub import config
    from lunarhub.compute import gateway

    d = config.load()
    overrides = gateway.cluster_overrides(d, "student", 1, 2.0, 0)
    overrides.pop("environment")
    overrides.pop("initial_workers")
    assert ClusterConfig(**overrides).cluster_max_workers == 1


def test_site_credentials_are_added_at_process_start_not_stored_with_the_cluster() -> None:
    from types import SimpleNamespace

    from lunarhub import config
    from lunarhub.compute import gateway
    from lunarhub.compute.gateway_server import LunarBackendMixin

    d = config.load()
    stored = gateway.cluster_overrides(d, "ru-scientist", 1, 2.0, 0)["environment"]
    assert not [k for k in stored if k.startswith("LUNARHUB_SITE")]

    class Base:
        def get_env(self, cluster: object) -> dict[str, str]:
            return {"PATH": "/bin"}

    class Backend(LunarBackendMixin, Base):
        pass

    env = Backend(deployment_file=str(REPO / "hub" / "lunarhub.yaml")).get_env(SimpleNamespace(username="ru-scientist"))
    assert env["PATH"] == "/bin" and any(k.startswith("LUNARHUB_SITE") and k.endswith("_PASSWORD") for k in env)
