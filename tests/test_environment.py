"""environment.yml (cluster nodes, conda) lists the same dependencies as pyproject.toml (make setup)."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parents[1]


def normalise(requirement: str) -> tuple[str, str]:
    """('mlflow', '==3.17.2') from 'mlflow==3.17.2'; names compared the way pip compares them."""
    match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*$", requirement)
    name, _, spec = match.groups()
    return re.sub(r"[-_.]+", "-", name).lower(), spec.replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    expected = {normalise(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict) and "pip" in entry)
    listed = {normalise(r) for r in pip if not r.startswith("-e")}
    assert listed == expected, (
        f"only in environment.yml: {sorted(listed - expected)}; only in pyproject.toml: {sorted(expected - listed)}"
    )
    assert "-e ." in pip  # kanlib itself, editable, as make setup installs it
    python = next(d for d in environment["dependencies"] if isinstance(d, str) and d.startswith("python"))
    required = project["requires-python"].removeprefix(">=")
    assert tuple(map(int, python.split("=")[-1].split("."))) >= tuple(map(int, required.split(".")))
