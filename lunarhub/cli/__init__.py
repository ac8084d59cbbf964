"""The `lunarhub` command (entry point `lunarhub.cli:main`); the tree is lunarhub.cli.tree."""

from lunarhub.cli.tree import build_parser, main

__all__ = ["build_parser", "main"]
