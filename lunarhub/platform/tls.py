"""The deployment's certificates: a CA and a server certificate made once at `up` (tls.mode:
self-signed) or the operator's own (files), and the CA bundle every client verifies with.

Runs as root in `lunarhub up`. The keys stay in `<secrets>/tls/` (0700, files 0600): only the
nginx masters and the proxy, both root, read them. The CA certificate and the bundle (the
system CAs plus the deployment CA) are public, in `<state>/tls/` (0755, files 0644), so every
account's kernels and workers can verify. Nothing here turns verification off.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lunarhub.config import Deployment, secrets
from lunarhub.files import write_atomic

# A certificate that expires within this is re-made at the next `up`.
RENEW_BEFORE = datetime.timedelta(days=30)
CA_LIFETIME = datetime.timedelta(days=3650)
SERVER_LIFETIME = datetime.timedelta(days=397)
# The names clients put in the environment; one bundle file serves them all.
CLIENT_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GDAL_CURL_CA_BUNDLE")
SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class ServerFiles:
    cert: Path
    key: Path


def enabled(d: Deployment) -> bool:
    return d.tls.mode != "off"


def _secret_dir(d: Deployment) -> Path:
    secrets.ensure_dir(d.secrets_path)
    return secrets.ensure_dir(d.secrets_path / "tls", 0o700)


def public_dir(d: Deployment) -> Path:
    return d.state_path / "tls"


def ca_file(d: Deployment) -> Path:
    """The deployment CA's certificate (public)."""
    return public_dir(d) / "ca.pem"


def bundle_file(d: Deployment) -> Path:
    """System CAs + the deployment CA: what every client of the stack verifies with."""
    return public_dir(d) / "ca-bundle.pem"


def server_files(d: Deployment) -> ServerFiles:
    if d.tls.mode == "files":
        return ServerFiles(d.path(d.tls.cert or ""), d.path(d.tls.key or ""))
    return ServerFiles(_secret_dir(d) / "server.crt", _secret_dir(d) / "server.key")


def host_names(d: Deployment) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) the server certificate covers."""
    dns = ["localhost", "*.localhost"]
    ips = ["127.0.0.1"]
    for url in [d.public_url] + [str(s.url) for s in d.sites.values() if s.kind == "remote" and s.url]:
        host = urlsplit(url).hostname or ""
        try:
            ipaddress.ip_address(host)
            ips.append(host)
        except ValueError:
            dns.append(host)
            if url == d.public_url and d.hub.subdomain_host is not False:
                dns.append("*." + host)  # every user's servers live on <user>.<hub host>
    if d.hub.ip not in ("", "0.0.0.0", "127.0.0.1"):
        ips.append(d.hub.ip)
    # Python's ssl (OpenSSL) takes no wildcard directly under a top-level name such as
    # `*.localhost`; browsers do. Each hub user's own host is named too, so every client matches.
    if (urlsplit(d.public_url).hostname or "") == "localhost" and d.hub.subdomain_host is not False:
        dns += [f"{u}.localhost" for u in sorted(d.users)]
    return sorted(set(dns)), sorted(set(ips))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _fresh(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc - _now() > RENEW_BEFORE


def _san(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return (sorted(ext.get_values_for_type(x509.DNSName)),
            sorted(str(i) for i in ext.get_values_for_type(x509.IPAddress)))


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_atomic(path, pem.decode(), 0o600)


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _ensure_ca(d: Deployment) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, bool]:
    directory = _secret_dir(d)
    cert, key = _load_cert(directory / "ca.crt"), _load_key(directory / "ca.key")
    if cert is not None and key is not None and _fresh(cert):
        return cert, key, False
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lunarhub"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"{d.name} deployment CA")])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_key(directory / "ca.key", key)
    write_atomic(directory / "ca.crt", cert.public_bytes(serialization.Encoding.PEM).decode(), 0o600)
    return cert, key, True


def _issue_server(d: Deployment, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> None:
    dns, ips = host_names(d)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    names = [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost" if "localhost" in dns
                                                        else dns[0])]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + SERVER_LIFETIME)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = server_files(d)
    _write_key(files.key, key)
    write_atomic(files.cert, cert.public_bytes(serialization.Encoding.PEM).decode(), 0o600)


def _server_current(d: Deployment, ca: x509.Certificate) -> bool:
    files = server_files(d)
    cert, key = _load_cert(files.cert), _load_key(files.key)
    if cert is None or key is None or not _fresh(cert) or _san(cert) != host_names(d):
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # noqa: BLE001 - any failure (other issuer, bad signature): issue a new one
        return False
    return _spki(cert.public_key()) == _spki(key.public_key())


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def system_cas() -> str:
    """The host's trusted CAs (Debian's bundle, else what Python's ssl uses)."""
    for candidate in (SYSTEM_BUNDLE, Path(ssl.get_default_verify_paths().cafile or "")):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8", errors="replace")
    try:
        import certifi

        return Path(certifi.where()).read_text(encoding="utf-8")
    except ImportError:
        return ""


def ensure(d: Deployment) -> bool:
    """Make (or keep) the CA, the server certificate and the public bundle; True if the server
    certificate changed (a running proxy and sites must restart to serve it). No-op when off."""
    if not enabled(d):
        return False
    changed = False
    if d.tls.mode == "self-signed":
        ca, ca_key, new_ca = _ensure_ca(d)
        if new_ca or not _server_current(d, ca):
            _issue_server(d, ca, ca_key)
            changed = True
        ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
    else:
        ca_pem = d.path(d.tls.ca or "").read_text(encoding="utf-8")
    pub = public_dir(d)
    pub.mkdir(parents=True, exist_ok=True)
    os.chmod(pub, 0o755)
    for path, text in ((ca_file(d), ca_pem), (bundle_file(d), system_cas().rstrip("\n") + "\n" + ca_pem)):
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            write_atomic(path, text, 0o644)
        os.chmod(path, 0o644)
    return changed


def client_environment(d: Deployment) -> dict[str, str]:
    """What a process of the stack (kernel, worker, service, CLI) needs to verify the stack's
    HTTPS: every client library's CA variable, all naming the one bundle. Empty when off."""
    if not enabled(d):
        return {}
    return dict.fromkeys(CLIENT_VARIABLES, str(bundle_file(d)))


def use_in_process(d: Deployment) -> None:
    """This process's own clients (requests, tornado, aiohttp, urllib) verify with the bundle."""
    env = client_environment(d)
    if env and bundle_file(d).is_file():
        os.environ.update(env)


def spki_pin(cert_path: Path) -> str:
    """Base64 SHA-256 of a certificate's SubjectPublicKeyInfo: Chromium's
    `--ignore-certificate-errors-spki-list` trusts exactly that key, nothing else."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return base64.b64encode(hashlib.sha256(_spki(cert.public_key())).digest()).decode()


def not_after(cert_path: Path) -> datetime.datetime:
    return x509.load_pem_x509_certificates(cert_path.read_bytes())[0].not_valid_after_utc
