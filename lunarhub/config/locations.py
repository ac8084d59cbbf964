"""Where the deployment file is looked for when none is given.

The package never assumes it sits inside a checkout: everything outside the
package (templates, kernel specs, catalogs, tutorials, the hub's config shims) is
found through the deployment file's `paths` section, relative to that file.
Only the *default* deployment file depends on how lunarhub was installed.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]

# An editable install or a PYTHONPATH run: the package sits beside hub/, kernels/, catalogs/.
_CHECKOUT_CONFIG = PACKAGE_ROOT.parent / "hub" / "lunarhub.yaml"
# An installed wheel has no checkout beside it (PACKAGE_ROOT.parent is site-packages), so
# the default is where operators keep system configuration.
SYSTEM_CONFIG = Path("/etc/lunarhub/lunarhub.yaml")


def default_config() -> Path:
    """The deployment file used without --config and $LUNARHUB_CONFIG."""
    return _CHECKOUT_CONFIG if _CHECKOUT_CONFIG.exists() else SYSTEM_CONFIG


DEFAULT_CONFIG = default_config()
