"""What one user can make the gallery store and others render (services.dashboards.limits).

Every refusal names the limit and where the deployment file sets it, so the person who meets
it knows what to change or whom to ask. Request bodies are refused from their declared length,
before a byte of them is read into memory (`GalleryApplication` in service.py).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lunarhub.config import DashboardLimits, Deployment
from lunarhub.dashboards.publishing import thumbnail
from lunarhub.dashboards.store import Store

MIB = 2**20
KEY = "services.dashboards.limits"
# Bodies of requests that carry no snapshot (forms, deletes): generous for what they hold.
SMALL_BODY = 64 * 1024
# A declared body up to this is read and dropped so any HTTP client sees the 413; beyond
# it the connection is closed after the answer rather than spend the time reading it.
DRAIN_MAX = 1024 * MIB


class LimitExceeded(ValueError):
    """A request over a dashboards limit; `status` is the HTTP answer, the message says which."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def where(d: Deployment, name: str) -> str:
    """`services.dashboards.limits.<name>` and the file that sets it."""
    return f"{KEY}.{name} in {d.config_file or 'the deployment file'}"


def _refuse(d: Deployment, status: int, what: str, name: str, value: Any, unit: str) -> LimitExceeded:
    return LimitExceeded(status, f"{what}; the limit is {value:g} {unit} ({where(d, name)})")


def publish_body_limit(lim: DashboardLimits) -> int:
    """Bytes a publish request may declare: the snapshot as base64 in JSON, the thumbnail, slack
    for the title, description and sharing (each bounded separately)."""
    snapshot = math.ceil(lim.max_snapshot_mb * MIB * 4 / 3)
    thumb = math.ceil(thumbnail.MAX_ACCEPTED * 4 / 3)
    text = (lim.max_title_chars + lim.max_description_chars) * 12  # \uXXXX escapes of 4-byte characters
    return snapshot + thumb + text + MIB


def comment_body_limit(lim: DashboardLimits) -> int:
    # A form encodes a CJK character in 9 bytes (%E6%9C%88), JSON in 6 (\u6708); surrogates twice.
    return lim.max_comment_chars * 12 + SMALL_BODY


def check_texts(d: Deployment, title: str, description: str) -> None:
    lim = d.services.dashboards.limits
    if len(title) > lim.max_title_chars:
        raise _refuse(d, 400, f"the title has {len(title)} characters", "max_title_chars",
                      lim.max_title_chars, "characters")
    if len(description) > lim.max_description_chars:
        raise _refuse(d, 400, f"the description has {len(description)} characters", "max_description_chars",
                      lim.max_description_chars, "characters")


def check_comment(d: Deployment, text: str) -> None:
    lim = d.services.dashboards.limits
    if len(text.strip()) > lim.max_comment_chars:
        raise _refuse(d, 400, f"the comment has {len(text.strip())} characters", "max_comment_chars",
                      lim.max_comment_chars, "characters")


def stored_bytes(store: Store, owner: str) -> int:
    """Bytes of every stored version's files of `owner` (deleted versions' files are gone)."""
    root = store.root / owner
    if not root.is_dir():
        return 0
    total = 0
    for files in root.glob("*/v*/files"):
        total += sum(p.stat().st_size for p in Path(files).rglob("*") if p.is_file() and not p.is_symlink())
    return total


def check_publish(d: Deployment, store: Store, owner: str, slug: str, files: dict[str, bytes],
                  new_version: bool) -> None:
    """Refuse a publish over the snapshot, per-user, dashboards or versions limit.
    `new_version`: the content differs from the latest version (an unchanged republish adds nothing)."""
    lim = d.services.dashboards.limits
    size = sum(len(b) for b in files.values())
    if size > lim.max_snapshot_mb * MIB:
        raise _refuse(d, 413, f"the dashboard's files are {size / MIB:.1f} MiB", "max_snapshot_mb",
                      lim.max_snapshot_mb, "MiB per version")
    dash = store.get(owner, slug)
    if dash is None or not dash.active:
        active = sum(1 for x in store.all() if x.owner == owner)
        if active >= lim.max_dashboards:
            raise _refuse(d, 403, f"you have {active} published dashboards; unpublish one to publish another",
                          "max_dashboards", lim.max_dashboards, "dashboards per user")
    if not new_version:
        return
    if dash is not None and len(dash.versions) >= lim.max_versions:
        raise _refuse(d, 403, f"{owner}/{slug} has {len(dash.versions)} versions; delete an old one "
                              f"(lunarhub unpublish {slug} --version N) to publish a new one",
                      "max_versions", lim.max_versions, "versions per dashboard")
    used = stored_bytes(store, owner)
    if used + size > lim.max_user_mb * MIB:
        raise _refuse(d, 413, f"your stored versions take {used / MIB:.1f} MiB and this one {size / MIB:.1f} MiB; "
                              "delete old versions or dashboards first", "max_user_mb", lim.max_user_mb, "MiB per user")


def as_dict(d: Deployment, store: Store, owner: str) -> dict[str, Any]:
    """The limits and the caller's use of them, for clients that check before sending."""
    lim = d.services.dashboards.limits
    return {"limits": lim.model_dump(), "where": {name: where(d, name) for name in DashboardLimits.model_fields},
            "publish_body_bytes": publish_body_limit(lim),
            "used": {"dashboards": sum(1 for x in store.all() if x.owner == owner),
                     "stored_mb": round(stored_bytes(store, owner) / MIB, 3)}}


def body_refusal(d: Deployment, declared: int, allowed: int, kind: str) -> str:
    lim = d.services.dashboards.limits
    if kind == "publish":
        return (f"the request body is {declared / MIB:.1f} MiB; a publish may send at most {allowed / MIB:.1f} MiB "
                f"(a snapshot of {lim.max_snapshot_mb:g} MiB as base64: {where(d, 'max_snapshot_mb')})")
    if kind == "comment":
        return (f"the request body is {declared} bytes; a comment may send at most {allowed} "
                f"({lim.max_comment_chars} characters: {where(d, 'max_comment_chars')})")
    return f"the request body is {declared} bytes; this address takes at most {allowed}"
