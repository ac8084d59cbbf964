"""What the server extension knows about its user, from the environment the hub gave the server."""

from __future__ import annotations

import os
from collections.abc import Mapping

from lunarhub.config import ConfigError, Deployment

# The deployment file the hub read (lunarhub.platform.hub.spawning): it carries no secret.
CONFIG_ENV = "LUNARHUB_CONFIG"


def user_groups(environ: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    return [g for g in env.get("LUNARHUB_USER_GROUPS", "").split(",") if g]


def username(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("JUPYTERHUB_USER", "")


def deployment(environ: Mapping[str, str] | None = None) -> tuple[Deployment | None, str | None]:
    """The deployment the hub runs, or (None, why not): the panel then falls back to what the
    server's credentials carry and says so."""
    from lunarhub import config

    env = os.environ if environ is None else environ
    path = env.get(CONFIG_ENV)
    if not path:
        return None, f"{CONFIG_ENV} is not set in this server"
    try:
        return config.load(path), None
    except (ConfigError, OSError) as exc:
        return None, f"the deployment file {path} cannot be read here: {exc}"
