"""environment.yml (cluster nodes, conda) lists the same dependencies as pyproject.toml (make setup)."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parents[2]


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


def test_make_run_uses_every_core_of_the_machine():
    import os
    import subprocess

    # -n: print the commands only; .installed is made to look current so setup prints nothing either
    result = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", "run"], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert f"snakemake --cores {len(os.sched_getaffinity(0))}" in result.stdout
    chosen = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", "run", "CORES=3"], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert "snakemake --cores 3" in chosen.stdout


def test_the_version_is_written_once():
    import kanlib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    from importlib.metadata import version

    assert version("kanlib") == kanlib.__version__
