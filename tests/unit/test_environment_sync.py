"""environment.yml (conda users) must ask for exactly what pyproject.toml asks for."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _norm(spec: str) -> str:
    return spec.replace(" ", "").lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_norm(s) for s in project["dependencies"]}
    wanted |= {_norm(s) for s in project["optional-dependencies"]["test"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert pip_lists, "environment.yml has no pip: section"
    have = {_norm(s) for s in pip_lists[0]}
    assert have == wanted, (
        f"only in pyproject.toml: {sorted(wanted - have)}; only in environment.yml: {sorted(have - wanted)}"
    )
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert any(d.startswith("python") for d in conda)
    assert any(d.startswith("nodejs") for d in conda), "configurable-http-proxy needs nodejs"
