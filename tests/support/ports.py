"""Free TCP ports for the processes the tests and benchmarks start."""

from __future__ import annotations

import socket

_handed_out: set[int] = set()


def free_port() -> int:
    """A free port not handed out before in this run: the kernel may offer a just-freed
    port twice in a row, and one deployment must not get the same port for two keys."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
