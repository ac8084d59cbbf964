"""Who a server may be shared with (lunarhub.platform.hub.lab_shares), and the hooks that make
JupyterHub's own sharing ask it (lunarhub.upstream.jupyterhub_share_policy), on an in-memory hub
database. The real hub API is tried in tests/security/test_lab_shares.py."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from lunarhub import config
from lunarhub.config import roster
from lunarhub.platform import audit
from lunarhub.platform.hub import lab_shares
from lunarhub.upstream import jupyterhub_share_policy as hooks
from lunarhub.upstream.jupyterhub_share_policy import ShareRequest

ROOT = Path(__file__).resolve().parents[2]


def demo(tmp_path: Path, **edit: object) -> config.Deployment:
    data = yaml.safe_load((ROOT / "hub" / "lunarhub.yaml").read_text())
    data["state_dir"] = str(tmp_path / "state")
    data["hub"]["isolation"] = "single-account"
    for site, until in edit.get("embargo", {}).items():  # type: ignore[attr-defined]
        data["sites"][site]["embargo_until"] = until
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "lunarhub.yaml"
    for site in data["sites"].values():
        site["data_dir"] = str((ROOT / "hub" / site["data_dir"]).resolve())
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return config.load(path)


@pytest.fixture
def d(tmp_path: Path) -> config.Deployment:
    return demo(tmp_path)


def lab(audience: str, kind: str = "group", owner: str = "cn-scientist", server: str = "") -> ShareRequest:
    return ShareRequest(owner, server, kind, audience, actor=owner)


def test_a_lab_goes_to_the_owners_team_only(d) -> None:
    assert lab_shares.refusal(d, lab("reviewers")) == (
        "cn-scientist's lab may not be shared with group 'reviewers': its owner reads cn-only data on site cn, "
        "which reviewers may not read")
    assert lab_shares.refusal(d, lab("ru-science")) == (
        "cn-scientist's lab may not be shared with group 'ru-science': its owner reads cn-only data on site cn, "
        "which ru-science may not read")
    assert lab_shares.refusal(d, lab("cn-science")) is None
    # A named lab server runs code as its owner just the same.
    why = lab_shares.refusal(d, lab("ru-science", server="analysis"))
    assert why and why.startswith("cn-scientist's lab server 'analysis' may not be shared with group 'ru-science'")
    # Students read open data only: whatever a scientist reads beyond it is named, site by site.
    why = lab_shares.refusal(d, lab("students", owner="ru-scientist"))
    assert why and "its owner reads partners data on sites cn and ru, ru-only data on site ru, which students" in why


def test_users_are_judged_by_everything_they_read(d) -> None:
    assert "which reviewer may not read" in (lab_shares.refusal(d, lab("reviewer", "user")) or "")
    assert "which ru-scientist may not read" in (lab_shares.refusal(d, lab("ru-scientist", "user")) or "")
    assert lab_shares.refusal(d, lab("cn-scientist", "user")) is None  # the owner
    assert "'nobody' is not a user of the deployment" in (lab_shares.refusal(d, lab("nobody", "user")) or "")
    assert "'hackers' is not a group of the deployment" in (lab_shares.refusal(d, lab("hackers")) or "")
    assert "ghost is not a user of the deployment" in (lab_shares.refusal(d, lab("cn-science", owner="ghost")) or "")


def test_no_share_code_for_a_lab(d) -> None:
    why = lab_shares.refusal(d, ShareRequest("cn-scientist", "", "code", ""))
    assert why and "may not be shared with a share code" in why and "run code as cn-scientist" in why
    # A dashboard's code is checked when someone accepts it (as a share with that user).
    assert lab_shares.refusal(d, ShareRequest("cn-scientist", "dash-traverse", "code", "")) is None


def test_dashboards_follow_their_lineage(d, monkeypatch: pytest.MonkeyPatch) -> None:
    from lunarhub.dashboards import lineage

    lineages = {"open-map": {"cn": {"open"}}, "traverse": {"cn": {"cn-only", "open"}}}
    monkeypatch.setattr(lineage, "needed_policies", lambda d, owner, slug: lineages.get(slug))
    assert lab_shares.refusal(d, lab("reviewers", server="dash-open-map")) is None
    assert lab_shares.refusal(d, lab("reviewers", server="dash-traverse")) == (
        "cn-scientist's dashboard 'traverse' may not be shared with group 'reviewers': it shows cn-only data "
        "on site cn, which reviewers may not read")
    assert lab_shares.refusal(d, lab("cn-science", server="dash-traverse")) is None
    why = lab_shares.refusal(d, lab("reviewers", server="dash-gone"))
    assert why and "not a published dashboard of cn-scientist" in why
    assert "not a published dashboard" in (lab_shares.refusal(d, lab("reviewers", server="dash-Bad/../x")) or "")


def test_the_real_lineage_module_refuses_an_unknown_dashboard(d) -> None:
    # No store entry: None from lunarhub.dashboards.lineage, so the share is refused.
    assert lab_shares.needed(d, "cn-scientist", "dash-never-published") is None


def test_an_ended_embargo_narrows_what_the_audience_lacks(tmp_path: Path) -> None:
    before = lab_shares.refusal(demo(tmp_path / "now", embargo={"cn": "2999-01-01"}), lab("ru-science"))
    assert before and "cn-only data on site cn" in before
    # cn's embargo over: its cn-only data opened to partners, so ru-science reads all that
    # cn-scientist reads (national data sits at its own country's site): the share becomes possible.
    after = lab_shares.refusal(demo(tmp_path / "over", embargo={"cn": "2000-01-01"}), lab("ru-science"))
    assert after is None


def test_the_policy_reads_the_roster_of_the_moment(d) -> None:
    policy = lab_shares.SharePolicy(d)
    req = lab("cn-colleague", "user")
    assert "not a user of the deployment" in (policy.refusal(req) or "")
    roster.set_user(d, "cn-colleague", ["cn-science"])
    assert policy.refusal(req) is None
    roster.set_user(d, "cn-colleague", ["reviewers"])
    assert "which cn-colleague may not read" in (policy.refusal(req) or "")


def test_a_broken_deployment_file_refuses_every_share(d) -> None:
    policy = lab_shares.SharePolicy(d)
    assert d.config_file is not None
    d.config_file.write_text(d.config_file.read_text() + "\nnot_a_key: 1\n")
    why = policy.refusal(lab("cn-science"))
    assert why and "the deployment file does not validate" in why and "not_a_key" in why


# ---------------------------------------------------------------- the hooks, on an in-memory hub db


@pytest.fixture
def hooked(d, monkeypatch: pytest.MonkeyPatch):
    """apply() on this process, undone after the test (monkeypatch restores every target)."""
    for module, cls, attr in hooks.TARGETS:
        owner = getattr(importlib.import_module(module), cls)
        monkeypatch.setattr(owner, attr, owner.__dict__[attr])
    from jupyterhub import orm

    db = orm.new_session_factory("sqlite://")()
    users = {n: orm.User(name=n) for n in ("cn-scientist", "cn-colleague", "reviewer")}
    db.add_all(users.values())
    groups = {n: orm.Group(name=n) for n in ("reviewers", "cn-science", "ru-science")}
    db.add_all(groups.values())
    db.commit()
    spawners = {n: orm.Spawner(user=users["cn-scientist"], name=n) for n in ("", "dash-open-map")}
    db.add_all(spawners.values())
    db.commit()
    roster.set_user(d, "cn-colleague", ["cn-science"])
    policy = lab_shares.install(d)
    yield SimpleNamespace(db=db, users=users, groups=groups, spawners=spawners, policy=policy, d=d)
    db.close()


def events(d, event: str | None = None) -> list[dict]:
    return [e for e in audit.read(d, ["hub"]) if event is None or e["event"] == event]


def test_grant_refuses_and_records(hooked) -> None:
    from jupyterhub import orm
    from tornado import web

    h = hooked
    with pytest.raises(web.HTTPError) as info:
        orm.Share.grant(h.db, h.spawners[""], h.groups["reviewers"])
    assert info.value.status_code == 403
    assert info.value.log_message == (
        "cn-scientist's lab may not be shared with group 'reviewers': its owner reads cn-only data on site cn, "
        "which reviewers may not read")
    assert h.db.query(orm.Share).count() == 0
    share = orm.Share.grant(h.db, h.spawners[""], h.users["cn-colleague"])
    assert share.user.name == "cn-colleague"
    refused, created = events(h.d, "share-refused"), events(h.d, "share-created")
    assert [(e["owner"], e["server"], e["audience"]) for e in refused] == [("cn-scientist", "", "group:reviewers")]
    assert "cn-only data on site cn" in refused[0]["reason"]
    assert [e["audience"] for e in created] == ["user:cn-colleague"]
    orm.Share.revoke(h.db, h.spawners[""], h.users["cn-colleague"])
    assert [e["audience"] for e in events(h.d, "share-revoked")] == ["user:cn-colleague"]


def test_share_codes_for_labs_are_refused_and_accepting_one_is_checked(hooked, monkeypatch) -> None:
    from jupyterhub import orm
    from tornado import web

    from lunarhub.dashboards import lineage

    h = hooked
    with pytest.raises(web.HTTPError, match="may not be shared with a share code"):
        orm.ShareCode.new(h.db, h.spawners[""], scopes=["access:servers!server=cn-scientist/"])
    assert h.db.query(orm.ShareCode).count() == 0
    monkeypatch.setattr(lineage, "needed_policies", lambda d, owner, slug: {"cn": {"cn-only"}})
    code, _ = orm.ShareCode.new(h.db, h.spawners["dash-open-map"],
                                scopes=["access:servers!server=cn-scientist/dash-open-map"])
    # Accepting is a share with the accepting user, so the lineage decides who may.
    with pytest.raises(web.HTTPError, match="which reviewer may not read"):
        code.exchange(h.users["reviewer"])
    assert code.exchange(h.users["cn-colleague"]).user.name == "cn-colleague"


def test_shares_no_longer_allowed_are_revoked_at_start(hooked) -> None:
    from jupyterhub import orm

    h = hooked
    orm.Share.grant(h.db, h.spawners[""], h.users["cn-colleague"])
    orm.Share.grant(h.db, h.spawners[""], h.groups["cn-science"])
    roster.set_user(h.d, "cn-colleague", ["reviewers"])  # the deployment changed; then the hub restarts
    gone = hooks.revoke_disallowed(h.db, h.policy.refusal, h.policy.record)
    assert [(r.kind, r.audience) for r, _ in gone] == [("user", "cn-colleague")]
    assert [s.group.name for s in h.db.query(orm.Share)] == ["cn-science"]
    revoked = events(h.d, "share-revoked")
    assert [(e["actor"], e["audience"]) for e in revoked] == [("hub", "user:cn-colleague")]
    assert "which cn-colleague may not read" in revoked[0]["reason"]


def test_apply_twice_hooks_once(hooked) -> None:
    from jupyterhub import orm

    grant = orm.Share.grant
    lab_shares.install(hooked.d)
    assert orm.Share.grant == grant


def test_handlers_tell_who_asks_and_deletions_are_recorded() -> None:
    import asyncio

    seen, recorded = [], []

    class Handler:
        current_user = SimpleNamespace(name="cn-scientist")

        def delete(self, owner: str, server: str):  # as needs_scope leaves it: a coroutine returned
            async def run() -> None:
                seen.append(hooks.ACTOR.get())
            return run()

    doomed = [ShareRequest("cn-scientist", "", "group", "cn-science")]
    wrapped = hooks._as_actor(Handler.delete, lambda self, *args: doomed,
                              lambda event, req, reason: recorded.append((event, req.audience)))
    asyncio.run(wrapped(Handler(), "cn-scientist", ""))
    assert seen == ["cn-scientist"] and recorded == [("share-revoked", "cn-science")]
    assert hooks.ACTOR.get() == ""  # reset after the request
