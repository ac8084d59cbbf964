"""Every tutorial and science notebook, run with nbval inside a real user server of a
running hub, as real demo accounts (tests/support/notebook_runner.py explains how).

- cn-scientist runs all notebooks (the science ones need NAOC's partners/cn-only data);
- student runs tutorials 1-4 (open data only: what a class member can do); tutorial 6 (compute at
  the site) is cn-scientist's only, to keep the module's time.

Tutorial 6 runs here with both sites' compute `local` (the hub's gateway): a Slurm site costs three
daemons more than this module's stack can afford; tests/integration/test_slurm.py runs the same
placement calls against the ru site's Slurm cluster.

A failing notebook fails its own test, naming the notebook, the cell and the error.
Set LUNARHUB_NBVAL_GATEWAY=0 to run without dask-gateway (tutorial 3 then uses a LocalCluster);
LUNARHUB_NBVAL_ONLY=06- runs only the notebooks whose names start so (while writing one).
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from support import ROOT, gateway_helpers
from support.notebook_runner import RunResult, describe_failures, run_nbval, server_environ, stage
from support.stack import make_stack, open_tmpdir, require_root

pytestmark = pytest.mark.integration

NOTEBOOKS = ROOT / "notebooks"
ONLY = os.environ.get("LUNARHUB_NBVAL_ONLY", "")
ALL = [p for p in sorted(NOTEBOOKS.glob("tutorials/*.ipynb")) + sorted(NOTEBOOKS.glob("science/*.ipynb"))
       if p.name.startswith(ONLY)]
STUDENT = [p for p in ALL if p.parent.name == "tutorials" and not p.name.startswith(("05-", "06-"))]
RUNS = {u: nbs for u, nbs in {"cn-scientist": ALL, "student": STUDENT}.items() if nbs}
GATEWAY = os.environ.get("LUNARHUB_NBVAL_GATEWAY", "1") == "1"  # the gateway is part of every stack


def server_pid(stack, user: str) -> int:
    info = stack.request("GET", f"/hub/api/users/{user}", stack.admin_token()).json()
    return info["servers"][""]["state"]["pid"]


def run_as(stack, user: str, notebooks: list[Path], run_name: str) -> RunResult:
    stack.start_server(user)
    env = server_environ(server_pid(stack, user))
    if GATEWAY:
        env["LUNARHUB_REQUIRE_GATEWAY"] = "1"  # tutorial 3 must not fall back to a LocalCluster here
    folder = stage(notebooks, user, run_name)
    result = run_nbval(env, user, folder)
    if result.returncode == 0:
        shutil.rmtree(folder, ignore_errors=True)
    return result


if GATEWAY:
    @pytest.fixture(scope="module")
    def nbstack(gateway_stack):
        """The session's gateway stack (tests/conftest.py), with no server or cluster left by others."""
        yield from gateway_helpers.for_module(gateway_stack)
else:
    @pytest.fixture(scope="module")
    def nbstack():
        require_root()
        tmp = open_tmpdir("nb")
        s = make_stack(tmp)
        s.cli("up", timeout=240)
        yield s
        s.cli("down", check=False, timeout=240)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def results(nbstack) -> dict[str, RunResult]:
    t0 = time.monotonic()
    with ThreadPoolExecutor(len(RUNS)) as pool:
        futures = {u: pool.submit(run_as, nbstack, u, nbs, "nbval") for u, nbs in RUNS.items()}
        out = {u: f.result() for u, f in futures.items()}
    print(f"\nnotebooks: {time.monotonic() - t0:.0f} s wall; per notebook (s): "
          + "; ".join(f"{u}: {r.per_notebook_s}" for u, r in out.items()))
    return out


@pytest.mark.parametrize("user,notebook", [(u, nb) for u, nbs in RUNS.items() for nb in nbs],
                         ids=lambda v: v if isinstance(v, str) else f"{v.parent.name}/{v.name}")
def test_notebook_runs_in_a_real_server(results, user, notebook):
    res = results[user]
    cells = res.for_notebook(notebook.name)
    assert cells, f"{notebook.name} was not run as {user}:\n{res.output[-3000:]}"
    failures = res.failures(notebook.name)
    assert not failures, f"{notebook.relative_to(ROOT)} as {user}:\n" + describe_failures(
        res, notebook.name, first_only=True)
    # Each notebook must finish well inside 3 minutes on this machine.
    assert res.per_notebook_s[notebook.name] < 180


def test_a_broken_notebook_fails_naming_notebook_cell_and_error(nbstack, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "lunar-python3", "display_name": "Lunar Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("assert x == 1\nx / 0")]
    path = tmp_path / "broken-example.ipynb"
    nbformat.write(nb, path)
    res = run_as(nbstack, "student", [path], "nbval-broken")
    assert res.returncode != 0
    failures = res.failures("broken-example.ipynb")
    assert [f.cell for f in failures] == ["Cell 1"], res.output[-2000:]
    text = describe_failures(res, "broken-example.ipynb")
    assert "broken-example.ipynb" in text and "Cell 1" in text and "ZeroDivisionError" in text, text
