"""Publish-time check: run the notebook the way `panel serve` will, under a timeout.

The notebook runs in a child process (its own interpreter, killed at the
timeout) inside a Bokeh session document, exactly as runner.serve_snapshot runs
it in the dashboard server. Refused: a cell that raises (cell number + error),
no `.servable()` object, or no end within the timeout (the cell still running).
It runs as whoever publishes, in their server, with their data credentials.

The run's data lineage: the catalog library (lunarhub.data.catalog) appends each dataset the
notebook reads to the file named by $LUNARHUB_LINEAGE_FILE; the result carries those records
and the run's wall-clock window, in which the gallery looks up what the sites themselves saw
(lunarhub.dashboards.lineage).

After the cells, the child draws the gallery thumbnail (thumbnail.py). That step can
never refuse a publish: the result is written before it starts, so an exception, a
crash or a hang there only costs the thumbnail (the reason is in `thumbnail_error`).
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT = 120
# Extra time for the thumbnail once the cells are done (cells that end near the timeout
# must not lose their publish to the drawing).
THUMBNAIL_GRACE = 30
# The packages whose versions decide whether a dashboard still runs the same way.
ENV_PACKAGES = ("panel", "bokeh", "holoviews", "hvplot", "param", "numpy", "pandas", "xarray",
                "rioxarray", "rasterio", "dask", "intake", "intake-xarray", "matplotlib", "lunarhub")


class ValidationError(Exception):
    """The notebook cannot be published; str() says which cell and why."""

    def __init__(self, message: str, cell: int | None = None, detail: str = ""):
        super().__init__(message)
        self.cell = cell
        self.detail = detail


@dataclass
class Validated:
    roots: int
    seconds: float
    environment: dict[str, Any]
    thumbnail: bytes | None = None  # PNG for the gallery; None: nothing drawable, or it failed
    thumbnail_error: str | None = None  # one line, when drawing it failed
    lineage: list[dict[str, Any]] = field(default_factory=list)  # what the catalog library saw read
    started: float = 0.0  # wall clock (epoch seconds) of the run, for the sites' logs
    finished: float = 0.0


def environment() -> dict[str, Any]:
    pkgs = {}
    for name in ENV_PACKAGES:
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "executable": sys.executable, "packages": pkgs}


def validate(notebook: Path, timeout: float = DEFAULT_TIMEOUT,
             thumbnail_grace: float = THUMBNAIL_GRACE,
             on_progress: Callable[[int | None], None] | None = None) -> Validated:
    notebook = Path(notebook).resolve()
    if not notebook.exists():
        raise ValidationError(f"{notebook}: no such notebook")
    with tempfile.TemporaryDirectory(prefix="lunarhub-validate-") as tmp:
        progress = Path(tmp) / "progress"
        result = Path(tmp) / "result.json"
        thumb = Path(tmp) / "thumbnail.png"
        lineage_file = Path(tmp) / "lineage.jsonl"
        cmd = [sys.executable, "-m", "lunarhub.dashboards.publishing.validate", str(notebook), str(progress), str(result),
               str(thumb)]
        from lunarhub.data.catalog import LINEAGE_ENV

        started = time.time()
        start = time.monotonic()
        # Own session: a notebook that forks (dask, subprocesses) is killed as a whole.
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=notebook.parent,
                                env={**os.environ, LINEAGE_ENV: str(lineage_file)})
        cells_done: float | None = None
        at: int | None = None
        while True:
            if on_progress is not None and (now_at := _last_cell(progress)) != at:
                at = now_at
                on_progress(at)
            try:
                out, _ = proc.communicate(timeout=0.25)  # retrying loses no output
                break
            except subprocess.TimeoutExpired:
                now = time.monotonic()
                if cells_done is None and result.exists():  # only the thumbnail is left to draw
                    cells_done = now
                if now < (cells_done + thumbnail_grace if cells_done is not None else start + timeout):
                    continue
                os.killpg(proc.pid, signal.SIGKILL)
                out, _ = proc.communicate()
                if cells_done is None:
                    cell = _last_cell(progress)
                    where = f" (cell {cell} was still running)" if cell else ""
                    raise ValidationError(f"the notebook did not finish within {timeout:g} s{where}",
                                          cell) from None
                break
        seconds = time.monotonic() - start
        finished = time.time()
        lineage = read_lineage(lineage_file)
        if not result.exists():
            tail = "\n".join(out.decode(errors="replace").splitlines()[-15:])
            raise ValidationError(f"the notebook crashed the Python process (exit status {proc.returncode})",
                                  _last_cell(progress), tail)
        data = json.loads(result.read_text())
        png = thumb.read_bytes() if data.get("thumbnail") == "made" and thumb.exists() else None
        if data.get("thumbnail") == "pending":
            data["thumbnail_error"] = ("drawing it did not finish in time" if proc.returncode == -signal.SIGKILL
                                       else f"drawing it ended the Python process (exit status {proc.returncode})")
    if data.get("error"):
        raise ValidationError(data["error"], data.get("cell"), data.get("traceback", ""))
    if not data.get("roots"):
        raise ValidationError(
            "the notebook ran but made nothing servable: call .servable() on the Panel object "
            "the dashboard should show (e.g. `pn.Column(widget, plot).servable()`)")
    return Validated(data["roots"], seconds, data["environment"], png, data.get("thumbnail_error"),
                     lineage, started, finished)


def read_lineage(path: Path) -> list[dict[str, Any]]:
    """The records the catalog library appended (a line cut by a killed run is skipped)."""
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _last_cell(progress: Path) -> int | None:
    try:
        lines = progress.read_text().split()
        return int(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None


def _write(result: Path, out: dict[str, Any]) -> None:
    tmp = result.with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    os.replace(tmp, result)  # the parent never reads half a result


def _child(notebook: Path, progress: Path, result: Path, thumb: Path | None = None) -> None:
    """Runs in the child: a Bokeh session document, the cells, count its roots, then the thumbnail."""
    import types
    import weakref

    from bokeh.application import Application
    from bokeh.document import Document
    from bokeh.server.contexts import ApplicationContext, BokehSessionContext

    from lunarhub.dashboards.publishing.runner import CellError, run_cells

    out: dict[str, Any] = {"environment": environment()}
    with open(progress, "a") as prog:
        def on_cell(i: int) -> None:
            prog.write(f"{i}\n")
            prog.flush()

        try:
            from panel.io.state import set_curdoc

            doc = Document()
            ctx = BokehSessionContext("lunarhub-validate", ApplicationContext(Application()).server_context, doc)
            # panel reads request arguments/cookies while building objects
            ctx._request = types.SimpleNamespace(arguments={}, cookies={}, headers={})  # type: ignore[assignment]
            doc._session_context = weakref.ref(ctx)  # type: ignore[assignment]
            namespace: dict[str, Any] = {"__name__": "__main__", "__file__": str(notebook)}
            with set_curdoc(doc):
                run_cells(notebook, namespace, notebook.parent, on_cell)
            out["roots"] = len(doc.roots)
        except CellError as exc:
            out.update(error=str(exc), cell=exc.cell, traceback=exc.tb)
        except Exception as exc:  # noqa: BLE001 - reported to the publisher, not swallowed
            out.update(error=f"{type(exc).__name__}: {exc}")
        if thumb is None or out.get("error") or not out.get("roots"):
            return _write(result, out)
        _write(result, {**out, "thumbnail": "pending"})
        prog.write("thumbnail\n")
        prog.flush()
        try:
            from lunarhub.dashboards.publishing import thumbnail

            # cwd is the notebook's folder (Popen): an image pane's relative path resolves
            with set_curdoc(doc):
                png = thumbnail.make(doc.roots, namespace)
            if png is None:
                out["thumbnail"] = "none"
            else:
                thumb.write_bytes(png)
                out["thumbnail"] = "made"
        except Exception as exc:  # noqa: BLE001 - a thumbnail never refuses a publish: reason reported
            out.update(thumbnail="none", thumbnail_error=_one_line(f"{type(exc).__name__}: {exc}"))
    _write(result, out)


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


if __name__ == "__main__":
    _child(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]) if len(sys.argv) > 4 else None)
