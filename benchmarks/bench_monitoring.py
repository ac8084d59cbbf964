"""Monitoring overhead on spawn time (issue 16): the same spawn -> ready through the hub API on two
real stacks running side by side, one with `monitoring.enabled` (Prometheus, node exporter,
lunarhub's exporter, the operator dashboard service, at the shipped intervals) and one without;
rounds interleaved (A, B, A, B, ...) so load on the machine hits both alike.

Run (root, under the stack lock): flock /tmp/lunarhub-stack.lock .venv/bin/python benchmarks/bench_monitoring.py
     [--rounds 6] [--no-write]
Writes docs/benchmarks.md, section "Monitoring overhead on spawn (issue 16)".
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_hub import spawn_time, stop  # noqa: E402
from report import p95, write_section  # noqa: E402
from support.stack import make_stack, open_tmpdir  # noqa: E402

USER = "cn-scientist"


def stack_with(monitoring: bool, prefix: str):
    tmp = open_tmpdir(prefix)
    s = make_stack(tmp, 2, monitoring=monitoring)
    if monitoring:
        # The shipped intervals (hub/lunarhub.yaml), not the tests' one-second ones.
        shipped = yaml.safe_load((ROOT / "hub" / "lunarhub.yaml").read_text()).get("monitoring", {})
        mon = s.data["monitoring"]
        for key in ("scrape_interval_seconds", "evaluation_interval_seconds", "exporter_interval_seconds",
                    "alert_for_seconds"):
            mon.pop(key, None)
            if key in shipped:
                mon[key] = shipped[key]
        s.config.write_text(yaml.safe_dump(s.data, allow_unicode=True, sort_keys=False))
    s.cli("up", timeout=300)
    return s, tmp


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    stacks = []
    try:
        stacks.append(stack_with(False, "bench-mon-off"))
        stacks.append(stack_with(True, "bench-mon-on"))
        times: dict[bool, list[float]] = {False: [], True: []}
        for i in range(args.rounds + 1):  # the first round of each warms caches: not counted
            for (s, _), on in zip(stacks, (False, True), strict=True):
                admin = s.admin_token()
                t = spawn_time(s.url, USER, admin)
                stop(s.url, USER, admin)
                if i:
                    times[on].append(t)
                print(f"monitoring {'on ' if on else 'off'}: spawn -> ready {t:.2f} s", flush=True)
    finally:
        for s, tmp in stacks:
            s.cli("down", check=False, timeout=240)
            shutil.rmtree(tmp, ignore_errors=True)
    med = statistics.median
    off, on = times[False], times[True]
    text = "\n".join([
        "| spawn -> ready (cn-scientist, hub API) | runs | median s | p95 s | ratio to off |",
        "|---|---:|---:|---:|---:|",
        f"| monitoring off (baseline) | {len(off)} | {med(off):.2f} | {p95(off):.2f} | 1.00x |",
        f"| monitoring on (shipped intervals) | {len(on)} | {med(on):.2f} | {p95(on):.2f} | "
        f"{med(on) / med(off):.2f}x |",
        "",
        "Two real stacks side by side, rounds interleaved (off, on, off, on, …), first round of each not "
        "counted. 'On' = Prometheus, the node exporter, lunarhub's exporter and the operator dashboard "
        "service running and scraping (the hub's `/hub/metrics` included) at the deployment file's intervals. "
        f"Spread of the repeats (p95 ÷ median − 1): off {p95(off) / med(off) - 1:.0%}, on {p95(on) / med(on) - 1:.0%}: "
        f"a difference of {med(on) / med(off) - 1:.0%} between the medians is "
        + ("within" if med(on) / med(off) - 1 <= max(p95(off) / med(off), p95(on) / med(on)) - 1 else "beyond")
        + " that spread.",
    ])
    print(text)
    if not args.no_write:
        write_section("Monitoring overhead on spawn (issue 16)",
                      text + "\n\nCommand: `flock /tmp/lunarhub-stack.lock .venv/bin/python benchmarks/bench_monitoring.py`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
