"""A real Slurm cluster for a local site whose compute is `slurm` (sites.<name>.compute).

`lunarhub up` writes, per such site, `<state>/slurm/<site>/`:

- `etc/slurm.conf`, `etc/cgroup.conf` (0644: every account's sbatch/squeue reads them; no secret);
- `bin/sbatch|squeue|scancel|sinfo|scontrol|srun`: Slurm's own commands with this cluster's
  `SLURM_CONF`, so nothing is written to /etc and two stacks on one machine do not share a config;
- `munge/munge.key` (0400 munge, folder 0700 munge): the cluster's credential key, generated once;
- `run/` (0755 munge): munged's socket, which every submitting account must reach;
- `spool/ctld` (0700 slurm), `spool/d` (0700 root): slurmctld's and slurmd's state.

Then munged, slurmctld and slurmd run under the supervisor (`slurm-<site>-munged|ctld|d`), each
through `python -m lunarhub.compute.slurm exec`, which waits for what the daemon needs and names
what is missing. One node (this machine, sized by `slurmd -C` minus `reserved_memory_gb`), one
partition per group with an account at the site, carrying the group's memory limit.
Measured facts this follows: ../shared/notes/stack-facts.md, "Slurm on one node".
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lunarhub.config import Deployment
from lunarhub.files import write_atomic

SBIN = Path("/usr/sbin")
COMMANDS = ("sbatch", "squeue", "scancel", "sinfo", "scontrol", "srun")
DAEMONS = ("munged", "slurmctld", "slurmd")
SHORT = {"munged": "munged", "slurmctld": "ctld", "slurmd": "d"}
PACKAGES = {"munged": "munge", "slurmctld": "slurm-wlm", "slurmd": "slurm-wlm", "sbatch": "slurm-wlm",
            "sudo": "sudo"}
KEY_BYTES = 128
# The gateway's scheduler job takes one core next to the workers: two jobs may share a core, or the
# second worker of a 2-core machine stays PENDING (stack-facts: OverSubscribe=FORCE:2).
OVERSUBSCRIBE = "FORCE:2"
READY_TIMEOUT = 30.0


class SlurmError(RuntimeError):
    """A Slurm site that cannot run; the message names the site and where to look."""


def sites(d: Deployment) -> list[str]:
    """Local sites whose compute is a Slurm cluster on this machine."""
    return [n for n, s in d.sites.items() if s.kind == "local" and s.compute.kind == "slurm"]


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def conf(self) -> Path:
        return self.etc / "slurm.conf"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def munge(self) -> Path:
        return self.root / "munge"

    @property
    def key(self) -> Path:
        return self.munge / "munge.key"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def socket(self) -> Path:
        return self.run / "munge.socket"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    def command(self, name: str) -> str:
        return str(self.bin / name)


def layout(d: Deployment, site: str) -> Layout:
    return Layout(d.state_path / "slurm" / site)


def log_path(d: Deployment, site: str, daemon: str) -> Path:
    """The supervisor's log of one daemon (root's, in the state dir's logs)."""
    return d.state_path / "logs" / f"{program_name(site, daemon)}.log"


def program_name(site: str, daemon: str) -> str:
    return f"slurm-{site}-{SHORT[daemon]}"


def partitions(d: Deployment, site: str) -> dict[str, str]:
    """Group -> partition of the groups with an account at `site` (only groups with a dask block)."""
    configured = d.sites[site].compute.partitions
    if configured is not None:
        return dict(configured)
    return {g: g for g, grp in sorted(d.groups.items()) if grp.dask is not None}


def partition_for(d: Deployment, site: str, username: str) -> str | None:
    """The partition `username`'s jobs go to at `site`: that of their first group with an account there."""
    user = d.users.get(username)
    parts = partitions(d, site)
    for g in user.groups if user else []:
        if g in parts:
            return parts[g]
    return None


# ---------------------------------------------------------------- node and configs


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    sockets: int
    cores_per_socket: int
    threads_per_core: int
    real_memory_mb: int


def _slurmd_c() -> dict[str, str]:
    out = subprocess.run([str(SBIN / "slurmd"), "-C"], capture_output=True, text=True, timeout=30).stdout
    first = out.splitlines()[0] if out else ""
    return dict(kv.split("=", 1) for kv in first.split() if "=" in kv)


def this_node(reserved_memory_gb: float) -> Node:
    """This machine as Slurm sees it (`slurmd -C`), its memory less what the hub and OS keep."""
    hw = _slurmd_c() if (SBIN / "slurmd").exists() else {}
    cpus = int(hw.get("CPUs", os.cpu_count() or 1))
    total_mb = int(hw.get("RealMemory", 0)) or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    sockets = int(hw.get("SocketsPerBoard", 1)) * int(hw.get("Boards", 1))
    return Node(
        name=hw.get("NodeName") or socket.gethostname().split(".")[0],
        cpus=cpus,
        sockets=sockets,
        cores_per_socket=int(hw.get("CoresPerSocket", cpus)),
        threads_per_core=int(hw.get("ThreadsPerCore", 1)),
        real_memory_mb=max(1024, total_mb - int(reserved_memory_gb * 1024)),
    )


def slurm_conf(d: Deployment, site: str, node: Node) -> str:
    """slurm.conf of the site's one-node cluster."""
    c = d.sites[site].compute
    lay = layout(d, site)
    lines = [
        f"# Slurm cluster of site {site!r}, written by `lunarhub up` (lunarhub.compute.slurm) from",
        f"# {d.config_file or 'the deployment file'}; rewritten at every start: change the deployment file.",
        f"ClusterName=lunarhub-{site}",
        f"SlurmctldHost={node.name}(127.0.0.1)",
        f"SlurmctldPort={c.slurmctld_port}",
        f"SlurmdPort={c.slurmd_port}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={lay.socket}",
        "SlurmUser=slurm",
        "SlurmdUser=root",
        f"StateSaveLocation={lay.spool / 'ctld'}",
        f"SlurmdSpoolDir={lay.spool / 'd'}",
        f"SlurmctldPidFile={lay.spool / 'ctld' / 'slurmctld.pid'}",
        f"SlurmdPidFile={lay.spool / 'd' / 'slurmd.pid'}",
        # Jobs in cgroups: a job over its --mem is OOM-killed (state OUT_OF_MEMORY), not sampled late.
        "ProctrackType=proctrack/cgroup",
        "TaskPlugin=task/cgroup,task/affinity",
        "JobAcctGatherType=jobacct_gather/linux",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "SchedulerType=sched/backfill",
        # sbatch -> running in under a second instead of up to ~3 s.
        "SchedulerParameters=batch_sched_delay=0",
        # A job over its partition's limits is refused at submission (sbatch says why), not left pending.
        "EnforcePartLimits=ALL",
        # squeue/scontrol show another account's jobs to nobody but root and the slurm user.
        "PrivateData=jobs,usage,users,accounts",
        "DefMemPerCPU=1000",
        "MpiDefault=none",
        "MailProg=/bin/true",
        # The one node comes back by itself after slurmd restarts.
        "ReturnToService=2",
        "SlurmctldTimeout=30",
        "SlurmdTimeout=30",
        "InactiveLimit=0",
        "KillWait=10",
        f"NodeName={node.name} NodeAddr=127.0.0.1 CPUs={node.cpus} Sockets={node.sockets} "
        f"CoresPerSocket={node.cores_per_socket} ThreadsPerCore={node.threads_per_core} "
        f"RealMemory={node.real_memory_mb} State=UNKNOWN",
    ]
    by_partition: dict[str, list[str]] = {}
    for group, part in partitions(d, site).items():
        by_partition.setdefault(part, []).append(group)
    for part, groups in sorted(by_partition.items()):
        limits = {g: d.groups[g].dask for g in sorted(groups)}
        # One job is one scheduler or one worker: none may be larger than its group's memory limit
        # (groups sharing a partition: the largest; the gateway holds each to its own).
        gb = max(lim.max_memory_gb for lim in limits.values() if lim is not None)
        mem = min(node.real_memory_mb, int(gb * 1024))
        where = ", ".join(f"groups.{g}.dask.max_memory_gb={lim.max_memory_gb:g}"
                          for g, lim in limits.items() if lim is not None)
        lines.append(f"PartitionName={part} Nodes={node.name} MaxMemPerNode={mem} OverSubscribe={OVERSUBSCRIBE} "
                     f"MaxTime=INFINITE State=UP  # {where}")
    return "\n".join(lines) + "\n"


CGROUP_CONF = """\
# cgroups of the site's jobs (cgroup v1 controllers on these machines), written by `lunarhub up`.
CgroupPlugin=cgroup/v1
CgroupAutomount=no
ConstrainCores=yes
ConstrainRAMSpace=yes
AllowedRAMSpace=100
"""


def _wrapper(lay: Layout, name: str) -> str:
    return f'#!/bin/sh\n# {name} of this site\'s Slurm cluster (written by `lunarhub up`).\n' \
           f'SLURM_CONF={lay.conf} exec /usr/bin/{name} "$@"\n'


# ---------------------------------------------------------------- checks and preparation


def missing_packages() -> list[str]:
    """Debian packages a Slurm site needs that this machine lacks."""
    found = {"munged": SBIN / "munged", "slurmctld": SBIN / "slurmctld", "slurmd": SBIN / "slurmd",
             "sbatch": Path("/usr/bin/sbatch"), "sudo": Path("/usr/bin/sudo")}
    return sorted({PACKAGES[k] for k, p in found.items() if not p.exists()})


def key_problem(lay: Layout) -> str | None:
    """Why munged could not use the site's key (None: it can)."""
    try:
        st = os.lstat(lay.key)
    except FileNotFoundError:
        return None  # made at start
    except OSError as exc:
        return f"munge key {lay.key} cannot be read: {exc.strerror}"
    munge = pwd.getpwnam("munge").pw_uid
    if not os.path.isfile(lay.key) or os.path.islink(lay.key):
        return f"munge key {lay.key} is not a regular file"
    if st.st_uid != munge:
        return f"munge key {lay.key} is owned by uid {st.st_uid}, not munge: munged cannot read it (chown munge)"
    if st.st_mode & 0o077:
        return f"munge key {lay.key} has mode {st.st_mode & 0o777:o}: only munge may read it (chmod 0400)"
    if not st.st_mode & 0o400:
        return f"munge key {lay.key} has mode {st.st_mode & 0o777:o}: munge cannot read it (chmod 0400)"
    if st.st_size < 32:
        return f"munge key {lay.key} is {st.st_size} bytes: munged needs at least 32 (delete it to make a new one)"
    return None


def problems(d: Deployment) -> list[tuple[str, str]]:
    """(where, why) that keep a Slurm site from starting; for `lunarhub up`'s preflight."""
    names = sites(d)
    if not names:
        return []
    out: list[tuple[str, str]] = []
    missing = missing_packages()
    for name in names:
        where = f"sites.{name}.compute"
        if missing:
            out.append((where, f"site {name!r} runs a Slurm cluster, but Debian packages are missing: "
                               f"{', '.join(missing)}; install them with `make install` (as root) or "
                               f"`apt-get install -y {' '.join(missing)}`"))
            continue
        if os.geteuid() != 0:
            out.append((where, f"site {name!r} runs a Slurm cluster: munged, slurmctld and slurmd need root"))
            continue
        why = key_problem(layout(d, name))
        if why:
            out.append((where, f"site {name!r}: {why}"))
        closed = _closed_to_others(layout(d, name).root)
        if closed:
            out.append((where, f"site {name!r}: users' sbatch must reach {layout(d, name).root}, but {closed} "
                               "is closed to other accounts; open it (chmod o+x) or move state_dir"))
        if d.hub.isolation != "system-users":
            out.append((where, f"site {name!r} runs jobs as the users' own accounts: it needs "
                               "hub.isolation: system-users"))
    return out


def _closed_to_others(path: Path) -> str | None:
    """The first existing folder above `path` other accounts cannot enter, if any."""
    for parent in reversed([path, *path.parents]):
        try:
            if not os.stat(parent).st_mode & 0o001:
                return str(parent)
        except FileNotFoundError:
            break
    return None


def _owned_dir(path: Path, owner: str, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        raise SlurmError(f"{path} is a symbolic link; refusing to use it")
    entry = pwd.getpwnam(owner)
    os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
    os.chmod(path, mode)


def prepare(d: Deployment, site: str) -> Layout:
    """Write the site's configs, commands and (once) munge key; returns where they are."""
    lay = layout(d, site)
    node = this_node(d.sites[site].compute.reserved_memory_gb)
    # Every submitting account walks down to the configs and munge's socket.
    for p in (d.state_path / "slurm", lay.root, lay.etc, lay.bin, lay.spool):
        _owned_dir(p, "root", 0o755)
    _owned_dir(lay.munge, "munge", 0o700)
    _owned_dir(lay.run, "munge", 0o755)
    _owned_dir(lay.spool / "ctld", "slurm", 0o700)
    _owned_dir(lay.spool / "d", "root", 0o700)
    if not lay.key.exists():
        munge = pwd.getpwnam("munge")
        fd = os.open(lay.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o400)
        try:
            os.fchown(fd, munge.pw_uid, munge.pw_gid)
            os.write(fd, os.urandom(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
    why = key_problem(lay)
    if why:
        raise SlurmError(f"site {site!r}: {why}")
    write_atomic(lay.conf, slurm_conf(d, site, node), 0o644)
    write_atomic(lay.etc / "cgroup.conf", CGROUP_CONF, 0o644)
    for name in COMMANDS:
        write_atomic(lay.bin / name, _wrapper(lay, name), 0o755)
    return lay


# ---------------------------------------------------------------- daemons


def program_commands(d: Deployment, site: str) -> list[tuple[str, list[str]]]:
    """(supervisor program name, command) of the site's three daemons, in start order."""
    base = [sys.executable, "-m", "lunarhub.compute.slurm", "exec", "--config", str(d.config_file or ""),
            "--site", site]
    return [(program_name(site, daemon), [*base, daemon]) for daemon in DAEMONS]


def daemon_argv(d: Deployment, site: str, daemon: str) -> list[str]:
    lay = layout(d, site)
    if daemon == "munged":
        # setpriv execs (runuser would stay as a parent): the supervisor's TERM reaches munged.
        return ["/usr/bin/setpriv", "--reuid=munge", "--regid=munge", "--init-groups", "--",
                str(SBIN / "munged"), "--foreground", f"--socket={lay.socket}", f"--key-file={lay.key}",
                f"--pid-file={lay.munge / 'munged.pid'}", f"--seed-file={lay.munge / 'munged.seed'}",
                f"--log-file={lay.munge / 'munged.log'}"]
    if daemon == "slurmctld":
        return [str(SBIN / "slurmctld"), "-D", "-f", str(lay.conf)]
    node = _conf_node(lay)
    return [str(SBIN / "slurmd"), "-D", "-f", str(lay.conf), "-N", node]


def _conf_node(lay: Layout) -> str:
    m = re.search(r"^NodeName=(\S+)", lay.conf.read_text(), re.M)
    if not m:
        raise SlurmError(f"{lay.conf} names no node; `lunarhub up` writes it")
    return m.group(1)


def _wait(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def controller_state(d: Deployment, site: str, timeout: float = 5) -> tuple[bool, str]:
    """Whether the site's slurmctld answers (`scontrol ping`), and what it said."""
    lay = layout(d, site)
    try:
        r = subprocess.run([lay.command("scontrol"), "ping"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"scontrol ping: {exc}"
    text = (r.stdout + r.stderr).strip()
    # A DOWN controller comes with a banner of asterisks: the first line says it.
    return r.returncode == 0 and "is UP" in text, text.splitlines()[0] if text else "no reply"


def node_ready(d: Deployment, site: str) -> tuple[bool, str]:
    lay = layout(d, site)
    try:
        r = subprocess.run([lay.command("sinfo"), "-h", "-N", "-o", "%t"], capture_output=True, text=True,
                           timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    states = r.stdout.split()
    return bool(states) and all(s.rstrip("*~#") in ("idle", "mix", "alloc", "comp") and not s.endswith("*")
                                for s in states), r.stdout.strip() or r.stderr.strip()


def wait_ready(d: Deployment, site: str, timeout: float = READY_TIMEOUT) -> None:
    """Return once the site's controller answers and its node takes jobs; else SlurmError naming the log."""
    if not _wait(lambda: controller_state(d, site)[0], timeout):
        _, said = controller_state(d, site)
        raise SlurmError(f"site {site!r}: slurmctld did not come up within {timeout:g} s ({said}); see "
                         f"{log_path(d, site, 'slurmctld')} and {log_path(d, site, 'munged')}")
    if not _wait(lambda: node_ready(d, site)[0], timeout):
        raise SlurmError(f"site {site!r}: the Slurm node does not take jobs ({node_ready(d, site)[1]}); see "
                         f"{log_path(d, site, 'slurmd')}")


def _exec(d: Deployment, site: str, daemon: str) -> int:
    """Run one daemon in the foreground (the supervisor's program), after what it depends on is there."""
    lay = layout(d, site)
    if not lay.conf.exists():
        print(f"lunarhub: site {site!r}: {lay.conf} is missing; `lunarhub up` writes it", file=sys.stderr)
        return 2
    if daemon == "munged":
        why = key_problem(lay)
        if why or not lay.key.exists():
            print(f"lunarhub: site {site!r}: {why or f'munge key {lay.key} is missing'}", file=sys.stderr)
            return 2
        lay.socket.unlink(missing_ok=True)  # a socket left by a killed munged blocks the next
    else:
        if not _wait(lay.socket.exists, 20):
            print(f"lunarhub: site {site!r}: munged's socket {lay.socket} did not appear; see "
                  f"{log_path(d, site, 'munged')} and {lay.munge / 'munged.log'}", file=sys.stderr)
            return 1
        if daemon == "slurmd" and not _wait(lambda: controller_state(d, site, timeout=2)[0], 30):
            print(f"lunarhub: site {site!r}: slurmctld does not answer; see {log_path(d, site, 'slurmctld')}",
                  file=sys.stderr)
            return 1
    argv = daemon_argv(d, site, daemon)
    sys.stdout.flush()
    env = {**os.environ, "SLURM_CONF": str(lay.conf)}
    os.execve(argv[0], argv, env)
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lunarhub.compute.slurm")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("exec", help="run one daemon of a site's Slurm cluster (the supervisor's programs)")
    e.add_argument("--config", default="")
    e.add_argument("--site", required=True)
    e.add_argument("daemon", choices=DAEMONS)
    args = p.parse_args(argv)
    from lunarhub import config

    d = config.load(args.config or None)
    if args.site not in sites(d):
        print(f"lunarhub: site {args.site!r} has no local Slurm compute in {d.config_file}", file=sys.stderr)
        return 2
    return _exec(d, args.site, args.daemon)


def cancel_all(d: Deployment, site: str) -> int:
    """Cancel every job of the site's cluster (at `lunarhub down`); returns how many there were."""
    lay = layout(d, site)
    if not lay.conf.exists() or not controller_state(d, site, timeout=3)[0]:
        return 0
    r = subprocess.run([lay.command("squeue"), "-h", "-o", "%A"], capture_output=True, text=True, timeout=10)
    ids = r.stdout.split()
    if ids:
        subprocess.run([lay.command("scancel"), *ids], capture_output=True, text=True, timeout=30)
    return len(ids)


if __name__ == "__main__":
    sys.exit(main())
