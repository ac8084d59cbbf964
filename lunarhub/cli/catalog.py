"""`lunarhub catalog validate [PATH]`: check the data catalogs of the lunar data sites."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = "check the data catalogs of the lunar data sites"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="ACTION")
    v = sub.add_parser("validate", help="check catalogs: schema, metadata, policy, CRS, every entry opens",
                       description="check catalogs: schema, metadata, policy, CRS, every entry opens")
    v.add_argument("path", nargs="?", default=None, help="a catalog file or a folder of *.yaml (default: catalogs/)")
    v.add_argument("--no-open", action="store_true", help="check metadata only, do not open the data")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("catalog", description=DESCRIPTION + ": lunarhub catalog validate [PATH]")
    add_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from lunarhub.data import catalog

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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lunarhub catalog", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
