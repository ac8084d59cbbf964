"""Secrets of a deployment: generated once, kept in the secrets dir (mode 0700), never committed."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets as _random
from pathlib import Path

from lunarhub.config import Deployment
from lunarhub.files import write_atomic

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def ensure_dir(path: Path, mode: int = 0o700) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    return path


def _write_private(path: Path, text: str) -> None:
    # A crash never leaves a half-written secret behind (lunarhub.files).
    write_atomic(path, text, 0o600)


def token(d: Deployment, name: str, nbytes: int = 32) -> str:
    """A named random secret (cookie secret, proxy token, service tokens), created on first use."""
    directory = ensure_dir(d.secrets_path)
    path = directory / name
    if not path.exists():
        _write_private(path, _random.token_hex(nbytes))
    return path.read_text(encoding="utf-8").strip()


def secret_path(d: Deployment, name: str, nbytes: int = 32) -> Path:
    token(d, name, nbytes)
    return d.secrets_path / name


def hash_password(password: str) -> str:
    salt = _random.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, salt_hex, digest_hex = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt_hex), dklen=32, **_SCRYPT)
    return hmac.compare_digest(digest.hex(), digest_hex)


def _hash_file(d: Deployment) -> Path:
    return d.secrets_path / "password-hashes.json"


def _initial_file(d: Deployment) -> Path:
    return d.secrets_path / "initial-passwords.json"


def password_hashes(d: Deployment) -> dict[str, str]:
    path = _hash_file(d)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def initial_passwords(d: Deployment) -> dict[str, str]:
    """Generated passwords not yet used, kept for the operator (the hub itself only checks hashes).

    A user's entry is dropped at their first successful login (`first_login`): from then on the
    password exists only as its hash and in the user's head, never as plain text on disk."""
    path = _initial_file(d)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def first_login(d: Deployment, username: str) -> bool:
    """Forget the plain-text copy of `username`'s generated password; True if there was one."""
    path = _initial_file(d)
    if not path.exists():
        return False
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.pop(username, None) is None:
        return False
    _write_private(path, json.dumps(data, indent=1, sort_keys=True))
    return True


def set_password(d: Deployment, username: str, password: str | None = None) -> str:
    password = password or _random.token_urlsafe(12)
    if len(password) < d.auth.password.min_password_length:
        raise ValueError(
            f"password for {username!r} is shorter than auth.password.min_password_length "
            f"({d.auth.password.min_password_length})"
        )
    ensure_dir(d.secrets_path)
    hashes = password_hashes(d)
    hashes[username] = hash_password(password)
    _write_private(_hash_file(d), json.dumps(hashes, indent=1, sort_keys=True))
    initial = initial_passwords(d)
    initial[username] = password
    _write_private(_initial_file(d), json.dumps(initial, indent=1, sort_keys=True))
    return password


def ensure_passwords(d: Deployment, usernames: list[str]) -> dict[str, str]:
    """Generate passwords for users who have none; returns only the new ones."""
    if d.auth.kind != "password":
        return {}
    existing = password_hashes(d)
    return {u: set_password(d, u) for u in usernames if u not in existing}


def forget_password(d: Deployment, username: str) -> None:
    for path in (_hash_file(d), _initial_file(d)):
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.pop(username, None) is not None:
                _write_private(path, json.dumps(data, indent=1, sort_keys=True))
