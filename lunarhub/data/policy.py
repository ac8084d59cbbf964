"""The access policies of the data sites and how a server's environment names a site.

Shared by the side that enforces them (lunarhub.data.sites, as the operator) and the side that
reads with them (lunarhub.data.catalog, in a user's kernel), so the kernel imports no operator code.
"""

from __future__ import annotations

import re

# The first folder of every path on a site is one of these; the site's server checks it per request.
POLICIES = ("open", "partners", "ru-only", "cn-only")


def env_prefix(name: str) -> str:
    """``LUNARHUB_SITE_<NAME>``: the environment variables that carry a site to a user's server."""
    return "LUNARHUB_SITE_" + re.sub(r"[^A-Z0-9]", "_", name.upper())
