"""Restarts and the learned-target rule in a real sweep (real Snakemake, real MLflow store): the best
initialisation by training RMSE continues each chain, every level records whether its chain learnt
the target, a rerun trains nothing, and changing ``restarts`` retrains."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import yaml
from conftest import REPO, tiny_command, tiny_environment

pytestmark = pytest.mark.workflow


def run(work, **extra):
    (work / "config" / "extra.yaml").write_text(yaml.safe_dump({"data_sizes": [100], "seeds": [0, 1], **extra}))
    result = subprocess.run(
        tiny_command(), cwd=work, env=tiny_environment(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return result.stdout + result.stderr


def test_restarts_choose_by_training_rmse_resume_and_retrain_when_changed(tmp_path):
    work = tmp_path / "work"
    shutil.copytree(REPO / "config", work / "config")
    run(work, restarts=3)
    runs = work / "results/test/runs/exp_sin_pi_x_plus_y2/w2-1-1_k3"
    first = {seed: json.loads((runs / f"N100_seed{seed}/G3/metrics.json").read_text()) for seed in (0, 1)}
    for seed, metrics in first.items():
        assert metrics["restarts"] == 3 and metrics["restart_seeds"][0] == seed + 1  # the chain's own seed first
        assert metrics["restart_chosen"] == int(np.argmin(metrics["restart_train_rmse"]))
        assert metrics["train_rmse"] == min(metrics["restart_train_rmse"])
        later = json.loads((runs / f"N100_seed{seed}/G6/metrics.json").read_text())
        # a chain of two levels is judged at its last (a KAN's judged level: the fourth with G >= 20)
        assert later["restarts"] == 1 and later["judged_relative_train_rmse"] == later["relative_train_rmse"]
        assert later["learned_target"] == (later["relative_train_rmse"] <= 0.1)

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{work}/mlflow.db")
    kids = mlflow.search_runs(experiment_names=["kan-scaling"], filter_string="tags.`kanlib.role` = 'child'")
    assert len(kids) == 4 and set(kids["tags.kanlib.learned_target"]) <= {"True", "False"}
    level_1 = kids[kids["params.grid_size"] == "3"]
    assert (level_1["params.restarts"] == "3").all() and level_1["tags.kanlib.restart_chosen"].notna().all()
    client = mlflow.MlflowClient()
    history = client.get_metric_history(level_1["run_id"].iloc[0], "restart_train_rmse")
    assert len(history) == 3

    assert "Nothing to be done" in run(work, restarts=3)  # resumes: nothing trains again
    run(work, restarts=2)  # a training setting: the chains train again
    again = json.loads((runs / "N100_seed0/G3/metrics.json").read_text())
    assert again["restarts"] == 2 and again["restart_train_rmse"] == first[0]["restart_train_rmse"][:2]
