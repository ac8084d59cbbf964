"""`lunarhub publish`, `lunarhub unpublish`, `lunarhub dashboards list` (from a user's server)."""

from __future__ import annotations

import argparse
import sys
import time

from lunarhub.dashboards.publishing.actions import PublishError, list_dashboards, publish, unpublish
from lunarhub.dashboards.publishing.validate import DEFAULT_TIMEOUT, ValidationError


def _split(values: list[str]) -> list[str]:
    return [x for v in values for x in v.replace(",", " ").split() if x]


def register(sub: argparse._SubParsersAction) -> None:
    """Add publish, unpublish and dashboards to a `lunarhub` command tree (or this module's own)."""
    pub = sub.add_parser("publish", description="validate a notebook and publish it as a new dashboard version")
    pub.add_argument("notebook", help="the notebook, relative to the current folder")
    pub.add_argument("--title", required=True, help="shown in the gallery")
    pub.add_argument("--description", default="", help="one paragraph for the gallery")
    pub.add_argument("--share-with", action="append", default=[],
                     help="groups or users (comma-separated; user:NAME to force a user)")
    pub.add_argument("--files", action="append", default=[],
                     help="files the notebook reads, relative to its folder (globs allowed)")
    pub.add_argument("--slug", help="URL name (default: from the title)")
    pub.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="validation timeout, seconds")
    un = sub.add_parser("unpublish", description="remove a published dashboard (or one version) and revoke access")
    un.add_argument("slug", help="the dashboard's URL name")
    un.add_argument("--version", type=int, help="delete only this version")
    dash = sub.add_parser("dashboards", description="dashboards list: the dashboards you may open")
    dash.add_argument("action", choices=["list"], help="list (the only action)")
    dash.add_argument("--mine", action="store_true", help="only the dashboards you published")
    for p in (pub, un, dash):
        p.set_defaults(handler=run)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lunarhub", description="Publish notebooks as Panel dashboards")
    register(p.add_subparsers(dest="command", required=True))
    return p


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(sys.argv[1:] if argv is None else argv))


def run(args: argparse.Namespace) -> int:
    """publish, unpublish or dashboards list with parsed arguments."""
    try:
        if args.command == "publish":
            t0 = time.monotonic()
            out = publish(args.notebook, args.title, description=args.description,
                          share_with=_split(args.share_with), files=_split(args.files), slug=args.slug,
                          timeout=args.timeout)
            what = "published" if out.get("created") else "unchanged (same content as the latest version)"
            print(f"{out['owner']}/{out['slug']} v{out['version']} {what} in {time.monotonic() - t0:.1f} s")
            print(f"  open:    {out['url']}")
            print(f"  gallery: {out['gallery_url']}")
            print(f"  shared with: {', '.join(out['share_groups'] + out['share_users']) or 'nobody'}")
            print(f"  hash:    {out['hash']}")
            for x in out.get("lineage") or []:
                print(f"  data:    {x.get('entry') or x.get('path')} (site {x.get('site')}, policy {x.get('policy')})")
            if why := out.get("thumbnail_error") or out.get("thumbnail_refused"):
                print(f"  note: no gallery thumbnail ({why})", file=sys.stderr)
            elif out.get("created") and not out.get("thumbnail"):
                print("  note: no gallery thumbnail (no HoloViews, Matplotlib or image pane to draw)",
                      file=sys.stderr)
        elif args.command == "unpublish":
            out = unpublish(args.slug, version=args.version)
            print(f"unpublished {out.get('unpublished') or args.slug}"
                  + (f" v{args.version}" if args.version else ""))
        else:
            for x in list_dashboards(mine=args.mine):
                print(f"{x['owner']}/{x['slug']:30s} v{x['version']:<3d} {x['title']}  {x['url']}")
        return 0
    except ValidationError as exc:
        print(f"lunarhub publish: refused: {exc}", file=sys.stderr)
        if exc.detail:
            print(exc.detail, file=sys.stderr)
        return 2
    except PublishError as exc:
        print(f"lunarhub {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
