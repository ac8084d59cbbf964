"""Shared helpers of the benchmarks: percentiles and writing one section of docs/benchmarks.md."""

from __future__ import annotations

import math
import platform
import re
import time
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def write_section(title: str, body: str) -> None:
    """Replace (or append) the `## {title}` section, leaving the others as they are."""
    stamp = f"_Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()} " \
            f"({platform.machine()}, Python {platform.python_version()})._"
    section = f"## {title}\n\n{stamp}\n\n{body.strip()}\n"
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section + "\n", text)
    else:
        text = text.rstrip() + "\n\n" + section
    DOC.write_text(text, encoding="utf-8")
