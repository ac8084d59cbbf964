"""The cost of isolation (issue 12), part one: a kernel's execute round trip over Unix sockets
(`ipc`, what users' servers use now) against TCP (before), in the same run.

    .venv/bin/python benchmarks/bench_isolation.py [--n 300]

Starts one real ipykernel per transport with jupyter_client (no hub: the transport is the only
difference), sends `n` tiny execute requests to each, alternating transports per round so a busy
machine slows both alike, and writes the medians, p95s and their ratio to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import KernelManager

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import p95, write_section  # noqa: E402


def start(transport: str, folder: Path) -> tuple[KernelManager, object]:
    km = KernelManager(transport=transport, connection_file=str(folder / f"kernel-{transport}.json"))
    if transport == "ipc":
        km.ip = str(folder / "kernel-ipc")  # the socket files' prefix, in a private temp dir
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return km, kc


def round_trip(kc: object) -> float:
    t0 = time.perf_counter()
    kc.execute_interactive("1", timeout=30, output_hook=lambda msg: None)  # type: ignore[attr-defined]
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300, help="execute requests per transport")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lunarhub-bench-") as tmp:
        kernels = {t: start(t, Path(tmp)) for t in ("tcp", "ipc")}
        try:
            for _, kc in kernels.values():  # warm both up
                for _ in range(20):
                    round_trip(kc)
            times: dict[str, list[float]] = {"tcp": [], "ipc": []}
            for _ in range(args.n):
                for transport, (_, kc) in kernels.items():
                    times[transport].append(round_trip(kc))
        finally:
            for km, kc in kernels.values():
                kc.stop_channels()  # type: ignore[attr-defined]
                km.shutdown_kernel(now=True)
    med = {t: statistics.median(v) * 1000 for t, v in times.items()}
    tail = {t: p95(v) * 1000 for t, v in times.items()}
    body = (f"Kernel execute round trip (`execute_interactive(\"1\")`, {args.n} per transport, alternating, "
            "one real ipykernel each, no hub):\n\n"
            "| transport | median | p95 |\n|---|---|---|\n"
            + "".join(f"| {t} | {med[t]:.2f} ms | {tail[t]:.2f} ms |\n" for t in ("tcp", "ipc"))
            + f"\nipc / tcp median: **{med['ipc'] / med['tcp']:.2f}×** (below 1 means the Unix socket is faster).\n\n"
            "Command: `.venv/bin/python benchmarks/bench_isolation.py`. Not measured yet: spawn → ready and "
            "login → JupyterLab drawn before/after subdomains and cgroups, dashboard first plot over the Unix "
            "socket, terrain on 2 workers with cgroup limits.")
    print(body)
    write_section("Isolation (issue 12)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
