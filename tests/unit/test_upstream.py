"""Canaries of lunarhub/upstream/: each shows the upstream behaviour a workaround exists for
(and fails once a release changes it: time to remove or revisit the workaround), and that
lunarhub's side still works; plus the version guard every `apply()` runs first."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from lunarhub.upstream import (
    bokeh_session_hooks,
    dask_gateway_bind_host,
    dask_gateway_preexec,
    dask_gateway_workdir,
    jupyterhub_dashboard_consent,
    jupyterhub_share_policy,
    jupyterhub_shares,
    panel_page_html,
    versions,
)

ROOT = Path(__file__).resolve().parents[2]
WORKAROUNDS = [jupyterhub_shares, jupyterhub_dashboard_consent, dask_gateway_workdir, bokeh_session_hooks,
               panel_page_html, dask_gateway_preexec, dask_gateway_bind_host]


# ---------------------------------------------------------------- the guard


@pytest.mark.parametrize("module", WORKAROUNDS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_apply_refuses_a_release_outside_its_range(module, monkeypatch: pytest.MonkeyPatch) -> None:
    distribution, spec = next(iter(module.RANGES.items()))
    monkeypatch.setattr(versions, "installed", lambda d: Version("99.0") if d == distribution
                        else Version(versions.metadata.version(d)))
    args = {bokeh_session_hooks: (lambda app: None, None), panel_page_html: (lambda html: html,),
            jupyterhub_share_policy: (lambda req: None, lambda event, req, reason: None)}.get(module, ())
    with pytest.raises(versions.UnsupportedUpstreamVersion) as info:
        module.apply(*args)
    message = str(info.value)
    assert module.__name__ in message and f"{distribution}{spec}" in message
    assert f"{distribution} 99.0 is installed" in message and "remove the workaround" in message


def test_installed_releases_are_inside_every_range() -> None:
    for module in WORKAROUNDS:
        versions.require(module.__name__, module.RANGES, module.UPSTREAM)


def test_a_missing_distribution_is_refused_clearly() -> None:
    with pytest.raises(versions.UnsupportedUpstreamVersion, match="not-a-package is not installed"):
        versions.require("x", {"not-a-package": ">=1"}, "y")


def test_pyproject_bounds_match_the_workarounds() -> None:
    """What is patched or hooked cannot be installed in a release no workaround was checked on."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {Requirement(r).name: Requirement(r).specifier for r in project["dependencies"]}
    for module in WORKAROUNDS:
        for distribution, spec in module.RANGES.items():
            assert declared[distribution] == SpecifierSet(spec), (module.__name__, distribution)
            assert any(s.operator == "<" for s in declared[distribution]), f"{distribution}: no upper bound"


# ---------------------------------------------------------------- jupyterhub: group shares


@pytest.fixture
def hub_db():
    from jupyterhub import orm

    db = orm.new_session_factory("sqlite://")()
    db.add(orm.OAuthClient(identifier="jupyterhub"))
    alice, bob = orm.User(name="alice"), orm.User(name="bob")
    db.add_all([alice, bob])
    db.commit()
    reviewers = orm.Group(name="reviewers")
    reviewers.users.append(bob)
    db.add(reviewers)
    for name in ("dash-lola", "dash-other"):
        spawner = orm.Spawner(user=alice, name=name)
        db.add(spawner)
        db.add(orm.Share(owner=alice, spawner=spawner, group=reviewers,
                         scopes=[f"access:servers!server=alice/{name}"]))
    db.commit()
    yield SimpleNamespace(db=db, bob=bob)
    db.close()


def test_jupyterhub_token_misses_group_shares(hub_db) -> None:
    from jupyterhub import orm, scopes

    lola = "access:servers!server=alice/dash-lola"
    other = "access:servers!server=alice/dash-other"
    # The user has the group's shares; their tokens (an OAuth token is one) do not.
    assert {lola, other} <= scopes.get_scopes_for(hub_db.bob)
    orm.APIToken.new(user=hub_db.bob, scopes=[lola])  # as the OAuth token of dash-lola's visitor
    orm.APIToken.new(user=hub_db.bob, scopes=["inherit"])
    by_scopes = {tuple(t.scopes): t for t in hub_db.db.query(orm.APIToken)}
    for token in by_scopes.values():
        assert not {lola, other} & set(scopes.get_scopes_for(token)), "upstream fixed: remove jupyterhub_shares"

    fixed = jupyterhub_shares.with_group_shares(scopes.get_scopes_for)
    # Ours: the shares reach the token, but never beyond what the token was issued for.
    assert lola in fixed(by_scopes[(lola,)]) and other not in fixed(by_scopes[(lola,)])
    assert {lola, other} <= set(fixed(by_scopes[("inherit",)]))
    assert {lola, other} <= set(fixed(hub_db.bob))


def _importers_of_get_scopes_for() -> set[str]:
    import jupyterhub

    package = Path(jupyterhub.__file__).parent
    found = set()
    for path in package.rglob("*.py"):
        rel = path.relative_to(package.parent)
        if "tests" in rel.parts or path.name == "scopes.py":
            continue
        if re.search(r"from\s+[.\w]*scopes\s+import\s+\(?[^)]*?\bget_scopes_for\b", path.read_text("utf-8")):
            found.add(".".join(rel.with_suffix("").parts))
    return found


def test_every_module_that_imports_get_scopes_for_is_known() -> None:
    # A release that adds a `from .scopes import get_scopes_for` makes one more place to patch.
    assert _importers_of_get_scopes_for() <= set(jupyterhub_shares.IMPORTERS)
    assert "jupyterhub.apihandlers.base" in _importers_of_get_scopes_for()


def test_apply_reaches_every_module_holding_the_name() -> None:
    # In a fresh process, as at hub start: JupyterHub's modules are imported before the config file runs.
    code = """
import sys
import jupyterhub.app  # noqa: F401 - imports the handlers, as the hub does before loading its config
from jupyterhub import scopes
from jupyterhub.apihandlers import base
from lunarhub.upstream import jupyterhub_dashboard_consent, jupyterhub_shares
original = scopes.get_scopes_for
patched = jupyterhub_shares.apply()
assert "jupyterhub.apihandlers.base" in patched and "jupyterhub.scopes" in patched, patched
assert base.get_scopes_for is scopes.get_scopes_for and scopes.get_scopes_for.__wrapped__ is original
assert jupyterhub_shares.holders_of(original) == [], jupyterhub_shares.holders_of(original)
assert jupyterhub_shares.apply() == []  # a second call changes nothing
jupyterhub_dashboard_consent.apply()
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_dashboard_consent_only_skips_dashboard_servers() -> None:
    from jupyterhub.apihandlers.auth import OAuthAuthorizeHandler

    # The hooked method still has the signature the hook passes through.
    assert OAuthAuthorizeHandler.needs_oauth_confirm.__code__.co_varnames[:4] == (
        "self", "user", "oauth_client", "requested_scopes")

    def client(server: str, identifier: str) -> SimpleNamespace:
        return SimpleNamespace(spawner=SimpleNamespace(name=server), identifier=identifier)

    assert jupyterhub_dashboard_consent.is_dashboard_client(client("dash-lola", "jupyterhub-user-alice-dash-lola"))
    # A user called "x-dash-y" with a server "lab" is not a dashboard.
    assert not jupyterhub_dashboard_consent.is_dashboard_client(client("lab", "jupyterhub-user-x-dash-y"))
    assert not jupyterhub_dashboard_consent.is_dashboard_client(SimpleNamespace(identifier="service-x"))


def test_dashboard_consent_skips_only_the_deployments_project_labs() -> None:
    def client(user: str, server: str, identifier: str) -> SimpleNamespace:
        return SimpleNamespace(spawner=SimpleNamespace(name=server, user=SimpleNamespace(name=user)),
                               identifier=identifier)

    projects = ["project-luna26-landing"]
    lab = client("project-luna26-landing", "", "jupyterhub-user-project-luna26-landing")
    assert jupyterhub_dashboard_consent.is_project_client(lab, projects)
    # By the deployment's projects, never the name: a user called project-x is asked as anyone.
    assert not jupyterhub_dashboard_consent.is_project_client(
        client("project-x", "", "jupyterhub-user-project-x"), projects)
    assert not jupyterhub_dashboard_consent.is_project_client(lab, [])
    # Another server of the project user, or a client id that is not the lab's.
    assert not jupyterhub_dashboard_consent.is_project_client(
        client("project-luna26-landing", "other", "jupyterhub-user-project-luna26-landing-other"), projects)
    assert not jupyterhub_dashboard_consent.is_project_client(
        client("project-luna26-landing", "", "service-x"), projects)
    assert not jupyterhub_dashboard_consent.is_project_client(SimpleNamespace(identifier="service-x"), projects)


# ---------------------------------------------------------------- jupyterhub: share policy


def test_jupyterhub_still_has_no_share_policy_hook() -> None:
    """A sharing setting in a new release may be the hook to use instead of ours."""
    from jupyterhub.app import JupyterHub

    assert not [t for t in JupyterHub.class_trait_names() if "shar" in t.lower()], "review jupyterhub_share_policy"


def test_shares_and_share_codes_are_made_only_where_we_hook() -> None:
    import jupyterhub

    package = Path(jupyterhub.__file__).parent
    makers = {}
    for path in package.rglob("*.py"):
        rel = str(path.relative_to(package))
        if rel.startswith("tests") or "alembic" in rel:
            continue
        text = path.read_text("utf-8")
        for pattern in (r"\bShare\.grant\(", r"\bShareCode\.new\(", r"\b(orm\.)?Share(Code)?\(\s*\w+="):
            for _ in re.finditer(pattern, text):
                makers.setdefault(rel, set()).add(pattern)
    # The API handler and ShareCode.exchange call grant; the handler calls new; the rows are
    # built inside grant and new themselves (as `cls(...)`), nowhere else.
    assert set(makers) == {"apihandlers/shares.py", "orm.py"}, makers
    from jupyterhub import orm

    assert "Share.grant(" in inspect.getsource(orm.ShareCode.exchange)


def test_share_policy_targets_keep_their_signatures() -> None:
    from jupyterhub import orm

    for module, cls, attr in jupyterhub_share_policy.TARGETS:
        owner = getattr(importlib.import_module(module), cls)
        assert attr in owner.__dict__, f"{module}.{cls}.{attr} moved"
    assert list(inspect.signature(orm.Share.grant).parameters) == ["db", "spawner", "share_with", "scopes"]
    assert list(inspect.signature(orm.Share.revoke).parameters) == ["db", "spawner", "share_with", "scopes"]
    assert list(inspect.signature(orm.ShareCode.new).parameters) == ["db", "spawner", "scopes", "expires_in",
                                                                    "kwargs"]


# ---------------------------------------------------------------- dask-gateway-server: working directory


def _fake_cluster(tmp_path: Path) -> SimpleNamespace:
    return SimpleNamespace(name="c0ffee", username="nobody", tls_cert=b"cert", tls_key=b"key")


def test_upstream_working_directory_bug_and_our_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dask_gateway_server.backends.local import LocalBackend

    from lunarhub.compute.gateway_server import LunarLocalBackend

    chowned: dict[str, list[str]] = {}

    def record(kind: str):
        def set_file_permissions(self, paths, username):
            chowned[kind] = list(paths)
        return set_file_permissions

    monkeypatch.setattr(LocalBackend, "set_file_permissions", record("upstream"))
    up = LocalBackend(clusters_directory=str(tmp_path / "up"))
    up.setup_working_directory(_fake_cluster(tmp_path))
    # The upstream bug: a path string extended character by character, "/" included.
    assert "/" in chowned["upstream"]

    monkeypatch.setattr(LunarLocalBackend, "set_file_permissions", record("ours"))
    ours = LunarLocalBackend(clusters_directory=str(tmp_path / "ours"))
    workdir = ours.setup_working_directory(_fake_cluster(tmp_path))
    assert "/" not in chowned["ours"]
    assert all(p == workdir or p.startswith(workdir + os.sep) for p in chowned["ours"])
    assert any(p.endswith("dask.pem") for p in chowned["ours"])


def test_our_working_directory_wins_over_upstreams() -> None:
    from lunarhub.compute.gateway_server import LunarLocalBackend

    assert (LunarLocalBackend.setup_working_directory
            is dask_gateway_workdir.FixedWorkingDirectory.setup_working_directory)


# ---------------------------------------------------------------- bokeh / panel: session hooks

APP = """
import panel as pn
pn.Column("ready").servable()
"""


def test_session_hooks_private_names_still_exist(tmp_path: Path) -> None:
    """Builds a session without a visitor and hands it over, through the names we rely on."""
    from bokeh.server import contexts
    from bokeh.server.tornado import BokehTornado
    from panel.io import server as pn_server
    from panel.io.application import build_single_handler_application

    assert callable(pn_server.DocHandler.get_session) and callable(BokehTornado.start)
    assert callable(pn_server.DocHandler._generate_token_payload)
    assert hasattr(contexts, "_RequestProxy")
    app_file = tmp_path / "app.py"
    app_file.write_text(APP)
    ctx = contexts.ApplicationContext(build_single_handler_application(str(app_file)), url="/app")
    assert any(hasattr(h, "_runner") for h in ctx.application.handlers)
    tornado_app = SimpleNamespace(secret_key=None, sign_sessions=False, session_token_expiration=300)

    async def scenario() -> None:
        session, error = await bokeh_session_hooks.build_session(ctx, tornado_app)
        assert error is None and session.document.roots
        assert session.id in ctx._session_contexts and hasattr(session, "_last_unsubscribe_time")
        visitor = SimpleNamespace(
            application=tornado_app, request=SimpleNamespace(cookies={}, headers={}, arguments={}),
            _generate_token_payload=lambda: {"headers": {"X-Who": "bob"}, "cookies": {"c": "1"}, "arguments": {}})
        token = bokeh_session_hooks.hand_over(session, ctx, visitor)
        assert session.token == token
        assert ctx._session_contexts[session.id].request.cookies == {"c": "1"}
        assert ctx._session_contexts[session.id].token_payload["headers"] == {"X-Who": "bob"}

    asyncio.run(scenario())


# ---------------------------------------------------------------- panel: page html


def test_panel_page_still_has_the_script_tags_we_rewrite(tmp_path: Path) -> None:
    from bokeh.resources import Resources as BokehResources
    from bokeh.server import contexts
    from panel.io import server as pn_server
    from panel.io.application import build_single_handler_application
    from panel.io.resources import Resources

    from lunarhub.dashboards.server.shared_static import rewrite

    # The page handler looks the function up as a module global at each call: replacing it works.
    assert "server_html_page_for_session" in inspect.unwrap(pn_server.DocHandler.get).__code__.co_names
    app_file = tmp_path / "app.py"
    app_file.write_text(APP)
    ctx = contexts.ApplicationContext(build_single_handler_application(str(app_file)), url="/app")
    tornado_app = SimpleNamespace(secret_key=None, sign_sessions=False, session_token_expiration=300)
    session, _ = asyncio.run(bokeh_session_hooks.build_session(ctx, tornado_app))
    html = pn_server.server_html_page_for_session(
        session, resources=Resources.from_bokeh(BokehResources(mode="server", root_url="/")), title="t",
        template=session.document.template, template_variables=session.document.template_variables)
    out = rewrite(html, "/services/dashboards/static/")
    assert 'src="/services/dashboards/static/bokeh/bokeh.min.js' in out
    assert re.search(r'src="/services/dashboards/static/panel/panel\.min\.js\?v=[0-9a-f]+"', out)
    assert not re.search(r'src="[^"]*static/js/bokeh', out), "a BokehJS tag the regexes no longer match"


def test_gateway_preexec_is_built_before_the_first_await(tmp_path: Path) -> None:
    """dask_gateway_preexec relies on upstream's start_process calling make_preexec_fn before its
    first await. Upstream's own start_process runs here, twice at once: each child must run its
    own process's step (a reordered upstream would hand one start the other's)."""
    import asyncio
    import time
    import types

    from dask_gateway_server.backends.local import LocalBackend

    class Upstream:
        start_process = LocalBackend.start_process

        def get_logs_directory(self, workdir: str) -> str:
            return workdir

        def make_preexec_fn(self, cluster: object) -> object:
            return lambda: None

    class Probe(dask_gateway_preexec.PreexecPerProcess, Upstream):
        def process_preexec(self, cluster, name):  # noqa: ANN001, ANN202
            return lambda: (tmp_path / f"{name}.step").write_text(name)

    cluster = types.SimpleNamespace(state={"workdir": str(tmp_path)})
    probe = Probe()

    async def both() -> None:
        await asyncio.gather(*(probe.start_process(cluster, ["/bin/true"], {}, n)
                               for n in ("scheduler", "worker-a", "worker-b")))

    asyncio.run(both())
    deadline = time.monotonic() + 20
    while len(list(tmp_path.glob("*.step"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {p.name: p.read_text() for p in tmp_path.glob("*.step")} == {
        "scheduler.step": "scheduler", "worker-a.step": "worker-a", "worker-b.step": "worker-b"}
    assert probe._next_step is None


# ---------------------------------------------------------------- dask_gateway_bind_host


def test_upstream_jobqueue_jobs_listen_on_every_interface() -> None:
    from dask_gateway_server.backends.jobqueue.slurm import SlurmBackend

    cluster = SimpleNamespace(config=SimpleNamespace(scheduler_cmd=["dask", "scheduler"], worker_cmd=["dask", "worker"],
                                                     adaptive_period=3.0, idle_timeout=0.0, worker_threads=1,
                                                     worker_cores=1, worker_memory=2**30),
                              scheduler_address="tls://10.0.0.1:8786")

    def hosts(backend_cls: type) -> set[str]:
        backend = backend_cls()
        cmd = backend.get_scheduler_command(cluster) + backend.get_worker_command(cluster, "w")
        return {cmd[i + 1].rsplit(":", 1)[0] for i, a in enumerate(cmd)
                if a in ("--host", "--dashboard-address", "--dg-api-address")}

    # Upstream half: not a trait, and every listener on all interfaces.
    assert "default_host" not in SlurmBackend.class_trait_names()
    assert hosts(SlurmBackend) == {"0.0.0.0"}

    class Ours(dask_gateway_bind_host.LoopbackJobs, SlurmBackend):
        pass

    assert hosts(Ours) == {"127.0.0.1"}
