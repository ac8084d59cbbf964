"""Runs every benchmark and updates docs/benchmarks.md: `make bench`.

Each benchmark is its own script (runnable alone); this runs them in turn and
reports which failed, so one failure does not hide the other figures.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["bench_hub.py", "bench_catalog.py", "bench_terrain.py", "bench_gateway.py",
           "bench_dashboards.py", "bench_class.py", "bench_isolation.py"]


def main() -> int:
    failed = []
    for name in SCRIPTS:
        path = HERE / name
        if not path.exists():
            print(f"== {name}: not present, skipped")
            continue
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, str(path), *sys.argv[1:]]).returncode != 0:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
