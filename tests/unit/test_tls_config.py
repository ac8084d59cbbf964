"""The `tls:` section: operators' own files checked at load (a key not of its certificate is refused,
naming tls.key), the self-signed CA made once, kept, re-made when stale; the sites' nginx and the
proxy serve HTTPS; `off` says so."""

from __future__ import annotations

import datetime
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from traitlets.config import Config

from lunarhub import config
from lunarhub.config import ConfigError
from lunarhub.data import sites
from lunarhub.platform import hub, tls

ROOT = Path(__file__).resolve().parents[2]


def deployment(tmp_path: Path, tls_section: dict[str, Any] | None = None, **top: Any) -> config.Deployment:
    data = yaml.safe_load((ROOT / "hub" / "lunarhub.yaml").read_text())
    data["state_dir"] = str(tmp_path / "state")
    data["hub"]["isolation"] = "single-account"
    if tls_section is not None:
        data["tls"] = tls_section
    data.update(top)
    return config.parse(yaml.safe_dump(data), source="test.yaml", base_dir=ROOT / "hub")


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _self_signed(key: ec.EllipticCurvePrivateKey, name: str) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def operator_files(tmp_path: Path) -> dict[str, Path]:
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    files = {"cert": tmp_path / "hub.crt", "key": tmp_path / "hub.key", "other_key": tmp_path / "other.key",
             "ca": tmp_path / "ca.crt"}
    files["cert"].write_bytes(_self_signed(key, "hub.lunar.example.org"))
    files["ca"].write_bytes(files["cert"].read_bytes())
    files["key"].write_bytes(_pem_key(key))
    files["other_key"].write_bytes(_pem_key(other))
    return files


def test_default_is_self_signed_https(tmp_path: Path) -> None:
    d = deployment(tmp_path)
    assert d.tls.mode == "self-signed" and d.public_url.startswith("https://localhost:")
    assert d.proxy_url.startswith("https://127.0.0.1:")


def test_files_mode_with_a_key_of_another_certificate_is_refused_naming_the_key(tmp_path, operator_files) -> None:
    with pytest.raises(ConfigError) as info:
        deployment(tmp_path, {"mode": "files", "cert": str(operator_files["cert"]),
                              "key": str(operator_files["other_key"]), "ca": str(operator_files["ca"])})
    (where, why), = info.value.problems
    assert where.startswith("tls.key") and str(operator_files["other_key"]) in why
    assert "is not the key of the certificate" in why and str(operator_files["cert"]) in why


def test_files_mode_missing_or_unreadable_files_are_named(tmp_path, operator_files) -> None:
    with pytest.raises(ConfigError) as info:
        deployment(tmp_path, {"mode": "files", "cert": str(tmp_path / "nope.crt"),
                              "key": str(operator_files["key"]), "ca": str(operator_files["ca"])})
    assert [w.split()[0] for w, _ in info.value.problems] == ["tls.cert"]
    assert "nope.crt does not exist" in info.value.problems[0][1]
    with pytest.raises(ConfigError) as info:
        deployment(tmp_path, {"mode": "files", "cert": str(operator_files["cert"])})
    assert {w.split()[0] for w, _ in info.value.problems} == {"tls.key", "tls.ca"}
    with pytest.raises(ConfigError) as info:
        deployment(tmp_path, {"mode": "off", "cert": str(operator_files["cert"])})
    assert "only used with tls.mode: files" in str(info.value)


def test_files_mode_that_matches_serves_them_and_bundles_the_operators_ca(tmp_path, operator_files) -> None:
    d = deployment(tmp_path, {"mode": "files", "cert": str(operator_files["cert"]), "key": str(operator_files["key"]),
                              "ca": str(operator_files["ca"])})
    assert tls.server_files(d) == tls.ServerFiles(operator_files["cert"], operator_files["key"])
    assert tls.ensure(d) is False
    assert operator_files["ca"].read_text() in tls.bundle_file(d).read_text()


def test_scheme_of_an_explicit_origin_must_match_tls(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        deployment(tmp_path, {"mode": "off"}, hub={"ip": "127.0.0.1", "subdomain_host": "https://localhost:8000"})
    assert "hub.subdomain_host" in str(info.value) and "write http://localhost:8000" in str(info.value)


def test_self_signed_made_once_private_and_remade_when_stale(tmp_path: Path, monkeypatch) -> None:
    d = deployment(tmp_path)
    assert tls.ensure(d) is True
    secret = d.secrets_path / "tls"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o700
    for name in ("ca.key", "server.key", "ca.crt", "server.crt"):
        assert stat.S_IMODE(os.stat(secret / name).st_mode) == 0o600, name
    for public in (tls.ca_file(d), tls.bundle_file(d)):
        assert stat.S_IMODE(os.stat(public).st_mode) == 0o644
    cert = x509.load_pem_x509_certificate(tls.server_files(d).cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = san.get_values_for_type(x509.DNSName)
    assert {"localhost", "*.localhost", "cn-scientist.localhost"} <= set(names)
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    ca = x509.load_pem_x509_certificate(tls.ca_file(d).read_bytes())
    cert.verify_directly_issued_by(ca)
    assert tls.ca_file(d).read_text() in tls.bundle_file(d).read_text()

    # Kept while current.
    before = tls.server_files(d).cert.read_bytes()
    assert tls.ensure(d) is False and tls.server_files(d).cert.read_bytes() == before
    # A new user's host: a new server certificate from the same CA.
    users = dict(d.users)
    users["newcomer"] = users["student"]
    d2 = d.with_users(users)
    assert tls.ensure(d2) is True
    fresh = x509.load_pem_x509_certificate(tls.server_files(d2).cert.read_bytes())
    assert "newcomer.localhost" in fresh.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert tls.ca_file(d2).read_bytes() == tls.ca_file(d).read_bytes()
    # Expiring soon (here: everything counts as expiring): CA and certificate re-made.
    old_ca = tls.ca_file(d2).read_bytes()
    monkeypatch.setattr(tls, "RENEW_BEFORE", datetime.timedelta(days=100_000))
    assert tls.ensure(d2) is True and tls.ca_file(d2).read_bytes() != old_ca


def test_clients_sites_and_proxy_follow_the_mode(tmp_path: Path) -> None:
    d = deployment(tmp_path)
    tls.ensure(d)
    env = tls.client_environment(d)
    assert set(env) == set(tls.CLIENT_VARIABLES) and set(env.values()) == {str(tls.bundle_file(d))}
    assert hub.spawn_environment(d, "student")["GDAL_CURL_CA_BUNDLE"] == str(tls.bundle_file(d))
    assert sites.site_url(d, "ru").startswith("https://127.0.0.1:")
    conf = sites._nginx_conf(d, "ru", tmp_path / "users.conf")
    assert f"listen 127.0.0.1:{d.sites['ru'].port} ssl;" in conf
    assert f'ssl_certificate_key "{tls.server_files(d).key}";' in conf
    c = Config()
    hub.configure_network(c, d)
    assert c.JupyterHub.ssl_key == str(tls.server_files(d).key)

    off = deployment(tmp_path / "off", {"mode": "off"})
    assert tls.client_environment(off) == {} and "GDAL_CURL_CA_BUNDLE" not in hub.spawn_environment(off, "student")
    assert off.public_url.startswith("http://") and sites.site_url(off, "ru").startswith("http://")
    assert " ssl" not in sites._nginx_conf(off, "ru", tmp_path / "users.conf")
    c = Config()
    hub.configure_network(c, off)
    assert "ssl_key" not in c.JupyterHub


def test_status_warns_when_off(tmp_path: Path) -> None:
    from lunarhub.platform import lifecycle

    row = lifecycle.tls_row(deployment(tmp_path, {"mode": "off"}))
    assert row.state == "OFF" and row.detail.startswith("WARNING:") and "plain HTTP" in row.detail
