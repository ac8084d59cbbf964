"""lunarhub.platform.cgroups against a fake cgroup root in tmp: which files get which values,
detection of v1 / v2, the errors where controllers are missing, clean-up of what is left.

The real kernel's behaviour (the OOM kill) is tested in tests/security/test_resources.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lunarhub.platform import cgroups

HUB_GROUP = "process_api/abc"


def fake_v1(tmp: Path, memsw: bool = True) -> tuple[Path, Path]:
    root = tmp / "cgroup"
    for ctrl, probe in (("memory", "memory.limit_in_bytes"), ("cpu", "cpu.cfs_quota_us"), ("pids", "pids.max")):
        own = root / ctrl / HUB_GROUP
        own.mkdir(parents=True)
        (root / ctrl / probe).write_text("max\n")
        if ctrl == "memory" and memsw:
            (own / "memory.memsw.limit_in_bytes").write_text("9223372036854771712\n")
    proc = tmp / "proc-self-cgroup"
    proc.write_text(f"8:pids:/\n4:memory:/{HUB_GROUP}\n2:cpuacct:/\n1:cpu:/{HUB_GROUP}\n0::/\n")
    return root, proc


def fake_v2(tmp: Path, controllers: str = "cpuset cpu io memory pids") -> tuple[Path, Path]:
    root = tmp / "cgroup2"
    own = root / HUB_GROUP
    own.mkdir(parents=True)
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (own / "cgroup.controllers").write_text(controllers + "\n")
    (own / "memory.swap.max").write_text("max\n")
    proc = tmp / "proc-self-cgroup"
    proc.write_text(f"0::/{HUB_GROUP}\n")
    return root, proc


@pytest.fixture(autouse=True)
def rmdir_like_cgroupfs(monkeypatch):
    """cgroupfs removes a group's folder with its control files but not with child groups in it."""

    def remove(path: Path) -> None:
        if any(p.is_dir() for p in path.iterdir()):
            raise OSError(39, "Directory not empty", str(path))
        shutil.rmtree(path)

    monkeypatch.setattr(cgroups, "_remove_dir", remove)


def test_v1_group_gets_the_profile_limits_under_the_hubs_own_group(tmp_path: Path) -> None:
    root, proc = fake_v1(tmp_path)
    h = cgroups.detect(root, proc)
    assert h.version == 1
    g = h.group("lunarhub-8081/student")
    g.create(memory_bytes=2 << 30, cpu=1.5)
    mem = root / "memory" / HUB_GROUP / "lunarhub-8081" / "student"
    cpu = root / "cpu" / HUB_GROUP / "lunarhub-8081" / "student"
    assert g.dirs == (mem, cpu)
    assert (mem / "memory.limit_in_bytes").read_text() == str(2 << 30)
    assert (mem / "memory.memsw.limit_in_bytes").read_text() == str(2 << 30)
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "150000"
    assert g.procs_files() == [str(mem / "cgroup.procs"), str(cpu / "cgroup.procs")]


def test_v1_without_swap_accounting_sets_only_the_memory_limit(tmp_path: Path) -> None:
    root, proc = fake_v1(tmp_path, memsw=False)
    g = cgroups.detect(root, proc).group("lunarhub-1/student")
    g.create(memory_bytes=1 << 30, cpu=None)
    assert sorted(p.name for p in g.memory_dir.iterdir()) == ["memory.limit_in_bytes"]
    assert not any(g.dirs[1].iterdir()), "no cpu limit asked for, none written"


def test_v2_group_delegates_controllers_down_and_sets_max_files(tmp_path: Path) -> None:
    root, proc = fake_v2(tmp_path)
    h = cgroups.detect(root, proc)
    assert h.version == 2
    g = h.group("lunarhub-8081/cn-scientist--dash-x")
    g.create(memory_bytes=6 << 30, cpu=2)
    (leaf,) = g.dirs
    assert leaf == root / HUB_GROUP / "lunarhub-8081" / "cn-scientist--dash-x"
    assert (root / HUB_GROUP / "cgroup.subtree_control").read_text() == "+memory +cpu"
    assert (leaf.parent / "cgroup.subtree_control").read_text() == "+memory +cpu"
    assert (leaf / "memory.max").read_text() == str(6 << 30)
    assert (leaf / "cpu.max").read_text() == "200000 100000"
    assert g.procs_files() == [str(leaf / "cgroup.procs")]


def test_missing_v1_controllers_are_named_with_what_to_do(tmp_path: Path) -> None:
    root, proc = fake_v1(tmp_path)
    (root / "memory" / "memory.limit_in_bytes").unlink()
    with pytest.raises(cgroups.Unavailable) as err:
        cgroups.detect(root, proc)
    msg = str(err.value)
    assert "for memory" in msg and str(root / "memory") in msg and "cpu" not in msg.split(":")[0]
    assert "mount -t cgroup -o memory" in msg and "hub.resource_limits: none" in msg


def test_v2_without_memory_for_the_hubs_group_is_refused(tmp_path: Path) -> None:
    root, proc = fake_v2(tmp_path, controllers="cpu pids")
    with pytest.raises(cgroups.Unavailable, match=r"cgroup v2 .*controllers memory are not available.*"
                                                  r"hub.resource_limits: none"):
        cgroups.detect(root, proc)


def test_v2_hub_group_with_processes_cannot_delegate_clear_error(tmp_path: Path, monkeypatch) -> None:
    root, proc = fake_v2(tmp_path)
    g = cgroups.detect(root, proc).group("lunarhub-1/student")
    real_write = cgroups._write

    def write(path: Path, value: str) -> None:
        if path == root / HUB_GROUP / "cgroup.subtree_control":
            raise OSError(16, "Device or resource busy")  # what the kernel answers: processes inside
        real_write(path, value)

    monkeypatch.setattr(cgroups, "_write", write)
    with pytest.raises(cgroups.Unavailable, match="holds processes.*Delegate=yes"):
        g.create(memory_bytes=1 << 30, cpu=1)


def test_oom_kills_are_read_from_v1_oom_control_and_v2_events(tmp_path: Path) -> None:
    root, proc = fake_v1(tmp_path)
    g = cgroups.detect(root, proc).group("lunarhub-1/student")
    g.create(memory_bytes=1 << 30, cpu=None)
    assert g.oom_kills() is None  # an old kernel without the counter
    (g.memory_dir / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    assert g.oom_kills() == 3
    root2, proc2 = fake_v2(tmp_path / "v2")
    g2 = cgroups.detect(root2, proc2).group("lunarhub-1/student")
    g2.create(memory_bytes=1 << 30, cpu=None)
    (g2.memory_dir / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n")
    assert g2.oom_kills() == 2


def test_join_writes_the_callers_pid_to_each_group(tmp_path: Path) -> None:
    root, proc = fake_v1(tmp_path)
    g = cgroups.detect(root, proc).group("lunarhub-1/student")
    g.create(memory_bytes=1 << 30, cpu=1)
    cgroups.join_files(g.procs_files())
    assert g.pids() == {os.getpid()}


def test_remove_kills_what_is_left_and_removes_the_group_and_its_empty_parent(tmp_path: Path) -> None:
    root, proc = fake_v1(tmp_path)
    h = cgroups.detect(root, proc)
    g, other = h.group("lunarhub-1/student"), h.group("lunarhub-1/cn-scientist")
    g.create(memory_bytes=1 << 30, cpu=1)
    other.create(memory_bytes=1 << 30, cpu=1)
    left = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        for f in g.procs_files():
            Path(f).write_text(f"{left.pid}\n")
        assert g.remove()
        assert left.wait(timeout=60) == -9
    finally:
        left.kill()
    assert not g.exists()
    assert other.exists() and g.memory_dir.parent.is_dir(), "the other server's group stays"
    assert other.remove()
    assert not (root / "memory" / HUB_GROUP / "lunarhub-1").exists()
    assert (root / "memory" / HUB_GROUP).is_dir(), "the hub's own group is never removed"


def test_create_replaces_a_group_a_crashed_hub_left(tmp_path: Path) -> None:
    root, proc = fake_v1(tmp_path)
    g = cgroups.detect(root, proc).group("lunarhub-1/student")
    g.create(memory_bytes=6 << 30, cpu=2)
    g.create(memory_bytes=2 << 30, cpu=1)
    assert (g.memory_dir / "memory.limit_in_bytes").read_text() == str(2 << 30)
    assert (g.dirs[1] / "cpu.cfs_quota_us").read_text() == "100000"


def test_this_host_has_a_usable_hierarchy() -> None:
    """The machines we run on (v1 controllers, see stack-facts) are detected as such."""
    if not Path("/sys/fs/cgroup").exists():
        pytest.skip("no /sys/fs/cgroup on this machine")
    h = cgroups.detect()
    assert h.version in (1, 2)
