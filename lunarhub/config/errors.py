"""What is wrong with a deployment file, kept structured from the check to the operator."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem: the key path (or a place such as "line 3, column 5"), the YAML line, why."""

    key: str
    reason: str
    line: int | None = None

    @property
    def where(self) -> str:
        return f"{self.key} (line {self.line})" if self.line else self.key


class ConfigError(Exception):
    """A deployment file that cannot be used, with where and why.

    `details` holds the structured problems; `problems` the same as (where, why)
    pairs, the form the CLI prints and callers that add their own checks extend.
    """

    def __init__(self, source: str, problems: Sequence[Problem | tuple[str, str]]):
        self.source = source
        self.details = [p if isinstance(p, Problem) else Problem(*p) for p in problems]
        self.problems = [(p.where, p.reason) for p in self.details]
        lines = [f"{source}: invalid deployment config"]
        lines += [f"  {where}: {why}" for where, why in self.problems]
        super().__init__("\n".join(lines))


class CrossFieldErrors(ValueError):
    """The deployment's reference checks, each naming its own key path.

    Raised inside pydantic validation, which keeps the exception object in the
    error's context, so `parse()` gets the key paths back without re-parsing text.
    """

    def __init__(self, problems: Sequence[tuple[tuple[str, ...], str]]):
        self.problems = list(problems)
        super().__init__("; ".join(f"{'.'.join(key)}: {why}" for key, why in self.problems))
