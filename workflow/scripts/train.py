"""Train one grid level of one chain and log it to MLflow as a child of the sweep's parent run.

Level 0 starts from a fresh KAN; level i is initialised from level i-1's model by grid
extension on the training inputs. The files are first written to <run>/unsynced/ and moved
into place only after MLflow has the run (model.pt, history.csv, then metrics.json, the
completion marker). If MLflow stays unreachable the job fails but keeps unsynced/: its rerun
logs that result without training again. A diverged fit fails the job and its MLflow run.
"""
import getpass
import os
import shutil
import sys
import time
from pathlib import Path

import torch

import kanlib
from kanlib import KAN, DivergenceError, tracking
from kanlib.functions import get_function
from kanlib.results import load_dataset, read_history, read_json, sha256_file, write_history, write_json
from kanlib.sweep import exit_job, job_key, job_logger, parse_width

job_started = time.time()
log = job_logger(snakemake.log[0])
torch.set_num_threads(snakemake.threads)

# ---- what to train -------------------------------------------------------------------------------------
wildcards, hp, config = snakemake.wildcards, snakemake.params.hp, snakemake.config
target = get_function(snakemake.params.function)
width, k = parse_width(wildcards.width), int(wildcards.k)
n_train, seed, grid = int(wildcards.n), int(wildcards.seed), int(wildcards.grid)
prev_grid = snakemake.params.prev_grid
level = config["grids"].index(grid)
model_seed = seed + hp["model_seed_offset"]
init_file = snakemake.input.get("init")
run_folder = Path(snakemake.output.metrics).parent
unsynced = run_folder / "unsynced"
job = job_key(wildcards.function, wildcards.width, k, n_train, seed, grid)
describe = f"{target.name} w{wildcards.width} k{k} N{n_train} seed{seed} G{grid}"
log.info("job %s (level %d, from %s)", job, level, f"G{prev_grid}" if prev_grid else "scratch")

# A result from an earlier attempt (kept because MLflow was unreachable) counts only for the same inputs.
fingerprint = {"job": job, "function": target.name, "hp": hp, "data_sha256": sha256_file(snakemake.input.data),
               "init_sha256": sha256_file(init_file) if init_file else None}
stash = read_json(unsynced / "metrics.json") if (unsynced / "metrics.json").is_file() else None
if stash is not None and stash.get("fingerprint") != fingerprint:
    log.info("discarding %s: it was trained from other inputs", unsynced)
    shutil.rmtree(unsynced)
    stash = None

uri = tracking.resolve_tracking_uri(config["mlflow"]["tracking_uri"])
retry_seconds = config["mlflow"]["retry_seconds"]
parent = read_json(snakemake.input.parent)
params = {  # MLflow params: every hyperparameter and where the data and the starting model came from
    "function": target.name, "formula": target.formula, "width": wildcards.width, "k": k, "n_train": n_train,
    "seed": seed, "data_seed": seed, "model_seed": model_seed, "grid_size": grid,
    "prev_grid_size": prev_grid if prev_grid else "none", "grid_level": level, "sweep": config["sweep"],
    **{key: value for key, value in hp.items() if key != "device"}, "device_requested": hp["device"],
    "threads": snakemake.threads, "kanlib_version": kanlib.__version__, "torch_version": torch.__version__,
    "git_commit": tracking.git_commit(), "data_file": snakemake.input.data, "init_checkpoint": init_file or "none",
}
tags = {"kanlib.job": job, "kanlib.sweep": config["sweep"], "kanlib.role": "child", "rule": "train",
        "wildcards": " ".join(f"{key}={value}" for key, value in wildcards.items()),
        "mlflow.source.name": "workflow/scripts/train.py", "mlflow.source.type": "JOB",
        "mlflow.user": getpass.getuser(), **tracking.host_tags()}


def log_failed_run(error, records, step_times):
    """The failed fit as a FAILED MLflow run with the steps it completed; returns a line for the job's message."""
    history = {name: [float(r[key]) for r in records] for name, key in
               (("train_rmse", "train_loss"), ("test_rmse", "test_loss"), ("reg", "reg"))}
    try:
        client = tracking.connect(uri, retry_seconds)
        tracking.ensure_parent_running(client, parent["run_id"], uri, retry_seconds, snakemake.input.parent)
        run_id = tracking.log_child_run(
            client, uri=uri, experiment_id=parent["experiment_id"], parent_run_id=parent["run_id"],
            run_name=describe, params={key: str(value) for key, value in params.items()},
            tags={**tags, "kanlib.error": str(error)[:5000]}, history=history, final={},
            timestamps_ms=step_times or [int(time.time() * 1000)], start_ms=int(job_started * 1000),
            end_ms=int(time.time() * 1000), status="FAILED", retry_seconds=retry_seconds)
        return f"MLflow run {run_id} marked FAILED"
    except tracking.TrackingError as tracking_error:
        return f"its MLflow run could not be logged either: {tracking_error}"


# ---- train (unless an earlier attempt already did) -----------------------------------------------------
if stash is not None:
    log.info("reusing the result in %s (trained earlier, not yet in MLflow)", unsynced)
    metrics = stash
else:
    dataset_tensors, _ = load_dataset(snakemake.input.data)
    records, step_times = [], []

    def remember(step, record):  # the fit's per-step callback: kept for a FAILED run's history
        records.append(record)
        step_times.append(int(time.time() * 1000))

    try:
        model = KAN(width=width, grid=grid, k=k, seed=model_seed, grid_eps=hp["grid_eps"], device=hp["device"],
                    dtype=hp["dtype"])
        params["device"] = str(model.device)
        init_started = time.perf_counter()
        if init_file:
            coarse = KAN.load(init_file, device=model.device, dtype=model.dtype)
            model.initialize_from_another_model(coarse, dataset_tensors["train_input"])
        init_time_s = time.perf_counter() - init_started
        log.info("model %s on %s (%s), %d parameters; %s in %.3f s", width, model.device, hp["dtype"],
                 model.n_params, f"grid extension from G{prev_grid}" if init_file else "fresh initialisation",
                 init_time_s)
        fit = model.fit(dataset_tensors, opt=hp["optimizer"], steps=hp["steps"], lr=hp["lr"],
                        update_grid=hp["update_grid"], grid_update_num=hp["grid_update_num"],
                        stop_grid_update_step=hp["stop_grid_update_step"], batch=hp["batch"], lamb=hp["lamb"],
                        seed=model_seed, progress=False, callback=remember)
    except Exception as error:  # a diverged fit, CUDA missing or out of memory, a bad checkpoint ...
        outcome = log_failed_run(error, records, step_times)
        kind = "diverged" if isinstance(error, DivergenceError) else f"failed ({type(error).__name__})"
        message = f"training {kind} for {describe}: {error}; {outcome}"
        log.error("%s", message)
        if isinstance(error, DivergenceError):
            sys.exit(message)
        raise

    # Files go to unsynced/ first; model.pt first, metrics.json last.
    unsynced.mkdir(parents=True, exist_ok=True)
    model.save(unsynced / "model.pt")
    write_history(unsynced / "history.csv", fit)
    metrics = {
        # what was trained (the aggregate table's columns come from here)
        "function": target.name, "formula": target.formula, "width": wildcards.width, "k": k,
        "n_train": n_train, "seed": seed, "data_seed": seed, "model_seed": model_seed, "grid_size": grid,
        "prev_grid_size": prev_grid, "grid_level": level, "job": job, "n_params": model.n_params,
        "steps": hp["steps"], "optimizer": hp["optimizer"], "lr": hp["lr"], "hp": hp,
        # how it went
        "train_rmse": fit["train_loss"][-1], "test_rmse": fit["test_loss"][-1], "reg": fit["reg"][-1],
        "min_test_rmse": min(fit["test_loss"]), "n_evals": sum(fit["n_evals"]),
        "wall_time_s": fit["wall_time_s"], "init_time_s": init_time_s, "step_times_ms": step_times,
        "started_at_ms": int(job_started * 1000), "finished_at_ms": int(time.time() * 1000),
        # where and from what
        "device": str(model.device), "dtype": hp["dtype"], "threads": snakemake.threads,
        "kanlib_version": kanlib.__version__, "torch_version": torch.__version__,
        "git_commit": params["git_commit"], "host": tags["host"], "slurm_job_id": tags.get("slurm_job_id"),
        "data_file": snakemake.input.data, "init_checkpoint": init_file,
        "model_sha256": sha256_file(unsynced / "model.pt"), "fingerprint": fingerprint,
        # MLflow (filled in once the run is logged)
        "mlflow_run_id": None, "mlflow_parent_run_id": parent["run_id"], "mlflow_tracking_uri": uri,
        "mlflow_synced": False,
    }
    write_json(unsynced / "metrics.json", metrics)
    log.info("trained in %.2f s (%d loss evaluations): train RMSE %.3e, test RMSE %.3e", metrics["wall_time_s"],
             metrics["n_evals"], metrics["train_rmse"], metrics["test_rmse"])

# ---- MLflow: one child run, then the files move into place ----------------------------------------------
if not metrics["mlflow_synced"]:
    params["device"] = metrics["device"]
    history = read_history(unsynced / "history.csv")
    model_bytes = (unsynced / "model.pt").stat().st_size
    artifacts = [(unsynced / "history.csv", None)]
    if model_bytes <= config["mlflow"]["log_model_max_bytes"]:
        artifacts.append((unsynced / "model.pt", None))

    def metrics_artifact(run_id):  # the run's copy of metrics.json, with its own id
        return [(write_json(unsynced / "artifact" / "metrics.json",
                            {**metrics, "mlflow_run_id": run_id, "mlflow_synced": True}), None)]

    try:
        client = tracking.connect(uri, retry_seconds)
        tracking.ensure_parent_running(client, parent["run_id"], uri, retry_seconds, snakemake.input.parent)
        run_id = tracking.log_child_run(
            client, uri=uri, experiment_id=parent["experiment_id"], parent_run_id=parent["run_id"],
            run_name=describe, params={key: str(value) for key, value in params.items()}, tags=tags,
            history={name: history[name] for name in ("train_rmse", "test_rmse", "reg", "n_evals")},
            final={"final_train_rmse": metrics["train_rmse"], "final_test_rmse": metrics["test_rmse"],
                   "final_reg": metrics["reg"], "min_test_rmse": metrics["min_test_rmse"],
                   "n_params": metrics["n_params"], "total_evals": metrics["n_evals"],
                   "wall_time_s": metrics["wall_time_s"], "init_time_s": metrics["init_time_s"]},
            timestamps_ms=metrics["step_times_ms"], start_ms=metrics["started_at_ms"],
            end_ms=metrics["finished_at_ms"], artifacts=artifacts, retry_seconds=retry_seconds,
            before_terminate=metrics_artifact)
    except tracking.TrackingError as error:
        message = (f"{error}. The trained model and its metrics are kept in {unsynced}; run the same snakemake "
                   "command again once the tracking store is reachable: this job then logs them without training")
        log.error("%s", message)
        sys.exit(f"train {describe}: {message}")
    metrics.update(mlflow_run_id=run_id, mlflow_synced=True)  # only now: the run is FINISHED
    write_json(unsynced / "metrics.json", metrics)
    try:  # earlier runs of this job (retrained, or killed while logging) point to this one
        superseded = tracking.supersede_runs(client, experiment_id=parent["experiment_id"],
                                             parent_run_id=parent["run_id"], job=job, keep_run_id=run_id, uri=uri,
                                             retry_seconds=retry_seconds)
    except tracking.TrackingError as error:
        superseded = []
        log.warning("could not tag earlier runs of this job as superseded: %s", error)
    log.info("MLflow child run %s under parent %s in %s%s", run_id, parent["run_id"], uri,
             f" (superseding {', '.join(superseded)})" if superseded else "")

for name in ("model", "history", "metrics"):  # the order of the rule's outputs: metrics.json last
    os.replace(unsynced / Path(snakemake.output[name]).name, snakemake.output[name])
shutil.rmtree(unsynced, ignore_errors=True)
log.info("done in %.2f s", time.time() - job_started)

exit_job()  # skip the interpreter teardown of torch and mlflow (~1 s)
