"""Who may share with whom, gallery languages, and the dashboard server's command."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from lunarhub import config
from lunarhub.dashboards import hub_services
from lunarhub.dashboards.gallery import i18n, policy
from lunarhub.dashboards.gallery.servers import NotADashboard, spawn_override
from lunarhub.dashboards.store import Store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def d(tmp_path):
    model = config.load(ROOT / "hub" / "lunarhub.yaml")
    model.state_dir = str(tmp_path)
    model.services.dashboards.enabled = True
    return model


def test_scientists_share_with_what_their_groups_allow(d):
    policy.check_share(d, "cn-scientist", ["reviewers", "ru-science"], ["reviewer"])
    with pytest.raises(policy.ShareRefused) as err:
        policy.check_share(d, "cn-scientist", ["reviewers", "students"], [])
    msg = str(err.value)
    assert "'students'" in msg and "cn-science" in msg and "share_with" in msg and "reviewers" in msg
    with pytest.raises(policy.ShareRefused, match="user 'student'"):
        policy.check_share(d, "cn-scientist", [], ["student"])


def test_reviewers_cannot_publish_and_unknown_targets_are_named(d):
    with pytest.raises(policy.ShareRefused, match="may not publish"):
        policy.check_share(d, "reviewer", ["reviewers"], [])
    with pytest.raises(policy.ShareRefused, match="unknown group or user 'nobody'"):
        policy.parse_targets(d, ["nobody"])
    assert policy.parse_targets(d, ["reviewers", "user:reviewer", "cn-science"]) == (
        ["cn-science", "reviewers"], ["reviewer"])


def test_gallery_listing_rule():
    info = {"owner": "cn-scientist", "share_groups": ["reviewers"], "share_users": ["ru-scientist"]}
    assert policy.may_view(None, info, "reviewer", ["reviewers"])
    assert policy.may_view(None, info, "ru-scientist", ["ru-science"])
    assert policy.may_view(None, info, "cn-scientist", [])
    assert not policy.may_view(None, info, "student", ["students"])


@pytest.mark.parametrize("query,cookie,accept,lang", [
    (None, None, "ru-RU,ru;q=0.9,en;q=0.8", "ru"),
    (None, None, "zh-CN,zh;q=0.9", "zh"),
    (None, None, "de-DE,fr;q=0.9", "en"),
    (None, None, "en;q=0.2,zh;q=0.8", "zh"),
    ("ru", None, "zh", "ru"),
    (None, "zh", "ru", "zh"),
    ("xx", None, "ru", "ru"),
])
def test_language_choice(query, cookie, accept, lang):
    assert i18n.pick(query, cookie, accept) == lang


def test_every_text_has_three_languages():
    for key, texts in i18n.TEXTS.items():
        assert set(texts) == {"en", "ru", "zh"} and all(texts.values()), key


def spawner(name: str, user: str = "cn-scientist"):
    return types.SimpleNamespace(name=name, user=types.SimpleNamespace(name=user), cmd=["jupyterhub-singleuser"],
                                 args=["--HubOAuth.cache_max_age=5"], environment={"X": "1"},
                                 default_url="/lab", notebook_dir="/home/cn-scientist")


def test_spawn_override_serves_every_version_behind_hub_auth(d):
    store = Store.for_deployment(d)
    for content in (b"1", b"2"):
        store.publish("cn-scientist", "demo", title="Demo", description="", notebook="nb.ipynb",
                      files={"nb.ipynb": content}, share_with=["reviewers"], environment={})
    sp = spawner("dash-demo")
    spawn_override(d, sp)
    line = " ".join(sp.cmd + sp.args)
    assert "lunarhub.dashboards.server.launch" in line and "-m lunarhub.dashboards.server.serve 32 " in line
    assert "--prefix={base_url}" in sp.args and "--absolute-url" in sp.args
    assert sp.args[0] == str(d.hub.token_cache_seconds)
    assert [a.rsplit("/", 1)[1] for a in sp.args if a.endswith(".py")] == ["v1.py", "v2.py"]
    assert "jupyterhub-singleuser" not in line and "--no-authentication" not in line
    assert sp.environment["X"] == "1" and sp.environment["LUNARHUB_DASHBOARD"] == "cn-scientist/demo"


def test_spawn_override_leaves_other_servers_and_refuses_unknown_dashboards(d):
    sp = spawner("analysis")
    spawn_override(d, sp)
    assert sp.cmd == ["jupyterhub-singleuser"]
    with pytest.raises(NotADashboard, match="no published dashboard 'ghost'"):
        spawn_override(d, spawner("dash-ghost"))


def test_service_registration_and_role(d):
    services, roles = hub_services(d)
    svc = services[0]
    assert svc["name"] == "dashboards" and svc["url"].endswith(f":{d.services.dashboards.port}")
    assert "lunarhub.dashboards.gallery.service" in " ".join(svc["command"]) and svc["oauth_no_confirm"]
    assert {"servers", "tokens", "read:users", "list:users"} <= set(roles[0]["scopes"])
    assert "admin:users" not in roles[0]["scopes"] and "shares" not in roles[0]["scopes"]
