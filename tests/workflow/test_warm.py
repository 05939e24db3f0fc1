"""kanlib.workflow.warm: jobs forked from a warm process (torch imported once) behave as jobs run in
their own process: same outputs, their own streams and exit status, and a job killed while it
runs takes its child with it. A real warm process, real jobs, a real SQLite MLflow store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO

from kanlib import reproducibility
from kanlib.files import write_json
from kanlib.workflow import tracking, warm

CLIENT = """
import json, sys
from kanlib.workflow import warm
from kanlib.workflow.runtime import hold_jobs_lock
hold_jobs_lock()
status = warm.run(json.load(open(sys.argv[1])))
print("STATUS", status, flush=True)
sys.exit(0 if status is None else status)
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory served by a warm process owned by this test (stopped at the end)."""
    monkeypatch.chdir(tmp_path)
    for name, value in reproducibility.environment().items():  # what the Snakefile exports to its jobs
        monkeypatch.setenv(name, value)
    line = warm.start_server(owner=os.getpid(), workdir=tmp_path)
    assert "warm process started" in line, line
    log_file = tmp_path / ".snakemake" / warm.LOG_NAME
    deadline = time.monotonic() + 60
    while "serving" not in log_file.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = int(log_file.read_text().split("[warm ")[1].split("]")[0])
    yield tmp_path
    os.kill(pid, signal.SIGTERM)


def config(tmp_path: Path, **changes) -> dict:
    values = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    values.update(yaml.safe_load((REPO / "config" / "test.yaml").read_text()))
    values["mlflow"].update(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", retry_seconds=1)
    values.update(changes)
    return values


def dataset_job(tmp_path: Path, function="exp_sin_pi_x_plus_y2", name="data.pt", here=False) -> dict:
    """``here``: for warm.execute in this pytest process, whose MKL may have started before the
    pinned environment was set (then its bits differ in the last place): data that only feeds a job."""
    return {
        "rule": "dataset",
        "wildcards": {"function": function, "n": "100", "seed": "0"},
        "input": {},
        "output": {"_0": str(tmp_path / name)},
        "params": {"function": function, "test_num": 50, "input_range": [-1, 1]},
        "log": str(tmp_path / "logs" / f"{name}.log"),
        "threads": 1,
        "config": config(tmp_path, **({"cpu_code_path": "native"} if here else {})),
    }


def train_job(tmp_path: Path, data: str, steps: int) -> dict:
    values = config(tmp_path, steps=steps, stop_grid_update_step=0)
    parent = tracking.create_parent_run(
        values["mlflow"]["tracking_uri"], "kan-scaling", "test", {}, {}, retry_seconds=5
    )
    run = tmp_path / "runs" / "G3"
    run.mkdir(parents=True, exist_ok=True)
    return {
        "rule": "train",
        "wildcards": {
            "function": "exp_sin_pi_x_plus_y2",
            "model": "w2-5-1_k3",
            "n": "100",
            "seed": "0",
            "level": "/G3",
        },
        "input": {"data": data, "parent": str(write_json(tmp_path / "parent.json", parent))},
        "output": {
            name: str(run / f"{name}.{ext}") for name, ext in (("model", "pt"), ("history", "csv"), ("metrics", "json"))
        },
        "params": {"function": "exp_sin_pi_x_plus_y2"},
        "log": str(tmp_path / "logs" / "train.log"),
        "threads": 1,
        "config": values,
    }


def client(tmp_path: Path, job: dict, **kwargs) -> subprocess.Popen:
    job_file = tmp_path / f"job-{time.monotonic_ns()}.json"
    job_file.write_text(json.dumps(job))
    return subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(job_file)],
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def test_a_forked_job_writes_what_the_job_writes_in_its_own_process(workdir):
    forked = client(workdir, dataset_job(workdir, name="forked.pt"))
    out, err = forked.communicate(timeout=120)
    assert forked.returncode == 0 and "STATUS 0" in out, err
    alone = workdir / "alone.json"  # the same job in a process of its own, started with the pinned environment
    alone.write_text(json.dumps(dataset_job(workdir, name="here.pt")))
    script = "import json, sys; from kanlib.workflow import warm; sys.exit(warm.execute(json.load(open(sys.argv[1]))))"
    assert subprocess.run([sys.executable, "-c", script, str(alone)], timeout=120).returncode == 0
    a, b = (torch.load(workdir / name, weights_only=True) for name in ("forked.pt", "here.pt"))
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a if key != "info")
    assert "wrote" in (workdir / "logs" / "forked.pt.log").read_text()
    assert "dataset" in (workdir / ".snakemake" / warm.LOG_NAME).read_text()  # it went through the warm process


def test_a_failing_job_reports_on_its_own_stderr_with_its_status(workdir):
    failing = client(workdir, dataset_job(workdir, function="no_such_function"))
    out, err = failing.communicate(timeout=120)
    assert failing.returncode == 1 and "STATUS 1" in out
    assert "no_such_function" in err  # the child's traceback went to the job's stderr


def test_a_killed_job_takes_its_child_with_it(workdir):
    assert warm.execute(dataset_job(workdir, here=True)) == 0
    job = train_job(workdir, str(workdir / "data.pt"), steps=100000)
    running = client(workdir, job)
    log_file = workdir / ".snakemake" / warm.LOG_NAME
    deadline = time.monotonic() + 60
    while "train {" not in log_file.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    child = int(log_file.read_text().split("-> child ")[-1].split()[0])
    time.sleep(2)  # training
    os.kill(running.pid, signal.SIGKILL)  # as the OOM killer or a closed terminal would
    running.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists(), "the child trained on without its job"
    assert "hung up; child killed" in log_file.read_text()
    assert not Path(job["output"]["metrics"]).exists()


def test_slurm_jobs_and_the_switch_run_in_their_own_process(workdir, monkeypatch):
    job = dataset_job(workdir)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert warm.run(job, workdir) is None
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.setenv("KANLIB_WARM", "0")
    assert warm.run(job, workdir) is None and "off" in warm.start_server(workdir=workdir)
