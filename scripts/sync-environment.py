#!/usr/bin/env python3
"""Rewrites environment.yml from pyproject.toml (run after changing dependencies)."""

import tomllib
from pathlib import Path

root = Path(__file__).resolve().parents[1]
project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
deps = project["dependencies"] + project["optional-dependencies"]["test"]
lines = [
    "# Conda environment for lunarhub: the same Python dependencies as pyproject.toml",
    "# (tests/unit/test_environment_sync.py checks). Regenerate: python scripts/sync-environment.py",
    "# Then: npm ci (configurable-http-proxy) and pip install -e . --no-deps",
    "name: lunarhub",
    "channels:",
    "  - conda-forge",
    "dependencies:",
    "  - python=3.11",
    "  - pip",
    "  - nodejs>=18",
    "  - pip:",
] + [f'    - "{d}"' for d in deps]
(root / "environment.yml").write_text("\n".join(lines) + "\n")
