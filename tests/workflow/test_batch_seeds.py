"""batch_seeds: the seeds of one grid level (or one MLP) trained in one job as one stack.

Checked against the unbatched path: the same identities trained by run_train_jobs one by one (the
job-level tests), and the same sweep through Snakemake with batch_seeds off (the workflow test).
Real SQLite MLflow stores and a real Snakemake throughout.
"""

from __future__ import annotations

import csv
import logging
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, tiny_command, tiny_environment

from kanlib.files import read_json, write_json
from kanlib.functions import get_function
from kanlib.model import KAN
from kanlib.workflow import sweep, tracking
from kanlib.workflow.jobs import make_dataset
from kanlib.workflow.train_job import (
    JobIdentity,
    TrackingSettings,
    TrainJobError,
    TrainOutputs,
    run_train_jobs,
    stack_reason,
)

SEEDS = [0, 1, 2]
LEVEL_0 = {"function": "exp_sin_pi_x_plus_y2", "model": "w2-1-1_k3", "n": 100, "level": "/G3"}


def base_config(tmp_path: Path, **changes) -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(yaml.safe_load((REPO / "config" / "test.yaml").read_text()))
    config["mlflow"].update(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", retry_seconds=1)
    config["restarts"] = 1  # seeds stack; with restarts each seed's candidates stack instead (test_restarts_sweep)
    config.update(changes)
    return config


class Store:
    """A SQLite store with its parent run, one dataset per seed and the level-0 identities."""

    def __init__(self, folder: Path, **changes):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.config = base_config(folder, **changes)
        uri = self.config["mlflow"]["tracking_uri"]
        parent = tracking.create_parent_run(uri, "kan-scaling", "test", {}, {}, retry_seconds=5)
        self.parent_file = str(write_json(folder / "mlflow_parent.json", parent))
        self.settings = TrackingSettings.from_config(self.config)
        target = get_function("exp_sin_pi_x_plus_y2")
        self.identities, self.outputs = [], []
        for seed in SEEDS:
            data = folder / f"data_seed{seed}.pt"
            make_dataset(target, n_var=2, n_train=100, test_num=50, seed=seed, input_range=[-1, 1], path=data)
            self.identities.append(
                JobIdentity.create(
                    self.config,
                    sweep.job_from_wildcards(self.config, {**LEVEL_0, "seed": seed}),
                    target,
                    threads=1,
                    data_file=str(data),
                )
            )
            run = folder / "runs" / f"seed{seed}" / "G3"
            run.mkdir(parents=True)
            self.outputs.append(
                TrainOutputs(
                    model=str(run / "model.pt"), history=str(run / "history.csv"), metrics=str(run / "metrics.json")
                )
            )

    def children(self) -> list:
        parent = read_json(self.parent_file)
        query = f"tags.`mlflow.parentRunId` = '{parent['run_id']}'"
        client = tracking.connect(self.config["mlflow"]["tracking_uri"])
        return client.search_runs([parent["experiment_id"]], query)


@pytest.fixture
def stores(tmp_path, monkeypatch):
    """Two independent stores (batched, alone) of the same jobs; run from tmp_path (no run logger)."""
    monkeypatch.chdir(tmp_path)
    return Store(tmp_path / "batched"), Store(tmp_path / "alone")


def model_tensors(path: str) -> dict:
    return KAN.load(path).state_dict()


def test_a_stack_job_equals_the_jobs_run_one_by_one(stores, caplog):
    batched, alone = stores
    with caplog.at_level(logging.INFO, logger="kanlib.job"):
        stacked = run_train_jobs(
            batched.identities, parent_file=batched.parent_file, outputs=batched.outputs, settings=batched.settings
        )
    assert "trained 3 models as one stack" in caplog.text
    singles = [
        run_train_jobs([identity], parent_file=alone.parent_file, outputs=[output], settings=alone.settings)[0]
        for identity, output in zip(alone.identities, alone.outputs)
    ]
    for stack_metrics, single_metrics, b_out, a_out in zip(stacked, singles, batched.outputs, alone.outputs):
        assert stack_metrics["stack_size"] == 3 and single_metrics["stack_size"] == 1
        for key in ("train_rmse", "test_rmse", "test_median_rmse", "min_test_rmse"):
            assert stack_metrics[key] == single_metrics[key], key  # each model's numbers, whatever its stack
        b_hist, a_hist = Path(b_out.history).read_text(), Path(a_out.history).read_text()
        b_rows, a_rows = list(csv.DictReader(b_hist.splitlines())), list(csv.DictReader(a_hist.splitlines()))
        assert len(b_rows) == len(a_rows) == batched.config["steps"]
        for b_row, a_row in zip(b_rows, a_rows):
            assert b_row["train_rmse"] == a_row["train_rmse"]
        b_model, a_model = model_tensors(b_out.model), model_tensors(a_out.model)
        for name, tensor in a_model.items():
            assert torch.equal(b_model[name], tensor), name
    runs = batched.children()
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["kanlib.job"] for r in runs} == {i.job for i in batched.identities}
    assert {r.data.tags["kanlib.stack_size"] for r in runs} == {"3"}


def test_a_diverged_seed_fails_alone_and_the_others_are_kept(stores, caplog):
    batched, _ = stores
    bad = batched.identities[1]
    clean = Path(bad.data_file).read_bytes()
    torch.save(
        {
            **torch.load(bad.data_file, weights_only=True),
            "train_label": torch.full((100, 1), 1e200, dtype=torch.float64),
        },
        bad.data_file,
    )
    with caplog.at_level(logging.INFO, logger="kanlib.job"), pytest.raises(TrainJobError, match="seed1 G3") as failure:
        run_train_jobs(
            batched.identities, parent_file=batched.parent_file, outputs=batched.outputs, settings=batched.settings
        )
    assert "seed0" not in str(failure.value) and "seed2" not in str(failure.value)
    assert "training them one by one" in caplog.text
    statuses = {r.data.tags["kanlib.job"]: r.info.status for r in batched.children()}
    assert statuses == {i.job: ("FAILED" if i is bad else "FINISHED") for i in batched.identities}
    for identity, output in zip(batched.identities, batched.outputs):
        assert Path(output.metrics).is_file() == (identity is not bad)

    # Snakemake deletes a failed job's outputs; with the data fixed, the rerun trains only seed 1
    Path(bad.data_file).write_bytes(clean)
    for output in batched.outputs:
        for path in (output.model, output.history, output.metrics):
            Path(path).unlink(missing_ok=True)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kanlib.job"):
        rerun = run_train_jobs(
            batched.identities, parent_file=batched.parent_file, outputs=batched.outputs, settings=batched.settings
        )
    assert caplog.text.count("already complete") == 2 and caplog.text.count("trained in") == 1
    assert [m["stack_size"] for m in rerun] == [1, 1, 1]  # the failed stack was retrained one by one
    finished = [r for r in batched.children() if r.info.status == "FINISHED"]
    assert sorted(r.data.tags["kanlib.job"] for r in finished) == sorted(i.job for i in batched.identities)


def test_minibatches_and_regularisation_train_one_by_one(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    store = Store(tmp_path / "batch", batch=50)
    assert "batch=50" in stack_reason(store.identities)
    with caplog.at_level(logging.INFO, logger="kanlib.job"):
        metrics = run_train_jobs(
            store.identities, parent_file=store.parent_file, outputs=store.outputs, settings=store.settings
        )
    assert "training 3 models one by one: batch=50" in caplog.text
    assert [m["stack_size"] for m in metrics] == [1, 1, 1]
    assert stack_reason(Store(tmp_path / "lamb", lamb=0.01).identities) is None  # the regulariser is per model
    assert stack_reason(store.identities[:1]) == "one model"
    full_batch = Store(tmp_path / "mlp").identities
    config = {**base_config(tmp_path / "mlp"), "mlp": MIXED["mlp"]}
    mlp = {"function": "exp_sin_pi_x_plus_y2", "model": "mlp_w2-4-1_silu", "n": 100}
    mlp_job = sweep.job_from_wildcards(config, mlp)
    mlps = [JobIdentity(**{**i.__dict__, "spec": mlp_job}) for i in full_batch]
    assert stack_reason(full_batch) is None and "MLPs on the CPU" in stack_reason(mlps)


# ---- through Snakemake ------------------------------------------------------------------------------------

MIXED = {
    "sweep": "batched",
    "data_sizes": [100],
    "grids": [3, 6],
    "seeds": [0, 1, 2],
    "mlp": {"widths": [[2, 4, 1]], "activations": ["silu"], "steps": 8},
}


def run_sweep(work: Path, *args: str, **changes) -> subprocess.CompletedProcess:
    if not (work / "config").exists():
        shutil.copytree(REPO / "config", work / "config")
        (work / "config" / "extra.yaml").write_text(yaml.safe_dump({**MIXED, "restarts": 1, **changes}))
    command = tiny_command(*args)  # the tiny config, then config/extra.yaml (the mixed sweep) on top
    return subprocess.run(command, cwd=work, env=tiny_environment(), capture_output=True, text=True, timeout=600)


def test_the_dag_has_one_job_per_level_for_all_seeds(tmp_path):
    config = {**base_config(tmp_path), **MIXED}
    assert sweep.batch_seeds(config) and not sweep.batch_seeds({**config, "seeds": [0]})
    assert not sweep.batch_seeds({**config, "batch_seeds": False})
    batched = run_sweep(tmp_path / "on", "-n", "--quiet", "rules")
    alone = run_sweep(tmp_path / "off", "-n", "--quiet", "rules", batch_seeds=False)
    assert batched.returncode == 0 and alone.returncode == 0, batched.stderr + alone.stderr

    def counts(result):
        lines = [line.split() for line in result.stdout.splitlines()]
        return {line[0]: int(line[1]) for line in lines if len(line) == 2 and line[1].isdigit()}

    assert counts(batched)["train_seeds"] == 2 + 1  # the KAN chain's two levels and the MLP, every seed in one job
    assert counts(alone)["train"] == 6 + 3
    assert "train" not in counts(batched) and "train_seeds" not in counts(alone)


def test_a_batched_sweep_gives_the_unbatched_sweeps_results(tmp_path):
    batched = run_sweep(tmp_path / "on")
    assert batched.returncode == 0, batched.stderr[-3000:]
    # the unbatched sweep up to its results table (its report would add nothing to compare)
    alone = run_sweep(tmp_path / "off", "results/batched/results.csv", batch_seeds=False)
    assert alone.returncode == 0, alone.stderr[-3000:]

    def rows(work):
        with open(work / "results" / "batched" / "results.csv") as handle:
            return {(r["family"], r["width"], r["seed"], r["grid_size"]): r for r in csv.DictReader(handle)}

    on, off = rows(tmp_path / "on"), rows(tmp_path / "off")
    assert on.keys() == off.keys() and len(on) == 3 * 2 + 3
    for key in on:
        for column in ("train_rmse", "test_rmse", "test_median_rmse"):
            assert on[key][column] == off[key][column], (key, column)  # each model's numbers, whatever its stack

    uri = f"sqlite:///{tmp_path / 'on' / 'mlflow.db'}"
    runs = tracking.connect(uri).search_runs(
        [tracking.connect(uri).get_experiment_by_name("kan-scaling").experiment_id], "tags.`kanlib.role` = 'child'"
    )
    assert len(runs) == 9 and {r.info.status for r in runs} == {"FINISHED"}
    # the KAN levels as stacks of 3; the MLPs one after another in their one job (faster on a CPU)
    stack_sizes = {(r.data.tags["kanlib.family"], r.data.tags["kanlib.stack_size"]) for r in runs}
    assert stack_sizes == {("kan", "3"), ("mlp", "1")}
    log = (
        tmp_path / "on" / "results" / "batched" / "logs" / "train_seeds" / "exp_sin_pi_x_plus_y2" / "w2-1-1_k3" / "N100"
    )
    assert (log / "G6.log").is_file() and "trained 3 models as one stack" in (log / "G6.log").read_text()

    # one seed's outputs lost: the level's job reruns and restores every seed; nothing trained or logged
    level = tmp_path / "on" / "results" / "batched" / "runs" / "exp_sin_pi_x_plus_y2" / "w2-1-1_k3"
    lost = level / "N100_seed2" / "G6" / "metrics.json"
    lost.unlink()
    again = run_sweep(tmp_path / "on", str(lost.relative_to(tmp_path / "on")))
    assert again.returncode == 0, again.stderr[-3000:]
    text = (log / "G6.log").read_text()
    assert text.count("already complete") == 3 and "trained 3 models" not in text
    assert len(tracking.connect(uri).search_runs([runs[0].info.experiment_id], "tags.`kanlib.role` = 'child'")) == 9
    assert "Nothing to be done" in run_sweep(tmp_path / "on").stderr
