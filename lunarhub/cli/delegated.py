"""Commands whose arguments belong to the module that runs them (render, course, doctor).

Such a module offers `build_parser()` and `run(args)`; its parser becomes the subcommand's, so
`lunarhub render --help` is the renderer's own help and nothing is parsed twice.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def register(sub: argparse._SubParsersAction, name: str, own: argparse.ArgumentParser,
             run: Callable[[argparse.Namespace], int], description: str | None = None) -> argparse.ArgumentParser:
    # The module's parser brings its own -h; add_help=False keeps it from being declared twice.
    p = sub.add_parser(name, parents=[own], add_help=False, description=description or own.description)
    p.set_defaults(handler=run)
    return p
