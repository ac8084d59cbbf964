"""Kept for snapshots published before the package was laid out by runtime (2026-12-01): their
generated app file imports ``lunarhub.dashboards.runner``, and a snapshot is immutable. The same
module object as :mod:`lunarhub.dashboards.publishing.runner`."""

import sys

import lunarhub.dashboards.publishing.runner as _impl

sys.modules[__name__] = _impl
