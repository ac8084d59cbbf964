"""lunarhub.files: the one atomic writer for secrets, password files, roster, course state, the store."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lunarhub.files import write_atomic, write_private


def test_the_mode_is_the_callers_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "store.json", "{}", 0o640)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "store.json").stat().st_mode) == 0o640
    os.umask(0)
    try:
        write_private(tmp_path / "secrets" / "token", "s3cret")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "secrets" / "token").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700


def test_a_failed_write_leaves_the_old_content_and_no_temp_file(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "roster.json"
    write_atomic(target, "old")

    def full(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["roster.json"]


def test_a_link_planted_at_the_temp_name_is_not_written_through(tmp_path: Path) -> None:
    target, victim = tmp_path / "token", tmp_path / "victim"
    victim.write_text("untouched")
    (tmp_path / f".token.{os.getpid()}.tmp").symlink_to(victim)
    with pytest.raises(FileExistsError):
        write_private(target, "s3cret")
    assert victim.read_text() == "untouched" and not target.exists()
