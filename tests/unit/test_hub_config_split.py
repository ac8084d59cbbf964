"""hub.configure is the sum of one small step per concern, each writing only its own settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from traitlets.config import Config

from lunarhub import config
from lunarhub.platform import hub, projects

ROOT = Path(__file__).resolve().parents[2]

# Which JupyterHub settings (section, key) each step may write: a step that starts writing
# another concern's settings is a step in the wrong module.
OWNS = {
    hub.configure_network: {("JupyterHub", k) for k in (
        "ip", "port", "hub_ip", "hub_port", "db_url", "cookie_secret_file", "pid_file", "cleanup_servers",
        "cleanup_proxy", "allow_named_servers", "named_server_limit_per_user", "subdomain_host",
        "subdomain_hook", "ssl_cert", "ssl_key")},
    hub.configure_pages: {("JupyterHub", k) for k in ("default_url", "template_paths", "template_vars",
                                                      "jinja_environment_options")},
    hub.configure_proxy: {("ConfigurableHTTPProxy", k) for k in ("command", "api_url", "auth_token", "pid_file")},
    hub.configure_authentication: {("JupyterHub", "authenticator_class"), ("Authenticator", "allowed_users"),
                                   ("Authenticator", "admin_users"),
                                   ("LunarPasswordAuthenticator", "deployment_file")},
    hub.configure_rbac: {("JupyterHub", "load_groups"), ("JupyterHub", "load_roles")},
    projects.configure_projects: {("JupyterHub", "load_roles")},
    hub.configure_services: {("JupyterHub", "services"), ("JupyterHub", "load_roles"),
                             ("JupyterHub", "custom_scopes")},  # the operators' dashboard's scope
    hub.configure_spawner: {("JupyterHub", "spawner_class"), ("LunarSingleAccountSpawner", "home_dir_template"),
                            ("LunarSingleAccountSpawner", "log_dir")}
    | {("Spawner", k) for k in ("cmd", "default_url", "start_timeout", "http_timeout", "args", "pre_spawn_hook")},
}


@pytest.fixture
def deployment(tmp_path: Path) -> config.Deployment:
    data = yaml.safe_load((ROOT / "hub" / "lunarhub.yaml").read_text())
    data["state_dir"] = str(tmp_path / "state")
    data["hub"]["isolation"] = "single-account"
    data["tls"] = {"mode": "self-signed"}  # the proxy's certificate settings are configure_network's
    return config.parse(yaml.safe_dump(data), source="test.yaml", base_dir=ROOT / "hub")


def written(c: Config) -> set[tuple[str, str]]:
    return {(section, key) for section, values in c.items() for key in values}


@pytest.mark.parametrize("step", list(OWNS), ids=lambda f: f.__name__)
def test_each_step_writes_only_its_own_settings(step, deployment) -> None:
    c = Config()
    if step is hub.configure_services:
        hub.configure_rbac(c, deployment)  # it adds to the roles configure_rbac set
    step(c, deployment)
    extra = written(c) - OWNS[step] - (OWNS[hub.configure_rbac] if step is hub.configure_services else set())
    assert not extra, f"{step.__name__} also writes {sorted(extra)}"


def test_configure_is_the_steps_in_order(deployment) -> None:
    whole, parts = Config(), Config()
    hub.configure(whole, deployment)
    for step in OWNS:
        step(parts, deployment)
    assert written(whole) == written(parts) == set().union(*OWNS.values())
    for section, key in written(whole):
        a, b = whole[section][key], parts[section][key]
        assert callable(a) == callable(b) and (callable(a) or a == b), (section, key)


def test_services_roles_follow_the_users_roles(deployment) -> None:
    c = Config()
    hub.configure(c, deployment)
    _, service_roles = hub.services(deployment)
    assert c.JupyterHub.load_roles == hub.roles(deployment) + projects.roles(deployment) + service_roles
    assert c.JupyterHub.load_groups == hub.load_groups(deployment)


def test_names_callers_use_are_still_on_the_package() -> None:
    for name in ("configure", "roles", "services", "spawn_environment", "hub_state", "load_groups",
                 "proxy_command", "LAB_ROLES", "CLI_SERVICE", "VENV_BIN"):
        assert hasattr(hub, name), name
