"""kanlib.workflow.tracking against a real MLflow SQLite store in a temporary folder."""

from __future__ import annotations

import json
import os
import time

import pytest

from kanlib.workflow import tracking

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def test_tracking_uri_precedence(tmp_path):
    cwd = str(tmp_path)
    assert tracking.resolve_tracking_uri("sqlite:///a.db", environ={}, cwd=cwd) == f"sqlite:///{tmp_path}/a.db"
    assert (
        tracking.resolve_tracking_uri("sqlite:///a.db", environ={"MLFLOW_TRACKING_URI": "http://h:5000"}, cwd=cwd)
        == "http://h:5000"
    )
    assert tracking.resolve_tracking_uri(None, environ={}, cwd=cwd) == f"sqlite:///{tmp_path}/mlflow.db"
    assert tracking.resolve_tracking_uri("sqlite:////abs/m.db", environ={}, cwd=cwd) == "sqlite:////abs/m.db"
    assert tracking.resolve_tracking_uri("x", environ={"MLFLOW_TRACKING_URI": ""}, cwd=cwd) == "x"


def test_retry_gives_up_after_the_budget_and_names_the_uri():
    calls = []

    def unreachable():
        calls.append(time.monotonic())
        raise ConnectionError("connection refused")

    started = time.monotonic()
    with pytest.raises(tracking.TrackingError, match=r"http://example:1 is unreachable .*connection refused") as raised:
        tracking.call_with_retry(unreachable, uri="http://example:1", retry_seconds=1.0, what="connect")
    assert not raised.value.permanent
    assert 0.5 <= time.monotonic() - started < 2.5 and len(calls) >= 3


def test_permanent_errors_are_not_retried():
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    def refuse():
        raise MlflowException("no such run", error_code=RESOURCE_DOES_NOT_EXIST)

    started = time.monotonic()
    with pytest.raises(tracking.TrackingError, match="refused to get a run") as raised:
        tracking.call_with_retry(refuse, uri="sqlite:///x.db", retry_seconds=10, what="get a run")
    assert raised.value.permanent and time.monotonic() - started < 1


def test_unreachable_server_fails_within_the_budget():
    started = time.monotonic()
    with pytest.raises(tracking.TrackingError, match=r"http://127\.0\.0\.1:9 is unreachable"):
        tracking.connect("http://127.0.0.1:9", retry_seconds=1.0)
    assert time.monotonic() - started < 10


def test_jobs_never_create_a_sqlite_store(tmp_path):
    uri = f"sqlite:///{tmp_path}/missing.db"
    with pytest.raises(tracking.TrackingError, match="does not exist; it is created by rule mlflow_parent"):
        tracking.connect(uri, retry_seconds=0)
    assert not (tmp_path / "missing.db").exists()


def test_metric_batches_respect_the_log_batch_limit():
    history = {"a": [0.1] * 700, "b": [0.2] * 700}
    batches = tracking.metric_batches(history, {"final": 1.0}, [1000] * 700, 2000)
    assert [len(b) for b in batches] == [1000, 401]
    assert batches[0][0].step == 0 and batches[1][-1].key == "final"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder}/mlflow.db"
    cwd = os.getcwd()
    os.chdir(folder)  # MLflow puts the artifacts of a new SQLite store in ./mlruns
    try:
        parent = tracking.create_parent_run(uri, "exp", "unit", {"grids": "[3, 6]"}, {"host": "here"})
    finally:
        os.chdir(cwd)
    client = tracking.connect(uri)
    return uri, parent, client, folder


def log_child(store, job, status="FINISHED", steps=400):
    uri, parent, client, folder = store
    history = {
        "train_rmse": [1.0 / (s + 1) for s in range(steps)],
        "test_rmse": [2.0 / (s + 1) for s in range(steps)],
        "reg": [0.0] * steps,
    }
    artifact = folder / "history.csv"
    artifact.write_text("step,train_rmse\n0,1\n")
    now = int(time.time() * 1000)
    return tracking.log_child_run(
        client,
        uri=uri,
        experiment_id=parent["experiment_id"],
        parent_run_id=parent["run_id"],
        run_name=job,
        params={"grid_size": "3", "n_train": "100"},
        tags={"kanlib.job": job},
        history=history,
        final={"final_test_rmse": history["test_rmse"][-1]},
        timestamps_ms=[now] * steps,
        start_ms=now,
        end_ms=now,
        artifacts=[(artifact, None)],
        status=status,
    )


def test_parent_and_child_runs(store):
    uri, parent, client, folder = store
    assert set(parent) >= {"run_id", "experiment_id", "experiment", "tracking_uri", "sweep"}
    assert client.get_run(parent["run_id"]).info.status == "RUNNING"
    run_id = log_child(store, "f/w2-1-1_k3/N100_seed0/G3")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == parent["run_id"]
    assert run.data.params == {"grid_size": "3", "n_train": "100"}
    for name in ("train_rmse", "test_rmse", "reg"):  # 1200 values: two log_batch calls
        assert len(client.get_metric_history(run_id, name)) == 400
    assert [a.path for a in client.list_artifacts(run_id)] == ["history.csv"]


def test_a_rerun_supersedes_the_earlier_run_of_a_job(store):
    uri, parent, client, _ = store
    job = "f/w2-1-1_k3/N100_seed0/G6"
    first = log_child(store, job, steps=3)
    stale = log_child(store, job, status="RUNNING", steps=3)  # as if killed while logging
    failed = log_child(store, job, status="FAILED", steps=3)
    second = log_child(store, job, steps=3)
    superseded = tracking.supersede_runs(
        client,
        experiment_id=parent["experiment_id"],
        parent_run_id=parent["run_id"],
        job=job,
        keep_run_id=second,
        uri=uri,
    )
    assert sorted(superseded) == sorted([first, stale])
    assert client.get_run(first).data.tags["kanlib.superseded_by"] == second
    assert client.get_run(stale).info.status == "KILLED"
    assert "kanlib.superseded_by" not in client.get_run(failed).data.tags
    assert "kanlib.superseded_by" not in client.get_run(second).data.tags


def test_parent_lifecycle(store, tmp_path):
    uri, parent, client, folder = store
    table = tmp_path / "results.csv"
    table.write_text("a\n1\n")
    tracking.finish_parent(
        client, parent["run_id"], uri=uri, artifacts=[(table, "aggregate")], metrics={"n_grid_levels": 2}
    )
    run = client.get_run(parent["run_id"])
    assert run.info.status == "FINISHED" and run.data.metrics["n_grid_levels"] == 2
    assert [a.path for a in client.list_artifacts(parent["run_id"], "aggregate")] == ["aggregate/results.csv"]
    tracking.ensure_parent_running(client, parent["run_id"], uri)  # a later train job re-opens it
    assert client.get_run(parent["run_id"]).info.status == "RUNNING"
    parent_file = tmp_path / "mlflow_parent.json"
    parent_file.write_text(json.dumps(parent))
    assert "set FAILED" in tracking.set_parent_status(parent_file, "FAILED", uri)
    assert client.get_run(parent["run_id"]).info.status == "FAILED"
    assert tracking.set_parent_status(tmp_path / "none.json", "FAILED", uri) is None


def test_a_missing_parent_is_a_clear_error(store):
    uri, _, client, _ = store
    with pytest.raises(tracking.TrackingError, match="parent run 0123 .* is not in the MLflow store"):
        tracking.ensure_parent_running(client, "0123", uri, retry_seconds=1)


def test_ui_links_open_the_model_training_view(store, capsys):
    """The addresses kanlib gives out carry the view (MLflow 3.17's UI ignores the experiment's kind tag;
    tests/ui/test_mlflow_ui.py checks in a browser what they open)."""
    uri, parent, client, _ = store
    experiment, run = parent["experiment_id"], parent["run_id"]
    status = client.get_run(run).info.status  # whatever the tests before left it
    assert tracking.ui_link("http://h:5000/", experiment) == (
        f"http://h:5000/#/experiments/{experiment}?workflowType=machine_learning"
    )
    assert tracking.ui_link("http://h:5000", experiment, run).endswith(f"/runs/{run}?workflowType=machine_learning")
    lines = tracking.sweep_links(uri, "exp")
    assert lines == [
        f"experiment exp: {tracking.ui_link('http://127.0.0.1:5000', experiment)}",
        f"sweep unit ({status}): {tracking.ui_link('http://127.0.0.1:5000', experiment, run)}",
    ]
    assert tracking.main(["links", uri, "--experiment", "exp", "--server", "http://login1:5000"]) == 0
    assert (
        capsys.readouterr().out.splitlines()[1]
        == f"sweep unit ({status}): {tracking.ui_link('http://login1:5000', experiment, run)}"
    )
    assert tracking.main(["links", uri, "--experiment", "nope"]) == 2
    assert "has no experiment 'nope'" in capsys.readouterr().err


def test_flatten_params_and_provenance():
    assert tracking.flatten_params({"a": 1, "m": {"b": None, "c": [1, 2]}}) == {
        "a": "1",
        "m.b": "none",
        "m.c": "[1, 2]",
    }
    assert "host" in tracking.host_tags()
    commit = tracking.git_commit()
    assert commit == "unknown" or len(commit) == 40


# ---- one store, created and migrated once -------------------------------------------------------------

_CREATE_AT = """
import sys, time
from kanlib.workflow import tracking
start, uri, sweep = float(sys.argv[1]), sys.argv[2], sys.argv[3]
time.sleep(max(0.0, start - time.time()))  # every process contacts the fresh store at the same moment
parent = tracking.create_parent_run(uri, "kan-scaling", sweep, {}, {}, retry_seconds=20)
print(parent["run_id"])
"""


def test_sweeps_started_together_on_a_fresh_store_all_get_their_parent(tmp_path):
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    start = time.time() + 6  # after the interpreters and mlflow have loaded
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _CREATE_AT, str(start), uri, f"par{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (_out, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-2000:]
    client = tracking.connect(uri)
    runs = client.search_runs([client.get_experiment_by_name("kan-scaling").experiment_id])
    assert sorted(run.info.run_name for run in runs) == ["par0", "par1", "par2"]
    assert tracking.leftover_migration_tables(tmp_path / "mlflow.db") == []


def test_a_half_migrated_store_is_named_and_repaired(tmp_path):
    import sqlite3

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking.connect(uri, create=True)
    with sqlite3.connect(tmp_path / "mlflow.db") as connection:  # what an interrupted batch migration leaves
        connection.execute("CREATE TABLE _alembic_tmp_experiments (experiment_id INTEGER)")
    assert tracking.leftover_migration_tables(tmp_path / "mlflow.db") == ["_alembic_tmp_experiments"]
    error = RuntimeError("wrapped")
    error.__cause__ = RuntimeError("(sqlite3.OperationalError) table _alembic_tmp_experiments already exists")
    assert tracking._half_migrated(error)
    assert tracking.main(["repair", uri]) == 0
    assert tracking.leftover_migration_tables(tmp_path / "mlflow.db") == []
    tracking.connect(uri).search_experiments()  # the store opens and answers


# ---- new SQLite stores from a template (creating one runs every schema migration) ----------------------


def test_a_new_store_is_copied_from_the_template_and_gets_its_own_default_experiment(tmp_path, monkeypatch):
    import sqlite3

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first, second = tmp_path / "one", tmp_path / "two"
    for folder in (first, second):
        folder.mkdir()
    monkeypatch.chdir(first)
    started = time.monotonic()
    tracking.connect(f"sqlite:///{first}/mlflow.db", create=True)
    created_s = time.monotonic() - started
    template = tracking.store_template()
    assert template is not None and template.is_file() and str(tmp_path / "cache") in str(template)
    with sqlite3.connect(template) as connection:
        assert connection.execute("SELECT COUNT(*) FROM experiments").fetchone()[0] == 0

    monkeypatch.chdir(second)
    started = time.monotonic()
    client = tracking.connect(f"sqlite:///{second}/mlflow.db", create=True)
    copied_s = time.monotonic() - started
    assert copied_s < created_s
    default = client.get_experiment("0")
    assert default.name == "Default" and default.artifact_location.startswith(str(second))
    parent = tracking.create_parent_run(f"sqlite:///{second}/mlflow.db", "kan-scaling", "s", {}, {})
    assert client.get_run(parent["run_id"]).info.status == "RUNNING"
    assert client.get_experiment(parent["experiment_id"]).artifact_location.startswith(str(second))


def test_a_damaged_template_is_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    template = tracking.store_template()
    template.parent.mkdir(parents=True)
    template.write_bytes(b"not a database")
    client = tracking.connect(f"sqlite:///{tmp_path}/mlflow.db", create=True)
    assert client.get_experiment("0").name == "Default"
    assert template.read_bytes()[:15] == b"SQLite format 3"  # made anew from the store just created
