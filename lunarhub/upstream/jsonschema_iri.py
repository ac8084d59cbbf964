"""Users' servers start without compiling rfc3987-syntax's grammars (~1.7 CPU-s of every start).

Upstream: jsonschema's `_format` imports `rfc3987_syntax` at import time for its `iri` checkers
(python-jsonschema/jsonschema#1428), and rfc3987-syntax 1.1 builds ~35 Lark parsers at import;
jupyter_events imports jsonschema's format checker as every Jupyter server starts
(jupyter-server/jupyter_server#1559). No Jupyter schema uses the `iri` formats.
Applies to: jsonschema>=4.25,<4.27 with rfc3987-syntax>=1.1,<1.2 (checked on 4.26.0 / 1.1.0).
What it does: users' servers start as `python -m lunarhub.upstream.jsonschema_iri
<venv>/bin/jupyterhub-singleuser ...` (lunarhub.platform.hub.spawning): before the server
starts, a stand-in module takes the name `rfc3987_syntax`; the first `iri` check (or any
attribute read) imports the real module, so validation behaves as before, only later.
Remove when: jsonschema imports it lazily, or rfc3987-syntax stops compiling at import (the
maintained fork rfc3987-syntax2 does; jsonschema does not use it yet).
Canary: tests/unit/test_hub_pages_start.py.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from lunarhub.upstream import versions

RANGES = {"jsonschema": ">=4.25,<4.27", "rfc3987-syntax": ">=1.1,<1.2"}
UPSTREAM = "python-jsonschema/jsonschema#1428 (rfc3987_syntax imported at import time)"
NAME = "rfc3987_syntax"


def _real() -> types.ModuleType:
    mod = sys.modules.get(NAME)
    if mod is not None and getattr(mod, "__lunarhub_stand_in__", False):
        del sys.modules[NAME]
    return importlib.import_module(NAME)


def stand_in() -> types.ModuleType:
    mod = types.ModuleType(NAME, "lunarhub's lazy stand-in (lunarhub/upstream/jsonschema_iri.py)")

    def is_valid_syntax(term: str, value: str) -> bool:
        return bool(_real().is_valid_syntax(term, value))

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):  # the import system probes __path__, __spec__, ... : not a use
            raise AttributeError(name)
        return getattr(_real(), name)

    mod.is_valid_syntax = is_valid_syntax  # type: ignore[attr-defined]
    mod.__getattr__ = __getattr__  # type: ignore[method-assign]
    mod.__lunarhub_stand_in__ = True  # type: ignore[attr-defined]
    return mod


def apply() -> None:
    """Put the stand-in in place (this process); before anything imports jsonschema."""
    versions.require(__name__, RANGES, UPSTREAM)
    if NAME not in sys.modules and "jsonschema._format" not in sys.modules:
        sys.modules[NAME] = stand_in()


def main() -> None:
    """`python -m lunarhub.upstream.jsonschema_iri <console script> [its options]`: runs the script
    (jupyterhub-singleuser) with the stand-in in place; its name stays on the command line."""
    if len(sys.argv) < 2:
        sys.exit("usage: python -m lunarhub.upstream.jsonschema_iri SCRIPT [ARGS...]")
    try:
        apply()
    except versions.UnsupportedUpstreamVersion as exc:
        # Only start cost is at stake: the server starts as it would without the workaround.
        print(f"lunarhub: {exc}", file=sys.stderr)
    import runpy

    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
