"""Dashboards published from a joint project server (issue 13): who the project may share with,
how the gallery names it as author, the hub role its publishing token gets, and that its lab is
never shareable. The real stack is tried in tests/integration/test_projects.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lunarhub import config
from lunarhub.dashboards import lineage
from lunarhub.dashboards.gallery import pages, policy
from lunarhub.platform import projects
from lunarhub.platform.hub import lab_shares
from lunarhub.upstream.jupyterhub_share_policy import ShareRequest

ROOT = Path(__file__).resolve().parents[2]
HUB_USER = "project-luna26-landing"
PARTNERS = [{"site": "ru", "entry": "manzinus_dem", "path": "partners/polar/manzinus_sps.tif",
             "policy": "partners"}]


def deployment(edit: Any = None) -> config.Deployment:
    data = yaml.safe_load((ROOT / "hub" / "lunarhub.yaml").read_text())
    data["hub"]["isolation"] = "single-account"
    if edit:
        edit(data)
    return config.parse(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), source="test.yaml",
                        base_dir=ROOT / "hub")


def test_a_project_shares_with_what_every_members_groups_allow() -> None:
    d = deployment()
    assert sorted(policy.allowed_groups(d, HUB_USER)) == ["cn-science", "reviewers", "ru-science"]
    policy.check_share(d, HUB_USER, ["reviewers", "ru-science"], ["cn-scientist"])
    with pytest.raises(policy.ShareRefused, match="may not share with group 'students'.*project 'luna26-landing'"):
        policy.check_share(d, HUB_USER, ["students"], [])

    def narrow(data: dict[str, Any]) -> None:
        data["groups"]["cn-science"]["share_with"] = ["cn-science", "ru-science"]

    # One member's groups no longer allow reviewers: the project may not either.
    d = deployment(narrow)
    assert "reviewers" not in policy.allowed_groups(d, HUB_USER)
    with pytest.raises(policy.ShareRefused, match="'reviewers'.*cn-science, ru-science"):
        policy.check_share(d, HUB_USER, ["reviewers"], [])
    with pytest.raises(policy.ShareRefused, match="user 'reviewer'"):
        policy.check_share(d, HUB_USER, [], ["reviewer"])


def test_a_project_with_group_members_counts_each_groups_own_share_with() -> None:
    def groups(data: dict[str, Any]) -> None:
        data["projects"]["luna26-landing"]["members"] = ["ru-science", "cn-science"]

    d = deployment(groups)
    assert policy.allowed_groups(d, HUB_USER)["reviewers"] == ["cn-science", "ru-science"]


def test_the_lineage_rule_applies_to_a_projects_audience_as_to_a_users() -> None:
    d = deployment()
    lineage.check_audience(d, PARTNERS, ["reviewers", "cn-science"], [])
    with pytest.raises(lineage.LineageRefused, match="group 'students' may not see dataset 'manzinus_dem' "
                                                     r"\(site ru, policy partners\)"):
        lineage.check_audience(d, PARTNERS, ["students"], [])


def test_the_gallery_names_the_project_as_author_in_each_language() -> None:
    d = deployment()
    assert pages.author(d, HUB_USER, "en").startswith("Project luna26-landing — Luna-26")
    assert pages.author(d, HUB_USER, "ru").startswith("Проект luna26-landing — Выбор места посадки")
    assert pages.author(d, HUB_USER, "zh").startswith("项目 luna26-landing — 月球-26")
    assert pages.author(d, "cn-scientist", "ru") == "Demo NAOC scientist (cn-scientist)"
    # Both members' institutes; a user keeps their own.
    both = pages.institute(d, HUB_USER, "en").split(" · ")
    assert len(both) == 2 and pages.institute(d, "ru-scientist", "en") in both
    assert pages.institute(d, "cn-scientist", "en") in both


def test_the_projects_publishing_role_names_only_its_share_targets() -> None:
    d = deployment()
    role = {r["name"]: r for r in projects.roles(d)}["project-publisher-luna26-landing"]
    assert role["users"] == [HUB_USER]
    assert {"servers!user", "shares!user", "read:shares!user"} <= set(role["scopes"])
    named = {s.split("=", 1)[1] for s in role["scopes"] if s.startswith("read:groups:name!group=")}
    assert named == {"ru-science", "cn-science", "reviewers"}
    # Nothing on other users: every scope is the project's own or a target group's name.
    assert all(s.endswith("!user") or "!group=" in s for s in role["scopes"])


def test_the_project_lab_is_never_shareable_whatever_the_audience_may_read() -> None:
    d = deployment()
    for audience in (("group", "cn-science"), ("user", "ru-scientist"), ("group", "reviewers")):
        why = lab_shares.refusal(d, ShareRequest(owner=HUB_USER, server="", kind=audience[0],
                                                 audience=audience[1], actor=HUB_USER))
        assert why and "projects.luna26-landing.members" in why, (audience, why)


def test_lunarhub_config_counts_the_joint_projects(capsys: pytest.CaptureFixture[str]) -> None:
    from lunarhub import cli

    assert cli.main(["config"]) == 0
    assert "valid (6 users, 6 groups, 1 joint project, ports" in capsys.readouterr().out
