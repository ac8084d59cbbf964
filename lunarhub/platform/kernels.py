"""The "Lunar Python 3" kernel: found by every user server, with GDAL tuned for remote reads.

The kernel spec lives in the repository (`kernels/lunar-python3/kernel.json`) and
is found through JUPYTER_PATH rather than installed per user: one copy, updated
with the checkout, nothing to go stale in thousands of homes. Its argv says plain
`python`, resolved through the server's PATH (the hub puts the venv's bin first),
so the spec does not hard-code a path that differs between machines.

The GDAL settings in kernel.json are the one source: they are also given to the
whole server (terminals, the plain Python 3 kernel, dask workers started by a
LocalCluster inherit them), so a user gets the same remote-read behaviour
whatever they start.
"""

from __future__ import annotations

import json
from functools import cache

from lunarhub.config import REPO_ROOT, Deployment

KERNEL_NAME = "lunar-python3"
# JUPYTER_PATH entries are data dirs; each is searched for `kernels/<name>/kernel.json`.
DATA_DIR = REPO_ROOT
KERNEL_DIR = DATA_DIR / "kernels" / KERNEL_NAME
# Server config that makes the Lunar kernel the default for new notebooks.
CONFIG_DIR = REPO_ROOT / "kernels" / "config"


@cache
def kernel_spec() -> dict:
    return json.loads((KERNEL_DIR / "kernel.json").read_text(encoding="utf-8"))


def gdal_environment() -> dict[str, str]:
    """GDAL/VSI settings of the kernel (efficient HTTP range reads of COGs on the sites)."""
    return {k: v for k, v in kernel_spec().get("env", {}).items()
            if k.startswith(("GDAL_", "VSI_", "CPL_"))}


def spawn_environment(d: Deployment, username: str) -> dict[str, str]:
    """Merged into every user server's environment by lunarhub.platform.hub."""
    env = dict(gdal_environment())
    env["JUPYTER_PATH"] = str(DATA_DIR)
    env["JUPYTER_CONFIG_PATH"] = str(CONFIG_DIR)
    env["LUNARHUB_KERNEL"] = KERNEL_NAME
    return env
