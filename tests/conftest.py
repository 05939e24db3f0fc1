"""Shared fixtures.

``tiny_sweep``: the tiny config (config/test.yaml) run once per test session by a real Snakemake in a
temporary working directory (a copy of config/), default target: datasets, training, aggregate and
the report rules. Tests that only read its results share it (tests/workflow/test_workflow.py,
tests/analysis/test_report.py); a test that changes files must work on a copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@dataclass
class TinySweep:
    work: Path  # the working directory: config/, results/test/, mlflow.db, mlruns/, .snakemake/
    elapsed: float  # seconds the Snakemake run took
    output: str  # its stdout + stderr


def kan_resources(n_train, grid, width, k, steps, attempt=1, n_models=1, **changes) -> dict:
    """A KAN job's resource estimate (kanlib.families.KANFamily.resources) in the default sweep's config."""
    import yaml

    from kanlib.families import REGISTRY, Job, KANFamily

    config = {**yaml.safe_load((REPO / "config" / "config.yaml").read_text()), "steps": steps, **changes}
    job = Job("kan", "xy", tuple(width), n_train, 0, KANFamily._settings(k, [grid], 0))
    return REGISTRY["kan"].resources(config, job, attempt, n_models)


def tiny_environment(**extra) -> dict:
    """The environment of a test's Snakemake: no inherited MLFLOW_* settings, telemetry off."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", **extra)
    return env


def tiny_command(*args) -> list[str]:
    """Snakemake on the repository's Snakefile with the tiny config (and config/extra.yaml) on top."""
    snakemake = str(Path(sys.executable).parent / "snakemake")
    return [
        snakemake,
        "-s",
        str(REPO / "Snakefile"),
        "--cores",
        "2",
        *args,
        "--configfile",
        "config/test.yaml",
        "config/extra.yaml",
    ]


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> TinySweep:
    work = tmp_path_factory.mktemp("tiny_sweep") / "work"
    shutil.copytree(REPO / "config", work / "config")
    (work / "config" / "extra.yaml").write_text("{}\n")
    started = time.monotonic()
    result = subprocess.run(
        tiny_command(), cwd=work, env=tiny_environment(), capture_output=True, text=True, timeout=600
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise AssertionError(f"the tiny sweep failed ({result.returncode}):\n{output[-6000:]}")
    return TinySweep(work=work, elapsed=elapsed, output=output)


@pytest.fixture(autouse=True)
def tracking_uri_left_as_found():
    """``mlflow.set_tracking_uri`` (used by tests to read a sweep's store) also sets the environment
    variable MLFLOW_TRACKING_URI, which kanlib honours over a config's URI: put it back as it was, so
    a test never sends a later one's runs to its store."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
