"""One origin per user (hub.subdomain_host): the default, the URLs built from it, and bad values
refused with their key before anything starts."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from traitlets.config import Config

from lunarhub import config
from lunarhub.config import ConfigError
from lunarhub.platform import hub, preflight

ROOT = Path(__file__).resolve().parents[2]


def deployment(tmp_path: Path, **hub_settings: Any) -> config.Deployment:
    data = yaml.safe_load((ROOT / "hub" / "lunarhub.yaml").read_text())
    data["state_dir"] = str(tmp_path / "state")
    data["hub"]["isolation"] = "single-account"
    data["hub"].update(hub_settings)
    return config.parse(yaml.safe_dump(data), source="test.yaml", base_dir=ROOT / "hub")


def refused(tmp_path: Path, **hub_settings: Any) -> str:
    with pytest.raises(ConfigError) as info:
        deployment(tmp_path, **hub_settings)
    keys = [key for key, _ in info.value.problems]
    assert keys and all(k.startswith("hub.subdomain_host") for k in keys), info.value.problems
    return str(info.value)


def test_on_by_default_with_the_hub_on_localhost(tmp_path: Path) -> None:
    d = deployment(tmp_path, port=18000)
    assert d.public_url == f"{d.scheme}://localhost:18000"
    assert d.server_origin("cn-scientist") == f"{d.scheme}://cn-scientist.localhost:18000"
    assert d.server_url("cn-scientist", "dash-lola") == f"{d.scheme}://cn-scientist.localhost:18000/user/cn-scientist/dash-lola/"
    assert d.server_url("ru-scientist") == f"{d.scheme}://ru-scientist.localhost:18000/user/ru-scientist/"
    c = Config()
    hub.configure_network(c, d)
    assert c.JupyterHub.subdomain_host == f"{d.scheme}://localhost:18000"
    # The hub's own naming and ours agree: the gallery links to what the proxy routes.
    assert hub.subdomain_hook("cn-scientist", "localhost", "user") == "cn-scientist.localhost"
    assert hub.subdomain_hook("dashboards", "localhost", "service") == "localhost"


def test_a_real_host_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: [(socket.AF_INET, 1, 6, "", ("10.0.0.5", 0))])
    d = deployment(tmp_path, ip="0.0.0.0", subdomain_host="https://hub.lunar.example.org")
    assert d.public_url == "https://hub.lunar.example.org"
    assert d.server_origin("student") == "https://student.hub.lunar.example.org"
    assert d.proxy_url.startswith(f"{d.scheme}://127.0.0.1:")
    assert hub.subdomain_problems(d) == []


def test_off_puts_every_server_on_the_hubs_origin(tmp_path: Path) -> None:
    d = deployment(tmp_path, subdomain_host=False, port=18000)
    assert d.public_url == f"{d.scheme}://127.0.0.1:18000" == d.server_origin("student")
    c = Config()
    hub.configure_network(c, d)
    assert "subdomain_host" not in c.JupyterHub


@pytest.mark.parametrize("value, why", [
    ("localhost:8000", "has no scheme: write http://localhost:8000 or https://localhost:8000"),
    ("hub.lunar.example.org", "has no scheme"),
    ("ftp://hub.lunar.example.org", "has no scheme"),
    ("https://hub.lunar.example.org/jupyter", "not an origin"),
    ("http://10.0.0.5:8000", "is an IP address"),
    ("https://Hub_Lunar.example.org", "not a lowercase DNS name"),
    ("https://hub.lunar.example.org:99999", "not a port number"),
    (True, "write the hub's origin"),
])
def test_bad_values_are_refused_with_the_key(tmp_path: Path, value: Any, why: str) -> None:
    message = refused(tmp_path, subdomain_host=value)
    assert "hub.subdomain_host" in message and why in message, message


def test_a_hub_not_on_loopback_must_name_its_host(tmp_path: Path) -> None:
    message = refused(tmp_path, ip="0.0.0.0")
    assert "set subdomain_host to the hub's public origin with a wildcard DNS name" in message


def test_a_host_without_wildcard_dns_is_refused_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def resolve(host: str, *args: Any, **kw: Any) -> list[Any]:
        if host == "hub.lunar.example.org":
            return [(socket.AF_INET, 1, 6, "", ("10.0.0.5", 0))]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    d = deployment(tmp_path, ip="0.0.0.0", subdomain_host="https://hub.lunar.example.org")
    with pytest.raises(ConfigError) as info:
        hub.configure_network(Config(), d)
    assert info.value.problems == [(
        "hub.subdomain_host",
        "'lunarhub-wildcard-check.hub.lunar.example.org' does not resolve: users' servers live at "
        "<user>.hub.lunar.example.org, which needs a wildcard DNS record *.hub.lunar.example.org for this "
        "machine (docs/platform.md#one-origin-per-user)",
    )]
    # `lunarhub up` says the same before starting anything.
    assert info.value.problems[0] in preflight.check(d, running=True)


def test_a_host_that_does_not_resolve_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def nothing(*args: Any, **kw: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", nothing)
    d = deployment(tmp_path, ip="0.0.0.0", subdomain_host="https://hub.lunar.example.org")
    problems = hub.subdomain_problems(d)
    assert problems[0] == ("hub.subdomain_host", "'hub.lunar.example.org' does not resolve: give it a DNS "
                           "record for this machine (docs/platform.md#one-origin-per-user)")
