"""The package is laid out by where code runs: a user's kernel imports no hub-side code."""

from __future__ import annotations

import json
import subprocess
import sys

# Runs in the hub, the gateway or the operator's CLI (as root or a service account).
HUB_SIDE = ("lunarhub.platform", "lunarhub.compute", "lunarhub.cli", "lunarhub.upstream", "lunarhub.courses",
            "lunarhub.config.secrets", "lunarhub.config.roster", "lunarhub.data.sites", "lunarhub.data.build")

KERNEL_USE = """
import json, sys
import lunarhub
import lunarhub.doctor, lunarhub.terrain, lunarhub.terrain_io, lunarhub.catalog, lunarhub.pds
from lunarhub import open_catalog, terrain
lunarhub.doctor.report  # what tutorials call
terrain.terrain_pipeline, open_catalog
print(json.dumps(sorted(m for m in sys.modules if m.startswith("lunarhub"))))
"""


def test_a_kernels_import_lunarhub_loads_no_hub_side_module() -> None:
    out = subprocess.run([sys.executable, "-c", KERNEL_USE], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert "lunarhub.science.terrain" in loaded and "lunarhub.data.catalog" in loaded
    assert [m for m in loaded if m.startswith(HUB_SIDE)] == []


def test_public_names_are_the_modules_they_alias() -> None:
    import lunarhub.catalog
    import lunarhub.doctor
    import lunarhub.pds
    import lunarhub.terrain
    import lunarhub.terrain_io
    from lunarhub.data import catalog, pds
    from lunarhub.science import doctor, terrain, terrain_io

    assert (lunarhub.terrain, lunarhub.terrain_io, lunarhub.doctor, lunarhub.catalog, lunarhub.pds) == (
        terrain, terrain_io, doctor, catalog, pds)


def test_every_hub_component_is_declared_and_provides_what_it_says() -> None:
    from lunarhub.platform import components

    names = [c.name for c in components.COMPONENTS]
    assert names == ["kernels", "courses", "sites", "dask-gateway", "site-gateways", "dashboards", "monitoring",
                     "operator-dashboard"]
    for c in components.COMPONENTS:
        c.load()  # raises naming the function a component declares but does not define


def test_test_modules_have_unique_names_across_folders() -> None:
    """pytest imports test modules by basename (rootdir mode, no packages): two folders holding
    test_x.py stop the whole run at collection, which a run of one folder never shows."""
    from collections import Counter
    from pathlib import Path

    tests = Path(__file__).resolve().parents[1]
    names = Counter(p.name for p in tests.rglob("test_*.py"))
    assert [n for n, k in names.items() if k > 1] == []
