"""A model family of a user's own through one module and one config entry (tests/workflow/toy_family.py), run
through a miniature sweep by a real Snakemake with a real MLflow store: its jobs are trained, logged
and reported beside the KANs, and nothing outside kanlib.families needed to know it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, tiny_command, tiny_environment

pytestmark = pytest.mark.workflow


def test_a_family_of_ones_own_runs_through_a_miniature_sweep(tmp_path):
    work = tmp_path / "work"
    shutil.copytree(REPO / "config", work / "config")
    shutil.copy(Path(__file__).with_name("toy_family.py"), work / "toy_family.py")  # beside the config, as a user's
    extra = {
        "data_sizes": [100],
        "families": ["toy_family:FAMILY"],
        "family_settings": {"toy": {"hidden": [3, 6]}},
    }
    (work / "config" / "extra.yaml").write_text(yaml.safe_dump(extra))
    result = subprocess.run(
        tiny_command(), cwd=work, env=tiny_environment(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]

    results = pd.read_csv(work / "results/test/results.csv", dtype={"width": str})
    toy = results[results["family"] == "toy"]
    assert sorted(toy["width"]) == ["2-3-1", "2-6-1"] and (toy["steps"] == 6).all()
    assert list(toy["n_params"]) == [
        (2 + 1) * h + (h + 1) for h in sorted(toy["width"].str.split("-").str[1].astype(int))
    ]
    assert (toy["test_rmse"] > 0).all() and len(results[results["family"] == "kan"]) == 2
    assert (work / "results/test/runs/exp_sin_pi_x_plus_y2/toy_h6/N100_seed0/model.pt").is_file()

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{work}/mlflow.db")
    frame = mlflow.search_runs(experiment_names=["kan-scaling"], output_format="pandas")
    kids = frame[frame["tags.mlflow.parentRunId"].notna()]
    assert (kids["status"] == "FINISHED").all() and sorted(kids["tags.kanlib.family"]) == ["kan"] * 2 + ["toy"] * 2
    # the report compares the two families on the toy's reference rate and label
    families = pd.read_csv(work / "results/test/report/families.csv")
    assert set(families["family"]) == {"kan", "toy"}
    assert families.set_index("family").loc["toy", "theory_alpha"] == 1.0
    assert "Toy" in (work / "results/test/summary.md").read_text()
