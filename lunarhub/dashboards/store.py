"""Versioned, immutable dashboard snapshots on disk.

Layout under `<state>/dashboards/`:

    <owner>/<slug>/dashboard.json     title, sharing, status (the mutable part)
    <owner>/<slug>/v<N>/metadata.json what was published: hash, author, time, environment
    <owner>/<slug>/v<N>/files/...     the notebook and the files it declared
    <owner>/<slug>/v<N>/thumbnail.png the gallery's picture of it (optional, not in the hash)
    <owner>/<slug>/apps/v<N>.py       what `panel serve` runs for version N

Only the gallery service (root) writes here. Files are root-owned and group-
readable by the publisher's own system group, so the dashboard server (which
runs as the publisher) can read its snapshot but not change it: a version a
reviewer commented on stays exactly what they saw.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from lunarhub.files import write_atomic

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
VERSION_RE = re.compile(r"^v([1-9][0-9]{0,5})$")
SERVER_PREFIX = "dash-"
MAX_FILES = 200
MAX_BYTES = 200 * 2**20
THUMBNAIL = "thumbnail.png"


class StoreError(ValueError):
    """A request the store refuses; the message says why."""


# ---------------------------------------------------------------- names


def slugify(title: str) -> str:
    """A URL/path-safe slug from a free-text title (any language).

    NFKD + ASCII drops accents ("Émission" -> "emission"); anything else becomes
    '-', so '../', '/' and '\\' can never survive. A title with no Latin letters
    (Chinese, Russian) gets a stable hash-based slug instead of an empty one.
    """
    text = unicodedata.normalize("NFKC", title).strip().lower()
    ascii_ = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_).strip("-")[:40].strip("-")
    if len(re.sub(r"[^a-z0-9]", "", slug)) < 3:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        slug = f"dashboard-{digest}" if not slug else f"{slug}-{digest}"[:40]
    return slug


def check_slug(slug: str) -> str:
    """An explicit slug must already be clean: path tricks are refused, not repaired,
    so nobody ends up publishing over a name they did not mean."""
    norm = unicodedata.normalize("NFKC", slug)
    if norm != slug or not SLUG_RE.match(slug):
        raise StoreError(
            f"invalid dashboard name {slug!r}: use 1-40 lowercase ASCII letters, digits and '-', "
            "starting with a letter or digit (no '/', '..', spaces or non-ASCII)")
    return slug


def server_name(slug: str) -> str:
    return SERVER_PREFIX + slug


def slug_of_server(name: str) -> str | None:
    if name.startswith(SERVER_PREFIX) and SLUG_RE.match(name[len(SERVER_PREFIX):]):
        return name[len(SERVER_PREFIX):]
    return None


def version_dir_of_app(app: str | Path) -> Path:
    """The snapshot `apps/v<N>.py` serves: the `v<N>` folder beside `apps/` (layout above)."""
    return Path(app).parent.parent / Path(app).stem


def snapshot_notebook(version_dir: Path) -> Path:
    """A version's published notebook, as its metadata.json names it (OSError, ValueError or
    KeyError when the snapshot is unreadable)."""
    meta = json.loads((version_dir / "metadata.json").read_text(encoding="utf-8"))
    return version_dir / "files" / meta["notebook"]


def check_relpath(name: str) -> PurePosixPath:
    """A declared file's path inside the snapshot: relative, no '..', no oddities."""
    norm = unicodedata.normalize("NFC", name).replace("\\", "/")
    p = PurePosixPath(norm)
    if (not norm or p.is_absolute() or any(part in ("", ".", "..") for part in norm.split("/"))
            or any(ord(ch) < 32 for ch in norm)):
        raise StoreError(f"invalid file path {name!r}: give paths relative to the notebook's folder, "
                         "without '..'")
    return p


# ---------------------------------------------------------------- records


@dataclass
class Version:
    owner: str
    slug: str
    version: int
    path: Path
    meta: dict[str, Any]

    @property
    def notebook(self) -> Path:
        return self.path / "files" / self.meta["notebook"]

    @property
    def published(self) -> float:
        return float(self.meta["published"])

    @property
    def thumbnail(self) -> Path | None:
        path = self.path / THUMBNAIL
        return path if path.is_file() else None


@dataclass
class Dashboard:
    owner: str
    slug: str
    path: Path
    info: dict[str, Any]
    versions: list[Version] = field(default_factory=list)

    @property
    def title(self) -> str:
        return self.info.get("title", self.slug)

    @property
    def active(self) -> bool:
        return self.info.get("status") == "published"

    @property
    def latest(self) -> Version | None:
        return self.versions[-1] if self.versions else None

    @property
    def server(self) -> str:
        return server_name(self.slug)

    def version(self, n: int) -> Version | None:
        return next((v for v in self.versions if v.version == n), None)


def content_hash(files: dict[str, bytes]) -> str:
    """sha256 over (path, sha256(content)) pairs in path order: names and bytes both count."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).hexdigest().encode() + b"\n")
    return "sha256:" + h.hexdigest()


# ---------------------------------------------------------------- the store


class Store:
    def __init__(self, root: Path):
        self.root = Path(root)

    @classmethod
    def for_deployment(cls, d: Any) -> Store:
        return cls(d.state_path / "dashboards")

    def _dir(self, owner: str, slug: str) -> Path:
        check_slug(slug)
        if not re.match(r"^[a-z][a-z0-9-]{0,30}$", owner):
            raise StoreError(f"invalid owner {owner!r}")
        return self.root / owner / slug

    # ---- reading

    def get(self, owner: str, slug: str) -> Dashboard | None:
        path = self._dir(owner, slug)
        info_file = path / "dashboard.json"
        if not info_file.exists():
            return None
        info = json.loads(info_file.read_text(encoding="utf-8"))
        versions = []
        for child in path.iterdir():
            m = VERSION_RE.match(child.name)
            if m and (child / "metadata.json").exists():
                meta = json.loads((child / "metadata.json").read_text(encoding="utf-8"))
                if not meta.get("deleted"):
                    versions.append(Version(owner, slug, int(m.group(1)), child, meta))
        versions.sort(key=lambda v: v.version)
        return Dashboard(owner, slug, path, info, versions)

    def all(self, include_inactive: bool = False) -> list[Dashboard]:
        out: list[Dashboard] = []
        if not self.root.exists():
            return out
        for owner_dir in sorted(self.root.iterdir()):
            if not owner_dir.is_dir() or owner_dir.name.startswith("."):
                continue
            for slug_dir in sorted(owner_dir.iterdir()):
                if not SLUG_RE.match(slug_dir.name):
                    continue
                dash = self.get(owner_dir.name, slug_dir.name)
                if dash and (include_inactive or (dash.active and dash.versions)):
                    out.append(dash)
        return out

    # ---- writing (gallery service only)

    def publish(self, owner: str, slug: str, *, title: str, description: str, notebook: str,
                files: dict[str, bytes], share_with: list[str], environment: dict[str, Any],
                gid: int | None = None, now: float | None = None,
                extra: dict[str, Any] | None = None, thumbnail: bytes | None = None,
                lineage: list[dict[str, Any]] | None = None) -> tuple[Version, bool]:
        """Store a new version (or return the latest if the content is unchanged).

        `lineage` (lunarhub.dashboards.lineage: the datasets the publish run read) is sealed
        in the version's metadata: who may see a version is decided by what it read then, so
        it can no more change than the files. The same files reading other data (a dataset
        changed on its site) make a new version.

        Returns (version, created). The version is written to a temp dir and renamed
        into place, so a crash never leaves a half-written version behind. `thumbnail`
        (PNG bytes the caller has checked) is sealed beside the files but is not part
        of the content hash: the hash says what runs, and the same notebook drawn twice
        is the same version.
        """
        path = self._dir(owner, slug)
        if not title.strip():
            raise StoreError("a dashboard needs a title")
        if notebook not in files or not notebook.endswith(".ipynb"):
            raise StoreError(f"the notebook {notebook!r} must be one of the published files (.ipynb)")
        if len(files) > MAX_FILES:
            raise StoreError(f"too many files ({len(files)} > {MAX_FILES})")
        if sum(len(b) for b in files.values()) > MAX_BYTES:
            raise StoreError(f"the files exceed {MAX_BYTES // 2**20} MiB")
        clean = {str(check_relpath(n)): b for n, b in files.items()}
        digest = content_hash(clean)
        existing = self.get(owner, slug)
        info: dict[str, Any] = dict(existing.info) if existing else {"created": now or time.time()}
        info.update(title=title.strip(), description=description.strip(), share_with=list(share_with),
                    status="published", owner=owner, slug=slug, **(extra or {}))
        latest = existing.latest if existing else None
        lineage = list(lineage or [])
        if (latest and latest.meta["hash"] == digest and existing and existing.active
                and _read_the_same(latest.meta.get("lineage") or [], lineage)):
            self._write_json(path / "dashboard.json", info, gid)
            return latest, False
        number = 1 + max((int(m.group(1)) for c in (path.iterdir() if path.exists() else [])
                          if (m := VERSION_RE.match(c.name))), default=0)
        meta = {
            "version": number, "hash": digest, "author": owner, "published": now or time.time(),
            "title": info["title"], "description": info["description"], "notebook": str(check_relpath(notebook)),
            "files": sorted(clean), "environment": environment, "lineage": lineage,
        }
        self._ensure_dirs(path, gid)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path))
        try:
            for name, data in clean.items():
                target = tmp / "files" / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            (tmp / "metadata.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")
            if thumbnail:
                (tmp / THUMBNAIL).write_bytes(thumbnail)
            _seal(tmp, gid)
            os.rename(tmp, path / f"v{number}")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._write_app(path, number, gid)
        self._write_json(path / "dashboard.json", info, gid)
        dash = self.get(owner, slug)
        assert dash is not None
        version = dash.version(number)
        assert version is not None
        return version, True

    def unpublish(self, owner: str, slug: str) -> Dashboard:
        dash = self.get(owner, slug)
        if dash is None:
            raise StoreError(f"no dashboard {owner}/{slug}")
        # Every version's files go: a later publish under the same name starts afresh
        # (numbering continues, so comments never attach to the wrong content).
        for v in list(dash.versions):
            self.delete_version(owner, slug, v.version)
        dash.info["status"] = "unpublished"
        dash.info["unpublished"] = time.time()
        self._write_json(dash.path / "dashboard.json", dash.info, None)
        return dash

    def update_info(self, owner: str, slug: str, **changes: Any) -> Dashboard:
        """Change the mutable part (sharing, notices) of a dashboard; versions stay as they are."""
        dash = self.get(owner, slug)
        if dash is None:
            raise StoreError(f"no dashboard {owner}/{slug}")
        dash.info.update(changes)
        target = dash.path / "dashboard.json"
        # The publisher's group keeps reading it as it did (the file is replaced, not rewritten).
        gid = target.stat().st_gid if os.geteuid() == 0 else None
        self._write_json(target, dash.info, gid)
        return dash

    def delete_version(self, owner: str, slug: str, number: int) -> None:
        """Drop a version's files; the metadata stays (marked deleted) so its number
        is never reused and comments keep pointing at a known version."""
        dash = self.get(owner, slug)
        v = dash.version(number) if dash else None
        if dash is None or v is None:
            raise StoreError(f"no version {number} of {owner}/{slug}")
        for dirpath, _dirs, _files in os.walk(v.path):
            os.chmod(dirpath, 0o750)  # sealed read-only; unlock to remove
        shutil.rmtree(v.path / "files")
        (v.path / THUMBNAIL).unlink(missing_ok=True)
        (dash.path / "apps" / f"v{number}.py").unlink(missing_ok=True)
        meta = dict(v.meta, deleted=time.time())
        (v.path / "metadata.json").unlink()
        (v.path / "metadata.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")

    # ---- helpers

    def _ensure_dirs(self, path: Path, gid: int | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        for p in (path.parent, path, path / "apps"):
            p.mkdir(exist_ok=True)
            _own(p, gid, 0o750)

    def _write_json(self, target: Path, data: dict[str, Any], gid: int | None) -> None:
        self._ensure_dirs(target.parent, gid)
        write_atomic(target, json.dumps(data, indent=1, ensure_ascii=False), 0o640)
        _own(target, gid, 0o640)

    def _write_app(self, path: Path, number: int, gid: int | None) -> None:
        # `panel serve` names each app after its file: /v1, /v2, ... under the server's URL.
        app = path / "apps" / f"v{number}.py"
        app.write_text(
            "# Generated by lunarhub.dashboards.store: serves one immutable snapshot.\n"
            "from pathlib import Path\n\n"
            "from lunarhub.dashboards.publishing.runner import serve_snapshot\n\n"
            f"serve_snapshot(Path(__file__).resolve().parent.parent / 'v{number}', globals())\n",
            encoding="utf-8")
        _own(app, gid, 0o640)


def _read_the_same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Two lineages name the same data (which sources saw a read may differ run to run)."""
    def key(lin: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((str(x.get("site")), str(x.get("path")), str(x.get("policy")),
                       json.dumps(x.get("version") or {}, sort_keys=True)) for x in lin)
    return key(a) == key(b)


def _own(path: Path, gid: int | None, mode: int) -> None:
    if gid is not None and os.geteuid() == 0:
        os.chown(path, 0, gid)
    os.chmod(path, mode)


def _seal(root: Path, gid: int | None) -> None:
    """Read-only for everyone; group-readable by the publisher's group."""
    for dirpath, dirnames, filenames in os.walk(root):
        for f in filenames:
            _own(Path(dirpath) / f, gid, 0o440 if gid is not None else 0o444)
        for d in dirnames:
            _own(Path(dirpath) / d, gid, 0o550 if gid is not None else 0o555)
    _own(root, gid, 0o550 if gid is not None else 0o555)
