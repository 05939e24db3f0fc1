"""kanlib.workflow.train_job without Snakemake: one train job against a real SQLite MLflow store."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
import yaml

from kanlib.files import read_json, write_json
from kanlib.functions import get_function
from kanlib.workflow import tracking
from kanlib.workflow.jobs import make_dataset
from kanlib.workflow.sweep import job_from_wildcards
from kanlib.workflow.train_job import JobIdentity, TrackingSettings, TrainJobError, TrainOutputs, run_train_jobs

REPO = Path(__file__).resolve().parents[2]


def run_train_job(identity, **options):
    """One model's job (run_train_jobs with one identity); its metrics."""
    return run_train_jobs([identity], **{**options, "outputs": [options["outputs"]]})[0]


@pytest.fixture
def job(tmp_path, monkeypatch):
    """A store with its parent run, a dataset, and the identity of a level-0 job of the tiny sweep.

    Run from tmp_path: a job looks for its Snakemake run's MLflow logger by working directory, and a
    sweep running in the repository meanwhile must not serve these tests."""
    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(yaml.safe_load((REPO / "config" / "test.yaml").read_text()))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    config["mlflow"].update(tracking_uri=uri, retry_seconds=1)
    parent = tracking.create_parent_run(uri, "kan-scaling", "test", {}, {}, retry_seconds=5)
    parent_file = write_json(tmp_path / "mlflow_parent.json", parent)
    target = get_function("exp_sin_pi_x_plus_y2")
    data = tmp_path / "data.pt"
    make_dataset(target, n_var=2, n_train=100, test_num=50, seed=0, input_range=[-1, 1], path=data)
    wildcards = {"function": "exp_sin_pi_x_plus_y2", "model": "w2-1-1_k3", "n": 100, "seed": 0, "level": "/G3"}
    identity = JobIdentity.create(config, job_from_wildcards(config, wildcards), target, threads=1, data_file=str(data))
    run = tmp_path / "runs" / "G3"
    outputs = TrainOutputs(
        model=str(run / "model.pt"), history=str(run / "history.csv"), metrics=str(run / "metrics.json")
    )
    run.mkdir(parents=True)
    return identity, outputs, parent_file, config


def client(config):
    return tracking.connect(config["mlflow"]["tracking_uri"])


def child_runs(config, parent_file):
    parent = read_json(parent_file)
    query = f"tags.`mlflow.parentRunId` = '{parent['run_id']}'"
    return client(config).search_runs([parent["experiment_id"]], query)


def test_one_identity_gives_the_params_the_tags_and_metrics_json(job, caplog):
    identity, outputs, parent_file, config = job
    with caplog.at_level(logging.INFO, logger="test"):
        metrics = run_train_job(
            identity,
            parent_file=parent_file,
            outputs=outputs,
            settings=TrackingSettings.from_config(config),
            log=logging.getLogger("test"),
        )
    assert "logged by this job" in caplog.text  # no run logger serves this folder: the job logs its run
    assert read_json(outputs.metrics) == metrics and Path(outputs.model).is_file()
    for key, value in identity.record().items():
        assert metrics[key] == value, key
    (run,) = child_runs(config, parent_file)
    assert run.info.status == "FINISHED" and run.info.run_id == metrics["mlflow_run_id"]
    assert run.data.params == identity.mlflow_params(metrics["device"])
    assert {key: run.data.tags[key] for key in identity.mlflow_tags()} == identity.mlflow_tags()
    assert run.data.params["prev_grid_size"] == "none" and run.data.params["device_requested"] == "auto"
    assert metrics["test_rmse"] == pytest.approx(run.data.metrics["final_test_rmse"], rel=1e-12)
    assert not outputs.unsynced.exists() and sorted(p.name for p in outputs.completed.iterdir()) == [
        "history.csv",
        "metrics.json",
        "model.pt",
    ]


def test_outputs_deleted_after_completion_are_restored_without_training_or_logging(job, caplog):
    identity, outputs, parent_file, config = job
    settings = TrackingSettings.from_config(config)
    first = run_train_job(identity, parent_file=parent_file, outputs=outputs, settings=settings)
    model_bytes = Path(outputs.model).read_bytes()
    for path in (outputs.model, outputs.history, outputs.metrics):  # what Snakemake does to an incomplete job
        os.remove(path)
    with caplog.at_level(logging.INFO, logger="kanlib.job"):
        again = run_train_job(identity, parent_file=parent_file, outputs=outputs, settings=settings)
    assert again == first and Path(outputs.model).read_bytes() == model_bytes
    assert "already complete" in caplog.text and "trained in" not in caplog.text
    assert len(child_runs(config, parent_file)) == 1


def test_other_inputs_are_trained_anew(job):
    identity, outputs, parent_file, config = job
    settings = TrackingSettings.from_config(config)
    run_train_job(identity, parent_file=parent_file, outputs=outputs, settings=settings)
    changed = JobIdentity(**{**identity.__dict__, "hp": {**identity.hp, "steps": 3}})
    second = run_train_job(changed, parent_file=parent_file, outputs=outputs, settings=settings)
    assert second["steps"] == 3 and len(child_runs(config, parent_file)) == 2


def test_an_unreachable_store_keeps_the_result_and_the_rerun_logs_it(job):
    identity, outputs, parent_file, config = job
    down = TrackingSettings("http://127.0.0.1:9", retry_seconds=0.5, log_model_max_bytes=10**6)
    with pytest.raises(TrainJobError, match="http://127.0.0.1:9 is unreachable"):
        run_train_job(identity, parent_file=parent_file, outputs=outputs, settings=down)
    kept = read_json(outputs.unsynced / "metrics.json")
    assert kept["mlflow_synced"] is False and not Path(outputs.metrics).exists()
    final = run_train_job(
        identity, parent_file=parent_file, outputs=outputs, settings=TrackingSettings.from_config(config)
    )
    assert final["wall_time_s"] == kept["wall_time_s"] and final["mlflow_synced"] is True
    assert len(child_runs(config, parent_file)) == 1


def test_a_diverged_fit_fails_with_its_run_marked_failed(job):
    identity, outputs, parent_file, config = job
    torch.save(
        {
            **torch.load(identity.data_file, weights_only=True),
            "train_label": torch.full((100, 1), 1e200, dtype=torch.float64),
        },
        identity.data_file,
    )
    with pytest.raises(TrainJobError, match="training diverged for exp_sin_pi_x_plus_y2 w2-1-1 k3 N100 seed0 G3"):
        run_train_job(identity, parent_file=parent_file, outputs=outputs, settings=TrackingSettings.from_config(config))
    (run,) = child_runs(config, parent_file)
    assert run.info.status == "FAILED" and "diverged" in run.data.tags["kanlib.error"]


@pytest.mark.parametrize(
    ("grids", "judged"),
    [
        ([3, 5, 10, 20, 50, 100], 20),  # the paper presets: the fourth level
        ([5, 10, 20, 50, 100], 50),  # the default sweep: the fourth level (G = 20 is the third)
        ([3, 4, 6, 9, 13, 19, 28, 42, 63], 28),  # finer steps: the first level past the fourth with G >= 20
    ],
)
def test_a_kan_chain_is_judged_at_its_fourth_level_with_a_grid_of_at_least_20(tmp_path, grids, judged):
    """Each level's judged value: its own up to the judged level, after it the previous level's record."""
    from types import SimpleNamespace

    from kanlib.workflow.train_job import _judged_relative_rmse

    previous_record, judged_values = None, {}
    for level, grid in enumerate(grids):
        own = 1.0 / (level + 1)  # a distinct relative train RMSE per level
        folder = tmp_path / f"G{grid}"
        identity = SimpleNamespace(
            family="kan",
            columns={"grid_level": level, "prev_grid_size": grids[level - 1] if level else None},
            init_checkpoint=str(previous_record / "model.pt") if previous_record else None,
        )
        value = _judged_relative_rmse(identity, 1.0, own)
        folder.mkdir()
        write_json(folder / "metrics.json", {"judged_relative_train_rmse": value, "train_rmse": own})
        judged_values[grid], previous_record = value, folder
    index = grids.index(judged)
    assert all(judged_values[g] == 1.0 / (grids.index(g) + 1) for g in grids[: index + 1])  # own, up to it
    assert all(judged_values[g] == 1.0 / (index + 1) for g in grids[index:])  # the judged level's, after
