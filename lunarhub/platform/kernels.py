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
import os
from functools import cache
from pathlib import Path

from lunarhub.config import Deployment, default_location

KERNEL_NAME = "lunar-python3"
# The spec where the default layout has it, for code without a deployment at hand.
KERNEL_DIR = default_location("kernels") / KERNEL_NAME


def data_dir(d: Deployment) -> Path:
    """The JUPYTER_PATH entry: Jupyter searches each data dir for `kernels/<name>/kernel.json`."""
    return d.location("kernels").parent


def config_dir(d: Deployment) -> Path:
    """Server config that makes the Lunar kernel the default for new notebooks."""
    return d.location("kernels") / "config"


def _spec_dir_here() -> Path:
    # In a user's server (the doctor) the spawner put the deployment's kernels on JUPYTER_PATH.
    for entry in filter(None, os.environ.get("JUPYTER_PATH", "").split(os.pathsep)):
        candidate = Path(entry) / "kernels" / KERNEL_NAME
        if (candidate / "kernel.json").exists():
            return candidate
    return KERNEL_DIR


@cache
def _read_spec(spec_dir: Path) -> dict:
    return json.loads((spec_dir / "kernel.json").read_text(encoding="utf-8"))


def kernel_spec(d: Deployment | None = None) -> dict:
    return _read_spec(data_dir(d) / "kernels" / KERNEL_NAME if d is not None else _spec_dir_here())


def gdal_environment(d: Deployment | None = None) -> dict[str, str]:
    """GDAL/VSI settings of the kernel (efficient HTTP range reads of COGs on the sites)."""
    return {k: v for k, v in kernel_spec(d).get("env", {}).items()
            if k.startswith(("GDAL_", "VSI_", "CPL_"))}


def spawn_environment(d: Deployment, username: str) -> dict[str, str]:
    """Merged into every user server's environment by lunarhub.platform.hub."""
    env = dict(gdal_environment(d))
    env["JUPYTER_PATH"] = str(data_dir(d))
    env["JUPYTER_CONFIG_PATH"] = str(config_dir(d))
    env["LUNARHUB_KERNEL"] = KERNEL_NAME
    return env
