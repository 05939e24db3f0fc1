"""The ready presets' DAGs (dry runs through a real Snakemake): the jobs each one would run.

config/kan_vs_mlp.yaml (KAN against MLP, minutes), config/paper_fig2_3.yaml and
config/paper_fig3_1.yaml (the KAN paper's Fig. 2.3 and Fig. 3.1).
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

pytestmark = pytest.mark.workflow


def dry_run_counts(tmp_path: Path, preset: str) -> collections.Counter:
    work = tmp_path / "work"
    shutil.copytree(REPO / "config", work / "config")
    command = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-n", "--configfile", f"config/{preset}.yaml"]
    result = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert not (work / "results").exists() and not (work / "mlflow.db").exists()  # a dry run writes nothing
    return collections.Counter(re.findall(r"^(?:local)?rule (\w+):$", result.stdout, flags=re.M))


def test_kan_vs_mlp_preset_dag(tmp_path):
    # 2 functions x 1 N x 1 seed: 2 datasets, 2 chains of 6 grid levels, 2 x 9 MLPs (depths 2-4, widths 5-50)
    counts = dry_run_counts(tmp_path, "kan_vs_mlp")
    assert counts["dataset"] == 2 and counts["train"] == 12 and counts["train_mlp"] == 18
    assert counts["report_families"] == 2 and counts["report_figures"] == 2
    config = yaml.safe_load((REPO / "config/kan_vs_mlp.yaml").read_text())
    depths = {len(w) - 1 for entry in config["functions"] for w in entry["mlp_widths"]}
    hidden = {h for entry in config["functions"] for w in entry["mlp_widths"] for h in w[1:-1]}
    assert depths == {2, 3, 4} and min(hidden) == 5 and max(hidden) == 50


def test_paper_fig2_3_preset_dag(tmp_path):
    # [2,1,1] and [2,5,1] x 3 seeds x 9 grid levels (G = 3 ... 1000), one function, N = 1000
    counts = dry_run_counts(tmp_path, "paper_fig2_3")
    assert counts["dataset"] == 3 and counts["train"] == 2 * 3 * 9 and counts["train_mlp"] == 0
    config = yaml.safe_load((REPO / "config/paper_fig2_3.yaml").read_text())
    assert config["grids"] == [3, 5, 10, 20, 50, 100, 200, 500, 1000] and config["steps"] == 200


def test_paper_fig3_1_preset_dag(tmp_path):
    # 5 functions x 3 seeds: 15 datasets, 15 chains of 9 levels, 5 x 20 MLPs (depths 2-5 x widths 5-100) x 3 seeds
    counts = dry_run_counts(tmp_path, "paper_fig3_1")
    assert counts["dataset"] == 15 and counts["train"] == 5 * 3 * 9 and counts["train_mlp"] == 5 * 20 * 3
    assert counts["report_families"] == 5
    config = yaml.safe_load((REPO / "config/paper_fig3_1.yaml").read_text())
    shapes = {entry["name"]: entry["widths"] for entry in config["functions"]}
    assert shapes == {  # the paper's KAN shapes (Sec. 3.1)
        "bessel_j0_20x": [[1, 1]],
        "exp_sin_pi_x_plus_y2": [[2, 1, 1]],
        "xy": [[2, 2, 1]],
        "exp_mean_sin_sq_100d": [[100, 1, 1]],
        "exp_composition_4d": [[4, 4, 2, 1]],
    }
