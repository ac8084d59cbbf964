"""Run notebooks with nbval inside a real user server of a running lunarhub.

"Inside" means: the user's server is started through the hub; its process
environment (read from /proc/<pid>/environ: site credentials, the hub token of
that server, dask-gateway settings, JUPYTER_PATH with the Lunar kernel) is given
to `python -m pytest --nbval-lax`, run with `runuser` as the user's own system
account on a copy of the notebooks in the user's home. The kernels nbval starts
are then what the user's server would start for them (same account, same
kernel spec, same environment, same transport: Unix sockets in the user's
runtime dir, see `pytest_with_ipc_kernels`), without driving a browser.

Used by tests/integration/test_notebooks.py and by hand while writing notebooks:
    .venv/bin/python tests/support/notebook_runner.py CONFIG USER NOTEBOOK...
(`notebook_runner.py --pytest ARGS` is what runs as the user: pytest with ipc kernels.)
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ANSI = re.compile(r"(\x1b|#x1B)\[[0-9;]*m")
CELL_TIMEOUT = 170  # seconds; a notebook must finish in < 3 min anyway


@dataclass
class CellResult:
    notebook: str
    cell: str
    outcome: str  # passed / failed / error / skipped
    message: str = ""


@dataclass
class RunResult:
    returncode: int
    output: str
    cells: list[CellResult] = field(default_factory=list)
    seconds: float = 0.0
    per_notebook_s: dict[str, float] = field(default_factory=dict)

    def for_notebook(self, name: str) -> list[CellResult]:
        return [c for c in self.cells if Path(c.notebook).name == name]

    def failures(self, name: str | None = None) -> list[CellResult]:
        cells = self.for_notebook(name) if name else self.cells
        return [c for c in cells if c.outcome in ("failed", "error")]


def server_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    env = {}
    for item in raw.split(b"\0"):
        if b"=" in item:
            k, _, v = item.partition(b"=")
            env[k.decode()] = v.decode(errors="replace")
    return env


def stage(notebooks: list[Path], user: str, run_name: str) -> Path:
    """Copy notebooks into `~user/.nbval/<run_name>/`, owned by the user; returns the folder."""
    entry = pwd.getpwnam(user)
    base = Path(entry.pw_dir) / ".nbval"
    dest = base / run_name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for nb in notebooks:
        shutil.copy2(nb, dest / nb.name)
    for p in [base, dest, *dest.iterdir()]:
        os.chown(p, entry.pw_uid, entry.pw_gid)
    return dest


def parse_junit(path: Path) -> list[CellResult]:
    out = []
    if not path.exists():
        return out
    for case in ET.parse(path).getroot().iter("testcase"):
        # nbval: file is the notebook, name "Cell N" (N counts code cells from 0)
        nb = case.get("file") or case.get("classname", "")
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = ANSI.sub("", ((el.get("message") or "") + "\n" + (el.text or "")).strip())
        out.append(CellResult(nb, case.get("name", "?"), outcome, message))
    return out


def run_nbval(env: dict[str, str], user: str, folder: Path, timeout: float = 600) -> RunResult:
    """pytest --nbval-lax on `folder` as `user` with the server's environment."""
    junit = folder / "junit.xml"
    # The environment goes through exec, not the command line: `ps` must not show the
    # server's token and site passwords to other accounts. -m keeps it as given.
    cmd = [shutil.which("runuser") or "/usr/sbin/runuser", "-m", "-u", user, "--", "python",
           str(Path(__file__).resolve()), "--pytest", "-p", "no:cacheprovider", "--nbval-lax", "-q", "-rfE",
           f"--nbval-cell-timeout={CELL_TIMEOUT}", "--durations=0", f"--junitxml={junit}",
           "-o", "junit_family=xunit1", str(folder)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - t0
    result = RunResult(proc.returncode, proc.stdout + proc.stderr, parse_junit(junit), seconds)
    for case in ET.parse(junit).getroot().iter("testcase") if junit.exists() else []:
        nb = Path(case.get("file") or case.get("classname", "")).name
        result.per_notebook_s[nb] = result.per_notebook_s.get(nb, 0.0) + float(case.get("time") or 0)
    return result


def pytest_with_ipc_kernels(args: list[str]) -> int:
    """pytest in this process, nbval's kernels on Unix sockets in the user's runtime dir.

    The user's server starts kernels with `--KernelManager.transport=ipc`; nbval makes its
    kernels with a bare jupyter_client KernelManager (no parent application, so no Jupyter
    config file is read and there is no command line to give the switch to), which would
    put them on TCP ports any account on the host can connect to. The class nbval uses gets
    the server's defaults instead: transport `ipc`, connection file (and so the sockets,
    named after it) in the runtime dir, mode 0700.
    """
    import uuid

    import pytest
    from jupyter_client.manager import KernelManager
    from jupyter_core.paths import jupyter_runtime_dir
    from jupyter_core.utils import ensure_dir_exists

    runtime = jupyter_runtime_dir()
    ensure_dir_exists(runtime, 0o700)

    class IpcKernelManager(KernelManager):
        def __init__(self, **kwargs: object) -> None:
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("connection_file", os.path.join(runtime, f"kernel-nbval-{uuid.uuid4()}.json"))
            super().__init__(**kwargs)

    class IpcKernels:
        def pytest_configure(self) -> None:
            # Imported once pytest has loaded nbval as a plugin (so its asserts are still rewritten).
            import nbval.kernel

            nbval.kernel.KernelManager = IpcKernelManager  # type: ignore[misc]

    return int(pytest.main(args, plugins=[IpcKernels()]))


def describe_failures(result: RunResult, name: str, first_only: bool = False) -> str:
    """The failing cells of one notebook with their errors (later cells often fail only
    because an earlier one did: first_only keeps the cause)."""
    lines = []
    for c in result.failures(name)[: 1 if first_only else None]:
        lines.append(f"{name}: {c.cell} {c.outcome}:\n{c.message[-3000:]}")
    return "\n\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--pytest"]:  # what run_nbval runs as the user
        return pytest_with_ipc_kernels(argv[1:])
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: make `support` importable
    import yaml

    from support.stack import Stack

    cfg, user, *nbs = argv
    data = yaml.safe_load(Path(cfg).read_text())
    stack = Stack(config=Path(cfg), state=Path(data["state_dir"]), data=data)
    srv = stack.start_server(user)
    pid = srv.get("state", {}).get("pid") or stack.request(
        "GET", f"/hub/api/users/{user}", stack.admin_token()).json()["servers"][""]["state"]["pid"]
    folder = stage([Path(n).resolve() for n in nbs], user, f"dev-{os.getpid()}")
    res = run_nbval(server_environ(pid), user, folder)
    print(ANSI.sub("", res.output)[-1500:])
    for nb in nbs:
        print(describe_failures(res, Path(nb).name, first_only=True))
    print(f"{res.seconds:.1f}s", res.per_notebook_s)
    return res.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
