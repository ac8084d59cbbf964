"""Run a published notebook as Panel code: in `panel serve` and in publish-time validation.

Both paths use the same function, so what validation accepted is what reviewers get.
Each code cell runs with the snapshot's `files/` folder as working directory
(relative paths in the notebook find the files published with it); bokeh runs
sessions one at a time on its event loop, so the chdir does not leak between
versions served by the same process.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class CellError(Exception):
    """A cell raised; `cell` is the 1-based position in the notebook (as shown in JupyterLab)."""

    cell: int
    source: str
    error: str
    tb: str

    def __str__(self) -> str:
        first = self.source.strip().splitlines()[0] if self.source.strip() else ""
        return f"cell {self.cell} ({first[:60]!r}) raised {self.error}"


def code_cells(notebook: Path) -> list[tuple[int, str]]:
    """(1-based cell index, Python source) of the code cells; IPython magics become
    Python the way nbconvert does it (or raise at run time if IPython is absent)."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        transform: Callable[[str], str] = TransformerManager().transform_cell
    except ImportError:  # pragma: no cover - IPython ships with the lab
        def transform(src: str) -> str:
            return src
    out = []
    for i, cell in enumerate(nb.get("cells", []), start=1):
        if cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        out.append((i, transform(src)))
    return out


def run_cells(notebook: Path, namespace: dict[str, Any], workdir: Path,
              on_cell: Callable[[int], None] | None = None) -> None:
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        for index, src in code_cells(notebook):
            if on_cell:
                on_cell(index)
            try:
                exec(compile(src, f"<notebook cell {index}>", "exec"), namespace)
            except Exception as exc:
                tb = traceback.format_exc(limit=-3)
                raise CellError(index, src, f"{type(exc).__name__}: {exc}", tb) from exc
    finally:
        os.chdir(cwd)


def serve_snapshot(version_dir: Path, namespace: dict[str, Any]) -> None:
    """Entry point of the generated apps/v<N>.py files `panel serve` runs."""
    from lunarhub.dashboards.store import snapshot_notebook

    notebook = snapshot_notebook(version_dir)
    namespace.setdefault("__file__", str(notebook))
    run_cells(notebook, namespace, notebook.parent)
