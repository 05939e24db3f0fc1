"""One train job: train one grid level of one chain and log it as a child of the sweep's MLflow run.

Level 0 starts from a fresh KAN; level i is initialised from level i-1's model by grid extension
on the training inputs. The order of a job, each step safe against a kill at any moment:

1. train, write ``<run>/unsynced/`` (model.pt, history.csv, metrics.json last);
2. log the MLflow child run, left RUNNING, and record its id in unsynced/metrics.json;
3. hard-link the files into ``<run>/.completed/`` (a copy Snakemake does not delete), then move them
   into place, metrics.json (the completion marker) last;
4. end the run FINISHED.

A rerun after a kill picks up where the job stopped: after 1 it logs the kept result, after 2 it
places the files and finishes that same run, after 3 it restores the outputs from .completed/ and
finishes the run; a run left RUNNING by a job killed inside step 2 is ended KILLED when the rerun
logs its own. So a job has exactly one FINISHED run, and a run is FINISHED only once its outputs
are in place. If MLflow stays unreachable the job fails but keeps ``unsynced/``: its rerun logs that
result without training again, provided it was trained from the same inputs (its fingerprint). A
diverged fit fails the job and its MLflow run.

:class:`JobIdentity` says who a job is; it alone produces the MLflow params, the tags and the
identity part of metrics.json. :func:`run_train_jobs` is what ``workflow/scripts/train.py`` calls.
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..families import IDENTITY_COLUMNS, Job, get_family, learned_target
from ..files import read_json, sha256_file, write_json
from . import runlog, tracking
from .results import (
    NUMERICS_COLUMNS,
    RANGE_SPLIT_COLUMNS,
    VALIDATION_COLUMNS,
    load_dataset,
    read_history,
    write_history,
)
from .sweep import job_key

__all__ = ["JobIdentity", "TrainOutputs", "TrackingSettings", "TrainJobError", "run_train_jobs", "stack_reason"]


class TrainJobError(RuntimeError):
    """The job failed in a way its message explains (diverged fit, unreachable store); no traceback needed."""


@dataclass(frozen=True)
class JobIdentity:
    """What a train job trains (``spec``: its family's :class:`~kanlib.families.Job`), from which inputs,
    in which sweep, and with which software."""

    sweep: str
    spec: Job
    formula: str
    model_seed: int
    hp: dict  # the family's training settings (kanlib.families.Family.hyperparameters)
    threads: int
    data_file: str
    init_checkpoint: str | None
    kanlib_version: str
    torch_version: str
    git_commit: str
    host: str
    slurm_job_id: str | None
    columns: dict  # the family's identity columns (kanlib.families.IDENTITY_COLUMNS)
    # what the CPU computed with (config cpu_code_path, kanlib.reproducibility.describe's record)
    numerics: dict = field(default_factory=dict)

    @classmethod
    def create(
        cls, config: dict, spec: Job, target, *, threads: int, data_file: str, init_checkpoint: str | None = None
    ) -> JobIdentity:
        """The identity of ``spec``, a job of the sweep of ``config`` (target: its function)."""
        import torch

        import kanlib
        from kanlib import reproducibility

        family = get_family(spec.family)
        described = reproducibility.describe()
        host = tracking.host_tags()
        return cls(
            sweep=config["sweep"],
            spec=spec,
            formula=target.formula,
            model_seed=int(spec.seed) + int(config["model_seed_offset"]),
            hp=family.hyperparameters(config),
            threads=int(threads),
            data_file=str(data_file),
            init_checkpoint=str(init_checkpoint) if init_checkpoint else None,
            kanlib_version=kanlib.__version__,
            torch_version=torch.__version__,
            git_commit=tracking.git_commit(),
            host=host["host"],
            slurm_job_id=host.get("slurm_job_id"),
            columns=family.record(config, spec),
            numerics={
                "cpu_code_path": config.get("cpu_code_path", reproducibility.DEFAULT),
                **{key: described[key] for key in NUMERICS_COLUMNS[1:]},
            },
        )

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def function(self) -> str:
        return self.spec.function

    @property
    def function_slug(self) -> str:
        from ..functions import function_slug

        return function_slug(self.spec.function)

    @property
    def width(self) -> str:
        return self.spec.width_str

    @property
    def n_train(self) -> int:
        return self.spec.n_train

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def job(self) -> str:
        """The job's key inside the sweep (its run folder below runs/; the MLflow tag kanlib.job)."""
        return job_key(self.spec)

    @property
    def run_name(self) -> str:
        return get_family(self.family).run_name(self.spec)

    def record(self) -> dict:
        """The identity part of metrics.json (the results table's columns come from here)."""
        return {
            "function": self.function,
            "formula": self.formula,
            "family": self.family,
            "width": self.width,
            **{column: self.columns.get(column) for column in IDENTITY_COLUMNS},
            "n_train": self.n_train,
            "seed": self.seed,
            "data_seed": self.seed,
            "model_seed": self.model_seed,
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
            **{key: self.numerics.get(key) for key in NUMERICS_COLUMNS},
            "git_commit": self.git_commit,
            "host": self.host,
            "slurm_job_id": self.slurm_job_id,
            "data_file": self.data_file,
            "init_checkpoint": self.init_checkpoint,
        }

    def mlflow_params(self, device: str | None = None) -> dict[str, str]:
        """The MLflow params: every field of :meth:`record` but the job key, host, SLURM id and the
        CPU numerics (those are tags), the hyperparameters flattened (the requested device as
        ``device_requested``), ``device`` the one the model ran on; None as 'none'."""
        record = self.record()
        for key in ("job", "hp", "host", "slurm_job_id", *NUMERICS_COLUMNS):
            record.pop(key)
        record.update({key: value for key, value in self.hp.items() if key != "device"})
        record["device_requested"] = self.hp["device"]
        if device is not None:
            record["device"] = device
        return {key: "none" if value is None else str(value) for key, value in record.items()}

    def mlflow_tags(self) -> dict[str, str]:
        family = get_family(self.family)
        tags = {
            "kanlib.job": self.job,
            "kanlib.sweep": self.sweep,
            "kanlib.role": "child",
            "kanlib.family": self.family,
            "rule": "train",
            "wildcards": (
                f"function={self.function_slug} model={family.model_segment(self.spec)} n={self.n_train} "
                f"seed={self.seed} level={family.level_segment(self.spec)}"
            ),
            "mlflow.source.name": "workflow/scripts/train.py",
            "mlflow.source.type": "JOB",
            "mlflow.user": getpass.getuser(),
            "host": self.host,
            "kanlib.torch_version": self.torch_version,
            "kanlib.threads": str(self.threads),
            **{f"kanlib.{key}": str(self.numerics.get(key)) for key in NUMERICS_COLUMNS},
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
    """The job's untrained model, initialised from the previous job's checkpoint where its family
    chains them (a KAN's grid extension); returns (model, seconds spent on that initialisation)."""
    family = get_family(identity.family)
    model = family.build(identity.spec, identity.hp, identity.model_seed)
    started = time.perf_counter()
    if identity.init_checkpoint:
        family.initialize(model, identity.init_checkpoint, dataset["train_input"])
    init_time_s = time.perf_counter() - started
    log.info(
        "%s %s on %s (%s), %d parameters; %s in %.3f s",
        family.label,
        family.model_segment(identity.spec),
        model.device,
        identity.hp["dtype"],
        model.n_params,
        f"initialised from {identity.init_checkpoint}" if identity.init_checkpoint else "fresh initialisation",
        init_time_s,
    )
    return model, init_time_s


def _fit_options(identity: JobIdentity) -> dict:
    """The keyword arguments of ``fit`` for the job's hyperparameters: the optimizer's, which every
    family shares, and its family's own (kanlib.families.Family.fit_options)."""
    hp = identity.hp
    return {
        "opt": hp["optimizer"],
        "steps": hp["steps"],
        "lr": hp["lr"],
        "batch": hp["batch"],
        "seed": identity.model_seed,
        "progress": False,
        **get_family(identity.family).fit_options(hp),
    }


def _restarts(identity: JobIdentity) -> int:
    """How many initialisations the job trains: ``restarts`` at a job that starts from scratch (a
    chain's first level, an MLP), else 1 (a later level starts from the previous one's model)."""
    return 1 if identity.init_checkpoint else int(identity.hp.get("restarts", 1))


def _fit_best_of(identity: JobIdentity, dataset: dict, log, callback):
    """The best by final training RMSE of ``restarts`` initialisations (:func:`kanlib.restarts.best_of`),
    trained as one stack where the family's stacks are the faster way; returns (model, fit result)."""
    from ..devices import resolve_device
    from ..restarts import best_of

    family, hp = get_family(identity.family), identity.hp
    as_stack = hp["batch"] == -1 and (family.stacks_on_cpu or resolve_device(hp["device"]).type != "cpu")
    model, fit = best_of(
        lambda seed: family.build(identity.spec, hp, seed),
        identity.model_seed,
        _restarts(identity),
        dataset,
        as_stack=as_stack,
        callback=callback,
        **_fit_options(identity),
    )
    restarts = fit["restarts"]
    log.info(
        "%s %s: best of %d initialisations by training RMSE: candidate %d (seed %d); their final train RMSEs %s",
        family.label,
        family.model_segment(identity.spec),
        len(restarts["seeds"]),
        restarts["chosen"],
        restarts["seeds"][restarts["chosen"]],
        ", ".join(f"{value:.3e}" for value in restarts["train_loss"]),
    )
    return model, fit


def _train(identity: JobIdentity, settings: TrackingSettings, parent: dict, unsynced: Path, log, started) -> dict:
    """Train the level, write model.pt, history.csv and metrics.json to ``unsynced``; returns the metrics."""
    from ..training import DivergenceError

    dataset, _ = load_dataset(identity.data_file)
    records, step_times = [], []

    def remember(step, record):  # the fit's per-step callback: kept for a FAILED run's history
        records.append(record)
        step_times.append(int(time.time() * 1000))

    try:
        if _restarts(identity) > 1:
            model, fit = _fit_best_of(identity, dataset, log, lambda *_: step_times.append(int(time.time() * 1000)))
            init_time_s = 0.0
        else:
            model, init_time_s = _build_model(identity, dataset, log)
            fit = model.fit(dataset, **_fit_options(identity), callback=remember)
    except Exception as error:  # a diverged fit, CUDA missing or out of memory, a bad checkpoint ...
        outcome = _log_failed_run(identity, settings, parent, error, records, step_times, started)
        kind = "diverged" if isinstance(error, DivergenceError) else f"failed ({type(error).__name__})"
        message = f"training {kind} for {identity.run_name}: {error}; {outcome}"
        log.error("%s", message)
        if isinstance(error, DivergenceError):
            raise TrainJobError(message) from error
        raise
    return _write_unsynced(
        identity, settings, parent, unsynced, model, fit, dataset, init_time_s, step_times, started, log
    )


def _write_unsynced(
    identity: JobIdentity,
    settings: TrackingSettings,
    parent: dict,
    unsynced: Path,
    model,
    fit: dict,
    dataset: dict,
    init_time_s: float,
    step_times: list[int],
    started: float,
    log,
    stack_size: int = 1,
) -> dict:
    """model.pt, history.csv and metrics.json of a trained model in ``unsynced``; returns the metrics.

    ``stack_size`` > 1: the model was trained in a stack of that many (``wall_time_s`` is then its
    share of the stack's wall time, ``stack_wall_time_s`` the whole)."""
    from ..training import median_rmse, range_split_errors, validation_errors

    unsynced.mkdir(parents=True, exist_ok=True)
    model.save(unsynced / "model.pt")  # model.pt first, metrics.json last
    provenance = get_family(identity.family).provenance(model)
    restarts = fit.get("restarts") or {}
    label_std = float(dataset["train_label"].std())
    relative = fit["train_loss"][-1] / label_std
    judged = _judged_relative_rmse(identity, label_std, relative)
    write_history(unsynced / "history.csv", fit)
    metrics = {
        **identity.record(),
        "n_params": model.n_params,
        # how it went
        "train_rmse": fit["train_loss"][-1],
        "test_rmse": fit["test_loss"][-1],
        "reg": fit["reg"][-1],
        # did the chain learn its target (kanlib.families.learned_target): judged at its fourth level with G >= 20,
        # before that provisionally at this one
        "relative_train_rmse": relative,
        "judged_relative_train_rmse": judged,
        "learned_target": learned_target(identity.family, judged),
        # the initialisations of a first level (config restarts): seeds, final train RMSEs, the chosen one
        "restarts": len(restarts.get("seeds", [identity.model_seed])),
        "restart_seeds": restarts.get("seeds"),
        "restart_train_rmse": restarts.get("train_loss"),
        "restart_chosen": restarts.get("chosen"),
        "min_test_rmse": min(fit["test_loss"]),
        "test_median_rmse": median_rmse(model, dataset["test_input"], dataset["test_label"]),
        # the test points outside the training points' range at some layer, their share of the test MSE,
        # and the RMSE of the others (kanlib.training.range_split_errors)
        **range_split_errors(model, dataset),
        # the validation split's (drawn like the training set), on which the analysis chooses a model
        **validation_errors(model, dataset),
        "n_evals": sum(fit["n_evals"]),
        "wall_time_s": fit["wall_time_s"] / stack_size,
        "stack_size": stack_size,
        "stack_wall_time_s": fit["wall_time_s"],
        "init_time_s": init_time_s,
        "step_times_ms": step_times,
        "started_at_ms": int(started * 1000),
        "finished_at_ms": int(time.time() * 1000),
        "device": str(model.device),
        # which code evaluated the model, e.g. a KAN's loss on the CPU: "c" (kanlib.cpu_kernels) or "torch (<why>)"
        "provenance": provenance,
        **{f"{identity.family}_{key}": value for key, value in provenance.items()},
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


def _judged_relative_rmse(identity: JobIdentity, label_std: float, relative: float) -> float:
    """The relative train RMSE the rule judges the chain by (its family's ``judged_level`` and
    ``judged_grid``): this level's up to the chain's judged level, after it the previous level's
    record (metrics.json beside its checkpoint; one written before that record existed: its train
    RMSE over the same labels' spread)."""
    family = get_family(identity.family)
    level, previous_grid = identity.columns.get("grid_level"), identity.columns.get("prev_grid_size")
    if not identity.init_checkpoint or level is None or previous_grid is None:
        return relative
    # the previous level (number `level`, counting from 1) was at or past the judged level
    previous_judged = int(level) >= family.judged_level and previous_grid >= (family.judged_grid or 0)
    if not previous_judged:
        return relative
    previous = read_json(Path(identity.init_checkpoint).parent / "metrics.json")
    if previous.get("judged_relative_train_rmse") is not None:
        return float(previous["judged_relative_train_rmse"])
    return float(previous["train_rmse"]) / label_std


def _log_run(
    identity: JobIdentity, settings: TrackingSettings, parent: dict, unsynced: Path, metrics: dict, log
) -> str:
    """One child run with the history, final metrics and (small) model, left RUNNING until the outputs
    are in place (:func:`_finish_run`); returns its id.

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
                # how many models trained together with this one (batch_seeds); 1: alone
                "tags": {
                    **identity.mlflow_tags(),
                    "kanlib.stack_size": str(metrics.get("stack_size", 1)),
                    "kanlib.learned_target": str(metrics["learned_target"]),
                    **(
                        {
                            "kanlib.restart_seeds": " ".join(map(str, metrics["restart_seeds"])),
                            "kanlib.restart_chosen": str(metrics["restart_chosen"]),
                        }
                        if metrics.get("restart_seeds")
                        else {}
                    ),
                    **{f"kanlib.{key}": str(value) for key, value in metrics.get("provenance", {}).items() if value},
                },
                "history": {
                    **{name: history[name] for name in ("train_rmse", "test_rmse", "reg", "n_evals")},
                    # one point per initialisation (step = its index)
                    **({"restart_train_rmse": metrics["restart_train_rmse"]} if metrics.get("restart_seeds") else {}),
                },
                "final": {
                    "final_train_rmse": metrics["train_rmse"],
                    "final_test_rmse": metrics["test_rmse"],
                    "final_reg": metrics["reg"],
                    "relative_train_rmse": metrics["relative_train_rmse"],
                    "judged_relative_train_rmse": metrics["judged_relative_train_rmse"],
                    "min_test_rmse": metrics["min_test_rmse"],
                    "final_test_median_rmse": metrics["test_median_rmse"],
                    **{name: metrics[name] for name in RANGE_SPLIT_COLUMNS + VALIDATION_COLUMNS},
                    "n_params": metrics["n_params"],
                    "total_evals": metrics["n_evals"],
                    "wall_time_s": metrics["wall_time_s"],
                    "init_time_s": metrics["init_time_s"],
                },
                "timestamps_ms": metrics["step_times_ms"],
                "start_ms": metrics["started_at_ms"],
                "end_ms": metrics["finished_at_ms"],
                "status": "RUNNING",
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


def _finish_run(identity: JobIdentity, settings: TrackingSettings, metrics: dict, log) -> None:
    """End the job's MLflow run FINISHED: its outputs are in place (a rerun adopting it may call this again)."""
    try:
        result = runlog.submit(
            "finish_child",
            {
                "uri": settings.uri,
                "retry_seconds": settings.retry_seconds,
                "run_id": metrics["mlflow_run_id"],
                "end_ms": int(time.time() * 1000),
            },
        )
    except tracking.TrackingError as error:
        message = (
            f"{error}. The outputs are in place; run the same snakemake command again once the tracking "
            f"store is reachable: this job then ends its MLflow run {metrics['mlflow_run_id']} FINISHED"
        )
        log.error("%s", message)
        raise TrainJobError(f"train {identity.run_name}: {message}") from error
    if result["status_before"] != "FINISHED":
        log.info("MLflow run %s FINISHED (was %s)", metrics["mlflow_run_id"], result["status_before"])


def _moment(name: str, folder: Path) -> None:
    """A point of the job's order where a test may stop it: with KANLIB_TEST_PAUSE_AT=<name> the job
    writes ``<run>/.paused-<name>`` and waits there to be killed (tests/workflow/test_workflow.py)."""
    if os.environ.get("KANLIB_TEST_PAUSE_AT") == name:
        (folder / f".paused-{name}").touch()
        while True:
            time.sleep(60)


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


def _announce(identity: JobIdentity, log) -> None:
    previous = f"from {identity.init_checkpoint}" if identity.init_checkpoint else "from scratch"
    label = get_family(identity.family).label
    log.info("job %s (%s, %d steps, %s)", identity.job, label, identity.hp["steps"], previous)


def _restore_completed(identity: JobIdentity, settings: TrackingSettings, outputs: TrainOutputs, log) -> dict | None:
    """The metrics of a level that was trained and logged before with the same inputs (the kill came
    before Snakemake recorded the job as done), its files put back and its run FINISHED; None if there
    is none. Nothing is trained or logged again: a job never has two FINISHED runs."""
    done = outputs.completed
    record = read_json(done / "metrics.json") if (done / "metrics.json").is_file() else None
    if record is None or record.get("fingerprint") != identity.fingerprint() or not record.get("mlflow_synced"):
        return None
    if not all((done / name).is_file() for _, name in outputs.names()):
        return None
    _put_in_place(done, outputs, link=True)
    shutil.rmtree(outputs.unsynced, ignore_errors=True)  # (a kill right after .completed/ left the same result there)
    log.info(
        "already complete: restored the outputs from %s (MLflow run %s); nothing trained or logged",
        done,
        record["mlflow_run_id"],
    )
    _finish_run(identity, settings, record, log)
    return record


def _kept_result(identity: JobIdentity, outputs: TrainOutputs, log) -> dict | None:
    """The metrics of a result from an earlier attempt (kept in unsynced/ because MLflow was
    unreachable), if it was trained from the same inputs; else None (a mismatch is discarded)."""
    unsynced = outputs.unsynced
    stash = read_json(unsynced / "metrics.json") if (unsynced / "metrics.json").is_file() else None
    if stash is not None and stash.get("fingerprint") != identity.fingerprint():
        log.info("discarding %s: it was trained from other inputs", unsynced)
        shutil.rmtree(unsynced)
        stash = None
    if stash is not None:
        log.info("reusing the result in %s (trained earlier, not yet in MLflow)", unsynced)
    return stash


def _sync_and_place(
    identity: JobIdentity, settings: TrackingSettings, parent: dict, outputs: TrainOutputs, metrics: dict, log
) -> dict:
    """Log the MLflow child run (unless done), then hard-link the files into .completed/ and move
    them into place, metrics.json last; unsynced/ goes last; then end the run FINISHED. Returns the
    final metrics."""
    unsynced, done = outputs.unsynced, outputs.completed
    _moment("trained", unsynced.parent)
    if not metrics["mlflow_synced"]:
        run_id = _log_run(identity, settings, parent, unsynced, metrics, log)
        _moment("logging", unsynced.parent)  # (the run exists; its id is not yet recorded)
        metrics.update(mlflow_run_id=run_id, mlflow_synced=True)  # logged (RUNNING until the files are in place)
        write_json(unsynced / "metrics.json", metrics)
    _moment("logged", unsynced.parent)

    # hard links first (no copy of the bytes), then the outputs; unsynced/ goes last
    shutil.rmtree(done, ignore_errors=True)
    staging = done.with_name(".completed.new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for _, name in outputs.names():
        os.link(unsynced / name, staging / name)
    os.replace(staging, done)
    _moment("linked", unsynced.parent)
    _put_in_place(unsynced, outputs, link=False)
    shutil.rmtree(unsynced, ignore_errors=True)
    _moment("placed", unsynced.parent)
    _finish_run(identity, settings, metrics, log)
    return metrics


# ---- a job: one model, or the seeds of one model in one job (batch_seeds) ---------------------------------


def stack_reason(identities: list[JobIdentity]) -> str | None:
    """Why these jobs do not train as one stack (which gives each model what it gets alone), or None.

    A stack draws one minibatch for all models, so ``batch`` must take the whole training set (alone,
    each model draws its own minibatches from its own seed); every model must have one architecture;
    a family whose stacks are slower on the CPU than one fit after another trains one by one there."""
    if len(identities) < 2:
        return "one model"
    restarts = max(_restarts(identity) for identity in identities)
    if restarts > 1:
        return f"restarts: each seed's {restarts} initialisations train as a stack of their own"
    hp = identities[0].hp
    if hp["batch"] != -1:
        return f"batch={hp['batch']} (each seed would draw its own minibatches; a stack needs batch: -1)"
    shapes = {(i.family, i.width, tuple(sorted(i.columns.items(), key=str)), i.n_train) for i in identities}
    if len(shapes) > 1:
        return f"the models differ in shape: {sorted(shapes, key=str)}"
    family = get_family(identities[0].family)
    if not family.stacks_on_cpu:
        from ..devices import resolve_device

        if resolve_device(hp["device"]).type == "cpu":
            return f"{family.label}s on the CPU (a stack of them is slower there than one fit after another)"
    return None


def _train_stack(
    identities: list[JobIdentity],
    outputs: list[TrainOutputs],
    settings: TrackingSettings,
    parent: dict,
    log,
    started: float,
    max_bytes: int | None,
) -> list[dict]:
    """Train the models of ``identities`` as one stack and write each one's unsynced/ files.

    Raises the stack's error (divergence, too little memory, ...) with nothing written: the
    caller then trains the models one by one, which gives each model its own outcome."""
    datasets, models, init_times = [], [], []
    for identity in identities:
        dataset, _ = load_dataset(identity.data_file)
        model, init_time_s = _build_model(identity, dataset, log)
        datasets.append(dataset)
        models.append(model)
        init_times.append(init_time_s)
    stack = get_family(identities[0].family).load_class(stacked=True).stack(models)
    step_times: list[int] = []

    def remember(step, records):
        step_times.append(int(time.time() * 1000))

    options = {**_fit_options(identities[0]), "seed": 0}  # the seed only draws minibatches (none here)
    fits = stack.fit(datasets, **options, callback=remember, max_bytes=max_bytes)
    S = len(identities)
    log.info("trained %d models as one stack in %.2f s", S, fits[0]["wall_time_s"])
    return [
        _write_unsynced(
            identity,
            settings,
            parent,
            output.unsynced,
            model,
            fit,
            dataset,
            init_time_s,
            step_times,
            started,
            log,
            stack_size=S,
        )
        for identity, output, model, fit, dataset, init_time_s in zip(
            identities, outputs, stack.unstack(), fits, datasets, init_times
        )
    ]


def run_train_jobs(
    identities: list[JobIdentity],
    *,
    parent_file: str,
    outputs: list[TrainOutputs],
    settings: TrackingSettings,
    log: logging.Logger | None = None,
    max_bytes: int | None = None,
) -> list[dict]:
    """One train job: one model, or the models of one shape (the seeds of one grid level, of one MLP)
    in one process. Per model: a level that finished and was logged with the same inputs
    (``.completed/``) is put back as it was, a result kept in ``unsynced/`` is reused; the models still
    to train are trained as one stack (each model follows the trajectory it would alone), then each
    gets its own MLflow child run and run folder (the order in the module's docstring). Returns each
    model's final metrics.json contents.

    When the models cannot form a stack (:func:`stack_reason`), or the stack fails (a model
    diverged, the stack would not fit in memory), the models are trained one by one: each then
    succeeds or fails on its own. Every model that can finish is synced and put in place before
    a failure is raised (TrainJobError naming every failed model).
    """
    started = time.time()
    log = log or logging.getLogger("kanlib.job")
    if len(identities) != len(outputs) or not identities:
        raise ValueError(f"one outputs per identity: {len(identities)} identities, {len(outputs)} outputs")
    parent = {**read_json(parent_file), "file": str(parent_file)}
    results: list[dict | None] = [None] * len(identities)
    restored, to_train = set(), []
    for index, (identity, output) in enumerate(zip(identities, outputs)):
        _announce(identity, log)
        results[index] = _restore_completed(identity, settings, output, log)
        if results[index] is not None:
            restored.add(index)
            continue
        results[index] = _kept_result(identity, output, log)
        if results[index] is None:
            to_train.append(index)

    reason = stack_reason([identities[i] for i in to_train]) if to_train else None
    if to_train and reason is None:
        try:
            stacked = _train_stack(
                [identities[i] for i in to_train],
                [outputs[i] for i in to_train],
                settings,
                parent,
                log,
                started,
                max_bytes,
            )
            for index, metrics in zip(to_train, stacked):
                results[index] = metrics
        except Exception as error:  # divergence, memory, CUDA ...: alone, each model says which one failed
            log.warning(
                "the stack of %d models failed (%s: %s); training them one by one",
                len(to_train),
                type(error).__name__,
                error,
            )
    elif len(to_train) > 1:
        log.info("training %d models one by one: %s", len(to_train), reason)

    errors = []
    for index in to_train:
        if results[index] is not None:
            continue
        try:
            results[index] = _train(identities[index], settings, parent, outputs[index].unsynced, log, started)
        except TrainJobError as error:
            errors.append(str(error))
        except Exception as error:  # its FAILED run is logged; the other models still get their chance
            errors.append(f"training failed ({type(error).__name__}) for {identities[index].run_name}: {error}")
    for index, identity in enumerate(identities):
        if index in restored or results[index] is None:
            continue
        try:
            results[index] = _sync_and_place(identity, settings, parent, outputs[index], results[index], log)
        except TrainJobError as error:
            errors.append(str(error))
    log.info("done in %.2f s", time.time() - started)
    if errors:
        raise TrainJobError("\n".join(errors))
    return results
