"""The version guard every workaround's `apply()` runs first.

A workaround reaches into code it does not own: on a release it was not checked against,
it may silently do nothing (the bug was fixed, or the patched name moved) or break the
process later in a way that points nowhere near the cause. Refusing at start, naming the
workaround and what to check, turns that into a one-line decision for the operator.
"""

from __future__ import annotations

from importlib import metadata

from packaging.specifiers import SpecifierSet
from packaging.version import Version


class UnsupportedUpstreamVersion(RuntimeError):
    """An installed package is outside the range a workaround was written for."""


def installed(distribution: str) -> Version:
    try:
        return Version(metadata.version(distribution))
    except metadata.PackageNotFoundError:
        raise UnsupportedUpstreamVersion(
            f"{distribution} is not installed; lunarhub's workaround for it cannot apply") from None


def require(workaround: str, ranges: dict[str, str], upstream: str) -> None:
    """Raise UnsupportedUpstreamVersion unless every distribution in `ranges` is inside its range.

    `workaround` names the module (for the message), `upstream` where the bug or the
    hooked code is tracked."""
    for distribution, spec in ranges.items():
        version = installed(distribution)  # looked up per call: tests pretend other releases
        if version not in SpecifierSet(spec):
            raise UnsupportedUpstreamVersion(
                f"{workaround} is written for {distribution}{spec}, but {distribution} {version} is "
                f"installed. Check whether {upstream} still applies to {version}: if it was fixed, "
                f"remove the workaround; if not, re-run tests/unit/test_upstream.py against {version} "
                f"and widen the range (and the bound in pyproject.toml).")
