"""Publish-time validation runs the notebook as panel serve would, under a timeout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lunarhub.dashboards.publishing.runner import CellError, code_cells, run_cells
from lunarhub.dashboards.publishing.validate import ValidationError, validate

EXAMPLE = Path(__file__).resolve().parents[2] / "notebooks" / "dashboards" / "lola_explorer.ipynb"


def nb(tmp_path: Path, *cells: str, name: str = "nb.ipynb") -> Path:
    doc = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": c[5:]} if c.startswith("# md ") else
        {"cell_type": "code", "metadata": {}, "source": c, "outputs": [], "execution_count": None} for c in cells]}
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


GOOD = ("import panel as pn\npn.extension()",
        "s = pn.widgets.IntSlider(start=0, end=3)\npn.Column(s, pn.bind(lambda v: v * 2, s)).servable()")


def test_a_servable_notebook_passes_and_reports_its_environment(tmp_path):
    ok = validate(nb(tmp_path, "# md Title", *GOOD), timeout=120)
    assert ok.roots >= 1
    assert ok.environment["python"].startswith("3.") and "panel" in ok.environment["packages"]


def test_a_raising_cell_is_named_by_position(tmp_path):
    path = nb(tmp_path, "# md intro", "import panel as pn", "x = {}\nx['missing']")
    with pytest.raises(ValidationError) as err:
        validate(path, timeout=120)
    assert err.value.cell == 3
    assert "cell 3" in str(err.value) and "KeyError: 'missing'" in str(err.value)
    assert "<notebook cell 3>" in err.value.detail


def test_no_servable_object_is_refused(tmp_path):
    with pytest.raises(ValidationError, match=r"nothing servable.*\.servable\(\)"):
        validate(nb(tmp_path, "import panel as pn", "pn.Column('x')"), timeout=120)


def test_a_notebook_that_never_finishes_is_stopped_at_the_timeout(tmp_path):
    path = nb(tmp_path, "x = 1", "import time\nwhile True:\n    time.sleep(0.1)")
    with pytest.raises(ValidationError, match=r"did not finish within 8 s \(cell 2 was still running\)") as err:
        validate(path, timeout=8)  # room for the process to start on a loaded machine: cell 2 must have begun
    assert err.value.cell == 2


def test_a_hard_crash_is_reported(tmp_path):
    with pytest.raises(ValidationError, match="crashed the Python process"):
        validate(nb(tmp_path, "import os\nos._exit(7)"), timeout=60)


def test_cells_run_in_the_notebook_folder(tmp_path):
    (tmp_path / "values.csv").write_text("42")
    path = nb(tmp_path, "v = int(open('values.csv').read())")
    ns: dict = {}
    run_cells(path, ns, tmp_path)
    assert ns["v"] == 42
    with pytest.raises(CellError) as err:
        run_cells(nb(tmp_path, "1/0", name="bad.ipynb"), {}, tmp_path)
    assert err.value.cell == 1


def test_magics_become_python(tmp_path):
    cells = code_cells(nb(tmp_path, "%matplotlib inline\nx = 1"))
    assert cells[0][0] == 1 and "get_ipython()" in cells[0][1]


def test_example_notebook_is_a_panel_dashboard():
    # The catalog is read at run time (needs the data sites); here only its shape is checked.
    cells = "\n".join(src for _, src in code_cells(EXAMPLE))
    assert ".servable(" in cells and "open_catalog" in cells and "pn.widgets" in cells
