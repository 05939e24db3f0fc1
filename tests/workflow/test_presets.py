"""The ready presets' DAGs (dry runs through a real Snakemake): the jobs each one would run.

config/kan_vs_mlp.yaml (KAN against MLP, minutes), config/paper_fig2_3.yaml and
config/paper_fig3_1.yaml (the KAN paper's Fig. 2.3 and Fig. 3.1).
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from kanlib.analysis.fits import learnt_rows

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

pytestmark = pytest.mark.workflow


def dry_run_counts(tmp_path: Path, preset: str, *overlays: str) -> collections.Counter:
    work = tmp_path / "work"
    shutil.copytree(REPO / "config", work / "config")
    configs = [f"config/{name}.yaml" for name in (preset, *overlays)]
    command = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-n", "--configfile", *configs]
    result = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert not (work / "results").exists() and not (work / "mlflow.db").exists()  # a dry run writes nothing
    return collections.Counter(re.findall(r"^(?:local)?rule (\w+):$", result.stdout, flags=re.M))


def test_kan_vs_mlp_preset_dag(tmp_path):
    # 2 functions x 1 N x 1 seed: 2 datasets, 2 chains of 6 grid levels, 2 x 9 MLPs (depths 2-4, widths 5-50)
    counts = dry_run_counts(tmp_path, "kan_vs_mlp")
    assert counts["dataset"] == 2 and counts["train"] == 12 + 18  # one train job per KAN level and per MLP
    assert counts["report_families"] == 2 and counts["report_figures"] == 2
    config = yaml.safe_load((REPO / "config/kan_vs_mlp.yaml").read_text())
    depths = {len(w) - 1 for entry in config["functions"] for w in entry["mlp_widths"]}
    hidden = {h for entry in config["functions"] for w in entry["mlp_widths"] for h in w[1:-1]}
    assert depths == {2, 3, 4} and min(hidden) == 5 and max(hidden) == 50


def test_paper_fig2_3_preset_dag(tmp_path):
    # [2,1,1] and [2,5,1] x 9 grid levels (G = 3 ... 1000), one function, N = 1000; the 3 seeds of a
    # level train in one job (batch_seeds)
    counts = dry_run_counts(tmp_path, "paper_fig2_3")
    assert counts["dataset"] == 3 and counts["train_seeds"] == 2 * 9
    config = yaml.safe_load((REPO / "config/paper_fig2_3.yaml").read_text())
    assert config["grids"] == [3, 5, 10, 20, 50, 100, 200, 500, 1000] and config["steps"] == 200


def test_paper_fig3_1_preset_dag(tmp_path):
    # 5 functions x 3 seeds: 15 datasets, 15 chains of 9 levels, 5 x 20 MLPs (depths 2-5 x widths 5-100) x 3
    # seeds; the 3 seeds of a level (of an MLP) train in one job (batch_seeds)
    counts = dry_run_counts(tmp_path, "paper_fig3_1")
    assert counts["dataset"] == 15 and counts["train_seeds"] == 5 * 9 + 5 * 20
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


def test_paper_fig3_1_laptop_overlay_drops_only_the_largest_mlps(tmp_path):
    # the same sweep without [d,50,50,50,50,1] and width 100 with 2-4 hidden layers: 16 MLPs per function
    counts = dry_run_counts(tmp_path, "paper_fig3_1", "paper_fig3_1_laptop")
    assert counts["train_seeds"] == 5 * 9 + 5 * 16
    full = yaml.safe_load((REPO / "config/paper_fig3_1.yaml").read_text())["functions"]
    laptop = yaml.safe_load((REPO / "config/paper_fig3_1_laptop.yaml").read_text())["functions"]
    assert [(f["name"], f["widths"]) for f in laptop] == [(f["name"], f["widths"]) for f in full]
    for small, whole in zip(laptop, full):
        dropped = [w for w in whole["mlp_widths"] if w not in small["mlp_widths"]]
        assert all(w in whole["mlp_widths"] for w in small["mlp_widths"])
        assert sorted(w[1:-1] for w in dropped) == [[50] * 4, [100] * 2, [100] * 3, [100] * 4]


def test_data_scaling_preset_dag(tmp_path):
    # 3 functions x 7 N x 5 seeds: 105 datasets; per (function, N) 17 grid levels (J0(20x): 21) and 3
    # MLPs, the 5 seeds of each in one job; a data-axis figure per function
    counts = dry_run_counts(tmp_path, "data_scaling")
    assert counts["dataset"] == 105 and counts["train_seeds"] == 7 * (17 + 17 + 21 + 3 * 3)
    assert counts["report_frontier"] == 3 and counts["report_families"] == 3
    config = yaml.safe_load((REPO / "config/data_scaling.yaml").read_text())
    sizes = config["data_sizes"]
    assert sizes[0] == 100 and sizes[-1] >= 6400 and len(sizes) >= 7 and len(config["seeds"]) >= 5
    for entry in config["functions"]:
        grids = entry.get("grids", config["grids"])
        assert grids[0] == 3 and max(b / a for a, b in zip(grids, grids[1:])) <= 1.5


# ---- miniatures: each paper preset as it is, overridden to tiny grids, steps and sizes, end to end ----------

TINY = {"grids": [3, 5], "steps": 2, "stop_grid_update_step": 1, "grid_update_num": 1}


def run_miniature(tmp_path: Path, preset: str, overrides: dict) -> tuple[Path, str]:
    """The preset merged with ``overrides`` through a real Snakemake into a real SQLite MLflow store."""
    work = tmp_path / "work"
    shutil.copytree(REPO / "config", work / "config")
    (work / "config" / "mini.yaml").write_text(yaml.safe_dump(overrides))
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    command = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--cores", "2"]
    command += ["--configfile", f"config/{preset}.yaml", "config/mini.yaml"]
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return work, output


def paper_numbers(folder: Path) -> str:
    """What `python -m kanlib.workflow.paper <folder>` prints."""
    result = subprocess.run(
        [sys.executable, "-m", "kanlib.workflow.paper", str(folder)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def finished_children(work: Path) -> pd.DataFrame:
    """Child runs under the sweep's single parent (asserted FINISHED by the caller)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work}/mlflow.db")
    experiment = client.get_experiment_by_name("kan-scaling")
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return pd.DataFrame(
        {
            "status": [r.info.status for r in children],
            "family": [r.data.params.get("family") for r in children],
            "width": [r.data.params.get("width") for r in children],
        }
    )


def test_paper_fig2_3_miniature_end_to_end(tmp_path):
    work, _ = run_miniature(tmp_path, "paper_fig2_3", {**TINY, "data_sizes": [60], "test_num": 60})
    results = pd.read_csv(work / "results/paper_fig2_3/results.csv", dtype={"width": str})
    # [2,1,1] and [2,5,1] x 3 seeds x 2 grid levels, one dataset per seed
    assert len(results) == 12 and set(results["width"]) == {"2-1-1", "2-5-1"} and results["seed"].nunique() == 3
    assert results["test_median_rmse"].notna().all()
    children = finished_children(work)
    assert len(children) == 12 and (children["status"] == "FINISHED").all()
    summary = (work / "results/paper_fig2_3/summary.md").read_text()
    assert "KAN [2,1,1]" in summary and "KAN [2,5,1]" in summary and "test median-RMSE" in summary
    # the numbers docs/paper.md cites, from the sweep's own files: one staircase row per chain
    numbers = paper_numbers(work / "results/paper_fig2_3")
    stairs = numbers[numbers.index("### Staircases") : numbers.index("### Test RMSE minimum")]
    assert stairs.count("| [2,1,1] |") == 3 and stairs.count("| [2,5,1] |") == 3
    assert "### Exponents in G per seed" in numbers and "G* = N/edges" in numbers


def test_paper_fig3_1_miniature_end_to_end(tmp_path):
    # the preset's two largest inputs, the 100-input and the 4-d composition (its DAG test counts all five),
    # with all 20 MLP shapes of each
    preset = yaml.safe_load((REPO / "config/paper_fig3_1.yaml").read_text())["functions"]
    functions = [f for f in preset if f["name"] in ("exp_mean_sin_sq_100d", "exp_composition_4d")]
    overrides = {
        **TINY,
        "data_sizes": [40],
        "test_num": 40,
        "seeds": [0],
        "functions": functions,
        "mlp": {"widths": [], "activations": ["silu"], "steps": 2},
    }
    work, _ = run_miniature(tmp_path, "paper_fig3_1", overrides)
    results = pd.read_csv(work / "results/paper_fig3_1/results.csv", dtype={"width": str})
    # 2 functions: a chain of 2 levels each and 20 MLPs each (depths 2-5 x widths 5-100)
    assert (results["family"] == "kan").sum() == 4 and (results["family"] == "mlp").sum() == 40
    assert results.groupby("function")["family"].apply(lambda f: (f == "mlp").sum()).eq(20).all()
    children = finished_children(work)
    assert len(children) == 44 and (children["status"] == "FINISHED").all()
    families = pd.read_csv(work / "results/paper_fig3_1/report/families.csv")
    # a row per function and family with a chain that learnt its target (2 steps leave some MLPs short)
    learnt = learnt_rows(results).groupby(["function", "family"]).ngroups
    assert len(families) == learnt >= 2 and set(families["family"]) <= {"kan", "mlp"}
    for function in results["function"].unique():
        assert (work / f"results/paper_fig3_1/report/{function}/families.png").is_file()
    numbers = paper_numbers(work / "results/paper_fig3_1")
    for function in results["function"].unique():  # a KAN and an MLP row per function, and the per-P comparison
        assert f"| {function} | " in numbers and numbers.count(f"| {function} | ") >= 3


def test_data_scaling_miniature_end_to_end(tmp_path):
    overrides = {
        "grids": [3, 5, 8],
        "steps": 20,
        "data_sizes": [100, 200, 400],
        "seeds": [0, 1],
        "test_num": 200,
        "restarts": 1,
        "functions": [{"name": "xy", "widths": [[2, 2, 1]], "mlp_widths": [[2, 8, 1]]}],
        "mlp": {"widths": [], "activations": ["silu"], "steps": 20},
    }
    work, _ = run_miniature(tmp_path, "data_scaling", overrides)
    folder = work / "results/data_scaling"
    results = pd.read_csv(folder / "results.csv", dtype={"width": str})
    assert len(results) == 3 * 2 * (3 + 1) and results["val_rmse"].notna().all()
    # one frontier point per (function, family, N, seed) with a chain that learnt, by each measure
    learnt = learnt_rows(results).groupby(["function", "family", "n_train", "seed"]).ngroups
    points = pd.read_csv(folder / "report/frontier_points.csv")
    assert len(points) == 2 * learnt and set(points["measure"]) == {"mean", "median"}
    keys = ["function", "family", "n_train", "seed"]
    chosen = points[points["measure"] == "mean"].set_index(keys)["val"]  # chosen on validation: its minimum
    best = learnt_rows(results).groupby(keys)["val_rmse"].min()
    np.testing.assert_allclose(chosen, best.loc[chosen.index], rtol=1e-5)
    laws = json.loads((folder / "report/laws.json").read_text())["data_laws"]
    fits = pd.read_csv(folder / "report/frontier.csv")
    assert len(laws["laws"]) == len(fits) >= 1
    for function in results["function"].unique():
        assert (folder / f"report/{function}/frontier.png").is_file()
    assert "Data axis: the best model at each training-set size N" in (folder / "summary.md").read_text()
    metrics = json.loads((folder / "report/mlflow.json").read_text())["metrics"]
    fitted = fits.dropna(subset=["gamma"])
    for row in fitted.itertuples():
        assert metrics[f"gamma_{row.measure}_{row.family}_{row.function}"] == pytest.approx(row.gamma, rel=1e-5)
