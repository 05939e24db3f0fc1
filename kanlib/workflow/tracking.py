"""MLflow helpers for the workflow: the tracking URI, parent and child runs, batched logging, retries.

Lifecycle of a sweep in MLflow (one experiment, ``mlflow.experiment`` in the config):

* rule ``mlflow_parent`` creates the store (once, before any other job touches it), the
  experiment and ONE parent run per sweep (status RUNNING), and records its id in
  ``results/<sweep>/mlflow_parent.json``;
* every train job logs one child run under it (tag ``mlflow.parentRunId``), after training,
  with the whole per-step history in batches (``MlflowClient.log_batch``, at most 1000 values a
  call): FINISHED on success, FAILED (with the history up to the failure) when the fit diverges;
  a child also re-opens a parent that an earlier, failed or finished, invocation closed;
* rule ``aggregate`` logs the tables and the plot to the parent and sets it FINISHED; when a
  Snakemake run fails, its ``onerror`` handler sets the parent FAILED.

Tracking URI: the environment variable ``MLFLOW_TRACKING_URI`` when set, else the config's
``mlflow.tracking_uri``, else ``sqlite:///mlflow.db`` (MLflow's default). Relative SQLite paths
are made absolute against the working directory, so every job of a sweep uses the same file.

Unreachable store: every call is retried for ``retry_seconds`` (MLflow's own HTTP retries are
turned down so that this budget holds), then :class:`TrackingError` names the URI.

mlflow is imported only inside the functions that talk to it (``import mlflow`` takes ~2 s).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path

__all__ = [
    "DEFAULT_TRACKING_URI",
    "TrackingError",
    "configure_environment",
    "resolve_tracking_uri",
    "connect",
    "call_with_retry",
    "get_or_create_experiment",
    "create_parent_run",
    "ensure_parent_running",
    "log_child_run",
    "finish_parent",
    "set_parent_status",
    "host_tags",
    "git_commit",
    "flatten_params",
    "metric_batches",
    "MAX_METRICS_PER_BATCH",
]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
MAX_METRICS_PER_BATCH = 1000  # MLflow's limits for one log_batch call
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100

# MlflowException error codes that no retry can fix.
_PERMANENT_ERRORS = {
    "RESOURCE_DOES_NOT_EXIST",
    "INVALID_PARAMETER_VALUE",
    "RESOURCE_ALREADY_EXISTS",
    "INVALID_STATE",
    "BAD_REQUEST",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "NOT_FOUND",
}


class TrackingError(RuntimeError):
    """The tracking store could not be reached (``permanent`` False) or refused a call (``permanent``
    True, e.g. a run that does not exist); the message names its URI."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def configure_environment() -> None:
    """Telemetry off and MLflow's HTTP retries short (this module retries itself); user settings win."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


configure_environment()


def resolve_tracking_uri(configured: str | None = None, environ=None, cwd=None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``configured``, else MLflow's default.

    Relative SQLite paths are made absolute against ``cwd`` (default: the working directory).
    """
    environ = os.environ if environ is None else environ
    uri = environ.get("MLFLOW_TRACKING_URI") or configured or DEFAULT_TRACKING_URI
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/") and uri[len(prefix) :] != ":memory:":
        uri = prefix + str(Path(cwd or os.getcwd()).resolve() / uri[len(prefix) :])
    return uri


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def _is_permanent(error: Exception) -> bool:
    return getattr(error, "error_code", None) in _PERMANENT_ERRORS


def call_with_retry(function, *args, uri: str, retry_seconds: float, what: str, **kwargs):
    """``function(*args, **kwargs)``, retried with growing pauses for ``retry_seconds`` on
    transient errors; then TrackingError naming ``uri``."""
    deadline = time.monotonic() + retry_seconds
    pause = 0.25
    while True:
        try:
            return function(*args, **kwargs)
        except Exception as error:  # connection refused, timeouts, "database is locked", HTTP 5xx ...
            if _is_permanent(error):
                raise TrackingError(
                    f"MLflow at {uri} refused to {what}: {_first_line(error)}", permanent=True
                ) from error
            if time.monotonic() + pause > deadline:
                raise TrackingError(
                    f"MLflow tracking store {uri} is unreachable (could not {what} within "
                    f"{retry_seconds:g} s: {type(error).__name__}: {_first_line(error)})"
                ) from error
            time.sleep(pause)
            pause = min(2 * pause, 2.0)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else ""


def connect(uri: str, retry_seconds: float = 5.0, create: bool = False):
    """An MlflowClient for ``uri`` after one successful round trip.

    create=False refuses to start a new SQLite file: only rule mlflow_parent creates the store.
    For a SQLite store, the first contact (which creates the schema or migrates an old one) runs
    under an exclusive ``flock`` on ``<db>.lock`` beside the file, so that two sweeps started at the
    same moment never migrate one store at once (that leaves it half-migrated for good); a store
    that an interrupted migration left half-migrated raises TrackingError naming the recovery.
    """
    configure_environment()
    path = _sqlite_path(uri)
    if path is not None:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.is_file():
            raise TrackingError(
                f"MLflow store {uri} does not exist; it is created by rule mlflow_parent before any "
                "train job (delete results/<sweep>/mlflow_parent.json to have it run again)"
            )
    from mlflow.tracking import MlflowClient

    def contact():
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
        return client

    with _store_lock(path, exclusive=create):
        fresh = create and path is not None and not path.is_file()
        templated = fresh and _store_from_template(path)
        try:
            try:
                client = call_with_retry(contact, uri=uri, retry_seconds=retry_seconds, what="connect")
            except TrackingError:
                if not templated:
                    raise
                # a template that does not open (e.g. damaged): forget it, create the store anew
                path.unlink(missing_ok=True)
                template = store_template()
                if template is not None:
                    template.unlink(missing_ok=True)
                templated = False
                client = call_with_retry(contact, uri=uri, retry_seconds=retry_seconds, what="connect")
            if fresh and not templated:
                _save_store_template(path)
            return client
        except TrackingError as error:
            if path is not None and _half_migrated(error):
                raise TrackingError(
                    f"the MLflow store {uri} is half-migrated (an earlier schema migration was interrupted: "
                    f"{_first_line(error.__cause__)}); recover it with `python -m kanlib.workflow.tracking repair "
                    f"{uri}` (drops the migration's temporary tables and finishes the migration), or move "
                    f"{path} away to start a new store",
                    permanent=True,
                ) from error
            raise


STORE_TEMPLATE_SWITCH = "KANLIB_STORE_TEMPLATE"  # "0": every new SQLite store is created and migrated anew


def store_template() -> Path | None:
    """Where a new, empty SQLite store of this MLflow version is kept for the next new store, or None
    (``KANLIB_STORE_TEMPLATE=0``). Creating a store runs every schema migration MLflow has (~5 s on
    a 2-core machine, before any train job of a new sweep can start); copying one takes milliseconds."""
    if os.environ.get(STORE_TEMPLATE_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    import mlflow

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "kanlib" / f"mlflow-{mlflow.__version__}-empty-store.db"


def _store_from_template(path: Path) -> bool:
    """Copy the template (if there is one) to ``path`` (which does not exist); True if copied."""
    import shutil

    from ..files import atomic_path

    template = store_template()
    if template is None or not template.is_file():
        return False
    try:
        with open(template, "rb") as stream:
            if stream.read(16) != b"SQLite format 3\x00":
                template.unlink()
                return False
        with atomic_path(path) as temporary:
            shutil.copyfile(template, temporary)
    except OSError:
        return False
    return True


def _save_store_template(path: Path) -> None:
    """Best effort: keep a copy of the store just created at ``path`` (still empty: MLflow's schema and
    its own rows) as the template, without the experiment 'Default' (id 0), whose artifact location
    names this store's folder: MLflow creates that experiment itself when it opens a store without it."""
    import sqlite3

    from ..files import atomic_path

    template = store_template()
    if template is None or template.is_file():
        return
    try:
        with atomic_path(template) as temporary:
            with contextlib.closing(sqlite3.connect(path)) as source:
                with contextlib.closing(sqlite3.connect(temporary)) as copy:
                    source.backup(copy)
                    if copy.execute("SELECT COUNT(*) FROM runs").fetchone()[0]:
                        raise ValueError("not an empty store")
                    copy.execute("DELETE FROM experiment_tags WHERE experiment_id = 0")
                    copy.execute("DELETE FROM experiments WHERE experiment_id = 0")
                    copy.commit()
    except (OSError, ValueError, sqlite3.Error):
        pass


@contextlib.contextmanager
def _store_lock(path: Path | None, exclusive: bool):
    """flock on ``<db>.lock`` (exclusive to create or migrate, shared to contact); nothing for servers."""
    if path is None:
        yield
        return
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _half_migrated(error: Exception) -> bool:
    text = f"{error} {error.__cause__}"
    return "_alembic_tmp_" in text or "Online migration expected to match" in text


def leftover_migration_tables(path: Path) -> list[str]:
    """The ``_alembic_tmp_*`` tables an interrupted SQLite migration left in the store at ``path``."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as connection:
        rows = connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '!_alembic!_tmp!_%' ESCAPE '!'"
        ).fetchall()
    return sorted(name for (name,) in rows)


def repair_store(uri: str) -> list[str]:
    """Drop an interrupted migration's temporary tables from the SQLite store ``uri`` and finish the
    migration (MLflow's own upgrade, under the store lock). Returns the dropped tables."""
    import sqlite3

    path = _sqlite_path(resolve_tracking_uri(uri, environ={}))  # the store named, not MLFLOW_TRACKING_URI
    if path is None or not path.is_file():
        raise TrackingError(f"repair works on an existing SQLite store (sqlite:///<file>); got {uri!r}")
    with _store_lock(path, exclusive=True):
        dropped = leftover_migration_tables(path)
        with contextlib.closing(sqlite3.connect(path)) as connection:
            for table in dropped:
                connection.execute(f'DROP TABLE "{table}"')
            connection.commit()
        import sqlalchemy
        from mlflow.store.db.utils import _upgrade_db  # MLflow's own migration (what `mlflow db upgrade` runs)

        engine = sqlalchemy.create_engine(f"sqlite:///{path}")
        try:
            _upgrade_db(engine)
        finally:
            engine.dispose()
    return dropped


#: The experiment tag that marks it as model training (runs, metrics and charts), not GenAI (traces,
#: prompts). MLflow 3.0-3.x UIs that honour it open the experiment on its runs; MLflow 3.17's UI ignores
#: it and picks the view from the address (``?workflowType=machine_learning``) or from the browser's
#: last choice, GenAI when there is none: open the experiment through ``ui_link``.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")

#: The query that makes the MLflow 3.17 UI show an experiment as model training (its switch
#: "GenAI | Model training" at the top left, which the browser then remembers, does the same).
UI_MODEL_TRAINING = "workflowType=machine_learning"


def ui_link(server: str, experiment_id: str, run_id: str | None = None) -> str:
    """The address of an experiment (or one of its runs) in the MLflow UI at ``server``
    (e.g. ``http://127.0.0.1:5000``), in the model-training view: runs, metrics and charts."""
    path = f"#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{server.rstrip('/')}/{path}?{UI_MODEL_TRAINING}"


def get_or_create_experiment(client, name: str, uri: str, retry_seconds: float = 5.0) -> str:
    """The id of experiment ``name``, created if needed, tagged as a model-training experiment."""
    experiment = call_with_retry(
        client.get_experiment_by_name, name, uri=uri, retry_seconds=retry_seconds, what=f"look up experiment {name!r}"
    )
    if experiment is not None and experiment.lifecycle_stage == "deleted":
        raise TrackingError(
            f"MLflow experiment {name!r} in {uri} is deleted; restore it "
            f"(mlflow experiments restore) or choose another mlflow.experiment"
        )
    if experiment is None:
        try:
            experiment_id = call_with_retry(
                client.create_experiment,
                name,
                tags=dict([EXPERIMENT_KIND]),
                uri=uri,
                retry_seconds=retry_seconds,
                what=f"create experiment {name!r}",
            )
        except TrackingError:  # created meanwhile by someone else
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment is not None:
        experiment_id = experiment.experiment_id
        if EXPERIMENT_KIND[0] not in experiment.tags:  # an experiment made before kanlib tagged it
            call_with_retry(
                client.set_experiment_tag,
                experiment_id,
                *EXPERIMENT_KIND,
                uri=uri,
                retry_seconds=retry_seconds,
                what="tag the experiment",
            )
    return experiment_id


# ---- provenance -------------------------------------------------------------------------------------------


def host_tags() -> dict[str, str]:
    """host, and slurm_job_id when running under SLURM."""
    tags = {"host": socket.gethostname()}
    if os.environ.get("SLURM_JOB_ID"):
        tags["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    return tags


def git_commit(path=None) -> str:
    """The git commit of the kanlib source tree (or of ``path``), or 'unknown'."""
    folder = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "unknown"


def flatten_params(values: dict, prefix: str = "") -> dict[str, str]:
    """Nested dicts as 'a.b' keys, values as strings (MLflow params)."""
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_params(value, f"{name}."))
        else:
            flat[name] = "none" if value is None else str(value)
    return flat


# ---- logging ----------------------------------------------------------------------------------------------


def metric_batches(
    history: dict[str, list[float]], final: dict[str, float], timestamps_ms: list[int], end_ms: int
) -> list[list]:
    """mlflow Metric lists of at most MAX_METRICS_PER_BATCH: every step of every history series, then finals."""
    from mlflow.entities import Metric

    metrics = [
        Metric(name, float(value), int(timestamps_ms[min(step, len(timestamps_ms) - 1)]), step)
        for name, values in history.items()
        for step, value in enumerate(values)
    ]
    metrics += [Metric(name, float(value), end_ms, 0) for name, value in final.items()]
    return [metrics[i : i + MAX_METRICS_PER_BATCH] for i in range(0, len(metrics), MAX_METRICS_PER_BATCH)]


def _log_everything(client, run_id, params, tags, batches, artifacts, uri, retry_seconds):
    from mlflow.entities import Param, RunTag

    param_list = [Param(key, value) for key, value in params.items()]
    tag_list = [RunTag(key, value) for key, value in tags.items()]
    for i in range(0, len(param_list), MAX_PARAMS_PER_BATCH):
        call_with_retry(
            client.log_batch,
            run_id,
            params=param_list[i : i + MAX_PARAMS_PER_BATCH],
            uri=uri,
            retry_seconds=retry_seconds,
            what="log params",
        )
    for i in range(0, len(tag_list), MAX_TAGS_PER_BATCH):
        call_with_retry(
            client.log_batch,
            run_id,
            tags=tag_list[i : i + MAX_TAGS_PER_BATCH],
            uri=uri,
            retry_seconds=retry_seconds,
            what="log tags",
        )
    for batch in batches:
        call_with_retry(
            client.log_batch, run_id, metrics=batch, uri=uri, retry_seconds=retry_seconds, what="log metrics"
        )
    for path, folder in artifacts:
        call_with_retry(
            client.log_artifact,
            run_id,
            str(path),
            folder,
            uri=uri,
            retry_seconds=retry_seconds,
            what=f"log artifact {Path(path).name}",
        )


def create_parent_run(
    uri: str,
    experiment: str,
    sweep: str,
    params: dict[str, str],
    tags: dict[str, str],
    artifacts=(),
    retry_seconds: float = 5.0,
) -> dict:
    """Create the store if needed, the experiment if needed, and a RUNNING parent run for ``sweep``.

    Returns what mlflow_parent.json records: run_id, experiment_id, experiment, tracking_uri, sweep.
    """
    client = connect(uri, retry_seconds, create=True)
    experiment_id = get_or_create_experiment(client, experiment, uri, retry_seconds)
    run_tags = {"mlflow.runName": sweep, "kanlib.sweep": sweep, "kanlib.role": "parent", **tags}
    run = call_with_retry(
        client.create_run,
        experiment_id,
        tags=run_tags,
        run_name=sweep,
        uri=uri,
        retry_seconds=retry_seconds,
        what="create the parent run",
    )
    run_id = run.info.run_id
    try:
        _log_everything(client, run_id, params, {}, [], [(path, None) for path in artifacts], uri, retry_seconds)
    except BaseException:
        _terminate_quietly(client, run_id, "FAILED")
        raise
    return {
        "run_id": run_id,
        "experiment_id": experiment_id,
        "experiment": experiment,
        "tracking_uri": uri,
        "sweep": sweep,
        "artifact_uri": run.info.artifact_uri,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def ensure_parent_running(
    client,
    parent_run_id: str,
    uri: str,
    retry_seconds: float = 5.0,
    parent_file: str = "results/<sweep>/mlflow_parent.json",
):
    """Check that the parent run exists in this store; re-open it (RUNNING) when a previous invocation
    closed it. Returns the parent Run."""
    try:
        run = call_with_retry(
            client.get_run, parent_run_id, uri=uri, retry_seconds=retry_seconds, what="find the parent run"
        )
    except TrackingError as error:
        if error.permanent:
            raise TrackingError(
                f"the sweep's parent run {parent_run_id} (from {parent_file}) is not in the MLflow "
                f"store {uri}; if the store was replaced or MLFLOW_TRACKING_URI changed, delete "
                f"{parent_file} so that rule mlflow_parent creates a new parent there",
                permanent=True,
            ) from error
        raise
    if run.info.lifecycle_stage == "deleted":
        raise TrackingError(
            f"the sweep's parent run {parent_run_id} in {uri} is deleted; restore it or delete "
            f"{parent_file} to create a new one"
        )
    if run.info.status != "RUNNING":
        call_with_retry(
            client.update_run,
            parent_run_id,
            status="RUNNING",
            uri=uri,
            retry_seconds=retry_seconds,
            what="re-open the parent run",
        )
    return run


def _terminate_quietly(client, run_id, status):
    try:
        client.set_terminated(run_id, status)
    except Exception:
        pass


def log_child_run(
    client,
    *,
    uri: str,
    experiment_id: str,
    parent_run_id: str,
    run_name: str,
    params: dict[str, str],
    tags: dict[str, str],
    history: dict[str, list[float]],
    final: dict[str, float],
    timestamps_ms: list[int],
    start_ms: int,
    end_ms: int,
    artifacts=(),
    status: str = "FINISHED",
    retry_seconds: float = 5.0,
    before_terminate=None,
    still_wanted=None,
) -> str:
    """One child run under ``parent_run_id`` with params, tags, per-step history (batched),
    final metrics and artifacts, ended with ``status`` (None: left RUNNING, for :func:`finish_child`
    once the job's outputs are in place). Returns its run id.

    artifacts: (path, artifact folder or None) pairs. before_terminate(run_id) -> more such pairs,
    called after the metrics are logged (e.g. to write a file that records the run id).
    still_wanted() -> bool, asked just before the run is ended: False (the job that logs it is gone,
    so its files will not be put in place) ends the run KILLED and raises TrackingError.
    A failure after the run exists ends it FAILED and raises TrackingError.
    """
    run_tags = {"mlflow.parentRunId": parent_run_id, "mlflow.runName": run_name, **tags}
    run = call_with_retry(
        client.create_run,
        experiment_id,
        start_time=start_ms,
        tags=run_tags,
        run_name=run_name,
        uri=uri,
        retry_seconds=retry_seconds,
        what="create a run",
    )
    run_id = run.info.run_id
    try:
        batches = metric_batches(history, final, timestamps_ms, end_ms)
        _log_everything(client, run_id, params, {}, batches, list(artifacts), uri, retry_seconds)
        if before_terminate is not None:
            _log_everything(client, run_id, {}, {}, [], list(before_terminate(run_id)), uri, retry_seconds)
        if status is None:
            return run_id
        wanted = still_wanted is None or still_wanted()
        call_with_retry(
            client.set_terminated,
            run_id,
            status if wanted else "KILLED",
            end_time=end_ms,
            uri=uri,
            retry_seconds=retry_seconds,
            what="end the run",
        )
    except BaseException:
        _terminate_quietly(client, run_id, "FAILED")
        raise
    if not wanted:
        raise TrackingError(f"the job that logged run {run_id} to {uri} is gone; the run is ended KILLED")
    return run_id


def finish_child(client, run_id: str, *, uri: str, end_ms: int, retry_seconds: float = 5.0) -> str:
    """End a child run FINISHED (its job's outputs are in place); returns the status it had. A run already
    FINISHED is left as it is, so a job that adopts its earlier run may call this again."""
    run = call_with_retry(client.get_run, run_id, uri=uri, retry_seconds=retry_seconds, what="read a run")
    status = run.info.status
    if status != "FINISHED":
        call_with_retry(
            client.set_terminated,
            run_id,
            "FINISHED",
            end_time=end_ms,
            uri=uri,
            retry_seconds=retry_seconds,
            what="end the run",
        )
    return status


def supersede_runs(
    client, *, experiment_id: str, parent_run_id: str, job: str, keep_run_id: str, uri: str, retry_seconds: float = 5.0
) -> list[str]:
    """Tag earlier runs of the same job under the same parent as superseded by ``keep_run_id``.

    A RUNNING one (its job was killed while logging) is ended KILLED; a FINISHED one (the job was
    retrained, e.g. after a change of its inputs) keeps its status. Returns their ids.
    """
    query = f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.`kanlib.job` = '{job}'"
    runs = call_with_retry(
        client.search_runs,
        [experiment_id],
        query,
        max_results=1000,
        uri=uri,
        retry_seconds=retry_seconds,
        what="search earlier runs of this job",
    )
    superseded = []
    for run in runs:
        if run.info.run_id == keep_run_id or run.info.status == "FAILED":
            continue
        call_with_retry(
            client.set_tag,
            run.info.run_id,
            "kanlib.superseded_by",
            keep_run_id,
            uri=uri,
            retry_seconds=retry_seconds,
            what="tag a superseded run",
        )
        if run.info.status == "RUNNING":
            call_with_retry(
                client.set_terminated,
                run.info.run_id,
                "KILLED",
                uri=uri,
                retry_seconds=retry_seconds,
                what="end a stale run",
            )
        superseded.append(run.info.run_id)
    return superseded


def finish_parent(
    client,
    parent_run_id: str,
    *,
    uri: str,
    artifacts=(),
    metrics: dict[str, float] | None = None,
    status: str = "FINISHED",
    retry_seconds: float = 5.0,
) -> None:
    """Log ``artifacts`` ((path, folder) pairs) and ``metrics`` to the parent and end it with ``status``."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batches = [[Metric(key, float(value), now, 0) for key, value in (metrics or {}).items()]]
    _log_everything(client, parent_run_id, {}, {}, [b for b in batches if b], list(artifacts), uri, retry_seconds)
    call_with_retry(
        client.set_terminated, parent_run_id, status, uri=uri, retry_seconds=retry_seconds, what="end the parent run"
    )


def failed_marker(parent_file: Path) -> Path:
    """Where the workflow records that its onerror handler set the parent FAILED."""
    return parent_file.with_name(parent_file.stem + ".failed")


def _open_parent(parent_file: Path, uri: str, retry_seconds: float):
    """(parent run id from ``parent_file``, a client of ``uri``): what the best-effort parent helpers share."""
    import json

    return json.loads(parent_file.read_text())["run_id"], connect(uri, retry_seconds)


def set_parent_status(
    parent_file, status: str, uri: str, retry_seconds: float = 2.0, completed_marker=None
) -> str | None:
    """Best effort: set the parent run recorded in ``parent_file`` (in the store ``uri``) to ``status``
    (Snakemake's onerror handler).

    A sweep whose report was completed and logged (``completed_marker`` exists) and whose parent is
    FINISHED is left FINISHED: a later invocation that fails before any of its train jobs re-opened
    the parent (e.g. another config under the same sweep name whose datasets fail) does not change
    what the sweep's outputs are. Setting FAILED also writes ``<parent>.failed`` beside the parent
    file (see :func:`restore_finished_parent`).
    Returns a line saying what happened, or None when there is no parent file yet."""
    parent_file = Path(parent_file)
    if not parent_file.is_file():
        return None
    try:
        run_id, client = _open_parent(parent_file, uri, retry_seconds)
        if completed_marker is not None and Path(completed_marker).is_file():
            run = call_with_retry(
                client.get_run, run_id, uri=uri, retry_seconds=retry_seconds, what="read the parent run"
            )
            if run.info.status == "FINISHED":
                return (
                    f"MLflow parent run {run_id} stays FINISHED: its sweep's report is complete "
                    f"({completed_marker}); this invocation's failure is in its job logs"
                )
        call_with_retry(
            client.set_terminated,
            run_id,
            status,
            uri=uri,
            retry_seconds=retry_seconds,
            what="end the parent run",
        )
        if status == "FAILED":
            failed_marker(parent_file).write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
        return f"MLflow parent run {run_id} set {status} in {uri}"
    except Exception as error:  # never mask the workflow's own error
        return f"could not set the MLflow parent run {status}: {error}"


def describe_partial_parent(parent_file, uri: str, answer_md, retry_seconds: float = 2.0) -> str | None:
    """Best effort, after a failed invocation: tag the parent ``kanlib.outcome = PARTIAL`` and make
    ``answer_md`` (the partial report's answer, with the missing levels listed) its description."""
    parent_file = Path(parent_file)
    if not parent_file.is_file():
        return None
    try:
        run_id, client = _open_parent(parent_file, uri, retry_seconds)
        note = Path(answer_md).read_text(encoding="utf-8")
        for key, value in (("kanlib.outcome", "PARTIAL"), ("mlflow.note.content", note)):
            call_with_retry(
                client.set_tag,
                run_id,
                key,
                value,
                uri=uri,
                retry_seconds=retry_seconds,
                what="describe the parent run",
            )
        return f"MLflow parent run {run_id}: tagged kanlib.outcome=PARTIAL, description lists the missing levels"
    except Exception as error:  # never mask the workflow's own error
        return f"could not describe the partial sweep in MLflow: {error}"


def restore_finished_parent(parent_file, uri: str, outputs, retry_seconds: float = 2.0) -> str | None:
    """Set the parent FINISHED again when a failed invocation marked it FAILED but every one of the
    sweep's final ``outputs`` exists now (then ``snakemake`` says "Nothing to be done" and no job would
    fix the status). Cheap when there is no ``<parent>.failed`` marker: nothing is imported.
    Returns a line saying what happened, or None."""
    parent_file = Path(parent_file)
    marker = failed_marker(parent_file)
    if not marker.is_file() or not parent_file.is_file() or not all(Path(path).exists() for path in outputs):
        return None
    try:
        run_id, client = _open_parent(parent_file, uri, retry_seconds)
        call_with_retry(
            client.set_terminated,
            run_id,
            "FINISHED",
            uri=uri,
            retry_seconds=retry_seconds,
            what="end the parent run",
        )
        marker.unlink(missing_ok=True)
        return f"MLflow parent run {run_id} set FINISHED again: every output of the sweep is present"
    except Exception as error:
        return f"could not set the MLflow parent run FINISHED: {error}"


def sweep_links(uri: str, experiment: str, server: str | None = None, retry_seconds: float = 2.0) -> list[str]:
    """Where to look in the MLflow UI: the experiment's address, then one line per sweep (parent run),
    newest first. ``server``: the UI's address; default: ``uri`` itself for a tracking server, else
    ``http://127.0.0.1:5000`` (where ``mlflow ui`` serves a SQLite store)."""
    if server is None:
        server = uri if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    client = connect(uri, retry_seconds)
    found = call_with_retry(
        client.get_experiment_by_name, experiment, uri=uri, retry_seconds=retry_seconds, what="find the experiment"
    )
    if found is None:
        raise TrackingError(f"MLflow store {uri} has no experiment {experiment!r}", permanent=True)
    parents = call_with_retry(
        client.search_runs,
        [found.experiment_id],
        filter_string="tags.`kanlib.role` = 'parent'",
        order_by=["attributes.start_time DESC"],
        uri=uri,
        retry_seconds=retry_seconds,
        what="find the sweeps",
    )
    lines = [f"experiment {experiment}: {ui_link(server, found.experiment_id)}"]
    lines += [
        f"sweep {run.data.tags.get('kanlib.sweep', run.info.run_name)} ({run.info.status}): "
        f"{ui_link(server, found.experiment_id, run.info.run_id)}"
        for run in parents
    ]
    return lines


def main(argv=None) -> int:
    """``python -m kanlib.workflow.tracking repair URI``: recover a half-migrated SQLite store.
    ``python -m kanlib.workflow.tracking links URI``: the experiment's and each sweep's address in the UI."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m kanlib.workflow.tracking")
    commands = parser.add_subparsers(dest="command", required=True)
    repair = commands.add_parser("repair", help="finish an interrupted schema migration of a SQLite store")
    repair.add_argument("uri", help="sqlite:///path/to/mlflow.db")
    links = commands.add_parser("links", help="the MLflow UI addresses of the experiment and its sweeps")
    links.add_argument("uri", help="the tracking URI (sqlite:///mlflow.db, http://host:port)")
    links.add_argument("--experiment", default="kan-scaling", help="the experiment (default: kan-scaling)")
    links.add_argument("--server", help="the UI's address (default: the URI's server, else http://127.0.0.1:5000)")
    args = parser.parse_args(argv)
    try:
        if args.command == "links":
            print("\n".join(sweep_links(args.uri, args.experiment, args.server)))
            return 0
        dropped = repair_store(args.uri)
    except TrackingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"repaired {args.uri}: dropped {len(dropped)} leftover table(s) {dropped}; schema migrated to the current "
        "version"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
