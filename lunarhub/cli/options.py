"""What several commands share: the deployment file option and loading it."""

from __future__ import annotations

import argparse

from lunarhub import config
from lunarhub.config import Deployment, roster

CONFIG_HELP = "deployment YAML (default: $LUNARHUB_CONFIG or hub/lunarhub.yaml)"
# `render`, `course` and `doctor` also take --config after their name (they always have). argparse
# copies a subparser's defaults over the top-level namespace, so the top-level value is kept
# under its own name and merged once, after parsing.
_BEFORE_COMMAND = "config_before_command"


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """`--config` of the `lunarhub` command itself, given before the subcommand."""
    parser.add_argument("--config", dest=_BEFORE_COMMAND, metavar="CONFIG", help=CONFIG_HELP)


def merge_config(args: argparse.Namespace) -> argparse.Namespace:
    """One `args.config`: the subcommand's own if it was given, else the one before the subcommand."""
    before = getattr(args, _BEFORE_COMMAND, None)
    if getattr(args, "config", None) is None:
        args.config = before
    return args


def load(args: argparse.Namespace) -> Deployment:
    """The deployment with the roster overlay (users added by `lunarhub users`) applied."""
    d = roster.effective(config.load(args.config))
    from lunarhub.platform import tls

    # The CLI's requests to the hub and the sites verify with the deployment's CA (once `up` made it).
    tls.use_in_process(d)
    return d
