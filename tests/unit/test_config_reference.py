"""The deployment schema is the contract: every key documented, docs/config-reference.md generated from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lunarhub import config
from lunarhub.config import reference

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "config-reference.md"
DEMO = (ROOT / "hub" / "lunarhub.yaml").read_text(encoding="utf-8")


def test_every_field_has_a_description() -> None:
    assert reference.missing_descriptions() == []


def test_committed_reference_is_current() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == reference.render(), (
        "docs/config-reference.md is stale: run `python -m lunarhub.config.reference -o docs/config-reference.md`"
    )


def test_reference_names_every_key_the_demo_file_uses() -> None:
    documented = {r.key for r in reference.rows(config.Deployment)}
    named = {"institutions", "groups", "users", "profiles", "sites", "projects",  # keys chosen by the operator
             "sites.<name>.at_site"}

    def keys(node: object, prefix: str) -> set[str]:
        out: set[str] = set()
        for k, v in (node.items() if isinstance(node, dict) else ()):
            key = f"{prefix}<name>" if prefix.rstrip(".") in named else f"{prefix}{k}"
            if not key.endswith("<name>"):
                out.add(key)
            out |= keys(v, key + ".")
        return out

    used = keys(yaml.safe_load(DEMO), "")
    assert used and used - documented == set()


def test_deployment_file_points_to_the_reference() -> None:
    assert "docs/config-reference.md" in DEMO


def test_cross_field_problems_stay_structured_with_their_lines() -> None:
    text = DEMO.replace("student: {groups: [students]", "student: {groups: [studnets]")
    with pytest.raises(config.ConfigError) as info:
        config.parse(text, source="test.yaml", base_dir=ROOT / "hub")
    (problem,) = info.value.details
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "studnets" in ln)
    assert (problem.key, problem.line) == ("users.student.groups", line)
    assert problem.reason == "user is in undefined group 'studnets'"
    assert info.value.problems == [(f"users.student.groups (line {line})", problem.reason)]


def test_names_with_dots_keep_their_key_path() -> None:
    # Institution names are free-form: a dotted name must not split the key path apart.
    data = yaml.safe_load(DEMO)
    data["institutions"]["iki.ras"] = data["institutions"].pop("iki")
    data["institutions"]["iki.ras"]["site"] = "moon"
    with pytest.raises(config.ConfigError) as info:
        config.parse(yaml.safe_dump(data, allow_unicode=True), base_dir=ROOT / "hub")
    keys = {p.key for p in info.value.details}
    assert "institutions.iki.ras.site" in keys
    assert all(p.line for p in info.value.details if p.key == "institutions.iki.ras.site")


def test_the_cli_prints_the_same_reference(capsys) -> None:
    from lunarhub.cli import main
    from lunarhub.config import reference

    assert main(["config", "reference"]) == 0
    assert capsys.readouterr().out == reference.render()
