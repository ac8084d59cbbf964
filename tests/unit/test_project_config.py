"""Joint projects in the deployment model: validation with key paths, the project's data (the
intersection of its members' entitlements plus grants), its site secret, roles and home-page links."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from lunarhub import config
from lunarhub.config import ConfigError, roster
from lunarhub.data import entitlement, sites
from lunarhub.platform import projects
from lunarhub.platform.hub import spawning

ROOT = Path(__file__).resolve().parents[2]
DEMO = (ROOT / "hub" / "lunarhub.yaml").read_text()
HUB_USER = "project-luna26-landing"


def demo(tmp_path: Path | None = None, **project: Any) -> dict[str, Any]:
    data = yaml.safe_load(DEMO)
    data["hub"]["isolation"] = "single-account"  # no look at this host's accounts
    if tmp_path is not None:
        data["state_dir"] = str(tmp_path / "state")
    if project:
        data["projects"]["luna26-landing"].update(project)
    return data


def parse(data: dict[str, Any]) -> config.Deployment:
    return config.parse(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), source="test.yaml",
                        base_dir=ROOT / "hub")


def problems(data: dict[str, Any]) -> list[config.Problem]:
    with pytest.raises(ConfigError) as info:
        parse(data)
    return info.value.details


def test_the_demo_project_is_valid_and_is_a_hub_user_of_its_own() -> None:
    d = parse(demo())
    assert d.project_of(HUB_USER) == "luna26-landing"
    assert d.project_of("ru-scientist") is None and d.project_of("project-nothing") is None
    assert d.project_members("luna26-landing") == ["cn-scientist", "ru-scientist"]
    assert config.project_account("luna26-landing") == "lh-project-luna26-landing"


def test_an_undefined_member_is_named_with_its_key_path_and_line() -> None:
    data = demo(members=["ru-scientist", "cn-scientsit"])
    (p,) = problems(data)
    assert p.key == "projects.luna26-landing.members.1"
    assert "'cn-scientsit' is neither a user nor a group" in p.reason
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    assert p.line == next(i for i, ln in enumerate(text.splitlines(), 1) if "cn-scientsit" in ln)


def test_an_undefined_group_member_is_refused() -> None:
    (p,) = problems(demo(members=["ru-science", "cn-sceince"]))
    assert p.key == "projects.luna26-landing.members.1" and "'cn-sceince'" in p.reason


def test_reviewers_cannot_be_members_of_a_server_that_runs_code() -> None:
    (p,) = problems(demo(members=["ru-scientist", "reviewers"]))
    assert p.key == "projects.luna26-landing.members.1" and "reviewer role" in p.reason
    (p,) = problems(demo(members=["ru-scientist", "reviewer"]))
    assert "only a reviewer" in p.reason


def test_a_project_whose_name_or_hub_user_clashes_with_a_user_is_refused() -> None:
    data = demo()
    data["users"][HUB_USER] = {"groups": ["ru-science"]}
    (p,) = problems(data)
    assert p.key == "projects.luna26-landing" and f"clashes with user {HUB_USER!r}" in p.reason
    data = demo()
    data["projects"]["student"] = {"members": ["ru-scientist"]}
    (p,) = problems(data)
    assert p.key == "projects.student" and "clashes with user 'student'" in p.reason


def test_a_grant_no_member_may_have_is_refused_naming_the_grant() -> None:
    (p,) = problems(demo(grants=["partners", "cn-only"], members=["ru-scientist", "instructor"]))
    assert p.key == "projects.luna26-landing.grants.1"
    assert "no member of project 'luna26-landing' may read 'cn-only'" in p.reason
    # A member who has it: allowed (the operator's explicit choice).
    assert parse(demo(grants=["ru-only"])).projects["luna26-landing"].grants == ["ru-only"]


def test_a_name_too_long_for_the_account_is_refused() -> None:
    data = demo()
    data["projects"]["a" * 22] = {"members": ["ru-scientist"]}
    (p,) = problems(data)
    assert p.key == "projects" and "at most 21 characters" in p.reason


def test_a_member_listed_twice_is_refused() -> None:
    (p,) = problems(demo(members=["ru-scientist", "ru-scientist"]))
    assert p.key.startswith("projects.luna26-landing.members") and "listed twice" in p.reason


def test_the_demo_project_reads_open_and_partners_only_on_both_sites() -> None:
    d = parse(demo())
    for site in ("ru", "cn"):
        assert entitlement.user_policies(d, HUB_USER, site) == {"open", "partners"}
    assert entitlement.user_policies(d, "ru-scientist", "ru") >= {"ru-only"}  # members keep theirs


def test_groups_as_members_count_with_what_the_group_alone_gives() -> None:
    d = parse(demo(members=["ru-science", "cn-science"]))
    assert entitlement.user_policies(d, HUB_USER, "ru") == {"open", "partners"}
    d = parse(demo(members=["ru-science", "students"]))
    assert entitlement.user_policies(d, HUB_USER, "ru") == {"open"}


def test_grants_add_to_the_intersection() -> None:
    d = parse(demo(members=["ru-scientist", "student"], grants=["partners"]))
    assert entitlement.user_policies(d, HUB_USER, "cn") == {"open", "partners"}
    d = parse(demo(members=["ru-scientist", "student"]))
    assert entitlement.user_policies(d, HUB_USER, "cn") == {"open"}


def test_an_ended_embargo_adds_the_home_data_only_if_every_member_would_get_it() -> None:
    data = demo()
    data["sites"]["cn"]["embargo_until"] = "2026-01-01"
    d = parse(data)
    before, after = date(2025, 12, 31), date(2026, 1, 1)
    assert entitlement.project_policies(d, "luna26-landing", "cn", before) == {"open", "partners"}
    assert entitlement.project_policies(d, "luna26-landing", "cn", after) == {"open", "partners", "cn-only"}
    # The ru site's embargo has not ended: ru-only stays out.
    assert "ru-only" not in entitlement.project_policies(d, "luna26-landing", "ru", after)
    # A member without partners (a student) never gets cn-only, so neither does the project,
    # even with partners granted to it explicitly.
    data["projects"]["luna26-landing"].update(members=["cn-scientist", "student"], grants=["partners"])
    d = parse(data)
    assert entitlement.project_policies(d, "luna26-landing", "cn", after) == {"open", "partners"}


def test_each_project_is_a_principal_with_its_own_site_secret(tmp_path: Path) -> None:
    d = parse(demo(tmp_path))
    assert HUB_USER in entitlement.principals(d)
    assert set(d.users) < set(entitlement.principals(d))
    passwords = sites.site_passwords(d, "ru")
    assert passwords[HUB_USER] and passwords[HUB_USER] not in {passwords[u] for u in d.users}
    env = sites.credentials_for(d, HUB_USER)
    assert env["LUNARHUB_SITE_RU_USER"] == env["LUNARHUB_SITE_CN_USER"] == HUB_USER
    assert env["LUNARHUB_SITE_RU_PASSWORD"] == passwords[HUB_USER]
    assert env["LUNARHUB_SITE_RU_POLICIES"] == env["LUNARHUB_SITE_CN_POLICIES"] == "open,partners"
    # A project removed from the file loses its secret.
    data = demo(tmp_path)
    del data["projects"]
    assert HUB_USER not in sites.site_passwords(parse(data), "ru")


def test_roles_give_members_the_project_server_and_nothing_else() -> None:
    d = parse(demo(members=["ru-scientist", "cn-science"]))
    by_name = {r["name"]: r for r in projects.roles(d)}
    member = by_name["project-member-luna26-landing"]
    assert member["users"] == ["ru-scientist"] and member["groups"] == ["cn-science"]
    assert all(s.endswith(f"!user={HUB_USER}") for s in member["scopes"])
    assert f"access:servers!user={HUB_USER}" in member["scopes"]
    assert by_name[projects.ACCOUNT_ROLE]["users"] == [HUB_USER]
    data = demo()
    del data["projects"]
    assert projects.roles(parse(data)) == []


def test_a_removed_member_drops_out_of_the_role_jupyterhub_loads() -> None:
    d = parse(demo(members=["ru-scientist"]))
    (member,) = [r for r in projects.roles(d) if r["name"].startswith("project-member-")]
    # Both kinds always listed: JupyterHub keeps a role's old bearers of a kind left out.
    assert member["users"] == ["ru-scientist"] and member["groups"] == []


def test_home_page_links_follow_membership_in_the_users_language() -> None:
    d = parse(demo(members=["ru-scientist", "cn-science"]))
    links = projects.links_for(d)

    def user(name: str, *groups: str) -> SimpleNamespace:
        return SimpleNamespace(name=name, groups=[SimpleNamespace(name=g) for g in groups])

    (link,) = links(user("ru-scientist", "ru-science"))
    assert link["hub_user"] == HUB_USER and link["description"]["ru"].startswith("Выбор места посадки")
    assert link["description"]["zh"].startswith("月球-26")
    assert links(user("cn-new", "cn-science"))  # a group member, added after the file was read
    assert links(user("student", "students")) == [] and links(None) == []
    assert links == projects.links_for(parse(demo(members=["ru-scientist", "cn-science"])))


def test_the_project_server_gets_the_largest_profile_of_its_members() -> None:
    d = parse(demo())
    assert spawning._user_profile(d, HUB_USER) == "science"


def test_removing_a_project_member_from_the_roster_says_where_to_change_it(tmp_path: Path) -> None:
    d = parse(demo(tmp_path))
    with pytest.raises(KeyError, match="member of project"):
        roster.remove_user(d, "cn-scientist")
    assert "cn-scientist" in roster.effective(d).users


def test_a_roster_user_named_like_a_project_is_refused(tmp_path: Path) -> None:
    d = parse(demo(tmp_path))
    with pytest.raises(Exception, match="clashes with user"):
        roster.set_user(d, HUB_USER, ["ru-science"])


def test_a_project_kernels_socket_paths_fit_a_unix_socket_name() -> None:
    from lunarhub.platform import accounts

    # jupyter_client names ipc sockets <runtime>/kernel-<uuid>-ipc-<n>; sun_path holds 107 bytes.
    longest = accounts.PROJECT_RUNTIME_ROOT / "4294967294" / f"kernel-{'x' * 36}-ipc-5"
    assert len(str(longest)) <= 107
