"""The workflow's cheap jobs, one function per rule: dataset, mlflow_parent, aggregate, report_mlflow.

Each ``workflow/scripts/<rule>.py`` maps Snakemake's input, params and output onto one of
these calls (the train rule's is :func:`kanlib.workflow.train_job.run_train_job`). They raise
:class:`JobError` with a message that says what to do; the scripts turn it into the job's
failure message.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from ..files import read_json, write_json
from . import tracking
from .results import history_table, read_history, results_table, save_dataset, write_table

__all__ = ["JobError", "make_dataset", "create_sweep_parent", "aggregate_sweep", "log_report"]


class JobError(RuntimeError):
    """A job failed for a reason its message explains (e.g. an unreachable tracking store)."""


def make_dataset(target, *, n_var: int, n_train: int, test_num: int, seed: int, input_range, path) -> dict:
    """Sample N training points and the seed's fixed test set of ``target``; write them to ``path``.

    Labels are computed in float64 whatever the training dtype (train jobs cast). Returns the info
    stored beside the tensors.
    """
    import torch

    import kanlib

    from ..data import create_dataset

    lower, upper = (float(v) for v in input_range)
    dataset = create_dataset(
        target, n_var=n_var, ranges=(lower, upper), train_num=n_train, test_num=test_num, seed=seed, dtype=torch.float64
    )
    info = {
        "function": target.name,
        "formula": target.formula,
        "n_var": n_var,
        "train_num": n_train,
        "test_num": test_num,
        "seed": seed,
        "input_range": [lower, upper],
        "kanlib_version": kanlib.__version__,
    }
    save_dataset(path, dataset, info)
    return info


def create_sweep_parent(config: dict, *, sweep: str, experiment: str, path) -> dict:
    """Create the MLflow store (the only job that may: every other job depends on this one's output),
    the experiment and the sweep's parent run; record them in ``path`` (mlflow_parent.json).

    The parent's params are the whole config, flattened; the config is an artifact.
    """
    import yaml

    import kanlib

    uri = tracking.resolve_tracking_uri(config["mlflow"]["tracking_uri"])
    params = tracking.flatten_params(dict(config))
    tags = {"kanlib.version": kanlib.__version__, "git_commit": tracking.git_commit(), **tracking.host_tags()}
    with tempfile.TemporaryDirectory() as folder:
        config_file = Path(folder) / "config.yaml"
        config_file.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        try:
            parent = tracking.create_parent_run(
                uri,
                experiment,
                sweep,
                params,
                tags,
                artifacts=[config_file],
                retry_seconds=config["mlflow"]["retry_seconds"],
            )
        except tracking.TrackingError as error:
            raise JobError(f"mlflow_parent: {error}") from error
    write_json(path, parent)
    return parent


def aggregate_sweep(
    config: dict, *, metrics_files, history_files, parent_file, results_csv, results_parquet, history_csv, plot_png
) -> dict:
    """One table of every grid level (CSV + Parquet), the step histories, a plot of test RMSE vs G;
    all logged to the parent run, which is then set FINISHED. Returns a few totals for the log."""
    from ..analysis.figures import rmse_vs_grid_figure, save_figure

    metrics = [read_json(path) for path in metrics_files]
    results = results_table(metrics)
    history = history_table([(m, read_history(path)) for m, path in zip(metrics, history_files)])
    write_table(results, results_csv)
    write_table(results, results_parquet)
    write_table(history, history_csv)
    plot_png, plot_pdf = save_figure(rmse_vs_grid_figure(results, "test_rmse"), plot_png)
    totals = {
        "n_grid_levels": len(results),
        "total_train_time_s": float(results["wall_time_s"].sum()),
        "best_test_rmse": float(results["test_rmse"].min()),
    }

    parent = read_json(parent_file)
    uri = tracking.resolve_tracking_uri(config["mlflow"]["tracking_uri"])
    retry_seconds = config["mlflow"]["retry_seconds"]
    artifacts = [(path, "aggregate") for path in (results_csv, results_parquet, history_csv, plot_png, plot_pdf)]
    try:
        client = tracking.connect(uri, retry_seconds)
        tracking.finish_parent(
            client, parent["run_id"], uri=uri, retry_seconds=retry_seconds, artifacts=artifacts, metrics=totals
        )
    except tracking.TrackingError as error:
        raise JobError(f"aggregate: {error}") from error
    return {**totals, "n_steps": len(history), "run_id": parent["run_id"], "tracking_uri": uri}


def log_report(config: dict, *, parent_file, pngs, pdfs, summary_md, summary_html, exponents_csv, path) -> dict:
    """Log the figures, the summary and the exponent table to the sweep's parent run (folder report/),
    each fitted exponent as a metric, set the parent FINISHED, and record what was logged in ``path``.

    The sweep is complete once this runs (its inputs need every grid level): FINISHED, also after a
    failed invocation's onerror handler set it FAILED. An unreachable store raises JobError; the report
    files are other rules' outputs and stay.
    """
    from ..analysis.report import mlflow_metrics, read_results

    parent = read_json(parent_file)
    uri = tracking.resolve_tracking_uri(config["mlflow"]["tracking_uri"])
    retry_seconds = config["mlflow"]["retry_seconds"]
    root = os.path.dirname(summary_html)  # results/<sweep>/report
    artifacts = [
        (figure, os.path.join("report", os.path.dirname(os.path.relpath(figure, root))).rstrip("/"))
        for figure in [*pngs, *pdfs]
    ]
    artifacts += [(file, "report") for file in (summary_md, summary_html, exponents_csv)]
    metrics = mlflow_metrics(read_results(exponents_csv))
    try:
        client = tracking.connect(uri, retry_seconds)
        tracking.finish_parent(
            client, parent["run_id"], uri=uri, retry_seconds=retry_seconds, artifacts=artifacts, metrics=metrics
        )
    except tracking.TrackingError as error:
        raise JobError(
            f"report_mlflow: {error} (the report files are written; run the same command again once "
            "the store is reachable to log them)"
        ) from error
    logged = {
        "run_id": parent["run_id"],
        "tracking_uri": uri,
        "logged_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "artifacts": [f"{folder}/{os.path.basename(file)}" for file, folder in artifacts],
        "metrics": metrics,
    }
    write_json(path, logged)
    return logged
