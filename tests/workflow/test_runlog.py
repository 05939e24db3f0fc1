"""kanlib.workflow.runlog: the run logger process, against real MLflow SQLite stores.

The logger is started as the Snakefile starts it (a process of its own, tied to an owner process's
life); jobs are played by subprocesses that call runlog.submit like a train job does.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kanlib.workflow import runlog, tracking

REPO = Path(__file__).resolve().parents[2]


def environment(**extra) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", PYTHONPATH=str(REPO), **extra)
    return env


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A working directory with a SQLite store and a sweep's parent run in it."""
    monkeypatch.chdir(tmp_path)  # MLflow puts a SQLite store's artifacts in ./mlruns
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    parent = tracking.create_parent_run(uri, "kan-scaling", "unit", {}, {})
    parent_file = tmp_path / "mlflow_parent.json"
    parent_file.write_text(json.dumps(parent))
    return tmp_path, uri, {**parent, "file": str(parent_file)}


def child_payload(work: Path, uri: str, parent: dict, job: str, steps: int = 30) -> dict:
    name = job.replace("/", "_")
    history = work / f"{name}.csv"
    history.write_text("step,train_rmse\n0,1\n")
    now = int(time.time() * 1000)
    return {
        "uri": uri,
        "retry_seconds": 5,
        "parent": parent,
        "run_name": job,
        "params": {"grid_size": "3", "n_train": "100"},
        "tags": {"kanlib.job": job},
        "history": {"train_rmse": [1.0 / (s + 1) for s in range(steps)], "test_rmse": [2.0] * steps},
        "final": {"final_test_rmse": 2.0},
        "timestamps_ms": [now] * steps,
        "start_ms": now,
        "end_ms": now,
        "artifacts": [(str(history), None)],
        "metrics_artifact": {"path": str(work / "artifact" / f"{name}.json"), "record": {"job": job}},
        "supersede_job": job,
    }


# a train job's logging step, in a process of its own: what it gets back, and whether it imported mlflow
_JOB = """
import json, sys
from kanlib.workflow import runlog
result = runlog.submit("log_child", json.loads(sys.stdin.read()))
print(json.dumps({**result, "mlflow_imported": "mlflow" in sys.modules}))
"""


def job(work: Path, payload: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _JOB],
        input=json.dumps(payload),
        cwd=work,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def owner() -> subprocess.Popen:
    """A stand-in for the main Snakemake process: the logger serves while it lives."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])


def wait_until(condition, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def serving(work: Path) -> bool:
    connection = runlog._connect(runlog.socket_path(work))
    if connection is None:
        return False
    connection.close()
    return True


def start_logger(work: Path, owner_pid: int) -> str:
    message = subprocess.run(
        [sys.executable, "-c", f"from kanlib.workflow import runlog; print(runlog.start_server({owner_pid}))"],
        cwd=work,
        env=environment(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wait_until(lambda: serving(work), what="the logger to listen")
    return message


def test_a_job_hands_its_run_to_the_logger_and_never_imports_mlflow(store):
    work, uri, parent = store
    snakemake = owner()
    try:
        assert "run logger started" in start_logger(work, snakemake.pid)
        first = job(work, child_payload(work, uri, parent, "f/G3"))
        again = job(work, child_payload(work, uri, parent, "f/G3"))  # the same job logged again: supersedes
    finally:
        snakemake.kill()
        snakemake.wait()
    assert first["logged_by"] and first["logged_by"] == again["logged_by"] != os.getpid()
    assert first["mlflow_imported"] is False and again["mlflow_imported"] is False
    assert again["superseded"] == [first["run_id"]]
    client = tracking.connect(uri)
    run = client.get_run(again["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent["run_id"]
    assert len(client.get_metric_history(run.info.run_id, "train_rmse")) == 30
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"f_G3.csv", "f_G3.json"}
    assert json.loads((work / "artifact" / "f_G3.json").read_text())["mlflow_run_id"] == again["run_id"]
    assert client.get_run(first["run_id"]).data.tags["kanlib.superseded_by"] == again["run_id"]
    # its owner gone, the logger ends (and removes its socket)
    wait_until(lambda: not serving(work), what="the logger to exit")
    assert not runlog.socket_path(work).exists()
    log = (work / ".snakemake" / runlog.LOG_NAME).read_text()
    assert "no Snakemake process left to serve; exiting" in log and log.count("log_child") == 2


def test_without_a_logger_a_job_logs_its_run_itself(store):
    work, uri, parent = store
    assert not serving(work)
    result = job(work, child_payload(work, uri, parent, "f/G6"))
    assert result["logged_by"] is None and result["mlflow_imported"] is True
    assert tracking.connect(uri).get_run(result["run_id"]).info.status == "FINISHED"


def test_runlog_off_starts_no_logger(store, monkeypatch):
    work, _, _ = store
    monkeypatch.setenv("KANLIB_RUNLOG", "0")
    assert "run logger off" in runlog.start_server(os.getpid(), work)
    assert not serving(work)


def test_a_logger_that_dies_before_answering_leaves_the_run_to_the_job(store):
    """The logger's Snakemake was killed (it exits, the jobs live on): the job logs the run itself."""
    work, uri, parent = store
    path = runlog.socket_path(work)
    runlog._private_folder(path)
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    requests = []

    def die_on_first_request():  # read the request, then vanish without an answer
        connection, _ = listener.accept()
        requests.append(runlog._receive(connection, 10))
        connection.close()
        listener.close()

    thread = threading.Thread(target=die_on_first_request)
    thread.start()
    try:
        result = runlog.submit("log_child", child_payload(work, uri, parent, "f/G12"), workdir=work)
    finally:
        thread.join(timeout=10)
        path.unlink(missing_ok=True)
    assert requests and requests[0]["op"] == "log_child"
    assert result["logged_by"] is None
    assert tracking.connect(uri).get_run(result["run_id"]).info.status == "FINISHED"


def test_a_run_whose_job_is_gone_is_not_left_finished(store):
    """A job killed while the logger logs its run never gets its files into place: its run ends KILLED."""
    work, uri, parent = store
    snakemake = owner()
    try:
        start_logger(work, snakemake.pid)
        connection = runlog._connect(runlog.socket_path(work))
        runlog._send(connection, {"op": "log_child", "payload": child_payload(work, uri, parent, "f/G24")})
        connection.close()  # the job dies right after asking

        client = tracking.connect(uri)
        query = "tags.`kanlib.job` = 'f/G24'"

        def ended():
            found = client.search_runs([parent["experiment_id"]], query)
            return found and found[0].info.status != "RUNNING"

        wait_until(ended, what="the logger to end the run")
        (run,) = client.search_runs([parent["experiment_id"]], query)
        assert run.info.status == "KILLED"
        assert "is gone" in (work / ".snakemake" / runlog.LOG_NAME).read_text()
    finally:
        snakemake.kill()
        snakemake.wait()


def test_one_logger_serves_two_snakemake_runs_in_one_folder_until_both_end(store):
    work, uri, parent = store
    first, second = owner(), owner()
    try:
        assert "run logger started" in start_logger(work, first.pid)
        assert "already running" in start_logger(work, second.pid)
        pid = job(work, child_payload(work, uri, parent, "f/G48"))["logged_by"]
        first.kill()
        first.wait()
        time.sleep(1.5)  # three of its checks for live owners
        assert serving(work)
        assert job(work, child_payload(work, uri, parent, "f/G96"))["logged_by"] == pid
    finally:
        for process in (first, second):
            process.kill()
            process.wait()
    wait_until(lambda: not serving(work), what="the logger to exit")


def test_errors_come_back_to_the_job_with_the_store_named(store):
    work, uri, parent = store
    snakemake = owner()
    try:
        start_logger(work, snakemake.pid)
        payload = {**child_payload(work, uri, parent, "f/G1"), "parent": {**parent, "run_id": "0123"}}
        with pytest.raises(tracking.TrackingError, match="parent run 0123 .* is not in the MLflow store") as raised:
            runlog.submit("log_child", payload, workdir=work)
        assert raised.value.permanent
    finally:
        snakemake.kill()
        snakemake.wait()
