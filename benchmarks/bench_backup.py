"""Backup and restore (issue 16): time and size of `lunarhub backup` of a running stack's state and of
`lunarhub restore` of it into a fresh state dir, for the demo state and for one with 1,000 dashboard
versions.

    flock /tmp/lunarhub-stack.lock .venv/bin/python benchmarks/bench_backup.py [--repeat 3] [--versions 1000]
                                                                               [--no-write]

"demo": the demo deployment (tests/support/stack.py, dashboards on) right after `lunarhub up`, with
notebooks/dashboards/lola_explorer.ipynb stored once by cn-scientist and one comment. "1,000 versions":
the same state plus `--versions` versions (10 dashboards of cn-scientist, the example notebook with a
cell that differs per version, as the gallery stores them) and one comment per version, created through
the store and comments APIs directly (not by running 1,000 notebooks). Each backup is taken while the
stack runs (SQLite online backup); each restore goes into a new, absent state dir (nothing running
there), verification included. Timings are reported, never asserted; the section
"## Backup and restore (issue 16)" of docs/benchmarks.md is rewritten.
"""

from __future__ import annotations

import argparse
import grp
import json
import shutil
import statistics
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(HERE))

from report import publish, timed  # noqa: E402

EXAMPLE = ROOT / "notebooks" / "dashboards" / "lola_explorer.ipynb"


def add_versions(d, count: int, per_dashboard: int = 100) -> None:
    from lunarhub.dashboards.gallery.comments import Comments
    from lunarhub.dashboards.store import Store

    store = Store.for_deployment(d)
    comments = Comments(store.root / "comments.sqlite")
    gid = grp.getgrnam("cn-scientist").gr_gid
    base = json.loads(EXAMPLE.read_text())
    for i in range(count):
        slug = f"bench-{i // per_dashboard:02d}"
        nb = dict(base, cells=[*base["cells"], {"cell_type": "code", "metadata": {}, "outputs": [],
                                                "execution_count": None, "source": f"version = {i}"}])
        v, _ = store.publish("cn-scientist", slug, title=f"Bench {slug}", description="benchmark",
                             notebook="lola_explorer.ipynb", files={"lola_explorer.ipynb": json.dumps(nb).encode()},
                             share_with=["reviewers"], environment={"python": "3.11"}, gid=gid)
        comments.add("cn-scientist", slug, v.version, "reviewer", f"comment on version {v.version}")


def measure(d, work: Path, repeat: int, label: str) -> dict[str, float]:
    from lunarhub import config
    from lunarhub.operations import backup as ops

    backups, restores, size, files = [], [], 0, 0
    for n in range(repeat):
        dest = work / f"{label}-backups"
        res, seconds = timed(ops.backup, d, dest)
        backups.append(seconds)
        size, files = ops.size_of(res.path), res.files
        target_cfg = work / f"{label}-restore-{n}.yaml"
        data = json.loads(json.dumps(d.model_dump(mode="json")))
        data["state_dir"] = str(work / f"{label}-restored-{n}")
        target_cfg.write_text(yaml.safe_dump(data, allow_unicode=True))
        target = config.load(target_cfg)
        restores.append(timed(ops.restore, target, res.path)[1])
        shutil.rmtree(target.state_path)
        shutil.rmtree(res.path)
    return {"files": files, "mib": size / 2**20, "backup_s": statistics.median(backups),
            "backup_max_s": max(backups), "restore_s": statistics.median(restores), "restore_max_s": max(restores)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--versions", type=int, default=1000)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    from support.stack import make_stack, open_tmpdir

    from lunarhub.dashboards.gallery.comments import Comments
    from lunarhub.dashboards.store import Store

    work = open_tmpdir("bench-backup")
    (work / "stack").mkdir(mode=0o755)  # the sites' accounts traverse it to their data
    s = make_stack(work / "stack", 1, dashboards=True)
    rows = {}
    try:
        s.cli("up", timeout=240)
        d = s.deployment()
        store = Store.for_deployment(d)
        store.publish("cn-scientist", "lola-explorer", title="LOLA explorer", description="demo",
                      notebook="lola_explorer.ipynb", files={"lola_explorer.ipynb": EXAMPLE.read_bytes()},
                      share_with=["reviewers"], environment={}, gid=grp.getgrnam("cn-scientist").gr_gid)
        Comments(store.root / "comments.sqlite").add("cn-scientist", "lola-explorer", 1, "reviewer", "demo")
        rows["demo state"] = measure(d, work, args.repeat, "demo")
        _, made = timed(add_versions, d, args.versions)
        rows[f"demo + {args.versions:,} dashboard versions"] = measure(d, work, args.repeat, "versions")
    finally:
        s.cli("down", check=False, timeout=240)
        shutil.rmtree(work, ignore_errors=True)
    lines = ["| state | files | backup size (MiB) | backup (s, median) | restore (s, median) |",
             "|---|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['files']:,} | {r['mib']:.1f} | {r['backup_s']:.2f} (max {r['backup_max_s']:.2f}) "
                     f"| {r['restore_s']:.2f} (max {r['restore_max_s']:.2f}) |")
    body = "\n".join(lines) + (
        f"\n\n`benchmarks/bench_backup.py --repeat {args.repeat} --versions {args.versions}`: each backup taken "
        "while the demo stack runs (hub, sites, gallery; SQLite online backup of the hub and comments "
        "databases), without homes; each restore into an absent state dir, the backup verified first and the "
        "rebuilt tree verified again before it is renamed into place. Backups are uncompressed folders (one "
        f"file per stored file, 0600 root). The {args.versions:,} versions (10 dashboards, the example "
        f"notebook plus one cell each, one comment each) were stored through the store API in {made:.1f} s.")
    return publish("Backup and restore (issue 16)", body, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
