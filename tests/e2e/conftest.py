"""Fixtures of the e2e layer: Debian's chromium driven by Playwright against a real stack.

The session-wide `stack` is in tests/conftest.py (the integration layer shares it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.browser import chromium
from support.dashboards_helpers import ds  # noqa: F401  (a dashboards stack per test module)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with chromium() as b:
        yield b
