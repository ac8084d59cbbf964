"""Progress of one notebook, read from the notebook itself (its cells' execution counts and outputs).

Where it comes from (lunarhub.courses.ops): a running server is asked through its contents API as
the student — with real-time collaboration on, the server holds the live document and writes what
the student ran within about a second, saved or not — and its sessions say whether a kernel is
busy on it; a stopped server's saved file is read as the student.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DONE, PART, UNTOUCHED, MISSING, UNREADABLE = "done", "part", "untouched", "missing", "unreadable"


@dataclass
class NotebookProgress:
    state: str  # done | part | untouched | missing | unreadable
    ran: int = 0
    cells: int = 0
    last_error: str = ""
    kernel: str = ""  # idle / busy / "" (no kernel), from the running server
    source: str = ""  # "server" (live) or "file" (saved copy)

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def of_notebook(nb: Any) -> NotebookProgress:
    """done: every code cell ran and none ended in an error; part: some ran; untouched: none."""
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        return NotebookProgress(UNREADABLE)
    code = [c for c in nb["cells"] if isinstance(c, dict) and c.get("cell_type") == "code"
            and _text(c.get("source")).strip()]
    ran = [c for c in code if c.get("execution_count")]
    last_error = ""
    for cell in code:
        for out in cell.get("outputs") or []:
            if isinstance(out, dict) and out.get("output_type") == "error":
                last_error = f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"[:300]
    if not ran:
        state = UNTOUCHED
    elif len(ran) == len(code) and not last_error:
        state = DONE
    else:
        state = PART
    return NotebookProgress(state, len(ran), len(code), last_error)
