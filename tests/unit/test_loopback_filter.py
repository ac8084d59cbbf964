"""The loopback filter (lunarhub.platform.loopback) on this host's real nftables.

Listener and connectors are processes switched to throwaway uids (no account needed for a
socket's uid), so the test shows the kernel's behaviour, not a model of it."""

from __future__ import annotations

import os
import socket
import time

import pytest
import yaml

from lunarhub.config import Deployment, parse
from lunarhub.platform import loopback

A, B = 61231, 61232  # not in /etc/passwd: the filter keys on socket uids, not names


def _demo(**hub: object) -> Deployment:
    from support.stack import deployment_dict  # the demo deployment

    data = deployment_dict(__import__("pathlib").Path("/tmp/lh-loopback-unit"))
    data.setdefault("hub", {}).update(hub)
    return parse(yaml.safe_dump(data))


def test_missing_nft_is_a_clear_error_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loopback, "nft_path", lambda: None)
    problems = loopback.problems(_demo())
    assert problems and problems[0][0] == "hub.loopback_filter"
    assert "apt-get install nftables" in problems[0][1] and "loopback_filter: none" in problems[0][1]


def test_off_when_asked_or_when_every_server_is_one_account() -> None:
    assert not loopback.enabled(_demo(loopback_filter="none"))
    assert not loopback.enabled(_demo(isolation="single-account"))
    assert loopback.problems(_demo(loopback_filter="none")) == []


def test_an_unknown_mode_is_refused_at_validation() -> None:
    from lunarhub.config import ConfigError

    with pytest.raises(ConfigError, match="loopback_filter"):
        _demo(loopback_filter="iptables")


def _as(uid: int, fn) -> int:  # noqa: ANN001
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgid(uid)
            os.setuid(uid)
            code = fn()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _connect(port: int) -> int:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return 0  # answered
    except TimeoutError:
        return 3  # no answer
    except OSError:
        return 4


@pytest.fixture
def listener_of_a() -> int:
    if os.geteuid() != 0 or loopback.nft_path() is None:
        pytest.fail("this test needs root and nft (make install-test installs nftables)")
    loopback.admit(A)
    loopback.admit(B)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.setgid(A)
        os.setuid(A)
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        os.write(w, str(srv.getsockname()[1]).encode())
        os.close(w)
        while True:
            conn, _ = srv.accept()
            conn.close()
    os.close(w)
    port = int(os.read(r, 16))
    os.close(r)
    yield port
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    loopback.forget(A)
    loopback.forget(B)


def test_a_listener_answers_its_owner_and_root_and_not_another_account(listener_of_a: int) -> None:
    port = listener_of_a
    assert {A, B} <= loopback.admitted()
    assert _connect(port) == 0, "root (hub, proxy, gateway) must reach every listener"
    assert _as(A, lambda: _connect(port)) == 0, "the owner reaches its own listener"
    t0 = time.monotonic()
    assert _as(B, lambda: _connect(port)) == 3, "another lunarhub account must get no answer"
    assert time.monotonic() - t0 < 30
    # An account outside the filter (a service account, `nobody`) is not marked: it connects.
    assert _as(65534, lambda: _connect(port)) == 0


def test_admitting_twice_changes_nothing(listener_of_a: int) -> None:
    before = loopback.admitted()
    loopback.admit(A)
    assert loopback.admitted() == before
    assert _as(B, lambda: _connect(listener_of_a)) == 3
