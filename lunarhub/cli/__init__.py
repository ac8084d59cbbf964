"""The `lunarhub` command."""

from lunarhub.cli.commands import main

__all__ = ["main"]
