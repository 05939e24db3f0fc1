"""One train job: train one grid level of one chain and log it as a child of the sweep's MLflow run.

Level 0 starts from a fresh KAN; level i is initialised from level i-1's model by grid extension
on the training inputs. The files are first written to ``<run>/unsynced/`` and moved into place
only after MLflow has the run (model.pt, history.csv, then metrics.json, the completion marker).
If MLflow stays unreachable the job fails but keeps ``unsynced/``: its rerun logs that result
without training again, provided it was trained from the same inputs (its fingerprint). A
diverged fit fails the job and its MLflow run.

:class:`JobIdentity` says who a job is; it alone produces the MLflow params, the tags and the
identity part of metrics.json. :func:`run_train_job` is what ``workflow/scripts/train.py`` calls.
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..files import read_json, sha256_file, write_json
from . import runlog, tracking
from .results import load_dataset, read_history, write_history
from .sweep import TRAIN_KEYS, job_key, mlp_hyperparameters, mlp_job_key, parse_width, previous_grid

__all__ = ["JobIdentity", "TrainOutputs", "TrackingSettings", "TrainJobError", "run_train_job"]


class TrainJobError(RuntimeError):
    """The job failed in a way its message explains (diverged fit, unreachable store); no traceback needed."""


@dataclass(frozen=True)
class JobIdentity:
    """What a train job trains, from which inputs, in which sweep, and with which software.

    ``family`` is 'kan' (one grid level of a chain: k, grid_size, grid_level set) or 'mlp' (one MLP
    fit: ``activation`` set; k, grid_size and grid_level None).
    """

    sweep: str
    function: str  # the target's name (registry name or module:function)
    formula: str
    function_slug: str
    width: str  # '2-1-1'
    k: int | None
    n_train: int
    seed: int  # the data seed
    model_seed: int
    grid_size: int | None
    prev_grid_size: int | None
    grid_level: int | None
    hp: dict  # the training settings (kanlib.workflow.sweep.TRAIN_KEYS)
    threads: int
    data_file: str
    init_checkpoint: str | None
    kanlib_version: str
    torch_version: str
    git_commit: str
    host: str
    slurm_job_id: str | None
    family: str = "kan"
    activation: str | None = None

    @classmethod
    def create(
        cls,
        config: dict,
        target,
        *,
        function_slug: str,
        width: str,
        k: int,
        n_train: int,
        seed: int,
        grid: int,
        threads: int,
        data_file: str,
        init_checkpoint: str | None,
    ) -> JobIdentity:
        """The identity of the job (function_slug, width, k, N, seed, grid) of a sweep's ``config``."""
        grids = [int(g) for g in config["grids"]]
        return cls(
            **_common_fields(config, target, function_slug, width, n_train, seed, threads, data_file),
            k=int(k),
            grid_size=int(grid),
            prev_grid_size=previous_grid(config, grid),
            grid_level=grids.index(int(grid)),
            hp={key: config[key] for key in TRAIN_KEYS},
            init_checkpoint=str(init_checkpoint) if init_checkpoint else None,
        )

    @classmethod
    def create_mlp(
        cls,
        config: dict,
        target,
        *,
        function_slug: str,
        width: str,
        activation: str,
        n_train: int,
        seed: int,
        threads: int,
        data_file: str,
    ) -> JobIdentity:
        """The identity of the MLP job (function_slug, width, activation, N, seed) of a sweep's ``config``."""
        return cls(
            **_common_fields(config, target, function_slug, width, n_train, seed, threads, data_file),
            k=None,
            grid_size=None,
            prev_grid_size=None,
            grid_level=None,
            hp=mlp_hyperparameters(config),
            init_checkpoint=None,
            family="mlp",
            activation=str(activation),
        )

    @property
    def job(self) -> str:
        """The job's key inside the sweep (its run folder below runs/; the MLflow tag kanlib.job)."""
        if self.family == "mlp":
            return mlp_job_key(self.function_slug, self.width, self.activation, self.n_train, self.seed)
        return job_key(self.function_slug, self.width, self.k, self.n_train, self.seed, self.grid_size)

    @property
    def run_name(self) -> str:
        if self.family == "mlp":
            return f"{self.function} MLP w{self.width} {self.activation} N{self.n_train} seed{self.seed}"
        return f"{self.function} w{self.width} k{self.k} N{self.n_train} seed{self.seed} G{self.grid_size}"

    def record(self) -> dict:
        """The identity part of metrics.json (the results table's columns come from here)."""
        return {
            "function": self.function,
            "formula": self.formula,
            "family": self.family,
            "width": self.width,
            "activation": self.activation,
            "k": self.k,
            "n_train": self.n_train,
            "seed": self.seed,
            "data_seed": self.seed,
            "model_seed": self.model_seed,
            "grid_size": self.grid_size,
            "prev_grid_size": self.prev_grid_size,
            "grid_level": self.grid_level,
            "job": self.job,
            "sweep": self.sweep,
            "steps": self.hp["steps"],
            "optimizer": self.hp["optimizer"],
            "lr": self.hp["lr"],
            "dtype": self.hp["dtype"],
            "hp": dict(self.hp),
            "threads": self.threads,
            "kanlib_version": self.kanlib_version,
            "torch_version": self.torch_version,
            "git_commit": self.git_commit,
            "host": self.host,
            "slurm_job_id": self.slurm_job_id,
            "data_file": self.data_file,
            "init_checkpoint": self.init_checkpoint,
        }

    def mlflow_params(self, device: str | None = None) -> dict[str, str]:
        """The MLflow params: every field of :meth:`record` but the job key, host and SLURM id
        (those are tags), the hyperparameters flattened (the requested device as
        ``device_requested``), ``device`` the one the model ran on; None as 'none'."""
        record = self.record()
        for key in ("job", "hp", "host", "slurm_job_id"):
            record.pop(key)
        record.update({key: value for key, value in self.hp.items() if key != "device"})
        record["device_requested"] = self.hp["device"]
        if device is not None:
            record["device"] = device
        return {key: "none" if value is None else str(value) for key, value in record.items()}

    def mlflow_tags(self) -> dict[str, str]:
        tags = {
            "kanlib.job": self.job,
            "kanlib.sweep": self.sweep,
            "kanlib.role": "child",
            "kanlib.family": self.family,
            "rule": "train_mlp" if self.family == "mlp" else "train",
            "wildcards": (
                f"function={self.function_slug} width={self.width} activation={self.activation} "
                f"n={self.n_train} seed={self.seed}"
                if self.family == "mlp"
                else f"function={self.function_slug} width={self.width} k={self.k} n={self.n_train} "
                f"seed={self.seed} grid={self.grid_size}"
            ),
            "mlflow.source.name": "workflow/scripts/train.py",
            "mlflow.source.type": "JOB",
            "mlflow.user": getpass.getuser(),
            "host": self.host,
        }
        if self.slurm_job_id:
            tags["slurm_job_id"] = self.slurm_job_id
        return tags

    def fingerprint(self) -> dict:
        """What a kept result (unsynced/ or .completed/) must have been trained from, and with which
        code, to be reused instead of trained again: after a change of kanlib or torch (e.g. a fix
        to the optimizer) a forced rerun trains anew."""
        return {
            "job": self.job,
            "function": self.function,
            "hp": dict(self.hp),
            "data_sha256": sha256_file(self.data_file),
            "init_sha256": sha256_file(self.init_checkpoint) if self.init_checkpoint else None,
            "code": {"kanlib": self.kanlib_version, "torch": self.torch_version, "git_commit": self.git_commit},
        }


def _common_fields(config: dict, target, function_slug, width, n_train, seed, threads, data_file) -> dict:
    """The fields of a :class:`JobIdentity` that every model family has: the sweep, the target, the
    data and model seeds, the inputs, and the software and host (provenance)."""
    import torch

    import kanlib

    host = tracking.host_tags()
    return {
        "sweep": config["sweep"],
        "function": target.name,
        "formula": target.formula,
        "function_slug": function_slug,
        "width": width,
        "n_train": int(n_train),
        "seed": int(seed),
        "model_seed": int(seed) + int(config["model_seed_offset"]),
        "threads": int(threads),
        "data_file": str(data_file),
        "kanlib_version": kanlib.__version__,
        "torch_version": torch.__version__,
        "git_commit": tracking.git_commit(),
        "host": host["host"],
        "slurm_job_id": host.get("slurm_job_id"),
    }


@dataclass(frozen=True)
class TrainOutputs:
    """The rule's outputs; all in one run folder."""

    model: str
    history: str
    metrics: str

    @property
    def unsynced(self) -> Path:
        """Trained, not yet in MLflow (the files before they move into place)."""
        return Path(self.metrics).parent / "unsynced"

    @property
    def completed(self) -> Path:
        """Hard links of the finished, logged outputs: Snakemake deletes the outputs of a job it takes
        for incomplete (killed before it recorded the job as done), this copy survives that."""
        return Path(self.metrics).parent / ".completed"

    def names(self) -> list[tuple[str, str]]:
        """(attribute, file name) in the order the files are put in place: metrics.json last."""
        return [(name, Path(getattr(self, name)).name) for name in ("model", "history", "metrics")]


@dataclass(frozen=True)
class TrackingSettings:
    uri: str
    retry_seconds: float
    log_model_max_bytes: int

    @classmethod
    def from_config(cls, config: dict) -> TrackingSettings:
        mlflow = config["mlflow"]
        return cls(
            tracking.resolve_tracking_uri(mlflow["tracking_uri"]),
            float(mlflow["retry_seconds"]),
            int(mlflow["log_model_max_bytes"]),
        )


def _log_failed_run(identity, settings, parent, error, records, step_times, started) -> str:
    """The failed fit as a FAILED MLflow run with the steps it completed; returns a line for the message."""
    history = {
        name: [float(r[key]) for r in records]
        for name, key in (("train_rmse", "train_loss"), ("test_rmse", "test_loss"), ("reg", "reg"))
    }
    try:
        result = runlog.submit(
            "log_child",
            {
                "uri": settings.uri,
                "retry_seconds": settings.retry_seconds,
                "parent": parent,
                "run_name": identity.run_name,
                "params": identity.mlflow_params(),
                "tags": {**identity.mlflow_tags(), "kanlib.error": str(error)[:5000]},
                "history": history,
                "final": {},
                "timestamps_ms": step_times or [int(time.time() * 1000)],
                "start_ms": int(started * 1000),
                "end_ms": int(time.time() * 1000),
                "status": "FAILED",
            },
        )
        return f"MLflow run {result['run_id']} marked FAILED"
    except tracking.TrackingError as tracking_error:
        return f"its MLflow run could not be logged either: {tracking_error}"


def _build_model(identity: JobIdentity, dataset: dict, log):
    """The job's untrained model: a KAN (grid-extended from the previous level when there is one) or
    an MLP; returns (model, seconds spent initialising from the previous level)."""
    hp = identity.hp
    if identity.family == "mlp":
        from ..mlp import MLP

        model = MLP(
            width=parse_width(identity.width),
            activation=identity.activation,
            seed=identity.model_seed,
            device=hp["device"],
            dtype=hp["dtype"],
        )
        log.info(
            "MLP %s (%s) on %s (%s), %d parameters",
            identity.width,
            identity.activation,
            model.device,
            hp["dtype"],
            model.n_params,
        )
        return model, 0.0
    from ..model import KAN

    model = KAN(
        width=parse_width(identity.width),
        grid=identity.grid_size,
        k=identity.k,
        seed=identity.model_seed,
        grid_eps=hp["grid_eps"],
        device=hp["device"],
        dtype=hp["dtype"],
    )
    init_started = time.perf_counter()
    if identity.init_checkpoint:
        coarse = KAN.load(identity.init_checkpoint, device=model.device, dtype=model.dtype)
        model.initialize_from_another_model(coarse, dataset["train_input"])
    init_time_s = time.perf_counter() - init_started
    log.info(
        "model %s on %s (%s), %d parameters; %s in %.3f s",
        identity.width,
        model.device,
        hp["dtype"],
        model.n_params,
        f"grid extension from G{identity.prev_grid_size}" if identity.init_checkpoint else "fresh initialisation",
        init_time_s,
    )
    return model, init_time_s


def _train(identity: JobIdentity, settings: TrackingSettings, parent: dict, unsynced: Path, log, started) -> dict:
    """Train the level, write model.pt, history.csv and metrics.json to ``unsynced``; returns the metrics."""
    from ..training import DivergenceError, median_rmse

    hp = identity.hp
    dataset, _ = load_dataset(identity.data_file)
    records, step_times = [], []

    def remember(step, record):  # the fit's per-step callback: kept for a FAILED run's history
        records.append(record)
        step_times.append(int(time.time() * 1000))

    try:
        model, init_time_s = _build_model(identity, dataset, log)
        fit = model.fit(
            dataset,
            opt=hp["optimizer"],
            steps=hp["steps"],
            lr=hp["lr"],
            # an MLP has no grid to update and no regulariser
            update_grid=hp.get("update_grid", False),
            grid_update_num=hp.get("grid_update_num", 10),
            stop_grid_update_step=hp.get("stop_grid_update_step", 0),
            batch=hp["batch"],
            lamb=hp.get("lamb", 0.0),
            seed=identity.model_seed,
            progress=False,
            callback=remember,
        )
    except Exception as error:  # a diverged fit, CUDA missing or out of memory, a bad checkpoint ...
        outcome = _log_failed_run(identity, settings, parent, error, records, step_times, started)
        kind = "diverged" if isinstance(error, DivergenceError) else f"failed ({type(error).__name__})"
        message = f"training {kind} for {identity.run_name}: {error}; {outcome}"
        log.error("%s", message)
        if isinstance(error, DivergenceError):
            raise TrainJobError(message) from error
        raise

    unsynced.mkdir(parents=True, exist_ok=True)
    model.save(unsynced / "model.pt")  # model.pt first, metrics.json last
    write_history(unsynced / "history.csv", fit)
    metrics = {
        **identity.record(),
        "n_params": model.n_params,
        # how it went
        "train_rmse": fit["train_loss"][-1],
        "test_rmse": fit["test_loss"][-1],
        "reg": fit["reg"][-1],
        "min_test_rmse": min(fit["test_loss"]),
        "test_median_rmse": median_rmse(model, dataset["test_input"], dataset["test_label"]),
        "n_evals": sum(fit["n_evals"]),
        "wall_time_s": fit["wall_time_s"],
        "init_time_s": init_time_s,
        "step_times_ms": step_times,
        "started_at_ms": int(started * 1000),
        "finished_at_ms": int(time.time() * 1000),
        "device": str(model.device),
        "model_sha256": sha256_file(unsynced / "model.pt"),
        "fingerprint": identity.fingerprint(),
        # MLflow (filled in once the run is logged)
        "mlflow_run_id": None,
        "mlflow_parent_run_id": parent["run_id"],
        "mlflow_tracking_uri": settings.uri,
        "mlflow_synced": False,
    }
    write_json(unsynced / "metrics.json", metrics)
    log.info(
        "trained in %.2f s (%d loss evaluations): train RMSE %.3e, test RMSE %.3e",
        metrics["wall_time_s"],
        metrics["n_evals"],
        metrics["train_rmse"],
        metrics["test_rmse"],
    )
    return metrics


def _log_run(
    identity: JobIdentity, settings: TrackingSettings, parent: dict, unsynced: Path, metrics: dict, log
) -> str:
    """One FINISHED child run with the history, final metrics and (small) model; returns its id.

    Logged by the Snakemake run's logger process when one serves this working directory (this
    process then never imports mlflow), else here (:mod:`kanlib.workflow.runlog`)."""
    history = read_history(unsynced / "history.csv")
    artifacts = [(str((unsynced / "history.csv").resolve()), None)]
    if (unsynced / "model.pt").stat().st_size <= settings.log_model_max_bytes:
        artifacts.append((str((unsynced / "model.pt").resolve()), None))
    uri = settings.uri
    try:
        result = runlog.submit(
            "log_child",
            {
                "uri": uri,
                "retry_seconds": settings.retry_seconds,
                "parent": {**parent, "file": str(Path(parent["file"]).resolve())},
                "run_name": identity.run_name,
                "params": identity.mlflow_params(metrics["device"]),
                "tags": identity.mlflow_tags(),
                "history": {name: history[name] for name in ("train_rmse", "test_rmse", "reg", "n_evals")},
                "final": {
                    "final_train_rmse": metrics["train_rmse"],
                    "final_test_rmse": metrics["test_rmse"],
                    "final_reg": metrics["reg"],
                    "min_test_rmse": metrics["min_test_rmse"],
                    "final_test_median_rmse": metrics["test_median_rmse"],
                    "n_params": metrics["n_params"],
                    "total_evals": metrics["n_evals"],
                    "wall_time_s": metrics["wall_time_s"],
                    "init_time_s": metrics["init_time_s"],
                },
                "timestamps_ms": metrics["step_times_ms"],
                "start_ms": metrics["started_at_ms"],
                "end_ms": metrics["finished_at_ms"],
                "artifacts": artifacts,
                # the run's copy of metrics.json, with its own id
                "metrics_artifact": {
                    "path": str((unsynced / "artifact" / "metrics.json").resolve()),
                    "record": metrics,
                },
                # earlier runs of this job (retrained, or killed while logging) point to this one
                "supersede_job": identity.job,
            },
        )
    except tracking.TrackingError as error:
        message = (
            f"{error}. The trained model and its metrics are kept in {unsynced}; run the same snakemake "
            "command again once the tracking store is reachable: this job then logs them without training"
        )
        log.error("%s", message)
        raise TrainJobError(f"train {identity.run_name}: {message}") from error
    run_id, superseded = result["run_id"], result["superseded"]
    if result["supersede_error"]:
        log.warning("could not tag earlier runs of this job as superseded: %s", result["supersede_error"])
    log.info(
        "MLflow child run %s under parent %s in %s%s, logged by %s",
        run_id,
        parent["run_id"],
        uri,
        f" (superseding {', '.join(superseded)})" if superseded else "",
        f"the run logger (pid {result['logged_by']})" if result["logged_by"] else "this job",
    )
    return run_id


def _put_in_place(folder: Path, outputs: TrainOutputs, link: bool) -> None:
    """The three files of ``folder`` as the rule's outputs (moved, or hard-linked), metrics.json last."""
    for attribute, name in outputs.names():
        target = Path(getattr(outputs, attribute))
        if link:
            temporary = target.with_name(f".{name}.restore")
            temporary.unlink(missing_ok=True)
            os.link(folder / name, temporary)
            os.replace(temporary, target)
        else:
            os.replace(folder / name, target)


def run_train_job(
    identity: JobIdentity,
    *,
    parent_file: str,
    outputs: TrainOutputs,
    settings: TrackingSettings,
    log: logging.Logger | None = None,
) -> dict:
    """Train (or reuse a kept result), log the MLflow child run, then move the files into place.

    A level that finished and was logged with the same inputs (``.completed/``) is put back as it
    was, whatever moment a kill hit. Returns the final metrics.json contents. Raises TrainJobError
    for a diverged fit or an unreachable store (the result stays in ``unsynced/`` then), other
    exceptions as they come.
    """
    started = time.time()
    log = log or logging.getLogger("kanlib.job")
    unsynced = outputs.unsynced
    if identity.family == "mlp":
        log.info("job %s (MLP, %d steps)", identity.job, identity.hp["steps"])
    else:
        log.info(
            "job %s (level %d, from %s)",
            identity.job,
            identity.grid_level,
            f"G{identity.prev_grid_size}" if identity.prev_grid_size else "scratch",
        )
    parent = {**read_json(parent_file), "file": str(parent_file)}
    fingerprint = identity.fingerprint()

    # Finished and logged before (the kill came before Snakemake recorded the job as done): put the
    # same files back, train nothing, log nothing (a job never has two FINISHED runs).
    done = outputs.completed
    record = read_json(done / "metrics.json") if (done / "metrics.json").is_file() else None
    if record is not None and record.get("fingerprint") == fingerprint and record.get("mlflow_synced"):
        if all((done / name).is_file() for _, name in outputs.names()):
            _put_in_place(done, outputs, link=True)
            log.info(
                "already complete: restored the outputs from %s (MLflow run %s); nothing trained or logged",
                done,
                record["mlflow_run_id"],
            )
            return record

    # A result from an earlier attempt (kept because MLflow was unreachable) counts only for the same inputs.
    stash = read_json(unsynced / "metrics.json") if (unsynced / "metrics.json").is_file() else None
    if stash is not None and stash.get("fingerprint") != fingerprint:
        log.info("discarding %s: it was trained from other inputs", unsynced)
        shutil.rmtree(unsynced)
        stash = None
    if stash is not None:
        log.info("reusing the result in %s (trained earlier, not yet in MLflow)", unsynced)
        metrics = stash
    else:
        metrics = _train(identity, settings, parent, unsynced, log, started)

    if not metrics["mlflow_synced"]:
        run_id = _log_run(identity, settings, parent, unsynced, metrics, log)
        metrics.update(mlflow_run_id=run_id, mlflow_synced=True)  # only now: the run is FINISHED
        write_json(unsynced / "metrics.json", metrics)

    # hard links first (no copy of the bytes), then the outputs; unsynced/ goes last
    shutil.rmtree(done, ignore_errors=True)
    staging = done.with_name(".completed.new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for _, name in outputs.names():
        os.link(unsynced / name, staging / name)
    os.replace(staging, done)
    _put_in_place(unsynced, outputs, link=False)
    shutil.rmtree(unsynced, ignore_errors=True)
    log.info("done in %.2f s", time.time() - started)
    return metrics
