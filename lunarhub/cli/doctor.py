"""`lunarhub doctor [--user NAME]` (lunarhub.science.doctor)."""

from __future__ import annotations

import argparse

from lunarhub.cli import delegated
from lunarhub.science import doctor


def register(sub: argparse._SubParsersAction) -> None:
    delegated.register(sub, "doctor", doctor.build_parser(), doctor.run,
                       "what this user's server can reach: sites, catalogs, gateway, versions "
                       "(as the operator: --user NAME)")
