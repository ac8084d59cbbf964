"""What every layer shares: tests/ on sys.path (so helpers import as ``support.*``) and the
one session-wide stack the integration and e2e layers both use.

Each layer's own fixtures live in its conftest.py (tests/integration, tests/e2e); helpers
live in tests/support/. Import helpers from there, never ``from conftest import ...``.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support.dashboards_helpers import start_dash_stack, stop_dash_stack  # noqa: E402
from support.stack import Stack, make_stack, open_tmpdir, require_root, running_stack  # noqa: E402
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


# The gateway stack: started by the first module that asks (`gateway_stack`), stopped right after
# the last module of the run that uses it, not at the session's end (it would idle through the
# rest of the suite on a 2-core machine). Its modules borrow it through
# `support.gateway_helpers.for_module`.
_GATEWAY: dict[str, object] = {}
_GATEWAY_LAST = pytest.StashKey[Path | None]()


@pytest.fixture(scope="module")
def gateway_stack() -> Stack:
    """One stack with dask-gateway for the gateway modules (tests/integration/test_gateway.py,
    test_notebooks.py, tests/security/test_gateway_paths.py, test_worker_limits.py)."""
    if "stack" not in _GATEWAY:
        context: AbstractContextManager[Stack] = running_stack("gateway", dask_gateway=True)
        _GATEWAY["stack"] = context.__enter__()
        _GATEWAY["context"] = context
    stack = _GATEWAY["stack"]
    assert isinstance(stack, Stack)
    return stack


def _stop_gateway_stack() -> None:
    context = _GATEWAY.pop("context", None)
    _GATEWAY.pop("stack", None)
    if isinstance(context, AbstractContextManager):
        context.__exit__(None, None, None)


def pytest_collection_finish(session: pytest.Session) -> None:
    users = [item.path for item in session.items if "gateway_stack" in getattr(item, "fixturenames", ())]
    session.config.stash[_GATEWAY_LAST] = users[-1] if users else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    try:
        return (yield)  # the module's own fixtures are torn down first (their cleanup needs the stack)
    finally:
        last = item.config.stash.get(_GATEWAY_LAST, None)
        if last is not None and item.path == last and (nextitem is None or nextitem.path != last):
            _stop_gateway_stack()


def pytest_sessionfinish(session: pytest.Session) -> None:
    _stop_gateway_stack()  # a run ended early (-x, a failed start) still stops it


@pytest.fixture(autouse=True, scope="module")
def _dask_config_as_the_run_found_it() -> Iterator[None]:
    """dask-gateway's `cluster.get_client()` makes each client the default, and clients closed out
    of order (or by the garbage collector) leave `scheduler: dask.distributed` set with no client
    behind: a later module's plain dask computation then fails ("no Client active"). Each module
    ends with dask's configuration reloaded from its files and environment."""
    yield
    if "dask" in sys.modules:
        import dask.config

        dask.config.refresh()
