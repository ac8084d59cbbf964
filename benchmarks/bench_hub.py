"""Hub benchmarks (issue 2): login -> JupyterLab ready, and 10 users spawning at once.

Run: .venv/bin/python benchmarks/bench_hub.py [--rounds 10] [--users 10] [--no-write]

Starts its own lunarhub stack on free ports (real hub, proxy, system accounts) and,
as a baseline in the same run, a stock JupyterHub (SimpleLocalProcessSpawner,
dummy auth) with the same single-user command. Prints medians/p95 and ratios and
writes them to docs/benchmarks.md (section "Hub (issue 2)").
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import p95, write_section  # noqa: E402
from support.ports import free_port  # noqa: E402
from support.stack import make_stack, open_tmpdir  # noqa: E402

BIN = Path(sys.executable).parent


def wait_ready(base: str, user: str, token: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = requests.get(f"{base}/hub/api/users/{user}", headers={"Authorization": f"token {token}"}, timeout=10)
        srv = r.json().get("servers", {}).get("")
        if srv and srv.get("ready"):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{user} not ready")


def stop(base: str, user: str, token: str) -> None:
    requests.delete(f"{base}/hub/api/users/{user}/server", headers={"Authorization": f"token {token}"}, timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = requests.get(f"{base}/hub/api/users/{user}", headers={"Authorization": f"token {token}"}, timeout=10)
        if "" not in r.json().get("servers", {}):
            return
        time.sleep(0.2)


def spawn_time(base: str, user: str, token: str) -> float:
    t0 = time.perf_counter()
    r = requests.post(f"{base}/hub/api/users/{user}/server", headers={"Authorization": f"token {token}"},
                      timeout=120)
    r.raise_for_status()
    wait_ready(base, user, token)
    return time.perf_counter() - t0


def browser_login_to_lab(browser, stack, user: str) -> float:
    from support.browser import hub_login

    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        t0 = time.perf_counter()
        hub_login(page, stack.url, user, stack.password(user))
        page.wait_for_selector(".jp-LabShell", timeout=120_000)
        return time.perf_counter() - t0
    finally:
        ctx.close()


def stock_hub(rounds: int) -> list[float]:
    """Baseline: stock JupyterHub config, same machine, same run."""
    tmp = Path(tempfile.mkdtemp(prefix="lunarhub-bench-stock-"))
    port, hub_port, api_port = free_port(), free_port(), free_port()
    token = os.urandom(16).hex()
    cfg = tmp / "jupyterhub_config.py"
    cfg.write_text(f"""
c.JupyterHub.ip = '127.0.0.1'
c.JupyterHub.port = {port}
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{api_port}'
c.ConfigurableHTTPProxy.command = ['{ROOT / "node_modules/.bin/configurable-http-proxy"}']
c.JupyterHub.db_url = 'sqlite:///{tmp}/jh.sqlite'
c.JupyterHub.cookie_secret = bytes.fromhex('{os.urandom(32).hex()}')
c.JupyterHub.authenticator_class = 'dummy'
c.JupyterHub.spawner_class = 'simple'
c.Spawner.cmd = ['{BIN / "jupyterhub-singleuser"}']
c.Spawner.args = ['--allow-root']
c.Authenticator.allowed_users = {{'bench'}}
c.JupyterHub.services = [{{'name': 'bench', 'api_token': '{token}'}}]
c.JupyterHub.load_roles = [{{'name': 'bench', 'scopes': ['admin:servers', 'admin:users'], 'services': ['bench']}}]
""")
    proc = subprocess.Popen([str(BIN / "jupyterhub"), "-f", str(cfg)], cwd=tmp,
                            stdout=open(tmp / "hub.log", "wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "/hub/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("stock hub did not start: " + (tmp / "hub.log").read_text()[-2000:])
            time.sleep(0.3)
        times = []
        for _ in range(rounds):
            times.append(spawn_time(base, "bench", token))
            stop(base, "bench", token)
        return times
    finally:
        proc.terminate()
        proc.wait(60)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    stock = stock_hub(args.rounds)
    print("stock spawn -> ready: " + ", ".join(f"{t:.2f}" for t in stock), flush=True)
    tmp = open_tmpdir("bench-hub")
    stack = make_stack(tmp)
    stack.cli("up", timeout=240)
    try:
        admin = stack.admin_token()
        api_times = []
        for _ in range(args.rounds):
            api_times.append(spawn_time(stack.url, "cn-scientist", admin))
            stop(stack.url, "cn-scientist", admin)
            print(f"spawn -> ready: {api_times[-1]:.2f} s", flush=True)
        from support.browser import chromium

        lab_times = []
        with chromium() as browser:
            for _ in range(args.rounds):
                lab_times.append(browser_login_to_lab(browser, stack, "cn-scientist"))
                stop(stack.url, "cn-scientist", admin)
                print(f"login -> lab: {lab_times[-1]:.2f} s", flush=True)

        roster = tmp / "bench.csv"
        names = [f"bench-{i:02d}" for i in range(args.users)]
        roster.write_text("username,groups\n" + "".join(f"{n},cn-science\n" for n in names))
        stack.cli("users", "import", str(roster))
        # Accounts exist before the burst (as for a class): create them with one spawn each.
        with ThreadPoolExecutor(args.users) as pool:
            list(pool.map(lambda n: spawn_time(stack.url, n, admin), names))
            list(pool.map(lambda n: stop(stack.url, n, admin), names))
            t0 = time.perf_counter()
            each = list(pool.map(lambda n: spawn_time(stack.url, n, admin), names))
            wall = time.perf_counter() - t0
            list(pool.map(lambda n: stop(stack.url, n, admin), names))
    finally:
        stack.cli("down", check=False)
        shutil.rmtree(tmp, ignore_errors=True)

    med = statistics.median
    rows = [
        ("stock JupyterHub spawn -> ready (API, baseline)", med(stock), p95(stock), 1.0),
        ("lunarhub spawn -> ready (API, system account)", med(api_times), p95(api_times),
         med(api_times) / med(stock)),
        ("lunarhub login -> JupyterLab drawn (Chromium)", med(lab_times), p95(lab_times),
         med(lab_times) / med(stock)),
        (f"{args.users} users spawning at once: each", med(each), p95(each), med(each) / med(stock)),
    ]
    lines = ["| measurement | median s | p95 s | ratio to stock median |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {m:.2f} | {p:.2f} | {r:.2f}x |" for name, m, p, r in rows]
    lines.append(f"\n{args.users} users spawning at once: all ready after **{wall:.2f} s** wall time "
                 f"({args.rounds} rounds for single spawns).")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("Hub (issue 2)", text + "\n\nCommand: `.venv/bin/python benchmarks/bench_hub.py`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
