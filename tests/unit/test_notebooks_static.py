"""Notebooks in git: no outputs, the Lunar kernel, goal/data/citations first, asserting cells."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("tutorials/*.ipynb")) + sorted((ROOT / "notebooks").glob("science/*.ipynb"))


def test_the_expected_notebooks_exist():
    names = [f"{p.parent.name}/{p.name[:2]}" for p in NOTEBOOKS]
    for n in ("01", "02", "03", "04", "05", "06"):
        assert f"tutorials/{n}" in names
    assert len([p for p in NOTEBOOKS if p.parent.name == "science"]) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_is_clean_and_documented(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "lunar-python3"
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    for word in ("Goal", "Data"):
        assert f"**{word}" in first.source, f"{path.name}: the first cell must state the {word.lower()}"
    assert any(ch.isdigit() for ch in first.source) and "(20" in first.source, f"{path.name}: cite the data"
    code = [c for c in nb.cells if c.cell_type == "code"]
    for i, c in enumerate(code):
        assert not c.outputs and c.execution_count is None, f"{path.name}: code cell {i} has stored outputs"
    assert any("assert " in c.source for c in code), f"{path.name}: no asserting cell"
