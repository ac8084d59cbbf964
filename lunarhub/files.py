"""Writing a file so that nobody ever sees it half-written or with the wrong permissions.

Used for secrets, the sites' password files, the roster overlay, course state and the dashboards
store: a crash mid-write leaves the previous content, and the new file has its final mode from the
moment it exists (a secret is never briefly readable by others, whatever the umask).
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` in one step (write a sibling temp file, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # O_EXCL|O_NOFOLLOW: a file or link planted under the temp name is refused, not written through.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits away; the caller's mode is the contract
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_private(path: Path, text: str) -> None:
    """A file only its owner reads (0600) in a folder only its owner enters (created 0700)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, text, 0o600)
