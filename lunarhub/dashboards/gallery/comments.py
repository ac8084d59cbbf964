"""Reviewer comments, one SQLite file in the dashboards store (survives hub restarts)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

# The store's own backstop (the model's largest `max_comment_chars`); callers check the
# deployment's limit first so the refusal names it (limits.check_comment).
MAX_LEN = 100_000


class Comments:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("""CREATE TABLE IF NOT EXISTS comments (
                id INTEGER PRIMARY KEY, owner TEXT NOT NULL, slug TEXT NOT NULL, version INTEGER NOT NULL,
                author TEXT NOT NULL, created REAL NOT NULL, text TEXT NOT NULL)""")
            db.execute("CREATE INDEX IF NOT EXISTS by_dash ON comments (owner, slug, version)")
        self.path.chmod(0o600)

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def add(self, owner: str, slug: str, version: int, author: str, text: str) -> dict[str, Any]:
        text = text.strip()
        if not text:
            raise ValueError("empty comment")
        if len(text) > MAX_LEN:
            raise ValueError(f"comment longer than {MAX_LEN} characters")
        now = time.time()
        with self._db() as db:
            cur = db.execute("INSERT INTO comments (owner, slug, version, author, created, text) "
                             "VALUES (?, ?, ?, ?, ?, ?)", (owner, slug, version, author, now, text))
        return {"id": cur.lastrowid, "version": version, "author": author, "created": now, "text": text}

    def list(self, owner: str, slug: str, version: int | None = None) -> list[dict[str, Any]]:
        q = "SELECT id, version, author, created, text FROM comments WHERE owner=? AND slug=?"
        args: tuple = (owner, slug)
        if version is not None:
            q += " AND version=?"
            args += (version,)
        with self._db() as db:
            rows = db.execute(q + " ORDER BY created", args).fetchall()
        return [dict(zip(("id", "version", "author", "created", "text"), r, strict=True)) for r in rows]

    def count(self, owner: str, slug: str) -> int:
        with self._db() as db:
            return db.execute("SELECT COUNT(*) FROM comments WHERE owner=? AND slug=?", (owner, slug)).fetchone()[0]
