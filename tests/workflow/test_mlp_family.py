"""The MLP family in the sweep: config checks, its jobs, the median-based error, and a real mixed sweep.

The mixed sweep (one function, KAN + MLP, a few steps) runs through a real Snakemake with a real
MLflow store: both families' runs FINISHED under one parent, both in the table, the comparison
figure drawn, the summary naming both exponents.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from snakemake.utils import validate

from kanlib import KAN, MLP, create_dataset, median_rmse
from kanlib.families import REGISTRY
from kanlib.workflow import sweep

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
MLP_WIDTHS = [[2, 4, 1], [2, 8, 1], [2, 4, 4, 1]]


@pytest.fixture(autouse=True)
def no_tracking_uri_in_the_environment(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def merged_config(**changes) -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(yaml.safe_load((REPO / "config" / "test.yaml").read_text()))
    config["mlp"] = {"widths": copy.deepcopy(MLP_WIDTHS), "activations": ["silu"], "steps": None}
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            config[outer][inner] = value
        else:
            config[key] = value
    return config


def check(config: dict) -> dict:
    """What the Snakefile does with the merged config."""
    sweep.coerce_cli_strings(config, SCHEMA)
    with sweep.schema_errors():
        validate(config, str(SCHEMA))
    return sweep.check_config(config)


# ---- config and jobs ---------------------------------------------------------------------------------------


def mlp_jobs(config: dict) -> list:
    return [job for job in sweep.jobs(config) if job.family == "mlp"]


def test_the_default_sweep_has_no_mlp():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    check(config)
    assert {job.family for job in sweep.jobs(config)} == {"kan"} and len(sweep.jobs(config)) == 20


def test_mlp_jobs_and_their_budget():
    config = check(merged_config(seeds=[0, 1]))
    jobs = mlp_jobs(config)
    # 3 widths x 1 activation x 2 sizes x 2 seeds, no chain
    assert len(jobs) == 12 and {job.get("activation") for job in jobs} == {"silu"}
    # default budget: the KAN chain's total, levels x steps (config/test.yaml: 2 grids x 5 steps)
    mlp = REGISTRY["mlp"]
    assert mlp.steps(config) == 2 * 5 == mlp.hyperparameters(config)["steps"]
    assert mlp.steps(merged_config(**{"mlp.steps": 7})) == 7
    assert sweep.run_dir(config, jobs[0]) == "results/test/runs/exp_sin_pi_x_plus_y2/mlp_w2-4-1_silu/N100_seed0"
    assert mlp.previous(config, jobs[0]) is None  # no chain
    # per-function MLP widths override mlp.widths
    config = merged_config(functions=[{"name": "xy", "mlp_widths": [[2, 3, 1]]}, "exp_sin_pi_x_plus_y2"])
    check(config)
    assert [(j.function, j.width) for j in mlp_jobs(config) if j.n_train == 100] == [
        ("xy", (2, 3, 1)),
        *[("exp_sin_pi_x_plus_y2", tuple(w)) for w in MLP_WIDTHS],
    ]


def test_activation_names_match_the_model_family():
    from kanlib.mlp import ACTIVATIONS

    assert set(REGISTRY["mlp"].ACTIVATIONS) == set(ACTIVATIONS)


@pytest.mark.parametrize(
    "changes, text",
    [
        ({"mlp.widths": [[3, 4, 1]]}, "'mlp.widths' has [3, 4, 1] for function 'exp_sin_pi_x_plus_y2', which maps 2"),
        ({"mlp.widths": [[2, 4, 2]]}, "an MLP width must start with 2, end with 1"),
        ({"mlp.widths": [[2, 1]]}, "at least one hidden layer"),
        (
            {"functions": [{"name": "exp_sin_pi_x_plus_y2", "mlp_widths": [[1, 5, 1]]}]},
            "'functions[0].mlp_widths' has [1, 5, 1]",
        ),
        ({"mlp.activations": ["gelu"]}, "'mlp.activations[0]' = 'gelu'"),
        ({"mlp.activations": []}, "'mlp.activations' is empty"),
        ({"mlp.steps": 0}, "'mlp.steps'"),
        ({"mlp.steps": -5}, "'mlp.steps'"),
        ({"mlp": {"widths": []}}, "'mlp'"),
    ],
)
def test_bad_mlp_configs_name_the_key(changes, text):
    with pytest.raises(ValueError) as error:
        check(merged_config(**changes))
    assert text in str(error.value) and "config error" in str(error.value)


# ---- the median-based error -----------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["kan", "mlp"])
def test_median_rmse_against_numpy(family):
    data = create_dataset(lambda x: torch.sin(torch.pi * x[:, [0]]) * x[:, [1]], n_var=2, train_num=51, seed=3)
    model = KAN(width=[2, 2, 1], grid=5, k=3, seed=1) if family == "kan" else MLP(width=[2, 6, 1], seed=1)
    with torch.no_grad():
        errors = (model(data["train_input"]) - data["train_label"]).numpy()
    squared = (errors**2).mean(axis=1)  # 51 samples: an odd count, so the median is one sample's
    assert median_rmse(model, data["train_input"], data["train_label"]) == pytest.approx(
        float(np.sqrt(np.median(squared))), rel=1e-12
    )
    assert median_rmse(model, data["train_input"], data["train_label"]) <= float(np.sqrt(squared.max()))


# ---- a real mixed sweep ---------------------------------------------------------------------------------


def nonblank_fraction(png: Path) -> float:
    from matplotlib.image import imread

    pixels = imread(png)[..., :3]
    return float((pixels.std(axis=2) > 0.05).mean() + (pixels.mean(axis=2) < 0.5).mean())


def test_mixed_sweep_end_to_end(tmp_path):
    work = tmp_path / "work"
    shutil.copytree(REPO / "config", work / "config")
    extra = {"mlp": {"widths": MLP_WIDTHS, "activations": ["silu", "tanh"], "steps": 8}, "data_sizes": [200]}
    (work / "config" / "extra.yaml").write_text(yaml.safe_dump(extra))
    env = {key: value for key, value in __import__("os").environ.items() if not key.startswith("MLFLOW_")}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    command = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--cores", "1"]
    command += ["--configfile", "config/test.yaml", "config/extra.yaml"]
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    # one core: the KAN chain (its levels one after another) ran before the MLPs (no successors), by priority
    started = re.findall(r"^    output: \S+/runs/[^/]+/(w2-1-1_k3|mlp_w[^/]+)/", output, flags=re.M)
    assert [model.startswith("mlp") for model in started] == [False] * 2 + [True] * 6, started

    # the table: 2 KAN levels and 6 MLPs (3 widths x 2 activations), each with its family columns
    results = pd.read_csv(work / "results/test/results.csv", dtype={"width": str})
    assert sorted(results["family"]) == ["kan"] * 2 + ["mlp"] * 6
    mlp = results[results["family"] == "mlp"]
    assert set(mlp["activation"]) == {"silu", "tanh"} and mlp["grid_size"].isna().all() and mlp["k"].isna().all()
    expected_params = {"2-4-1": 17, "2-8-1": 33, "2-4-4-1": 37}
    assert all(row.n_params == expected_params[row.width] for row in mlp.itertuples())
    assert (mlp["steps"] == 8).all() and (results["test_median_rmse"] > 0).all()
    assert (results["test_median_rmse"] <= results["test_rmse"] * 10).all()

    # MLflow: one parent, both families' runs FINISHED under it, with family, activation and size
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{work}/mlflow.db")
    frame = mlflow.search_runs(experiment_names=["kan-scaling"], output_format="pandas")
    parents = frame[frame["tags.mlflow.parentRunId"].isna()]
    kids = frame[frame["tags.mlflow.parentRunId"].notna()]
    assert len(parents) == 1 and (kids["tags.mlflow.parentRunId"] == parents["run_id"].iloc[0]).all()
    assert (kids["status"] == "FINISHED").all() and len(kids) == 8
    assert sorted(kids["params.family"]) == ["kan"] * 2 + ["mlp"] * 6
    mlp_runs = kids[kids["params.family"] == "mlp"]
    assert set(mlp_runs["params.activation"]) == {"silu", "tanh"}
    assert set(mlp_runs["tags.rule"]) == {"train"} and (mlp_runs["metrics.n_params"] > 0).all()
    assert mlp_runs["metrics.final_test_median_rmse"].notna().all()
    parent_metrics = {c for c in frame.columns if c.startswith("metrics.alpha_vs_params_")}
    assert any("_kan_" in c for c in parent_metrics) and any("_mlp_" in c for c in parent_metrics)

    # the comparison figure, the table and the summary
    figure = work / "results/test/report/exp_sin_pi_x_plus_y2/families.png"
    assert figure.is_file() and figure.with_suffix(".pdf").is_file()
    assert nonblank_fraction(figure) > 0.02
    families = pd.read_csv(work / "results/test/report/families.csv")
    assert list(families["family"]) == ["kan", "mlp"] and families["alpha"].notna().all()
    summary = (work / "results/test/summary.md").read_text()
    answer = summary.split("**KAN against MLP.**", 1)[1].split("\n\n", 2)[1]
    alphas = families.set_index("family")["alpha"]
    assert f"α = {alphas['kan']:.2f}" in answer and " for KAN against " in answer
    assert f"against {alphas['mlp']:.2f}" in answer and " for MLP (Δα = " in answer
    assert "KAN against MLP: exponents in the parameter count" in summary

    # the Snakemake report shows the figure with its caption; nothing is left to do
    def snakemake(*args):
        configs = ["--configfile", "config/test.yaml", "config/extra.yaml"]
        command = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), *args, *configs]
        return subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=300)

    report = snakemake("--report", "report.html")
    assert report.returncode == 0, (report.stdout + report.stderr)[-3000:]
    page = (work / "report.html").read_text()
    assert "families.png" in page and "KAN against MLP" in page
    assert "Nothing to be done" in snakemake("-n").stdout
