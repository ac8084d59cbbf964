"""`lunarhub publish`, `lunarhub unpublish`, `lunarhub dashboards list` (from a user's server)."""

from __future__ import annotations

import argparse
import sys
import time

from lunarhub.dashboards.publishing.actions import PublishError, list_dashboards, publish, unpublish
from lunarhub.dashboards.publishing.validate import DEFAULT_TIMEOUT, ValidationError


def _split(values: list[str]) -> list[str]:
    return [x for v in values for x in v.replace(",", " ").split() if x]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lunarhub", description="Publish notebooks as Panel dashboards")
    sub = p.add_subparsers(dest="command", required=True)
    pub = sub.add_parser("publish", help="validate a notebook and publish it as a new dashboard version")
    pub.add_argument("notebook")
    pub.add_argument("--title", required=True)
    pub.add_argument("--description", default="")
    pub.add_argument("--share-with", action="append", default=[],
                     help="groups or users (comma-separated; user:NAME to force a user)")
    pub.add_argument("--files", action="append", default=[],
                     help="files the notebook reads, relative to its folder (globs allowed)")
    pub.add_argument("--slug", help="URL name (default: from the title)")
    pub.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="validation timeout, seconds")
    un = sub.add_parser("unpublish", help="remove a dashboard (or one version) and revoke access")
    un.add_argument("slug")
    un.add_argument("--version", type=int, help="delete only this version")
    dash = sub.add_parser("dashboards", help="dashboards you may open")
    dash.add_argument("action", choices=["list"])
    dash.add_argument("--mine", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
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
