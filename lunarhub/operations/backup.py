"""Backups of a deployment's state, their verification and their restore (docs/operations.md).

A backup is a directory `lunarhub-backup-<UTC time>` (root's, 0700; every file in it 0600):

    manifest.json      what was copied: path, type, size, sha256, mode, owner of every entry,
                       the lunarhub and JupyterHub versions, where each part came from
    manifest.sha256    sha256 of manifest.json (a damaged manifest is told apart from damaged data)
    deployment.yaml    the deployment file at backup time (for the operator; never restored)
    data/state/...     the state dir, minus what `lunarhub up` rebuilds (EXCLUDED)
    data/secrets/...   the secrets dir, when it lives outside the state dir
    data/homes/<acct>  users' and projects' homes (`--homes`, system-users isolation)

Copies never follow a link: homes and team folders are written by their users while root reads
them, so every directory is entered through an fd opened without following (os.fwalk), every file
is opened O_NOFOLLOW relative to its directory's fd and copied only if the fd is a regular file;
a link is recorded as a link (its target text), never read through. The SQLite databases are copied
with SQLite's online backup API, so a running hub, gateway or gallery never yields a torn copy.

A restore rebuilds each part in a sibling temp dir with the recorded owners and modes, verifies
it against the manifest, and swaps it in with one atomic exchange (renameat2 RENAME_EXCHANGE);
the previous state stays aside until every part is in, and is put back if one fails.
"""

from __future__ import annotations

import ctypes
import errno
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import socket
import sqlite3
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote

import lunarhub
from lunarhub.config import Deployment

FORMAT = 1
MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.sha256"
DATA = "data"
NAME_RE = re.compile(r"^lunarhub-backup-(\d{8}T\d{6}Z)(-\d+)?$")
CHUNK = 1 << 20

# Relative to the state dir: what `lunarhub up` or a start rebuilds (supervisor config, logs of
# processes, dashboards' run copies, the sites' served data and nginx files); homes only on request.
EXCLUDED_TOP = frozenset({"supervisor", "logs", "dashboard-runs", "monitoring"})
EXCLUDED_IN_SITE = frozenset({"data", "tmp", "nginx.conf", "nginx.pid"})
# Copied with the SQLite backup API (lunarhub.platform.lifecycle.PRIVATE_FILES); their journals
# belong to the live file, not to the copy.
SQLITE_SUFFIXES = ("-journal", "-wal", "-shm")


class BackupError(RuntimeError):
    """A backup, verify or restore that cannot go on; the message names the file and the reason."""


@dataclass
class Entry:
    """One manifest line: `path` is relative to the backup's data/ folder."""

    path: str
    kind: str  # "dir", "file", "link"
    mode: int
    uid: int
    gid: int
    user: str | None
    group: str | None
    mtime: float
    size: int = 0
    sha256: str | None = None
    target: str | None = None

    def as_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if v is not None}
        out["mode"] = f"{self.mode:04o}"
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Entry:
        data = dict(raw)
        data["mode"] = int(data["mode"], 8)
        data.setdefault("user", None)
        data.setdefault("group", None)
        return cls(**data)


@dataclass
class Result:
    """What a backup or restore did, for the CLI to print."""

    path: Path
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- names and versions


def versions() -> dict[str, str]:
    out = {"lunarhub": lunarhub.__version__, "python": sys.version.split()[0]}
    for dist in ("jupyterhub", "dask-gateway-server", "panel"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def default_dest(d: Deployment) -> Path:
    """Beside the state dir, not in it: a restore swaps the state dir and must not swap its backups."""
    configured = d.operations.backup.dest if d.operations.backup else None
    if configured:
        return d.path(configured)
    state = d.state_path
    return state.with_name(state.name + "-backups")


def _name_of(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _group_of(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def _is_inside(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def sources(d: Deployment, homes: bool) -> dict[str, Path]:
    """The parts of a backup: data/<key> comes from the folder it maps to."""
    out = {"state": d.state_path}
    if not _is_inside(d.secrets_path, d.state_path):
        out["secrets"] = d.secrets_path
    if homes and d.hub.isolation == "system-users":
        from lunarhub.config import project_account

        for account in sorted(d.users) + [project_account(p) for p in sorted(d.projects)]:
            try:
                out[f"homes/{account}"] = Path(pwd.getpwnam(account).pw_dir)
            except KeyError:
                continue  # never spawned on this host: no home yet
    return out


def excluded(part: str, rel: tuple[str, ...], homes: bool) -> bool:
    """Whether `rel` (path components inside part `part`) is rebuilt, not backed up."""
    name = rel[-1]
    if name.endswith(".pid") or (name.startswith(".") and name.endswith(".tmp")) or name.startswith(".tmp-"):
        return True  # pid files of running processes; half-written files and store versions
    if part != "state":
        return False
    if len(rel) == 1 and (rel[0] in EXCLUDED_TOP or (rel[0] == "homes" and not homes)):
        return True
    if len(rel) == 3 and rel[0] == "sites" and rel[2] in EXCLUDED_IN_SITE:
        return True
    return any("/".join(rel) == db + suffix for db in _sqlite_files() for suffix in SQLITE_SUFFIXES)


def _sqlite_files() -> tuple[str, ...]:
    from lunarhub.platform.lifecycle import PRIVATE_FILES

    return PRIVATE_FILES


# ---------------------------------------------------------------- writing the copy


def _sha256_fd(fd: int) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    while chunk := os.read(fd, CHUNK):
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


def _create(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def _no_space(exc: OSError, where: Path) -> BackupError:
    if exc.errno == errno.ENOSPC:
        return BackupError(f"{where}: no space left on the backup's device ({exc.strerror}); nothing was kept")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return BackupError(f"{where}: cannot write there ({exc.strerror}); nothing was kept")
    return BackupError(f"{where}: {exc.strerror or exc}; nothing was kept")


def _copy_fd(src_fd: int, dest: Path) -> tuple[str, int]:
    """Copy what `src_fd` reads into a new 0600 file; sha256 and size of the bytes copied (a log
    growing meanwhile is copied up to where it was read)."""
    h = hashlib.sha256()
    size = 0
    out = _create(dest)
    try:
        while chunk := os.read(src_fd, CHUNK):
            h.update(chunk)
            size += len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(out, view):]
        os.fsync(out)
    finally:
        os.close(out)
    return h.hexdigest(), size


def _sqlite_copy(src: Path, dest: Path) -> None:
    """A consistent copy of a live database: SQLite's online backup, never the raw file."""
    os.close(_create(dest))
    source = sqlite3.connect(f"file:{quote(str(src))}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(dest)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    os.chmod(dest, 0o600)


def _entry(path: str, kind: str, st: os.stat_result, **kw: Any) -> Entry:
    return Entry(path, kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, _name_of(st.st_uid),
                 _group_of(st.st_gid), st.st_mtime, **kw)


def _walk_part(key: str, top: Path, out: Path, homes: bool, entries: list[Entry], skipped: list[str],
               skip_dirs: list[os.stat_result]) -> None:
    """Copy folder `top` into `out` (data/<key>), recording each entry; never follows a link."""
    try:
        top_st = os.lstat(top)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(top_st.st_mode) or not stat.S_ISDIR(top_st.st_mode):
        skipped.append(f"{top}: not a real folder (a link or a file): not copied")
        return
    out.mkdir(mode=0o700, parents=True)
    entries.append(_entry(key, "dir", top_st))
    sqlite = set(_sqlite_files()) if key == "state" else set()
    for dirpath, dirnames, filenames, dirfd in os.fwalk(top, follow_symlinks=False):
        rel_dir = tuple(Path(dirpath).relative_to(top).parts)
        others = []
        for name in list(dirnames):
            rel = (*rel_dir, name)
            st = os.lstat(name, dir_fd=dirfd)
            if not stat.S_ISDIR(st.st_mode):
                # fwalk lists a link to a folder among the folders (it never enters it): a link here
                dirnames.remove(name)
                others.append(name)
                continue
            if excluded(key, rel, homes) or any(os.path.samestat(st, s) for s in skip_dirs):
                dirnames.remove(name)
                continue
            (out.joinpath(*rel)).mkdir(mode=0o700)
            entries.append(_entry("/".join((key, *rel)), "dir", st))
        for name in filenames + others:
            rel = (*rel_dir, name)
            if excluded(key, rel, homes):
                continue
            where = "/".join((key, *rel))
            st = os.lstat(name, dir_fd=dirfd)
            dest = out.joinpath(*rel)
            if stat.S_ISLNK(st.st_mode):
                entries.append(_entry(where, "link", st, target=os.readlink(name, dir_fd=dirfd)))
                continue
            if not stat.S_ISREG(st.st_mode):
                skipped.append(f"{where}: a socket, pipe or device: not copied")
                continue
            if "/".join(rel) in sqlite:
                _sqlite_copy(top.joinpath(*rel), dest)
                fd = os.open(dest, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    digest, size = _sha256_fd(fd)
                finally:
                    os.close(fd)
                entries.append(_entry(where, "file", st, size=size, sha256=digest))
                continue
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dirfd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOENT, errno.ENXIO):
                    skipped.append(f"{where}: changed while being copied (became a link or went away)")
                    continue
                raise
            try:
                fst = os.fstat(fd)
                if not stat.S_ISREG(fst.st_mode):
                    skipped.append(f"{where}: changed while being copied: not copied")
                    continue
                digest, size = _copy_fd(fd, dest)
            finally:
                os.close(fd)
            entries.append(_entry(where, "file", fst, size=size, sha256=digest))


def backup(d: Deployment, dest: Path | None = None, homes: bool = False, keep: int | None = None,
           now: float | None = None) -> Result:
    """Back up `d`'s state into a new folder under `dest` (see the module's docstring)."""
    started = time.monotonic()
    dest = Path(dest) if dest else default_dest(d)
    try:
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".lunarhub-backup-", suffix=".tmp", dir=dest))
    except OSError as exc:
        raise BackupError(f"backup destination {dest}: not writable ({exc.strerror or exc})") from None
    os.chmod(tmp, 0o700)
    entries: list[Entry] = []
    skipped: list[str] = []
    parts = sources(d, homes)
    try:
        skip_dirs = [os.stat(dest)]
        for key, top in parts.items():
            _walk_part(key, top, tmp / DATA / key, homes, entries, skipped, skip_dirs)
        if d.config_file and d.config_file.exists():
            with open(d.config_file, "rb") as src:
                _copy_fd(src.fileno(), tmp / "deployment.yaml")
        moment = datetime.fromtimestamp(now or time.time(), UTC)
        manifest = {
            "format": FORMAT, "created": moment.isoformat(timespec="seconds"), "versions": versions(),
            "host": socket.gethostname(), "deployment": d.name,
            "config_file": str(d.config_file) if d.config_file else None, "isolation": d.hub.isolation,
            "homes": homes, "sources": {k: str(v) for k, v in parts.items()},
            "skipped": skipped, "entries": [e.as_json() for e in entries],
        }
        text = json.dumps(manifest, indent=1, ensure_ascii=True).encode()
        for name, data in ((MANIFEST, text), (MANIFEST_SUM, hashlib.sha256(text).hexdigest().encode() + b"\n")):
            fd = _create(tmp / name)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        final = _free_name(dest, moment)
        os.rename(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _no_space(exc, dest) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result = Result(final, sum(e.kind == "file" for e in entries), sum(e.size for e in entries),
                    time.monotonic() - started, skipped)
    if keep is not None:
        result.removed = prune(dest, keep)
    return result


def _free_name(dest: Path, moment: datetime) -> Path:
    base = f"lunarhub-backup-{moment.strftime('%Y%m%dT%H%M%SZ')}"
    candidate, n = dest / base, 1
    while candidate.exists():
        n += 1
        candidate = dest / f"{base}-{n}"
    return candidate


def backups_in(dest: Path) -> list[Path]:
    """Finished backups in `dest`, oldest first (temp folders of one under way are not listed)."""
    if not dest.is_dir():
        return []
    found = [p for p in dest.iterdir() if NAME_RE.match(p.name) and p.is_dir() and not p.is_symlink()]
    return sorted(found, key=lambda p: (NAME_RE.match(p.name).group(1),  # type: ignore[union-attr]
                                        int((NAME_RE.match(p.name).group(2) or "-1")[1:])))  # type: ignore[union-attr]


def prune(dest: Path, keep: int) -> list[Path]:
    """Remove the oldest backups beyond the newest `keep`; returns what went."""
    if keep < 1:
        raise BackupError(f"--keep {keep}: keep at least one backup")
    old = backups_in(dest)[:-keep]
    for path in old:
        shutil.rmtree(path)
    return old


# ---------------------------------------------------------------- verify


@dataclass
class Manifest:
    path: Path
    data: dict[str, Any]
    entries: list[Entry]


def read_manifest(src: Path) -> Manifest:
    src = Path(src)
    if not src.is_dir():
        raise BackupError(f"{src}: not a backup folder (no such directory)")
    try:
        text = (src / MANIFEST).read_bytes()
        recorded = (src / MANIFEST_SUM).read_text().strip()
    except FileNotFoundError as exc:
        raise BackupError(f"{exc.filename}: missing: {src} is not a complete backup") from None
    if hashlib.sha256(text).hexdigest() != recorded:
        raise BackupError(f"{src / MANIFEST}: damaged (its sha256 is not the one in {MANIFEST_SUM})")
    data = json.loads(text)
    if data.get("format") != FORMAT:
        raise BackupError(f"{src / MANIFEST}: backup format {data.get('format')!r}; this lunarhub reads {FORMAT}")
    return Manifest(src, data, [Entry.from_json(e) for e in data["entries"]])


def check_tree(root: Path, entries: list[Entry], owners: bool = False,
               ids: Callable[[Entry], tuple[int, int]] | None = None) -> None:
    """Raise BackupError naming the first entry of `entries` that `root` lacks or holds differently
    (content always; links, owners and modes when `owners`, for a restored tree)."""
    seen: set[str] = set()
    for e in entries:
        path = root / e.path
        seen.add(e.path)
        seen.update(str(p) for p in Path(e.path).parents if str(p) != ".")
        if e.kind == "link" and not owners:
            continue  # a backup keeps links in its manifest only
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise BackupError(f"{path}: missing (the manifest lists it as a {e.kind})") from None
        want = {"dir": stat.S_ISDIR, "file": stat.S_ISREG, "link": stat.S_ISLNK}[e.kind]
        if not want(st.st_mode):
            raise BackupError(f"{path}: not a {e.kind} as the manifest says")
        if e.kind == "file":
            if st.st_size != e.size:
                raise BackupError(f"{path}: size {st.st_size}, the manifest says {e.size}: damaged or truncated")
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                digest, _ = _sha256_fd(fd)
            finally:
                os.close(fd)
            if digest != e.sha256:
                raise BackupError(f"{path}: checksum mismatch (sha256 {digest[:16]}…, the manifest says "
                                  f"{(e.sha256 or '')[:16]}…): damaged")
        if e.kind == "link" and os.readlink(path) != e.target:
            raise BackupError(f"{path}: link to {os.readlink(path)!r}, the manifest says {e.target!r}")
        if owners:
            uid, gid = ids(e) if ids else (e.uid, e.gid)
            if (st.st_uid, st.st_gid) != (uid, gid):
                raise BackupError(f"{path}: owner {st.st_uid}:{st.st_gid}, expected {uid}:{gid}")
            if e.kind != "link" and stat.S_IMODE(st.st_mode) != e.mode:
                raise BackupError(f"{path}: mode {stat.S_IMODE(st.st_mode):04o}, expected {e.mode:04o}")
    if not owners:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                rel = str((Path(dirpath) / name).relative_to(root))
                if rel not in seen:
                    raise BackupError(f"{root / rel}: not in the manifest (added after the backup?)")


def verify(src: Path) -> Manifest:
    """Recompute every checksum of backup `src`; BackupError names the first bad or missing file."""
    manifest = read_manifest(src)
    check_tree(Path(src) / DATA, manifest.entries)
    return manifest


# ---------------------------------------------------------------- restore


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(a: Path, b: Path) -> None:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE): a reader sees one or the other."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"exchanging {a} and {b}: {os.strerror(err)}")


class Owners:
    """Owner names of the backup to ids on this host. A lunarhub account that is missing (a fresh
    machine) is created as lunarhub creates it; another unknown name keeps its recorded number."""

    def __init__(self, d: Deployment) -> None:
        self.d = d
        self.notes: list[str] = []
        self._users: dict[tuple[str | None, int], int] = {}
        self._groups: dict[tuple[str | None, int], int] = {}

    def _create_account(self, name: str) -> bool:
        if os.geteuid() != 0 or self.d.hub.isolation != "system-users":
            return False
        from lunarhub.config import project_account
        from lunarhub.platform import accounts

        projects = {project_account(p): p for p in self.d.projects}
        if name in self.d.users:
            accounts.ensure_system_user(self.d, name)
        elif name in projects:
            accounts.ensure_project_account(self.d, projects[name])
        elif name.startswith(accounts.SYSTEM_GROUP_PREFIX) and name[3:] in accounts.team_groups(self.d):
            accounts.ensure_system_group(name)
        elif name.startswith("lh-site-") and name[8:] in self.d.sites:
            from lunarhub.data import sites

            sites.ensure_site_account(self.d, name[8:])
        else:
            return False
        return True

    def uid(self, name: str | None, number: int) -> int:
        if (name, number) not in self._users:
            self._users[(name, number)] = self._lookup(name, number, lambda n: pwd.getpwnam(n).pw_uid, "user")
        return self._users[(name, number)]

    def gid(self, name: str | None, number: int) -> int:
        if (name, number) not in self._groups:
            self._groups[(name, number)] = self._lookup(name, number, lambda n: grp.getgrnam(n).gr_gid, "group")
        return self._groups[(name, number)]

    def _lookup(self, name: str | None, number: int, find: Callable[[str], int], what: str) -> int:
        if name is None:
            return number
        try:
            return find(name)
        except KeyError:
            pass
        if self._create_account(name):
            try:
                return find(name)
            except KeyError:
                pass
        self.notes.append(f"{what} {name!r} does not exist on this host: its files keep the number {number}")
        return number

    def of(self, e: Entry) -> tuple[int, int]:
        return self.uid(e.user, e.uid), self.gid(e.group, e.gid)


def _build(manifest: Manifest, key: str, target_parent: Path, owners: Owners) -> Path:
    """Part `key` of the backup rebuilt in a new temp dir in `target_parent`, owners and modes as
    recorded. Every entry is made relative to its parent's fd, never through a link."""
    entries = [e for e in manifest.entries if e.path == key or e.path.startswith(key + "/")]
    tmp = Path(tempfile.mkdtemp(prefix=f".{Path(key).name}.restore-", dir=target_parent))
    os.chmod(tmp, 0o700)
    data = manifest.path / DATA
    dirs: list[tuple[int, Entry]] = []
    try:
        for e in entries:
            rel = e.path[len(key):].lstrip("/")
            parts = rel.split("/") if rel else []
            if any(p in ("", ".", "..") for p in parts):
                raise BackupError(f"{manifest.path / MANIFEST}: entry {e.path!r}: not a plain relative path")
            parent = _open_parent(tmp, parts[:-1])
            try:
                uid, gid = owners.of(e)
                if not parts:  # the part's own folder: the temp dir itself
                    fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
                    os.fchown(fd, uid, gid)
                    dirs.append((fd, e))
                elif e.kind == "dir":
                    os.mkdir(parts[-1], 0o700, dir_fd=parent)
                    fd = os.open(parts[-1], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
                    os.fchown(fd, uid, gid)
                    dirs.append((fd, e))
                elif e.kind == "link":
                    assert e.target is not None
                    os.symlink(e.target, parts[-1], dir_fd=parent)
                    os.chown(parts[-1], uid, gid, dir_fd=parent, follow_symlinks=False)
                else:
                    out = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                  0o600, dir_fd=parent)
                    try:
                        src = os.open(data / e.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                        try:
                            while chunk := os.read(src, CHUNK):
                                view = memoryview(chunk)
                                while view:
                                    view = view[os.write(out, view):]
                        finally:
                            os.close(src)
                        os.fchown(out, uid, gid)
                        os.fchmod(out, e.mode)  # after the chown, which clears setuid/setgid bits
                        os.utime(out, (e.mtime, e.mtime))
                        os.fsync(out)
                    finally:
                        os.close(out)
            finally:
                os.close(parent)
        # Folders last, deepest first: their modes may close them, their mtimes change with each child.
        for fd, e in reversed(dirs):
            os.fchmod(fd, e.mode)
            os.utime(fd, (e.mtime, e.mtime))
            os.close(fd)
        dirs.clear()
    except OSError as exc:
        for fd, _ in dirs:
            os.close(fd)
        _remove(tmp)
        raise _no_space(exc, target_parent) from None
    except BaseException:
        for fd, _ in dirs:
            os.close(fd)
        _remove(tmp)
        raise
    return tmp


def _open_parent(root: Path, parts: list[str]) -> int:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    for part in parts:
        try:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise BackupError(f"{root}/{'/'.join(parts)}: goes through a link or a file in the backup's "
                                  "manifest: refused (a restore never writes through a link)") from None
            raise
        os.close(fd)
        fd = nxt
    return fd


def _remove(path: Path) -> None:
    """Remove a tree that may hold read-only folders (as root, modes do not stop rmtree)."""
    shutil.rmtree(path, ignore_errors=True)


def _stopped_servers(state: Path) -> None:
    """Servers recorded as running in the restored hub database did not come with the backup (a
    process is not state): mark them stopped, or a hub on the same host could adopt the live
    servers of the stack the backup came from (same pids)."""
    db = state / "hub" / "jupyterhub.sqlite"
    if not db.exists():
        return
    con = sqlite3.connect(db)
    try:
        with con:
            ids = [r[0] for r in con.execute("SELECT server_id FROM spawners WHERE server_id IS NOT NULL")]
            con.execute("UPDATE spawners SET server_id = NULL, state = '{}'")
            con.executemany("DELETE FROM servers WHERE id = ?", [(i,) for i in ids])
    finally:
        con.close()


def restore(d: Deployment, src: Path, force: bool = False, homes: bool = True,
            stop: Callable[[Deployment], None] | None = None, keep_servers: bool = False) -> Result:
    """Put backup `src` in place of `d`'s state (and secrets, and homes if the backup has them).

    Refused while the stack runs unless `force` (then `stop(d)` is called first). Nothing is
    swapped in until every part is rebuilt and verified; a failure puts back what was swapped.
    `keep_servers`: the servers the hub database records as running stay recorded (an upgrade's
    rollback on the same host, whose servers kept running); otherwise they are marked stopped."""
    from lunarhub.operations import state_layout
    from lunarhub.platform import lifecycle

    started = time.monotonic()
    manifest = verify(src)
    layout = _backup_layout(manifest)
    newer = state_layout.newer_problem(d, layout)
    if newer:
        raise BackupError(f"{src}: made at state layout {layout}; this lunarhub knows layouts up to "
                          f"{state_layout.CURRENT}: restore it with the release that made it")
    if lifecycle.supervisor_running(d):
        if not force:
            raise BackupError(f"lunarhub is running from {d.state_path}: stop it first (`lunarhub down`) or "
                              "give --force, which stops it before restoring")
        (stop or lifecycle.stop)(d)
    targets: dict[str, Path] = {"state": d.state_path}
    if "secrets" in manifest.data["sources"]:
        targets["secrets"] = d.secrets_path
    if homes:
        for key in manifest.data["sources"]:
            if key.startswith("homes/"):
                account = key.split("/", 1)[1]
                try:
                    targets[key] = Path(pwd.getpwnam(account).pw_dir)
                except KeyError:
                    targets[key] = Path(d.hub.home_root) / account
    owners = Owners(_with_backup_roster(d, manifest))
    built: dict[str, Path] = {}
    try:
        for key, target in targets.items():
            if not any(e.path == key for e in manifest.entries):
                continue  # that part was absent at backup time
            target.parent.mkdir(parents=True, exist_ok=True)
            built[key] = _build(manifest, key, target.parent, owners)
            part = [e for e in manifest.entries if e.path == key or e.path.startswith(key + "/")]
            prefix = len(key)
            check_tree(built[key], [Entry(**{**e.__dict__, "path": e.path[prefix:].lstrip("/") or "."})
                                    for e in part], owners=True, ids=owners.of)
        if "state" in built:
            if not keep_servers:
                _stopped_servers(built["state"])
            if layout is not None and not (built["state"] / state_layout.VERSION_FILE).exists():
                # A backup of the release before versioned layouts: say so, `up` then asks for an upgrade.
                (built["state"] / state_layout.VERSION_FILE).write_text(f"{layout}\n")
        swapped = _swap_all(built, targets)
    except BaseException:
        for tmp in built.values():
            _remove(tmp)
        raise
    for previous in swapped:
        _remove(previous)
    files = sum(e.kind == "file" for e in manifest.entries)
    return Result(d.state_path, files, sum(e.size for e in manifest.entries), time.monotonic() - started,
                  notes=owners.notes)


def _backup_layout(manifest: Manifest) -> int | None:
    """The state layout version a backup was made at (None: nothing a hub made was in it)."""
    from lunarhub.operations import state_layout

    path = manifest.path / DATA / "state" / state_layout.VERSION_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        hub_db = f"state/{state_layout.HUB_DB}"
        return 0 if any(e.path == hub_db for e in manifest.entries) else None
    except (OSError, UnicodeDecodeError) as exc:
        raise BackupError(f"{path}: unreadable ({exc})") from None
    if not text.isdigit():
        raise BackupError(f"{path}: {text[:40]!r} is not a state layout version")
    return int(text)


def _swap_all(built: dict[str, Path], targets: dict[str, Path]) -> list[Path]:
    """Swap every rebuilt part into place; returns where each previous content now is (to remove).
    If one swap fails, those done are swapped back and the error raised."""
    done: list[tuple[Path, Path, bool]] = []  # (target, temp, exchanged)
    try:
        for key, tmp in built.items():
            target = targets[key]
            if os.path.lexists(target):
                exchange(tmp, target)
                done.append((target, tmp, True))
            else:
                os.rename(tmp, target)
                done.append((target, tmp, False))
    except BaseException:
        for target, tmp, exchanged in reversed(done):
            if exchanged:
                exchange(tmp, target)
            else:
                os.rename(target, tmp)
        raise
    return [tmp for _, tmp, exchanged in done if exchanged]


def _with_backup_roster(d: Deployment, manifest: Manifest) -> Deployment:
    """`d` with the users the backup's roster overlay added: their accounts own restored files."""
    from lunarhub.config import roster

    path = manifest.path / DATA / "state" / "roster.json"
    if not path.exists():
        return d
    try:
        overlay = json.loads(path.read_text(encoding="utf-8"))
        overlay.setdefault("users", {})
        overlay.setdefault("removed", [])
        return roster.effective_with(d, overlay)
    except (ValueError, KeyError):
        return d


# ---------------------------------------------------------------- schedule


_SCHEDULE_RE = re.compile(r"^(?:daily (?P<h>[01]\d|2[0-3]):(?P<m>[0-5]\d)|every (?P<n>[1-9]\d{0,3}) (?P<unit>minutes|hours))$")


def next_run(schedule: str, after: datetime) -> datetime:
    """The first time after `after` (local, aware or naive) that `schedule` names."""
    m = _SCHEDULE_RE.match(schedule)
    if not m:
        raise BackupError(f"schedule {schedule!r}: use 'daily HH:MM', 'every N minutes' or 'every N hours'")
    if m["h"] is not None:
        at = after.replace(hour=int(m["h"]), minute=int(m["m"]), second=0, microsecond=0)
        return at if at > after else at + timedelta(days=1)
    step = timedelta(minutes=int(m["n"])) if m["unit"] == "minutes" else timedelta(hours=int(m["n"]))
    return after + step


def run_scheduled(d: Deployment, log: Callable[[str], None] = print,
                  sleep: Callable[[float], None] = time.sleep, runs: int | None = None) -> None:
    """The supervisor's backup program: back up at each time `operations.backup.schedule` names,
    keep the newest `keep`; a failed run is logged and recorded, the next one still happens."""
    from lunarhub.platform import audit

    plan = d.operations.backup
    if plan is None:
        raise BackupError(f"operations.backup is not set in {d.config_file or 'the deployment file'}: "
                          "nothing to schedule")
    done = 0
    while runs is None or done < runs:
        now = datetime.now().astimezone()
        due = next_run(plan.schedule, now)
        log(f"next backup at {due.isoformat(timespec='minutes')} into {default_dest(d)}")
        sleep(max(0.0, (due - now).total_seconds()))
        try:
            res = backup(d, default_dest(d), homes=plan.homes, keep=plan.keep)
            log(f"backup {res.path}: {res.files} files, {res.bytes} bytes in {res.seconds:.1f} s; "
                f"removed {len(res.removed)} old")
            audit.record(d, "operations", "backup", path=str(res.path), files=res.files, bytes=res.bytes)
        except (BackupError, OSError) as exc:
            log(f"backup FAILED: {exc}")
            audit.record(d, "operations", "backup-failed", reason=str(exc))
        done += 1


def iter_sizes(path: Path) -> Iterator[int]:
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            yield os.lstat(os.path.join(dirpath, name)).st_size


def size_of(path: Path) -> int:
    """Bytes of the files of a backup folder (what it takes on disk, near enough)."""
    return sum(iter_sizes(path))
