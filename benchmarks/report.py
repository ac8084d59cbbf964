"""Shared helpers of the benchmarks: percentiles and writing one section of docs/benchmarks.md."""

from __future__ import annotations

import math
import os
import platform
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def timed(fn: Callable[..., T], *args: object, **kwargs: object) -> tuple[T, float]:
    """`fn(*args, **kwargs)` and its wall time in seconds (perf_counter: monotonic, the finest clock)."""
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t0


def percentile(values: list[float], q: float) -> float:
    """The value at rank round(q * (n - 1)) of the sorted values, q in [0, 1]."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def replace_section(text: str, doc: Path = DOC) -> None:
    """Put `text`, whose first line is its `## ` heading, in place of the section with that
    heading (up to the next `## ` line), or append it; the other sections stay as they are.

    The file is read just before it is written, and replaced in one step, because several
    benchmarks update their own sections of the same file, possibly at the same time.
    """
    heading = text.split("\n", 1)[0]
    section = text.strip("\n") + "\n"
    old = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    match = pattern.search(old)
    if match:
        rest = old[match.end():]
        new = old[:match.start()] + section + ("\n" + rest if rest else "")
    else:
        new = old.rstrip() + "\n\n" + section
    doc.parent.mkdir(parents=True, exist_ok=True)
    tmp = doc.with_name(f".{doc.name}.{os.getpid()}.tmp")  # per process: two benchmarks may write at once
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, doc)


def write_section(title: str, body: str) -> None:
    """The `## {title}` section: a line saying when and where it was measured, then `body`."""
    stamp = f"_Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()} " \
            f"({platform.machine()}, Python {platform.python_version()})._"
    replace_section(f"## {title}\n\n{stamp}\n\n{body.strip()}\n")


def publish(title: str, body: str, write: bool = True) -> int:
    """Print a benchmark's `body` and (unless `write` is false: `--no-write`) make it the `## title`
    section of docs/benchmarks.md; the exit status of the benchmark."""
    print(body)
    if write:
        write_section(title, body)
    return 0
