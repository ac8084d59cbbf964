"""What every layer shares: tests/ on sys.path (so helpers import as ``support.*``) and the
one session-wide stack the integration and e2e layers both use.

Each layer's own fixtures live in its conftest.py (tests/integration, tests/e2e); helpers
live in tests/support/. Import helpers from there, never ``from conftest import ...``.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support.dashboards_helpers import start_dash_stack, stop_dash_stack  # noqa: E402
from support.stack import Stack, make_stack, open_tmpdir, require_root  # noqa: E402
from support.tls import trust_in_process  # noqa: E402

# Before any test module imports a client library (aiohttp fixes its CA context at import): the
# run's stacks share one certificate (support.tls), and the tests' own clients verify it.
trust_in_process()


# Here rather than in a layer's conftest: the same fixture defined in two conftests is two
# fixtures, and a run of both layers would then start (and wait for) a second hub.
@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """One running stack shared by the integration and browser tests."""
    require_root()
    tmp = open_tmpdir("stack")
    s = make_stack(tmp)
    s.cli("up", timeout=240)
    yield s
    s.cli("down", check=False, timeout=240)
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def dashboards_stack() -> Iterator[Stack]:
    """One stack with dashboards for the modules that borrow it through
    `support.dashboards_helpers.for_module` (each uses slugs of its own)."""
    s, tmp = start_dash_stack()
    yield s
    stop_dash_stack(s, tmp)
