"""The `lunarhub` command: one argparse tree, each command registered by its own module.

The commands listed in `lunarhub --help` are grouped by where they run: the operator's commands
on the machine that hosts the stack, the in-server commands in a user's server (a JupyterLab
terminal or notebook), as that user.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from types import ModuleType

import lunarhub
from lunarhub.cli import (
    audit,
    backup,
    catalog,
    config,
    course,
    credentials,
    doctor,
    monitoring,
    render,
    stack,
    upgrade,
    users,
)
from lunarhub.cli import usage as usage_cli
from lunarhub.cli.options import add_config_option, merge_config
from lunarhub.config import ConfigError
from lunarhub.dashboards.publishing import cli as publishing
from lunarhub.platform import hubclient

# (heading, modules whose register() adds the commands under it), in the order --help lists them.
GROUPS: tuple[tuple[str, tuple[ModuleType, ...]], ...] = (
    ("operator commands (on the machine that hosts the stack)",
     (stack, config, users, credentials, audit, backup, upgrade, monitoring, usage_cli, catalog, render, course)),
    ("in-server commands (as a user, in their JupyterLab server's terminal or notebook)",
     (publishing, doctor)),
)
USAGE = "lunarhub [-h] [--version] [--config CONFIG] COMMAND ..."


def _summary(parser: argparse.ArgumentParser) -> str:
    return " ".join((parser.description or "").split())


def _listing(heading: str, commands: dict[str, argparse.ArgumentParser]) -> str:
    width = max(len(name) for name in commands) + 2
    lines = [f"{heading}:"]
    for name, parser in commands.items():
        wrapped = textwrap.wrap(_summary(parser), width=max(40, 78 - width - 2)) or [""]
        lines.append(f"  {name:{width}s}{wrapped[0]}")
        lines.extend(" " * (width + 2) + more for more in wrapped[1:])
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lunarhub", usage=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The analysis environment of the joint Russian-Chinese lunar data center.")
    p.add_argument("--version", action="version", version=f"lunarhub {lunarhub.__version__}")
    add_config_option(p)
    # The flat list argparse would print is replaced by the grouped one in the epilog.
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", prog="lunarhub",
                           help=argparse.SUPPRESS)
    listings = []
    for heading, modules in GROUPS:
        before = set(sub.choices)
        for module in modules:
            module.register(sub)
        listings.append(_listing(heading, {n: q for n, q in sub.choices.items() if n not in before}))
    p.epilog = "\n\n".join([*listings, "`lunarhub COMMAND --help` shows a command's options."])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `lunarhub` command; the exit code is the command's (2 for a bad deployment file)."""
    args = merge_config(build_parser().parse_args(sys.argv[1:] if argv is None else list(argv)))
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except hubclient.HubUnavailable as exc:
        print(f"lunarhub: {exc}; is it running? (`lunarhub status`)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
