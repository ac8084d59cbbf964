"""`lunarhub catalog ...` subcommands (wired into lunarhub.cli.commands by the hub CLI)."""

from __future__ import annotations

import argparse
import sys

from lunarhub.data import catalog


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lunarhub catalog", description="Data catalogs of the lunar data sites")
    sub = parser.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="check catalogs: schema, metadata, policy, CRS, every entry opens")
    v.add_argument("path", nargs="?", default=None, help="a catalog file or a folder of *.yaml (default: catalogs/)")
    v.add_argument("--no-open", action="store_true", help="check metadata only, do not open the data")
    args = parser.parse_args(argv)
    if args.cmd == "validate":
        problems = catalog.validate(args.path, open_data=not args.no_open)
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print(f"{len(problems)} problem(s)", file=sys.stderr)
            return 1
        print(f"catalogs OK: {args.path or catalog.ROOT_CATALOG.parent}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
