"""`lunarhub config`: validate the deployment file without starting anything."""

from __future__ import annotations

import argparse

from lunarhub.cli.options import load


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", description="validate the deployment file (errors name the key and line); "
                       "`lunarhub config reference` prints every key it accepts")
    p.add_argument("action", nargs="?", choices=["check", "reference"], default="check",
                   help="check (default): validate --config; reference: print docs/config-reference.md")
    p.set_defaults(handler=cmd_config)


def cmd_config(args: argparse.Namespace) -> int:
    if args.action == "reference":
        from lunarhub.config import reference

        print(reference.render(), end="")
        return 0
    d = load(args)
    print(f"{d.config_file}: valid ({len(d.users)} users, {len(d.groups)} groups, "
          f"{len(d.projects)} joint project{'' if len(d.projects) == 1 else 's'}, ports "
          + ", ".join(f"{k}={v}" for k, v in d.ports().items()) + ")")
    return 0
