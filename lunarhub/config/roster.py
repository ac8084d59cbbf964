"""The effective user table: the deployment file's users plus what operators changed
from the command line (kept in the state dir so `make up` brings it back)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import yaml

from lunarhub.config import NAME_RE, ConfigError, Deployment, User, account_refusal
from lunarhub.files import write_atomic


def _overlay_path(d: Deployment) -> Path:
    return d.state_path / "roster.json"


def _read_overlay(d: Deployment) -> dict:
    path = _overlay_path(d)
    if not path.exists():
        return {"users": {}, "removed": []}
    return json.loads(path.read_text(encoding="utf-8"))


def _write_overlay(d: Deployment, overlay: dict) -> None:
    d.state_path.mkdir(parents=True, exist_ok=True)
    path = _overlay_path(d)
    write_atomic(path, json.dumps(overlay, indent=1, sort_keys=True), 0o600)


def effective(d: Deployment) -> Deployment:
    """The deployment with CLI-made user changes applied and validated."""
    overlay = _read_overlay(d)
    refused = [(f"users.{name}", f"{why}; remove it: lunarhub users remove {name}")
               for name in overlay["users"] if (why := _refusal(d, name))]
    if refused:
        raise ConfigError(str(_overlay_path(d)), refused)
    users = {k: v for k, v in d.users.items() if k not in overlay["removed"]}
    for name, raw in overlay["users"].items():
        users[name] = User.model_validate(raw)
    try:
        return d.with_users(users)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file that holds the bad data
        raise ConfigError(str(_overlay_path(d)), [("users", str(exc))]) from None


def _refusal(d: Deployment, name: str) -> str | None:
    return account_refusal(name, host=d.hub.isolation == "system-users")


def set_user(d: Deployment, name: str, groups: list[str], full_name: str | None = None) -> Deployment:
    """Add or update a user; validated against the deployment's groups before anything is saved."""
    if not NAME_RE.match(name):
        raise ValueError(
            f"invalid user name {name!r}: use lowercase letters, digits and '-', starting with a letter"
        )
    why = _refusal(d, name)
    if why:
        raise ValueError(f"user {name!r} refused: {why}")
    unknown = [g for g in groups if g not in d.groups]
    if unknown:
        raise ValueError(f"user {name!r}: unknown group(s) {', '.join(unknown)}; defined: {', '.join(d.groups)}")
    if not groups:
        raise ValueError(f"user {name!r}: give at least one group")
    overlay = _read_overlay(d)
    entry: dict[str, str | list[str]] = {"groups": groups}
    if full_name:
        entry["full_name"] = full_name
    overlay["users"][name] = entry
    overlay["removed"] = [u for u in overlay["removed"] if u != name]
    new = effective_with(d, overlay)
    _write_overlay(d, overlay)
    return new


def remove_user(d: Deployment, name: str) -> Deployment:
    overlay = _read_overlay(d)
    # Not through effective(): a user it refuses (a reserved name added before) must be removable.
    if name in overlay["removed"] or (name not in d.users and name not in overlay["users"]):
        raise KeyError(f"unknown user {name!r}")
    member_of = [p for p, project in d.projects.items() if name in project.members]
    if member_of:
        raise KeyError(f"user {name!r} is a member of project(s) {', '.join(member_of)}: remove them from "
                       f"projects.<name>.members in {d.config_file or 'the deployment file'} first")
    overlay["users"].pop(name, None)
    if name in d.users and name not in overlay["removed"]:
        overlay["removed"].append(name)
    new = effective_with(d, overlay)
    _write_overlay(d, overlay)
    return new


def effective_with(d: Deployment, overlay: dict) -> Deployment:
    users = {k: v for k, v in d.users.items() if k not in overlay["removed"]}
    for name, raw in overlay["users"].items():
        users[name] = User.model_validate(raw)
    return d.with_users(users)


def parse_roster(text: str, source: str, d: Deployment) -> list[tuple[str, list[str], str | None]]:
    """CSV roster `username,groups[,full_name]` (groups separated by ';' or ' ').

    All rows are checked before any is applied, so a bad roster changes nothing.
    """
    rows: list[tuple[str, list[str], str | None]] = []
    problems: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    reader = csv.reader(io.StringIO(text))
    for lineno, row in enumerate(reader, start=1):
        if not row or row[0].strip().startswith("#"):
            continue
        if lineno == 1 and row[0].strip().lower() in ("username", "user", "name"):
            continue
        name = row[0].strip()
        groups = [g for g in (row[1] if len(row) > 1 else "").replace(";", " ").split() if g]
        full = row[2].strip() if len(row) > 2 and row[2].strip() else None
        where = f"line {lineno}"
        if not NAME_RE.match(name):
            problems.append((where, f"invalid user name {name!r}"))
        elif why := _refusal(d, name):
            problems.append((where, why))
        if name in seen:
            problems.append((where, f"duplicate user {name!r} (first on line {seen[name]})"))
        seen.setdefault(name, lineno)
        if not groups:
            problems.append((where, f"user {name!r} has no group"))
        for g in groups:
            if g not in d.groups:
                problems.append((where, f"unknown group {g!r}"))
        rows.append((name, groups, full))
    if problems:
        raise ConfigError(source, problems)
    return rows


def dump_users(d: Deployment) -> str:
    return yaml.safe_dump(
        {u: {"groups": user.groups} for u, user in sorted(d.users.items())}, allow_unicode=True
    )
