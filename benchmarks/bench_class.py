"""A class of N students starting at once (issue 6): log in, spawn, open tutorial 1.

Each student (an existing account with its tutorial copy, as after `lunarhub course
create`) does what a browser does, in its own thread, all released together:
  1. GET /hub/login, POST the login form (real password authenticator);
  2. POST /hub/api/users/<me>/server with the session cookie (+ XSRF header), poll until ready;
  3. GET /user/<me>/lab (the hub's OAuth dance sets the server cookie), then
     GET /user/<me>/api/contents/course-bench/<tutorial 1>: the notebook's JSON.
Reported: wall time until every student has notebook 1, and per-student p50/p95/max.

    sudo .venv/bin/python benchmarks/bench_class.py [--students 15]
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

from report import percentile  # noqa: E402


def student_run(url: str, user: str, password: str, notebook: str, go: threading.Event, out: dict,
                admin_token: str) -> None:
    from support.stack import server_origin, session

    go.wait()
    t0 = time.monotonic()
    s = session()
    steps = {}
    try:
        s.get(f"{url}/hub/login", timeout=60)
        r = s.post(f"{url}/hub/login?next=", data={"username": user, "password": password,
                                                  "_xsrf": s.cookies.get("_xsrf")}, allow_redirects=False, timeout=60)
        assert r.status_code == 302, f"login {r.status_code}"
        steps["login"] = time.monotonic() - t0
        xsrf = {"X-XSRFToken": s.cookies.get("_xsrf", "")}
        r = s.post(f"{url}/hub/api/users/{user}/server", headers=xsrf, timeout=60)
        assert r.status_code in (201, 202, 400), f"spawn {r.status_code} {r.text}"
        while True:
            # Readiness as the hub sees it (the operator's token: the browser would poll the spawn page).
            info = requests.get(f"{url}/hub/api/users/{user}", headers={"Authorization": f"token {admin_token}"},
                                timeout=60).json()
            if (info.get("servers", {}).get("") or {}).get("ready"):
                break
            assert time.monotonic() - t0 < 120, "server not ready after 120 s"
            time.sleep(0.25)
        steps["ready"] = time.monotonic() - t0
        lab = server_origin(url, user)
        r = s.get(f"{lab}/user/{user}/lab", timeout=60)
        assert r.status_code == 200, f"lab {r.status_code}"
        r = s.get(f"{lab}/user/{user}/api/contents/course-bench/{notebook}", timeout=60)
        assert r.status_code == 200 and r.json()["type"] == "notebook", f"contents {r.status_code}"
        steps["notebook"] = time.monotonic() - t0
        out[user] = {"ok": True, **steps}
    except Exception as exc:  # noqa: BLE001 - one failing student is a result, not a crash
        out[user] = {"ok": False, "error": f"{type(exc).__name__}: {exc}", **steps}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--students", type=int, default=15)
    ap.add_argument("--json", help="write the raw results here")
    args = ap.parse_args(argv)
    from support.stack import make_stack, open_tmpdir

    from lunarhub.courses import manage as courses
    from lunarhub.platform import accounts

    stack = make_stack(open_tmpdir("bench-class"))
    stack.cli("up", timeout=240)
    try:
        names = [f"bench-s{i:02d}" for i in range(1, args.students + 1)]
        csv = Path(stack.state.parent / "class.csv")
        csv.write_text("\n".join(f"{n},students" for n in names) + "\n")
        stack.cli("users", "import", str(csv), timeout=600)
        d = stack.deployment()
        for n in names:  # accounts and tutorial copies exist before the class starts
            accounts.prepare_user(d, n)
            courses.sync_home(d, "bench", n)
        notebook = courses.tutorial_files()[0]
        go, out = threading.Event(), {}
        threads = [threading.Thread(target=student_run, args=(stack.url, n, stack.password(n), notebook, go, out,
                                                            stack.admin_token()))
                   for n in names]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        go.set()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        done = [r["notebook"] for r in out.values() if r["ok"]]
        ready = [r["ready"] for r in out.values() if r["ok"]]
        summary = {"students": len(names), "ok": len(done), "wall_s": round(wall, 1),
                   "notebook_p50_s": round(statistics.median(done), 1) if done else None,
                   "notebook_p95_s": round(percentile(done, 0.95), 1) if done else None,
                   "notebook_max_s": round(max(done), 1) if done else None,
                   "ready_p95_s": round(percentile(ready, 0.95), 1) if ready else None,
                   "failures": {u: r["error"] for u, r in out.items() if not r["ok"]}}
        print(json.dumps(summary, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps({"summary": summary, "students": out}, indent=1))
        for n in names:
            stack.stop_server(n)
        return 0 if summary["ok"] == len(names) and wall < 60 else 1
    finally:
        stack.cli("down", check=False, timeout=240)


if __name__ == "__main__":
    sys.exit(main())
