"""kanlib.workflow.mlflow_server: the documented way to run the sweep's tracking server (a real mlflow server)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kanlib.workflow import mlflow_server

REPO = Path(__file__).resolve().parents[2]


def cli(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kanlib.workflow.mlflow_server", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env or {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        cwd=cwd,
    )


def group_members(pgid: int, wait: float = 0.0) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``; with ``wait``, until there are none."""
    deadline = time.monotonic() + wait
    while True:
        out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat="], capture_output=True, text=True).stdout.split()
        members = [
            int(pid)
            for pid, group, stat in zip(out[::3], out[1::3], out[2::3])
            if int(group) == pgid and not stat.startswith("Z")
        ]
        if not members or time.monotonic() >= deadline:
            return members
        time.sleep(0.1)


def test_start_status_stop_on_loopback(tmp_path):
    folder = tmp_path / "server"
    started = cli("start", "--dir", str(folder), "--port", "0")
    assert started.returncode == 0, started.stderr
    info = mlflow_server.status(folder)
    assert info is not None and started.stdout.strip() == f"export MLFLOW_TRACKING_URI={info.uri}"
    assert (
        info.uri.startswith("http://127.0.0.1:") and info.backend_store_uri == f"sqlite:///{folder.resolve()}/mlflow.db"
    )
    try:
        # one worker, job runner off, bound to loopback
        command = (folder / "server.log").read_text()
        assert "--host 127.0.0.1" in command and "--workers 1" in command
        environ = Path(f"/proc/{info.pid}/environ").read_bytes().split(b"\0")
        assert b"MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false" in environ
        assert len(group_members(info.pid)) == 2  # mlflow's launcher and one uvicorn process

        # it is a working tracking store, and starting again leaves it alone
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=info.uri)
        experiment = client.create_experiment("probe")
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "x", 0.1 + 0.2)
        assert client.get_run(run.info.run_id).data.metrics["x"] == 0.1 + 0.2  # exact through the REST API
        again = cli("start", "--dir", str(folder), "--port", "0")
        assert again.returncode == 0 and again.stdout == started.stdout and mlflow_server.status(folder).pid == info.pid
        assert cli("status", "--dir", str(folder)).returncode == 0
    finally:
        stopped = cli("stop", "--dir", str(folder))
    assert stopped.returncode == 0 and "stopped" in stopped.stderr
    assert mlflow_server.status(folder) is None and group_members(info.pid, wait=5) == []
    assert cli("status", "--dir", str(folder)).returncode == 1
    assert "no mlflow server was running" in cli("stop", "--dir", str(folder)).stderr


def test_other_interfaces_need_allowed_hosts(tmp_path):
    refused = cli("start", "--dir", str(tmp_path / "s"), "--host", "0.0.0.0", "--port", "0")
    assert refused.returncode == 1 and "pass --allowed-hosts" in refused.stderr
    assert not (tmp_path / "s" / "server.pid").exists()


def test_allowed_hosts_also_allow_the_port():
    assert mlflow_server._expand_allowed_hosts("login1, login1.cluster", 5000).split(",") == [
        "login1",
        "login1.cluster",
        "login1:5000",
        "login1.cluster:5000",
        "localhost",
        "localhost:*",
        "127.0.0.1",
        "127.0.0.1:*",
    ]


def test_default_dir_is_local_and_per_user(monkeypatch):
    monkeypatch.delenv("KANLIB_MLFLOW_DIR", raising=False)
    assert str(mlflow_server.default_dir()).startswith("/var/tmp/kanlib-mlflow-")
    monkeypatch.setenv("KANLIB_MLFLOW_DIR", "/x/y")
    assert mlflow_server.default_dir() == Path("/x/y")


def test_a_server_that_cannot_start_is_reported(tmp_path):
    result = cli(
        "start",
        "--dir",
        str(tmp_path / "s"),
        "--port",
        "0",
        "--backend-store-uri",
        "bogus://nowhere",
        "--timeout",
        "60",
    )
    assert result.returncode == 1 and "exited with status" in result.stderr, result.stderr


def test_relative_locations_are_the_callers():
    base = Path("/home/u/sweep")
    assert mlflow_server.absolute_location("sqlite:///mlflow.db", base) == "sqlite:////home/u/sweep/mlflow.db"
    assert (
        mlflow_server.absolute_location("sqlite:///a/b.db?timeout=20", base)
        == "sqlite:////home/u/sweep/a/b.db?timeout=20"
    )
    assert mlflow_server.absolute_location("./artifacts", base) == "/home/u/sweep/artifacts"
    for unchanged in (
        "sqlite:////var/tmp/mlflow.db",
        "sqlite://",
        "sqlite:///:memory:",
        "postgresql://user@dbhost/mlflow",
        "http://login1:5000",
        "s3://bucket/artifacts",
        "file:///abs/mlruns",
        "/abs/artifacts",
    ):
        assert mlflow_server.absolute_location(unchanged, base) == unchanged


def test_a_relative_sqlite_store_is_the_one_in_the_callers_folder(tmp_path):
    """`start --backend-store-uri sqlite:///mlflow.db` serves ./mlflow.db of the folder it is run in, not a
    new empty store in the server's own folder, and reports the store it serves."""
    from kanlib.workflow import tracking

    work = tmp_path / "sweep"
    work.mkdir()
    client = tracking.connect(f"sqlite:///{work / 'mlflow.db'}", create=True)
    client.create_experiment("kan-scaling")
    folder = tmp_path / "server"
    started = cli("start", "--dir", str(folder), "--port", "0", "--backend-store-uri", "sqlite:///mlflow.db", cwd=work)
    assert started.returncode == 0, started.stderr
    try:
        info = mlflow_server.status(folder)
        assert info.backend_store_uri == f"sqlite:///{work.resolve() / 'mlflow.db'}"
        assert f"store {info.backend_store_uri};" in started.stderr
        from mlflow.tracking import MlflowClient

        assert MlflowClient(tracking_uri=info.uri).get_experiment_by_name("kan-scaling") is not None
        assert not (folder / "mlflow.db").exists()
    finally:
        cli("stop", "--dir", str(folder))


@pytest.mark.workflow
@pytest.mark.browser
def test_the_readme_screenshot_command_shows_the_sweep(tiny_sweep, tmp_path):
    """The README's command, run in the folder of a finished sweep: `.venv/bin/python tests/ui/mlflow_ui.py
    --store sqlite:///mlflow.db --out shots/`. Its pages show that folder's sweep (the experiment's runs,
    the sweep's answer, a child run), not an empty store's "No Experiment with id=1 exists"."""
    work = tmp_path / "sweep"
    work.mkdir()
    shutil.copy2(tiny_sweep.work / "mlflow.db", work / "mlflow.db")  # the shared sweep's store stays untouched
    result = subprocess.run(
        [sys.executable, str(REPO / "tests/ui/mlflow_ui.py"), "--store", "sqlite:///mlflow.db", "--out", "shots/"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    assert result.returncode == 0, result.stdout + result.stderr  # without Chromium: says how to install it
    shots = work / "shots"
    assert sorted(path.name for path in shots.glob("*.png")) == [
        "charts.png",
        "child.png",
        "experiment.png",
        "sweep.png",
    ]
    pages = {
        name: (shots / f"{name}.txt").read_text(encoding="utf-8").splitlines()
        for name in ("experiment", "sweep", "child")
    }
    for name, texts in pages.items():
        assert not any("No Experiment with id" in text or "not found" in text.lower() for text in texts), (
            name,
            texts[:40],
        )
    experiment = pages["experiment"]
    assert "test" in experiment and "matching runs" in experiment, experiment[
        :60
    ]  # the parent run, named after the sweep
    assert experiment[experiment.index("matching runs") - 1] == "5"  # the parent and its 4 children
    assert "Answer." in pages["sweep"], pages["sweep"][:60]  # the sweep's description opens with its answer
    assert "Parent run" in pages["child"], pages["child"][:60]
