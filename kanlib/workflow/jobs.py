"""The workflow's cheap jobs, one function per rule: dataset, mlflow_parent, aggregate, report_mlflow.

Each ``workflow/scripts/<rule>.py`` maps Snakemake's input, params and output onto one of
these calls (the train rule's is :func:`kanlib.workflow.train_job.run_train_jobs`). They raise
:class:`JobError` with a message that says what to do; the scripts turn it into the job's
failure message.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from ..files import atomic_write_text, read_json, write_json
from . import runlog, tracking
from .results import history_table, read_history, results_table, save_dataset, write_table

__all__ = ["JobError", "make_dataset", "create_sweep_parent", "aggregate_sweep", "log_report", "partial_report"]


class JobError(RuntimeError):
    """A job failed for a reason its message explains (e.g. an unreachable tracking store)."""


def make_dataset(target, *, n_var: int, n_train: int, test_num: int, seed: int, input_range, path) -> dict:
    """Sample N training points, the seed's fixed test set and a validation set of the test set's size
    (drawn like the training points) of ``target``; write them to ``path``.

    Labels are computed in float64 whatever the training dtype (train jobs cast). Returns the info
    stored beside the tensors.
    """
    import torch

    import kanlib

    from ..data import create_dataset

    lower, upper = (float(v) for v in input_range)
    # the validation split, as large as the test set, chooses models (e.g. each N's best grid) in the analysis
    dataset = create_dataset(
        target,
        n_var=n_var,
        ranges=(lower, upper),
        train_num=n_train,
        test_num=test_num,
        val_num=test_num,
        seed=seed,
        dtype=torch.float64,
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
            parent = runlog.submit(
                "create_parent",
                {
                    "uri": uri,
                    "experiment": experiment,
                    "sweep": sweep,
                    "params": params,
                    "tags": tags,
                    "artifacts": [str(config_file.resolve())],
                    "retry_seconds": config["mlflow"]["retry_seconds"],
                },
            )
        except tracking.TrackingError as error:
            raise JobError(f"mlflow_parent: {error}") from error
        parent.pop("logged_by")
    write_json(path, parent)
    return parent


def aggregate_sweep(
    config: dict, *, metrics_files, history_files, parent_file, results_csv, results_parquet, history_csv, plot_png
) -> dict:
    """One table of every grid level (CSV + Parquet), the step histories, a plot of test RMSE vs G;
    all logged to the parent run, which is then set FINISHED. Returns a few totals for the log."""
    from ..analysis.figures import rmse_vs_grid_figure, save_figure
    from ..analysis.fits import chain_rows

    metrics = [read_json(path) for path in metrics_files]
    results = results_table(metrics)
    history = history_table([(m, read_history(path)) for m, path in zip(metrics, history_files)])
    write_table(results, results_csv)
    write_table(results, results_parquet)
    write_table(history, history_csv)
    plot_png, plot_pdf = save_figure(rmse_vs_grid_figure(chain_rows(results), "test_rmse"), plot_png)
    totals = {
        "n_grid_levels": len(results),
        "total_train_time_s": float(results["wall_time_s"].sum()),
        "best_test_rmse": float(results["test_rmse"].min()),
    }

    parent = read_json(parent_file)
    uri = tracking.resolve_tracking_uri(config["mlflow"]["tracking_uri"])
    retry_seconds = config["mlflow"]["retry_seconds"]
    artifacts = [
        (str(Path(path).resolve()), "aggregate")
        for path in (results_csv, results_parquet, history_csv, plot_png, plot_pdf)
    ]
    try:  # by the run's logger process when one serves (no mlflow import here), else here
        runlog.submit(
            "finish_parent",
            {
                "uri": uri,
                "retry_seconds": retry_seconds,
                "run_id": parent["run_id"],
                "artifacts": artifacts,
                "metrics": totals,
            },
        )
    except tracking.TrackingError as error:
        raise JobError(f"aggregate: {error}") from error
    return {**totals, "n_steps": len(history), "run_id": parent["run_id"], "tracking_uri": uri}


def log_report(
    config: dict,
    *,
    parent_file,
    pngs,
    pdfs,
    summary_md,
    summary_html,
    exponents_csv,
    path,
    answer_md=None,
    families_csv=None,
    laws_json=None,
    frontier_csv=None,
) -> dict:
    """Log the figures, the summary, the exponent table and the laws (``laws_json``) to the sweep's
    parent run (folder report/), each fitted exponent as a metric (with ``families_csv``, each
    family's exponent in the parameter count too; with ``frontier_csv``, the data axis's gamma and
    delta), set the parent FINISHED, and record what was logged in ``path``.

    The sweep is complete once this runs (its inputs need every grid level): FINISHED, also after a
    failed invocation's onerror handler set it FAILED. An unreachable store raises JobError; the report
    files are other rules' outputs and stay.
    """
    from ..analysis.report import family_mlflow_metrics, frontier_mlflow_metrics, mlflow_metrics, read_results

    parent = read_json(parent_file)
    uri = tracking.resolve_tracking_uri(config["mlflow"]["tracking_uri"])
    retry_seconds = config["mlflow"]["retry_seconds"]
    root = os.path.dirname(summary_html)  # results/<sweep>/report
    artifacts = [
        (figure, os.path.join("report", os.path.dirname(os.path.relpath(figure, root))).rstrip("/"))
        for figure in [*pngs, *pdfs]
    ]
    artifacts += [
        (file, "report")
        for file in (summary_md, summary_html, exponents_csv, families_csv, answer_md, laws_json, frontier_csv)
        if file
    ]
    metrics = mlflow_metrics(read_results(exponents_csv))
    if families_csv is not None:
        families = read_results(families_csv)
        if not families.empty:
            metrics.update(family_mlflow_metrics(families))
    if frontier_csv is not None and os.path.getsize(frontier_csv) > 1:
        metrics.update(frontier_mlflow_metrics(read_results(frontier_csv)))
    note = None
    if answer_md is not None:  # the run's description in the MLflow UI: the answer first
        note = Path(answer_md).read_text(encoding="utf-8")
        note += "\nThe whole summary, the tables and every figure: artifacts `report/` of this run.\n"
    try:  # by the run's logger process when one serves (no mlflow import here), else here
        runlog.submit(
            "finish_parent",
            {
                "uri": uri,
                "retry_seconds": retry_seconds,
                "run_id": parent["run_id"],
                "artifacts": [(str(Path(file).resolve()), folder) for file, folder in artifacts],
                "metrics": metrics,
                "note": note,
            },
        )
    except tracking.TrackingError as error:
        raise JobError(
            f"report_mlflow: {error} (the report files are written; run the same command again once "
            "the store is reachable to log them)"
        ) from error
    tracking.failed_marker(Path(parent_file)).unlink(missing_ok=True)  # the sweep is complete and FINISHED
    logged = {
        "run_id": parent["run_id"],
        "tracking_uri": uri,
        "logged_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "artifacts": [f"{folder}/{os.path.basename(file)}" for file, folder in artifacts],
        "metrics": metrics,
    }
    write_json(path, logged)
    return logged


# ---- after a failed invocation: a report of what finished ------------------------------------------------


def _finished_files(run: Path) -> Path | None:
    """The folder with a level's metrics.json and history.csv: the run folder, or its .completed/
    copy when the files were logged but Snakemake deleted them (e.g. a batch_seeds job in which
    another seed failed); None if the level did not finish."""
    for folder in (run, run / ".completed"):
        if (folder / "metrics.json").is_file() and (folder / "history.csv").is_file():
            if folder == run or read_json(folder / "metrics.json").get("mlflow_synced"):
                return folder
    return None


def _job_log(results_folder: Path, rule: str, run: Path) -> tuple[Path, str | None]:
    """The log of the job that trained ``run``: the per-seed rule's, else the batch_seeds rule's
    (one log for every seed; its lines for this seed contain ``seed<s> ``)."""
    relative = run.relative_to(results_folder / "runs")
    single = results_folder / "logs" / rule / f"{relative}.log"
    if single.is_file():
        return single, None
    parts = list(relative.parts)
    n_part = next(i for i, part in enumerate(parts) if "_seed" in part)
    n_text, seed = parts[n_part].rsplit("_seed", 1)
    parts[n_part] = n_text
    return results_folder / "logs" / f"{rule}_seeds" / f"{Path(*parts)}.log", f"seed{seed} "


def _failure_reason(log_file: Path, previous_missing: str | None, mark: str | None = None) -> str:
    if log_file.is_file():
        errors = [line for line in log_file.read_text(errors="replace").splitlines() if " ERROR " in line]
        if mark is not None:
            errors = [line for line in errors if mark in line]
        if errors:
            return errors[-1].split(" ERROR ", 1)[1][:300]
        return "started but did not finish (killed, or stopped with the run)"
    if previous_missing is not None:
        return f"not run: the job it starts from ({previous_missing}) did not finish"
    return "not run (the invocation stopped before it)"


def partial_report(config: dict, *, folder=None) -> dict | None:
    """The table, figures and summary of the jobs that finished, with every missing job
    listed with its reason and left out of the fits, in ``results/<sweep>/partial/`` (the sweep's own
    outputs stay Snakemake's). For the onerror handler of a failed invocation (e.g. ``--keep-going``
    with one diverged level among hundreds). Returns {"finished", "missing", "summary", "lines"},
    or None when no level finished.
    """
    import math

    import pandas as pd

    from ..analysis import report
    from ..analysis.figures import save_figure
    from ..families import get_family
    from .sweep import job_key, jobs, results_dir, run_dir

    results_folder = Path(results_dir(config))
    folder = Path(folder) if folder is not None else results_folder / "partial"
    finished, histories, missing, missing_keys = [], [], [], set()
    sweep_jobs = jobs(config)
    for job in sweep_jobs:
        family = get_family(job.family)
        run = Path(run_dir(config, job))
        done = _finished_files(run)
        if done is not None:
            metrics = read_json(done / "metrics.json")
            finished.append(metrics)
            histories.append((metrics, read_history(done / "history.csv")))
            continue
        previous = family.previous(config, job)
        unfinished = previous is not None and job_key(previous) in missing_keys
        stopped_at = family.run_name(previous) if unfinished else None
        missing_keys.add(job_key(job))
        log_file, mark = _job_log(results_folder, "train", run)
        hp = family.hyperparameters(config)
        missing.append(
            {
                "function": job.function,
                "family": job.family,
                "width": job.width_str,
                **family.record(config, job),
                "n_train": job.n_train,
                "seed": job.seed,
                "n_params": family.n_params(job),
                "steps": hp["steps"],
                "optimizer": hp["optimizer"],
                "train_rmse": math.nan,
                "test_rmse": math.nan,
                "wall_time_s": math.nan,
                "device": "",
                "mlflow_run_id": "",
                "reason": _failure_reason(log_file, stopped_at, mark),
                "run_name": family.run_name(job),
            }
        )
    if not finished:
        return None
    lines = [f"{row.pop('run_name')}: {row['reason']}" for row in missing]
    results = results_table(finished)
    table = pd.concat([results, pd.DataFrame(missing)], ignore_index=True) if missing else results
    order = ["function", "family", "width", "activation", "k", "n_train", "seed", "grid_size"]
    table = table.sort_values(order, na_position="first").reset_index(drop=True)
    history = history_table(histories)
    write_table(table, folder / "results.csv")
    # report.smk's REPORT_SETTINGS
    settings = {"confidence": 0.95, "divergence_factor": 10.0, "target_rmse": 1e-4}
    exponents = report.report_exponents(table, settings)
    comparison = report.family_comparison(table, settings)[0] if report.has_families(table) else None
    figure_paths = {}
    for configuration in report.configurations(table):
        chosen = report.select_configuration(table, *configuration)
        figures = report.figure_set(
            chosen,
            report.select_configuration(history, *configuration),
            report.select_configuration(exponents, *configuration),
        )
        paths = {}
        for stem, figure in figures.items():
            png = folder / report.config_dir(*configuration) / f"{stem}.png"
            save_figure(figure, png)
            paths[stem] = str(png.relative_to(folder))
        figure_paths[configuration] = paths
    document = report.build_summary(
        table,
        exponents,
        f"{config['sweep']} (partial)",
        figure_paths,
        divergence_factor=settings["divergence_factor"],
        comparison=comparison,
    )
    intro = report.Document()
    intro.paragraph(
        f"**Partial sweep.** {len(finished)} of {len(sweep_jobs)} jobs finished; the "
        f"{len(missing)} missing ones are left out of every fit:"
    )
    intro.bullets(lines)
    document.blocks[1:1] = intro.blocks  # after the title
    summary = folder / "summary.md"
    atomic_write_text(summary, report.to_markdown(document))
    atomic_write_text(folder / "exponents.csv", exponents.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    answer = report.answer_document(table, exponents, tables=True, comparison=comparison)
    atomic_write_text(folder / "answer.md", report.to_markdown(intro) + "\n" + report.to_markdown(answer))
    return {
        "finished": len(finished),
        "missing": len(missing),
        "summary": str(summary),
        "lines": lines,
        "answer": str(folder / "answer.md"),
    }
