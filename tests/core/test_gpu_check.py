"""benchmarks/gpu_check.sh's dry run (``--device cpu``: every part at tiny sizes on the CPU), so the GPU
script is known to work before a GPU is at hand: it ends in time, and its log has every section with
numbers in its tables."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECTIONS = [
    "== machine",
    "== packages",
    "== CUDA tests (tests/core/test_cuda.py)",
    "== evaluation time",
    "== full fit",
    "== Fig. 3.1 MLP shapes",
    "== goals (issue 27)",
]
NUMBER = re.compile(r"^-?\d+(\.\d+)?(e[+-]?\d+)?x?$")


def table_rows(text: str, header_start: str) -> list[list[str]]:
    """The cells of the markdown table whose header line starts with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def numbers(cells: list[str]) -> list[float]:
    return [float(cell.rstrip("x")) for cell in cells if NUMBER.match(cell)]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("gpu_check")
    log = folder / "gpu_check.log"
    env = {key: value for key, value in os.environ.items() if key != "OUT" and not key.startswith("MLFLOW_")}
    env.update(PYTHON=sys.executable, TMPDIR=str(folder))
    result = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--log", str(log)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = log.read_text()
    assert text == result.stdout, "the log is what the script prints"
    return text


def test_every_section_in_order_and_no_part_failed(dry_run):
    positions = [dry_run.find(section) for section in SECTIONS]
    assert all(p >= 0 for p in positions), [s for s, p in zip(SECTIONS, positions) if p < 0]
    assert positions == sorted(positions)
    assert "!!" not in dry_run, [line for line in dry_run.splitlines() if "!!" in line]
    done = re.search(r"gpu_check done in (\d+) s \(budget 345 s\)", dry_run)
    assert done and int(done.group(1)) < 150


def test_machine_and_versions(dry_run):
    assert re.search(r"^torch \S+, CUDA ", dry_run, re.M)
    versions = re.search(r"^versions: (.*)$", dry_run, re.M).group(1)
    for name in ("torch", "numpy", "snakemake", "mlflow", "pytest"):
        assert re.search(rf"\b{name} \d", versions), versions


def test_cuda_tests_collect_and_skip(dry_run):
    assert re.search(r"^\d+ skipped in ", dry_run, re.M), "tests/core/test_cuda.py collected and skipped"
    assert "error" not in dry_run.split("== CUDA tests")[1].split("== evaluation")[0].lower()


def test_evaluation_table(dry_run):
    rows = table_rows(dry_run, "| S | N |")
    assert [(row[0], row[1]) for row in rows] == [("1", "200"), ("4", "200")]
    for row in rows:
        values = numbers(row)
        assert len(values) == 7 and all(v > 0 and math.isfinite(v) for v in values), row


def test_fit_table_and_breakdown(dry_run):
    rows = table_rows(dry_run, "| device | S |")
    assert [(row[0], row[1]) for row in rows] == [("cpu-torch", "1"), ("cpu-torch", "4"), ("cpu", "1"), ("cpu", "4")]
    for row in rows:
        assert len(numbers(row[1:])) == 7 and all(v > 0 for v in numbers(row[1:])), row
    assert re.search(r"ratios \d\.\d+ \.\. \d\.\d+", dry_run)
    assert re.search(r"of which the models' loss and gradients \d+\.\d+ ms \(\d+%\)", dry_run)


def test_mlp_shapes_table(dry_run):
    rows = table_rows(dry_run, "| function | width |")
    shapes = {(row[0], row[1]) for row in rows}
    assert shapes == {
        ("exp_sin_pi_x_plus_y2", "[2, 100, 100, 100, 100, 1]"),
        ("exp_composition_4d", "[4, 100, 100, 100, 1]"),
        ("exp_composition_4d", "[4, 100, 100, 100, 100, 1]"),
    }
    assert len(rows) == 9  # 3 seeds each
    for row in rows:
        assert row[4] == "3/3", row  # the dry run's 3 steps, finished
        rmse = [float(cell) for cell in row[5:8]]
        assert all(0 < value < 10 for value in rmse), row
    assert len(re.findall(r"ms an evaluation \(the models' loss and gradients", dry_run)) == 3


def test_goals_checklist(dry_run):
    goals = dry_run.split("== goals (issue 27)")[1]
    assert "a dry run" in goals
    for number, text in (
        (1, "a stack of 16 KAN seeds at N = 1000 in at most 1.5x the time of one"),
        (2, "the GPU faster than the CPU for a stack of 16 at N = 1000"),
        (3, "each of the 3 missing Fig. 3.1 MLP shapes (3 seeds) in at most 120 s"),
    ):
        line = next(line for line in goals.splitlines() if f"{number}. {text}" in line)
        assert re.match(r"^\[(PASS|FAIL)\] ", line), line  # measured, not "[not measured]"
    assert re.search(r"\d+\.\d+x", goals)
