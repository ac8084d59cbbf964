"""lunarhub: the analysis environment of the joint Russian-Chinese lunar data center."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def open_catalog(*args: Any, **kwargs: Any) -> Any:
    """The federated catalog with what this user may read (see lunarhub.catalog)."""
    from .catalog import open_catalog as _open

    return _open(*args, **kwargs)
