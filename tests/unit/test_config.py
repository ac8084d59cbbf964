"""The deployment model: every bad value is refused with its key path (and line)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lunarhub import config
from lunarhub.config import ConfigError, Role, roster
from lunarhub.platform import hub

ROOT = Path(__file__).resolve().parents[2]
DEMO = (ROOT / "hub" / "lunarhub.yaml").read_text()


def parse(text: str) -> config.Deployment:
    return config.parse(text, source="test.yaml", base_dir=ROOT / "hub")


def demo_dict() -> dict:
    return yaml.safe_load(DEMO)


def problems_of(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value.problems


def test_demo_deployment_is_valid_and_complete():
    d = config.load(ROOT / "hub" / "lunarhub.yaml")
    assert set(d.users) == {"ru-scientist", "cn-scientist", "reviewer", "instructor", "student", "admin"}
    assert d.user_roles("reviewer") == {Role.reviewer}
    assert d.members("ru-science") == ["ru-scientist"]
    assert {i.country for i in d.institutions.values()} == {"RU", "CN"}
    assert d.config_file == (ROOT / "hub" / "lunarhub.yaml").resolve()
    assert d.state_path == (ROOT / ".state").resolve()


def test_malformed_yaml_names_the_line():
    text = DEMO.replace("  port: 8000", "  port: [8000")
    (where, why), = problems_of(text)
    assert where.startswith("line ")
    assert "malformed YAML" in why


def test_unknown_key_names_path_and_line():
    text = DEMO.replace("  port: 8000", "  port: 8000\n  prot: 1")
    (where, why), = problems_of(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if ln.strip().startswith("prot:"))
    assert where == f"hub.prot (line {line})"
    assert why == "unknown key"


def test_wrong_type_is_refused():
    text = DEMO.replace("  port: 8000", "  port: eight-thousand")
    (where, why), = problems_of(text)
    assert where.startswith("hub.port")
    assert "integer" in why


def test_user_in_undefined_group():
    text = DEMO.replace("student: {groups: [students]", "student: {groups: [studnets]")
    (where, why), = problems_of(text)
    assert where.startswith("users.student.groups")
    assert "studnets" in why


def test_duplicate_user_is_refused():
    text = DEMO.replace("  admin: {groups: [admins]", "  student: {groups: [students]}\n  admin: {groups: [admins]")
    (where, why), = problems_of(text)
    assert "duplicate key 'student'" in why
    assert where.startswith("line ")


@pytest.mark.parametrize("name", ["Bad.Name", "1abc", "with space", "../etc", "x" * 40, "Ivan"])
def test_invalid_user_names(name):
    data = demo_dict()
    data["users"][name] = {"groups": ["students"]}
    errs = problems_of(yaml.safe_dump(data))
    assert any(w.startswith("users") and "invalid name" in why for w, why in errs), errs


def test_port_clash_names_both_keys():
    data = demo_dict()
    data["sites"]["cn"]["port"] = data["hub"]["port"]
    errs = problems_of(yaml.safe_dump(data))
    assert any(w.startswith("sites.cn.port") and "hub.port" in why for w, why in errs), errs


def test_unknown_share_target_and_institution():
    data = demo_dict()
    data["groups"]["ru-science"]["share_with"].append("everyone")
    data["groups"]["cn-science"]["institution"] = "cnsa"
    errs = dict(problems_of(yaml.safe_dump(data)))
    keys = " ".join(errs)
    assert "groups.ru-science.share_with" in keys and "groups.cn-science.institution" in keys


def test_oauth_needs_its_section():
    data = demo_dict()
    data["auth"] = {"kind": "oauth"}
    errs = problems_of(yaml.safe_dump(data))
    assert any("oauth" in why for _, why in errs)


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path / "nope.yaml")
    assert "not found" in str(info.value)


def test_roles_follow_groups():
    d = parse(DEMO)
    roles = {r["name"]: r for r in hub.roles(d)}
    # Reviewers have no lab: the user role cannot spawn, lab-user (with 'self') excludes them.
    assert "self" not in roles["user"]["scopes"]
    assert "reviewers" not in roles["lab-user"]["groups"]
    assert {"ru-science", "cn-science", "students", "instructors", "admins"} <= set(roles["lab-user"]["groups"])
    share = roles["share-ru-science"]["scopes"]
    assert "read:groups:name!group=cn-science" in share
    assert not any("students" in s for s in share)
    teach = roles["teach-instructors"]["scopes"]
    assert "access:servers!group=students" in teach and "access:servers!user=student" in teach
    assert roles["admin"]["groups"] == ["admins"]


def test_services_include_culler_with_configured_timeout():
    data = demo_dict()
    data["services"]["idle_culler"]["timeout_seconds"] = 900
    d = parse(yaml.safe_dump(data))
    svcs, _ = hub.services(d)
    culler = next(s for s in svcs if s["name"] == "idle-culler")
    assert "--timeout=900" in culler["command"]


def test_roster_csv_checks_every_row_before_applying(tmp_path):
    d = parse(DEMO)
    text = "username,groups\nanna,students\nanna,students\nBad Name,students\nboris,wizards\n"
    with pytest.raises(ConfigError) as info:
        roster.parse_roster(text, "roster.csv", d)
    msgs = [f"{w}: {m}" for w, m in info.value.problems]
    assert any("line 3" in m and "duplicate user 'anna'" in m for m in msgs), msgs
    assert any("line 4" in m and "invalid user name" in m for m in msgs), msgs
    assert any("line 5" in m and "unknown group 'wizards'" in m for m in msgs), msgs


def test_roster_overlay_add_and_remove(tmp_path):
    data = demo_dict()
    data["state_dir"] = str(tmp_path / "state")
    d = parse(yaml.safe_dump(data))
    d2 = roster.set_user(d, "anna", ["students"])
    assert "anna" in d2.users and "anna" in roster.effective(d).users
    d3 = roster.remove_user(d, "student")
    assert "student" not in d3.users and "student" not in roster.effective(d).users
    with pytest.raises(ValueError, match="unknown group"):
        roster.set_user(d, "boris", ["wizards"])
    assert "boris" not in roster.effective(d).users


def _configured(tmp_path, auth: dict):
    from traitlets.config import Config

    data = demo_dict()
    data["state_dir"] = str(tmp_path / "state")
    data["hub"]["isolation"] = "single-account"
    data["auth"] = auth
    secret = tmp_path / "oauth-secret"
    secret.write_text("s3cret\n")
    d = parse(yaml.safe_dump(data))
    c = Config()
    hub.configure(c, d)
    return c


def test_oauth_switch_configures_the_real_authenticator(tmp_path):
    from oauthenticator.generic import GenericOAuthenticator

    c = _configured(tmp_path, {"kind": "oauth", "oauth": {
        "client_id": "lunarhub", "client_secret_file": str(tmp_path / "oauth-secret"),
        "authorize_url": "https://sso.iki.example/auth", "token_url": "https://sso.iki.example/token",
        "userdata_url": "https://sso.iki.example/userinfo"}})
    assert c.JupyterHub.authenticator_class == "generic-oauth"
    auth = GenericOAuthenticator(config=c)
    assert auth.client_secret == "s3cret"
    assert auth.token_url == "https://sso.iki.example/token"
    assert "ru-scientist" in auth.allowed_users


def test_ldap_switch_configures_the_real_authenticator(tmp_path):
    from ldapauthenticator import LDAPAuthenticator

    c = _configured(tmp_path, {"kind": "ldap", "ldap": {
        "server_address": "ldap.naoc.example", "bind_dn_template": ["uid={username},dc=naoc"]}})
    auth = LDAPAuthenticator(config=c)
    assert auth.server_address == "ldap.naoc.example"
    assert auth.bind_dn_template == ["uid={username},dc=naoc"]


def test_policies_from_roles_and_course_grants():
    from lunarhub.data import sites

    data = demo_dict()
    d = parse(yaml.safe_dump(data))
    assert sites.entitled_policies(d, "student", "ru") == {"open"}
    assert sites.entitled_policies(d, "reviewer", "cn") == {"open", "partners"}
    assert sites.entitled_policies(d, "ru-scientist", "ru") == {"open", "partners", "ru-only"}
    assert "cn-only" not in sites.entitled_policies(d, "ru-scientist", "cn")
    # A course may be granted more than `open` in the deployment file...
    data["groups"]["students"]["grants"] = ["partners"]
    d = parse(yaml.safe_dump(data))
    assert sites.entitled_policies(d, "student", "cn") == {"open", "partners"}
    # ...but only known policies.
    data["groups"]["students"]["grants"] = ["everything"]
    errs = problems_of(yaml.safe_dump(data))
    assert any(w.startswith("groups.students.grants") for w, _ in errs), errs


def test_ready_sessions_is_bounded_and_reaches_the_dashboard_command():
    data = demo_dict()
    data["services"]["dashboards"]["ready_sessions"] = -1
    keys = [k for k, _ in problems_of(yaml.safe_dump(data))]
    assert any(k.startswith("services.dashboards.ready_sessions") for k in keys), keys
    data["services"]["dashboards"]["ready_sessions"] = 7
    d = parse(yaml.safe_dump(data))
    from lunarhub.dashboards.gallery.servers import dashboard_command

    _, args = dashboard_command(d, [Path("/x/apps/v1.py")])
    i = args.index("lunarhub.dashboards.server.serve")
    assert args[i + 1] == "7" and args[i + 2] == "/x/apps/v1.py"
