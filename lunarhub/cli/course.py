"""`lunarhub course create|status|reset` for instructors (lunarhub.courses.manage)."""

from __future__ import annotations

import argparse

from lunarhub.cli import delegated
from lunarhub.courses import manage


def register(sub: argparse._SubParsersAction) -> None:
    delegated.register(sub, "course", manage.build_parser(), manage.run,
                       "courses for instructors: students, tutorials, progress "
                       "(course create NAME --roster CSV | status NAME | reset NAME STUDENT NB)")
