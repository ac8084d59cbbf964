"""`lunarhub course …`: the course page's operations for operators and scripts (lunarhub.courses.manage)."""

from __future__ import annotations

import argparse

from lunarhub.cli import delegated
from lunarhub.courses import manage


def register(sub: argparse._SubParsersAction) -> None:
    delegated.register(sub, "course", manage.build_parser(), manage.run,
                       "courses: rosters, instructors' access, material, progress, class start "
                       "(course list | new NAME --instructor U | create NAME --roster CSV | add | remove | "
                       "status | reset | start-all | stop-all | material | end | sync)")
