"""A class logging in at once, with and without **start all** (issue 17; issue 6 for the cold class).

Two classes of N students each, in the same run on the same stack:
  - *pre-started*: the instructor's **start all** (lunarhub.courses.ops.run_batch: bounded
    concurrency, material pulled by each student's server), then `--wait` seconds (the issue's 5
    minutes by default; shorten it for a quick run), then every student logs in at once;
  - *cold*: the same number of students log in at once with no server running.
Each student, in its own thread, all released together, does what a browser does:
  1. GET /hub/login, POST the login form (real password authenticator);
  2. GET /hub/spawn/<me> (what the browser does after login: starts a stopped server, passes a
     running one) and wait until the hub says ready;
  3. GET /user/<me>/lab (the hub's OAuth dance, then JupyterLab's page): "JupyterLab drawn";
  4. pre-started class only: GET its tutorial 1 from the course folder (the material is there).
Reported: per class p50/p95/max of login → lab, wall time, and the ratio of the p95s.

    sudo .venv/bin/python benchmarks/bench_class.py [--students 30] [--wait 300] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import percentile, write_section  # noqa: E402


def student_run(url: str, user: str, password: str, notebook: str | None, go: threading.Event, out: dict,
                admin_token: str) -> None:
    from support.stack import server_origin, session

    go.wait()
    t0 = time.monotonic()
    s = session()
    steps = {}
    try:
        s.get(f"{url}/hub/login", timeout=120)
        r = s.post(f"{url}/hub/login?next=", data={"username": user, "password": password,
                                                  "_xsrf": s.cookies.get("_xsrf")}, allow_redirects=False, timeout=120)
        assert r.status_code == 302, f"login {r.status_code}"
        steps["login"] = time.monotonic() - t0
        # As a browser after login: the hub's spawn page starts the server (or, running, redirects to it).
        r = s.get(f"{url}/hub/spawn/{user}", allow_redirects=False, timeout=120)
        assert r.status_code in (200, 302), f"spawn {r.status_code} {r.text[:200]}"
        while True:
            info = requests.get(f"{url}/hub/api/users/{user}", headers={"Authorization": f"token {admin_token}"},
                                timeout=120).json()
            if (info.get("servers", {}).get("") or {}).get("ready"):
                break
            assert time.monotonic() - t0 < 300, "server not ready after 300 s"
            time.sleep(0.25)
        steps["ready"] = time.monotonic() - t0
        lab = server_origin(url, user)
        r = s.get(f"{lab}/user/{user}/lab", timeout=120)
        assert r.status_code == 200 and "jupyter-config-data" in r.text, f"lab {r.status_code}"
        steps["lab"] = time.monotonic() - t0
        if notebook:
            r = s.get(f"{lab}/user/{user}/api/contents/{notebook}", timeout=120)
            assert r.status_code == 200 and r.json()["type"] == "notebook", f"contents {r.status_code}"
        out[user] = {"ok": True, **steps}
    except Exception as exc:  # noqa: BLE001 - one failing student is a result, not a crash
        out[user] = {"ok": False, "error": f"{type(exc).__name__}: {exc}", **steps}


def login_wave(stack, names: list[str], notebook: str | None) -> dict:
    go, out = threading.Event(), {}
    threads = [threading.Thread(target=student_run, args=(stack.url, n, stack.password(n), notebook, go, out,
                                                        stack.admin_token())) for n in names]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    go.set()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    lab = [r["lab"] for r in out.values() if r["ok"]]
    return {"students": len(names), "ok": len(lab), "wall_s": round(wall, 1),
            "lab_p50_s": round(statistics.median(lab), 2) if lab else None,
            "lab_p95_s": round(percentile(lab, 0.95), 2) if lab else None,
            "lab_max_s": round(max(lab), 2) if lab else None,
            "failures": {u: r["error"] for u, r in out.items() if not r["ok"]}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--students", type=int, default=30)
    ap.add_argument("--wait", type=float, default=300, help="seconds between start all and the logins (issue: 300)")
    ap.add_argument("--json", help="write the raw results here")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args(argv)
    from support.stack import make_stack, open_tmpdir

    from lunarhub.courses import material, ops

    stack = make_stack(open_tmpdir("bench-class"), courses=True)
    stack.cli("up", timeout=240)
    try:
        base = stack.deployment()
        from lunarhub import config

        raw = config.load(stack.config)
        pre = [f"bench-p{i:02d}" for i in range(1, args.students + 1)]
        cold = [f"bench-c{i:02d}" for i in range(1, args.students + 1)]
        for course, names in (("bench-pre", pre), ("bench-cold", cold)):
            ops.create_course(base, course, "instructor")
            ops.import_roster(raw, course, "\n".join(names) + "\n", "bench roster", None)
        d = stack.deployment()
        course = ops.get_course(d, "bench-pre")
        assert course is not None
        t0 = time.monotonic()
        batch = ops.run_batch(d, course, "start").to_json()
        start_all_s = round(time.monotonic() - t0, 1)
        assert not batch["errors"], batch["errors"]
        time.sleep(args.wait)
        nb = f"{material.folder_name('bench-pre')}/{material.notebooks(d, 'bench-pre')[0]}"
        warm = login_wave(stack, pre, nb)
        cold_result = login_wave(stack, cold, None)
        ratio = (round(cold_result["lab_p95_s"] / warm["lab_p95_s"], 1)
                 if warm["lab_p95_s"] and cold_result["lab_p95_s"] else None)
        summary = {"start_all_s": start_all_s, "concurrency": ops.concurrency(d), "wait_s": args.wait,
                   "pre_started": warm, "cold": cold_result, "p95_ratio_cold_over_pre": ratio}
        print(json.dumps(summary, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=1))
        complete = warm["ok"] == args.students and cold_result["ok"] == args.students
        if complete and not args.no_write:  # a wave with failures is printed, never written as figures
            write_section("A class of students logging in at once: start all vs cold (issue 17)", f"""
`benchmarks/bench_class.py --students {args.students} --wait {args.wait:g}`: {args.students} students log in at
once (threads: login form, spawn request, wait until ready, JupyterLab's page through the OAuth dance).
*Pre-started*: the instructor's **start all** (concurrency {ops.concurrency(d)}, material pulled) took
{start_all_s} s, then {args.wait:g} s passed. *Cold*: {args.students} other students, no server running.

| class | ok | login → JupyterLab p50 | p95 | max | wall |
|---|---|---|---|---|---|
| pre-started | {warm['ok']}/{args.students} | {warm['lab_p50_s']} s | {warm['lab_p95_s']} s | {warm['lab_max_s']} s | {warm['wall_s']} s |
| cold | {cold_result['ok']}/{args.students} | {cold_result['lab_p50_s']} s | {cold_result['lab_p95_s']} s | {cold_result['lab_max_s']} s | {cold_result['wall_s']} s |

p95 cold / pre-started: **{ratio}×** (goal for the pre-started class: p95 ≤ 5 s).
""")
        for n in pre + cold:
            stack.stop_server(n)
        return 0 if complete else 1
    finally:
        stack.cli("down", check=False, timeout=240)


if __name__ == "__main__":
    sys.exit(main())
