"""`tls.mode: files`: the operator's certificate, key and CA, checked when the deployment file loads.

A key that does not belong to its certificate would only show as a handshake failure of every
client after `up`; here it is refused at load, naming `tls.key`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

if TYPE_CHECKING:
    from lunarhub.config.model import Deployment


def _read(key: str, path: Path) -> tuple[bytes | None, str | None]:
    if not path.is_file():
        return None, f"{path} does not exist (or is not a file)"
    if not os.access(path, os.R_OK):
        return None, f"{path} is not readable by this account (uid {os.geteuid()})"
    try:
        return path.read_bytes(), None
    except OSError as exc:
        return None, f"{path}: {exc.strerror}"


def public_bytes(key: object) -> bytes:
    """SubjectPublicKeyInfo (DER) of a certificate's or private key's public key."""
    return key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def problems(d: Deployment) -> list[tuple[str, str]]:
    """(key path, why) for each of tls.cert / tls.key / tls.ca that cannot serve."""
    tls = d.tls
    out: list[tuple[str, str]] = []
    cert = None
    paths = {"cert": d.path(tls.cert or ""), "key": d.path(tls.key or ""), "ca": d.path(tls.ca or "")}
    data: dict[str, bytes] = {}
    for name, path in paths.items():
        raw, why = _read(name, path)
        if why:
            out.append((f"tls.{name}", why))
        elif raw is not None:
            data[name] = raw
    if "cert" in data:
        try:
            cert = x509.load_pem_x509_certificates(data["cert"])[0]
        except ValueError:
            out.append(("tls.cert", f"{paths['cert']} holds no PEM certificate"))
    if "ca" in data:
        try:
            x509.load_pem_x509_certificates(data["ca"])
        except ValueError:
            out.append(("tls.ca", f"{paths['ca']} holds no PEM certificate"))
    if "key" in data:
        try:
            key = serialization.load_pem_private_key(data["key"], password=None)
        except (ValueError, TypeError) as exc:
            out.append(("tls.key", f"{paths['key']} is not an unencrypted PEM private key ({exc})"))
        else:
            if cert is not None and public_bytes(key.public_key()) != public_bytes(cert.public_key()):
                out.append(("tls.key", f"{paths['key']} is not the key of the certificate {paths['cert']} "
                                       f"(subject {cert.subject.rfc4514_string()}): give the key it was "
                                       "issued for"))
    return out
