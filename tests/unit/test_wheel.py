"""`pip install .` gives a working lunarhub without the checkout (slow: ~30-90 s).

Builds the wheel from a copy of the package sources (so no stale build/ of the checkout
leaks into it), installs it into a fresh venv and, from a folder outside the checkout,
runs the operator CLI (`lunarhub config`, `lunarhub render kubernetes`) and the kernel-side
import. The fresh venv borrows .venv's site-packages for the dependencies (reinstalling
them would take a gigabyte) through a plain path entry: .pth files there, among them the
editable install's finder that maps `lunarhub` to the checkout, are not run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "hub" / "lunarhub.yaml"


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ["pyproject.toml", "README.md", *(p.name for p in ROOT.glob("LICEN[CS]E*"))]:
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "lunarhub", src / "lunarhub", ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(src)], tmp)
    (wheel,) = (tmp / "dist").glob("lunarhub-*.whl")

    env_dir = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], tmp)
    python = env_dir / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp).strip())
    (site / "_lunarhub_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
          str(wheel)], tmp)
    return env_dir


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    return tmp_path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LUNARHUB_CONFIG", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def test_the_installed_package_is_the_wheel_not_the_checkout(venv: Path, outside: Path) -> None:
    out = _run([str(venv / "bin" / "python"), "-c", "import lunarhub; print(lunarhub.__file__)"], outside, _env())
    path = Path(out.strip()).resolve()
    assert path.is_relative_to(venv.resolve()), path
    assert not path.is_relative_to(ROOT)


def test_package_data_is_in_the_wheel(venv: Path, outside: Path) -> None:
    code = ("from importlib.resources import files; "
            "print((files('lunarhub.dashboards.gallery') / 'templates' / 'page.html').is_file())")
    assert _run([str(venv / "bin" / "python"), "-c", code], outside, _env()).strip() == "True"


def test_operator_cli_validates_and_renders(venv: Path, outside: Path) -> None:
    lunarhub = str(venv / "bin" / "lunarhub")
    out = _run([lunarhub, "--config", str(CONFIG), "config"], outside, _env())
    assert "valid" in out
    values = _run([lunarhub, "--config", str(CONFIG), "render", "kubernetes"], outside, _env())
    assert "jupyterhub:" in values and "dask-gateway" in values


def test_kernel_side_import(venv: Path, outside: Path) -> None:
    code = ("import lunarhub, lunarhub.terrain, lunarhub.doctor; "
            "assert callable(lunarhub.open_catalog); "
            "print(lunarhub.terrain.__file__)")
    out = _run([str(venv / "bin" / "python"), "-c", code], outside, _env())
    assert Path(out.strip()).resolve().is_relative_to(venv.resolve())
