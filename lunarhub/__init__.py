"""lunarhub: the analysis environment of the joint Russian-Chinese lunar data center."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Submodules a notebook reaches as attributes (`lunarhub.science.doctor.report()`), imported on
# first use so `import lunarhub` stays light in the hub and the gateway.
_LAZY = {"doctor", "terrain", "catalog", "pds", "dashboards"}


def open_catalog(*args: Any, **kwargs: Any) -> Any:
    """The federated catalog with what this user may read (see lunarhub.data.catalog)."""
    from lunarhub.data.catalog import open_catalog as _open

    return _open(*args, **kwargs)


def cluster_for(*args: Any, **kwargs: Any) -> Any:
    """A dask cluster at a catalog entry's site (see lunarhub.compute.placement)."""
    from lunarhub.compute.placement import cluster_for as _cluster_for

    return _cluster_for(*args, **kwargs)


def at_site(*args: Any, **kwargs: Any) -> Any:
    """`fn(entry.read())` computed at the entry's site, its result returned (lunarhub.compute.placement)."""
    from lunarhub.compute.placement import at_site as _at_site

    return _at_site(*args, **kwargs)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
