"""The Snakemake workflow end to end: real Snakemake subprocesses, real MLflow SQLite stores.

Each test works in its own temporary working directory (a copy of config/) and runs the
repository's Snakefile there, so results/, mlflow.db, mlruns/ and .snakemake/ stay in tmp.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
REQUIRED_COLUMNS = [
    "function",
    "width",
    "k",
    "n_train",
    "seed",
    "grid_size",
    "n_params",
    "steps",
    "optimizer",
    "train_rmse",
    "test_rmse",
    "wall_time_s",
    "device",
    "mlflow_run_id",
]
RUNS = "results/test/runs/exp_sin_pi_x_plus_y2/w2-1-1_k3"

pytestmark = pytest.mark.workflow


# ---- helpers -------------------------------------------------------------------------------------------


def workdir(tmp_path: Path, **overrides) -> Path:
    """A working directory with config/ copied and config/extra.yaml holding ``overrides``."""
    work = tmp_path / "work"
    shutil.copytree(REPO / "config", work / "config")
    (work / "config" / "extra.yaml").write_text(yaml.safe_dump(overrides))
    return work


def environment(**extra) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", **extra)
    return env


def command(*args, tiny=True) -> list[str]:
    configs = ["--configfile", "config/test.yaml", "config/extra.yaml"] if tiny else []
    return [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--cores", "2", *args, *configs]


def snakemake(work: Path, *args, tiny=True, check=True, env=None, timeout=300) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command(*args, tiny=tiny), cwd=work, env=env or environment(), capture_output=True, text=True, timeout=timeout
    )
    result.output = result.stdout + result.stderr  # Snakemake's messages go to either
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({result.returncode}):\n{result.output[-6000:]}")
    return result


def runs(work: Path) -> pd.DataFrame:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{work}/mlflow.db")
    return mlflow.search_runs(experiment_names=["kan-scaling"], output_format="pandas")


def client(work: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{work}/mlflow.db")


def children(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["tags.mlflow.parentRunId"].notna()]


def train_dirs(work: Path) -> list[Path]:
    return sorted(work.glob("results/*/runs/*/*/*/G*"))


def finished_train_outputs(log_text: str) -> set[str]:
    """metrics.json paths of the train jobs that Snakemake reported finished in ``log_text``."""
    outputs, finished, current = {}, set(), None
    for line in log_text.splitlines():
        if re.match(r"^(local)?rule \w+:$", line):
            current = {"rule": line.split()[-1].rstrip(":").removeprefix("rule")}
        elif current is not None and line.startswith("    output: "):
            current["output"] = line.removeprefix("    output: ").split(", ")
        elif current is not None and line.startswith("    jobid: "):
            outputs[int(line.split()[-1])] = current
            current = None
        elif match := re.match(r"^Finished jobid: (\d+) \(Rule: train\)", line):
            finished.add(int(match.group(1)))
    return {next(p for p in outputs[j]["output"] if p.endswith("metrics.json")) for j in finished}


def snapshot(work: Path, metrics_files) -> dict[str, tuple[int, str]]:
    """(mtime_ns, mlflow_run_id) of each metrics.json."""
    return {
        p: ((work / p).stat().st_mtime_ns, json.loads((work / p).read_text())["mlflow_run_id"]) for p in metrics_files
    }


def assert_one_finished_child_per_job(work: Path, n_jobs: int) -> pd.DataFrame:
    """Exactly one current FINISHED child per train job, the one whose id metrics.json records."""
    frame = runs(work)
    parents = frame[frame["tags.mlflow.parentRunId"].isna()]
    assert len(parents) == 1, parents
    kids = children(frame)
    assert (kids["tags.mlflow.parentRunId"] == parents["run_id"].iloc[0]).all()
    current = kids[
        (kids["status"] == "FINISHED")
        & kids.get("tags.kanlib.superseded_by", pd.Series(index=kids.index, dtype=object)).isna()
    ]
    assert len(current) == n_jobs and current["tags.kanlib.job"].is_unique, current
    recorded = {json.loads(p.read_text())["mlflow_run_id"] for p in work.glob("results/*/runs/*/*/*/G*/metrics.json")}
    assert recorded == set(current["run_id"])
    return frame


# ---- the DAG of the default config ------------------------------------------------------------------


def dry_run_jobs(text: str) -> list[dict]:
    """The jobs of a dry run's output: rule, input and output lists, wildcards."""
    jobs, current = [], None
    for line in text.splitlines():
        if re.match(r"^(local)?rule \w+:$", line):
            current = {"rule": line.split()[-1].rstrip(":"), "input": [], "output": [], "wildcards": {}}
            jobs.append(current)
        elif current is not None and line.startswith("    ") and ": " in line:
            key, value = line.strip().split(": ", 1)
            if key in ("input", "output"):
                current[key] = value.split(", ")
            elif key == "wildcards":
                current["wildcards"] = dict(item.split("=", 1) for item in value.split(", "))
    return jobs


def test_default_dag_has_4_datasets_and_4_chains_of_5_levels(tmp_path):
    work = workdir(tmp_path)
    dry = snakemake(work, "-n", tiny=False)
    jobs = dry_run_jobs(dry.output)
    rules = [job["rule"] for job in jobs]
    assert {rule: rules.count(rule) for rule in set(rules)} == {
        "all": 1,
        "aggregate": 1,
        "mlflow_parent": 1,
        "dataset": 4,
        "train": 20,
        "report_figures": 1,
        "report_frontier": 1,  # several N: the data axis of the one function
        "report_summary": 1,
        "report_mlflow": 1,
    }
    train = {
        (int(j["wildcards"]["n"]), int(j["wildcards"]["level"].removeprefix("/G"))): j
        for j in jobs
        if j["rule"] == "train"
    }
    datasets = {int(j["wildcards"]["n"]): j["output"][0] for j in jobs if j["rule"] == "dataset"}
    assert sorted(datasets) == sorted({n for n, _ in train}) == [100, 300, 1000, 3000]
    grids = [5, 10, 20, 50, 100]
    for n in datasets:
        for level, grid in enumerate(grids):
            job = train[(n, grid)]
            model_inputs = [path for path in job["input"] if path.endswith("model.pt")]
            if level == 0:  # level 0 starts fresh
                assert model_inputs == []
            else:  # level i starts from level i-1's model
                assert model_inputs == [train[(n, grids[level - 1])]["output"][0]]
            assert datasets[n] in job["input"] and "results/seed/mlflow_parent.json" in job["input"]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", dry.output, re.M))
    assert counts["dataset"] == "4" and counts["train"] == "20" and counts["total"] == "31"
    assert not (work / "results").exists() and not (work / "mlflow.db").exists()


# ---- the tiny sweep end to end ----------------------------------------------------------------------------


def test_tiny_sweep_end_to_end(tiny_sweep):
    # the session's tiny sweep (tests/conftest.py), shared with tests/analysis/test_report.py
    work, elapsed = tiny_sweep.work, tiny_sweep.elapsed
    steps = yaml.safe_load((REPO / "config" / "test.yaml").read_text())["steps"]

    # files
    dirs = train_dirs(work)
    assert [d.relative_to(work / RUNS).as_posix() for d in dirs] == [
        "N100_seed0/G3",
        "N100_seed0/G6",
        "N200_seed0/G3",
        "N200_seed0/G6",
    ]
    for d in dirs:
        assert sorted(p.name for p in d.iterdir()) == [
            ".completed",
            "benchmark.tsv",
            "history.csv",
            "metrics.json",
            "model.pt",
        ]
        for name in ("history.csv", "metrics.json", "model.pt"):  # hard links: the same file, no copy
            assert os.path.samefile(d / ".completed" / name, d / name), name
        assert (
            (work / "results/test/logs/train" / d.relative_to(work / "results/test/runs")).with_suffix(".log").is_file()
        )
    assert len(list(work.glob("results/test/data/exp_sin_pi_x_plus_y2/N*_seed0.pt"))) == 2
    for name in (
        "results.csv",
        "results.parquet",
        "history.csv",
        "test_rmse_vs_grid.png",
        "test_rmse_vs_grid.pdf",
        "mlflow_parent.json",
        "logs/aggregate.log",
        "logs/mlflow_parent.log",
    ):
        assert (work / "results/test" / name).is_file(), name
    assert not list(work.rglob("*.tmp")) and not list(work.rglob("unsynced"))

    # tables
    results = pd.read_csv(work / "results/test/results.csv")
    assert list(results.columns[: len(REQUIRED_COLUMNS)]) == REQUIRED_COLUMNS and len(results) == 4
    assert (results["steps"] == steps).all() and (results["width"] == "2-1-1").all()
    assert results["prev_grid_size"].isna().sum() == 2
    assert (results["test_rmse"] > 0).all() and (results["device"] == "cpu").all()
    parquet = pd.read_parquet(work / "results/test/results.parquet")  # the same table as the CSV
    assert (
        parquet.to_csv(index=False, float_format="%.10g", lineterminator="\n")
        == (work / "results/test/results.csv").read_text()
    )
    history = pd.read_csv(work / "results/test/history.csv")
    assert len(history) == 4 * steps
    assert history.groupby("n_train")["cumulative_step"].apply(list).tolist() == [list(range(2 * steps))] * 2

    # MLflow: one parent, one FINISHED child per job with its params and full histories
    frame = assert_one_finished_child_per_job(work, 4)
    parent = frame[frame["tags.mlflow.parentRunId"].isna()].iloc[0]
    assert parent["status"] == "FINISHED" and parent["tags.mlflow.runName"] == "test"
    mlflow_client = client(work)
    assert {a.path for a in mlflow_client.list_artifacts(parent["run_id"], "aggregate")} >= {
        "aggregate/results.csv",
        "aggregate/results.parquet",
        "aggregate/test_rmse_vs_grid.png",
    }
    for _, row in results.iterrows():
        run = mlflow_client.get_run(row["mlflow_run_id"])
        params, tags = run.data.params, run.data.tags
        assert params["grid_size"] == str(row["grid_size"]) and params["n_train"] == str(row["n_train"])
        assert params["prev_grid_size"] == (
            "none" if pd.isna(row["prev_grid_size"]) else str(int(row["prev_grid_size"]))
        )
        for key in (
            "function",
            "width",
            "k",
            "seed",
            "steps",
            "optimizer",
            "lr",
            "grid_eps",
            "stop_grid_update_step",
            "grid_update_num",
            "device",
            "dtype",
            "kanlib_version",
            "git_commit",
            "data_file",
            "model_seed",
        ):
            assert key in params, key
        assert tags["rule"] == "train" and "host" in tags and f"level=/G{row['grid_size']}" in tags["wildcards"]
        for name in ("train_rmse", "test_rmse", "reg"):
            assert len(mlflow_client.get_metric_history(run.info.run_id, name)) == steps
        assert run.data.metrics["final_test_rmse"] == pytest.approx(row["test_rmse"], rel=1e-9)
        assert {a.path for a in mlflow_client.list_artifacts(run.info.run_id)} == {
            "history.csv",
            "metrics.json",
            "model.pt",
        }

    # every run was logged by the sweep's one logger process, not by its train job
    assert "run logger started" in tiny_sweep.output
    train_logs = list(work.glob("results/test/logs/train/**/*.log"))
    assert len(train_logs) == 4
    for log in train_logs:
        assert re.search(r"MLflow child run \w+ under parent .* logged by the run logger \(pid \d+\)", log.read_text())

    # nothing left to do; a finished sweep does not retrain
    assert "Nothing to be done" in snakemake(work, "-n").output
    print(f"tiny sweep: {elapsed:.1f} s")


# ---- interruptions ------------------------------------------------------------------------------------------


def start(work: Path, log_path: Path, env=None) -> subprocess.Popen:
    handle = open(log_path, "w")
    # SIGINT back to its default: a test run started in the background (nohup, `cmd &`) inherits
    # SIGINT ignored, and Snakemake would then never see the Ctrl-C this test sends
    return subprocess.Popen(
        command(),
        cwd=work,
        env=env or environment(),
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=default_sigint,
    )


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_finished(log_path: Path, count: int, process: subprocess.Popen, timeout=180) -> set[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = finished_train_outputs(log_path.read_text())
        if len(done) >= count:
            return done
        if process.poll() is not None:
            raise AssertionError(f"snakemake ended before {count} train jobs finished:\n{log_path.read_text()}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {count} finished train jobs")


def logger_serving(work: Path) -> bool:
    """Whether the run logger of the working directory ``work`` answers (kanlib.workflow.runlog)."""
    from kanlib.workflow import runlog

    connection = runlog._connect(runlog.socket_path(work))
    if connection is None:
        return False
    connection.close()
    return True


def assert_logger_ends(work: Path, timeout=15.0) -> None:
    """The run logger outlives no Snakemake process it serves (it runs in a session of its own, so a
    signal to Snakemake's process group does not reach it)."""
    from kanlib.workflow import runlog

    deadline = time.monotonic() + timeout
    while logger_serving(work) or runlog.socket_path(work).exists():
        assert time.monotonic() < deadline, "the run logger is still running after its Snakemake ended"
        time.sleep(0.2)


def test_resume_after_sigint_and_sigkill(tmp_path):
    """Interrupt a sweep twice (Ctrl-C, then SIGKILL of everything); the same command finishes it
    without retraining any finished level."""
    work = workdir(tmp_path, grids=[3, 6, 12])
    n_jobs = 6

    # 1. Ctrl-C (SIGINT to the process group) once a level has finished
    process = start(work, tmp_path / "run1.log")
    first = wait_for_finished(tmp_path / "run1.log", 1, process)
    # Snakemake's log handler swallows a KeyboardInterrupt that lands while it is writing a
    # record (snakemake/logging.py), so, like a user, press Ctrl-C again until it stops
    for _ in range(6):
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            continue
    assert process.wait(timeout=120) != 0
    assert_logger_ends(work)
    first = finished_train_outputs((tmp_path / "run1.log").read_text())
    before = snapshot(work, first)
    assert not list((work / ".snakemake" / "locks").glob("*"))  # a clean exit unlocks

    # 2. the same command again, then SIGKILL to all its processes once one more level has finished
    process = start(work, tmp_path / "run2.log")
    second = wait_for_finished(tmp_path / "run2.log", 1, process)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert list((work / ".snakemake" / "locks").glob("*"))  # a killed Snakemake leaves its locks
    assert_logger_ends(work)  # ... but no logger
    time.sleep(0.5)
    second = finished_train_outputs((tmp_path / "run2.log").read_text())
    assert not second & first  # nothing finished in run 1 ran again
    before.update(snapshot(work, second))

    # 3. the same command once more finishes the sweep
    result = snakemake(work)
    assert "Removed stale Snakemake lock" in result.output and "run logger started" in result.output
    for metrics_file in set(before) | finished_train_outputs(result.output):  # logged by a logger, not a job
        level = Path(metrics_file).parent.relative_to("results/test/runs")
        log = (work / "results/test/logs/train" / level).with_suffix(".log").read_text()
        assert "logged by the run logger" in log or "already complete" in log, log
    assert snapshot(work, before) == before  # finished levels untouched (same file, same MLflow run)
    rerun = finished_train_outputs(result.output)
    assert not rerun & set(before) and len(rerun) + len(before) == n_jobs
    assert len(pd.read_csv(work / "results/test/results.csv")) == n_jobs
    frame = assert_one_finished_child_per_job(work, n_jobs)
    assert frame[frame["tags.mlflow.parentRunId"].isna()]["status"].iloc[0] == "FINISHED"
    assert not list(work.rglob("*.tmp")) and not list(work.rglob("unsynced"))


def processes_in(work: Path) -> list[int]:
    """Every process working in ``work``: Snakemake, its jobs, the warm process and its children, the
    run logger (all of them start in the sweep's folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if os.readlink(entry / "cwd") == str(work):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def kill_everything_in(work: Path) -> None:
    """kill -9 of every process of the sweep at once (a power cut, the OOM killer, `kill -9` of the tree)."""
    for _ in range(50):
        pids = processes_in(work)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    raise AssertionError(f"processes survive in {work}: {processes_in(work)}")


@pytest.mark.parametrize("moment", ["trained", "logging", "logged", "linked", "placed"])
def test_a_kill_at_any_moment_of_a_job_leaves_one_finished_run_per_job(tmp_path, moment):
    """kill -9 of everything while the first level's files are in unsynced/ (trained), once its run exists
    but before the job recorded its id (logging), after that (logged: the run RUNNING), after the hard
    links to .completed/ (linked), after the outputs were placed, before the run is FINISHED (placed):
    the rerun finishes the sweep with exactly one FINISHED run per job and no run left RUNNING (a run
    the rerun could not adopt ends KILLED), and a trained level is not trained again."""
    work = workdir(tmp_path, data_sizes=[100])
    level = work / RUNS / "N100_seed0" / "G3"
    process = start(work, tmp_path / "killed.log", env=environment(KANLIB_TEST_PAUSE_AT=moment))
    deadline = time.monotonic() + 180
    while not (level / f".paused-{moment}").exists():
        assert time.monotonic() < deadline and process.poll() is None, (tmp_path / "killed.log").read_text()
        time.sleep(0.1)
    kill_everything_in(work)
    process.wait(timeout=60)
    (level / f".paused-{moment}").unlink()  # (the test's own marker)
    snakemake(work)
    frame = assert_one_finished_child_per_job(work, 2)
    kids = children(frame)
    assert set(kids["status"]) <= {"FINISHED", "KILLED"}, kids["status"].tolist()
    log = (work / "results/test/logs/train/exp_sin_pi_x_plus_y2/w2-1-1_k3/N100_seed0/G3.log").read_text()
    assert "trained in" not in log.split("job exp_sin_pi_x_plus_y2")[-1], log  # the rerun's part of the log
    level_runs = kids[kids["tags.kanlib.job"].str.endswith("G3")]
    expected = ["FINISHED", "KILLED"] if moment == "logging" else ["FINISHED"]  # logged again, or adopted
    assert sorted(level_runs["status"]) == expected
    assert len(pd.read_csv(work / "results/test/results.csv")) == 2
    assert not list(work.rglob("unsynced"))


def mark_incomplete(work: Path, outputs) -> None:
    """What a kill right after a job's outputs appeared leaves: Snakemake's 'incomplete' records
    (written when the job started, removed when the main process records it done)."""
    from base64 import urlsafe_b64encode

    folder = work / ".snakemake" / "incomplete"
    folder.mkdir(parents=True, exist_ok=True)
    for path in outputs:
        (folder / urlsafe_b64encode(str(path).encode()).decode()).write_text('{"external_jobid": null}')


def test_a_level_finished_just_before_a_kill_is_neither_retrained_nor_logged_twice(tmp_path):
    work = workdir(tmp_path, data_sizes=[100])
    snakemake(work)
    level = f"{RUNS}/N100_seed0/G6"
    before = json.loads((work / level / "metrics.json").read_text())
    model_bytes = (work / level / "model.pt").read_bytes()
    mark_incomplete(work, [f"{level}/{name}" for name in ("model.pt", "history.csv", "metrics.json")])
    assert re.search(r"^train\s+1$", snakemake(work, "-n").output, re.M)  # Snakemake would run the job again
    rerun = snakemake(work)
    log = (work / "results/test/logs/train/exp_sin_pi_x_plus_y2/w2-1-1_k3/N100_seed0/G6.log").read_text()
    assert "already complete: restored the outputs" in log and "trained in" not in log
    after = json.loads((work / level / "metrics.json").read_text())
    assert after == before and (work / level / "model.pt").read_bytes() == model_bytes
    frame = assert_one_finished_child_per_job(work, 2)
    assert "tags.kanlib.superseded_by" not in frame or frame["tags.kanlib.superseded_by"].isna().all()
    assert "Nothing to be done" in snakemake(work, "-n").output and rerun.returncode == 0


def test_killing_only_the_main_snakemake_never_runs_a_job_twice(tmp_path):
    """kill -9 of the main process (the OOM killer, a closed terminal): its jobs live on. The rerun
    keeps Snakemake's lock while they run (instead of starting the same jobs beside them), and once
    they have ended finishes the sweep with one FINISHED run per job."""
    work = workdir(tmp_path, data_sizes=[1000], grids=[3, 6], steps=40)
    log_path = tmp_path / "first.log"
    process = start(work, log_path)
    deadline = time.monotonic() + 180
    while not list(work.glob("results/test/logs/train/**/G3.log")):  # a train job is running
        assert time.monotonic() < deadline and process.poll() is None, log_path.read_text()
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)  # only the main process; its job survives
    process.wait()
    assert_logger_ends(work)  # its logger goes with it; a surviving job logs its run itself
    survivors = subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True, text=True).stdout.split()
    blocked = snakemake(work, check=False)
    if survivors and subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True).returncode == 0:
        assert blocked.returncode != 0 and "are still running" in blocked.output
    while subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline + 120
        time.sleep(0.2)
    snakemake(work)
    assert_one_finished_child_per_job(work, 2)
    failed = children(runs(work))
    assert (failed["status"] == "FAILED").sum() == 0


# ---- failures -------------------------------------------------------------------------------------------------


def test_diverged_chain_fails_alone(tmp_path):
    """A fit whose loss overflows fails its job and its MLflow run; --keep-going finishes the other chain."""
    work = workdir(tmp_path, functions=["exp_sin_pi_x_plus_y2", "blowup:f"], data_sizes=[100])
    (work / "blowup.py").write_text("def f(x):\n    '''1e200 x'''\n    return 1e200 * x[:, [0]]\n\nf.n_var = 2\n")
    result = snakemake(work, "--keep-going", check=False)
    assert result.returncode != 0
    assert "training diverged for blowup:f w2-1-1 k3 N100 seed0 G3: training diverged at step 0" in result.output
    blowup = work / "results/test/runs/blowup--f/w2-1-1_k3/N100_seed0"
    assert not (blowup / "G3" / "metrics.json").exists() and not (blowup / "G6").exists()
    for grid in (3, 6):
        assert (work / RUNS / f"N100_seed0/G{grid}/metrics.json").is_file()
    frame = runs(work)
    kids = children(frame)
    failed = kids[kids["status"] == "FAILED"]
    assert failed["tags.kanlib.job"].tolist() == ["blowup--f/w2-1-1_k3/N100_seed0/G3"]
    assert "diverged" in failed["tags.kanlib.error"].iloc[0]
    assert (kids[kids["status"] == "FINISHED"]["params.function"] == "exp_sin_pi_x_plus_y2").sum() == 2
    parent = frame[frame["tags.mlflow.parentRunId"].isna()].iloc[0]
    assert parent["status"] == "FAILED"  # onerror
    # a partial report of what finished, the missing levels listed with their reasons
    partial = pd.read_csv(work / "results/test/partial/results.csv")
    assert len(partial) == 4 and partial["test_rmse"].notna().sum() == 2
    reasons = dict(zip(partial["grid_size"][partial["test_rmse"].isna()], partial["reason"].dropna()))
    assert "training diverged" in reasons[3]
    assert reasons[6] == "not run: the job it starts from (blowup:f w2-1-1 k3 N100 seed0 G3) did not finish"
    summary = (work / "results/test/partial/summary.md").read_text()
    assert "**Partial sweep.** 2 of 4 jobs finished" in summary and "**Answer.**" in summary
    assert (work / "results/test/partial/exp_sin_pi_x_plus_y2/w2-1-1_k3/test_rmse_vs_grid.png").is_file()
    assert (
        parent["tags.kanlib.outcome"] == "PARTIAL"
        and "blowup:f w2-1-1 k3 N100 seed0 G3" in (parent["tags.mlflow.note.content"])
    )
    assert "Partial report: 2 jobs finished, 2 missing" in result.output
    assert "diverged" in (work / "results/test/logs/train/blowup--f/w2-1-1_k3/N100_seed0/G3.log").read_text()


def test_unreachable_tracking_store_loses_nothing(tmp_path):
    """With the store unreachable a train job fails naming its URI but keeps what it trained;
    once the store is back, the same command logs that result without training again."""
    work = workdir(tmp_path, mlflow={"retry_seconds": 1})
    target = f"{RUNS}/N100_seed0/G3/metrics.json"
    snakemake(work, "results/test/mlflow_parent.json")  # the store and the parent run exist

    down = snakemake(work, target, check=False, env=environment(MLFLOW_TRACKING_URI="http://127.0.0.1:9"))
    assert down.returncode != 0
    assert "MLflow tracking store http://127.0.0.1:9 is unreachable" in down.output
    unsynced = work / RUNS / "N100_seed0/G3/unsynced"
    assert sorted(p.name for p in unsynced.iterdir()) == ["history.csv", "metrics.json", "model.pt"]
    kept = json.loads((unsynced / "metrics.json").read_text())
    assert kept["mlflow_synced"] is False and not (work / target).exists()

    snakemake(work, target)
    final = json.loads((work / target).read_text())
    assert final["wall_time_s"] == kept["wall_time_s"] and final["model_sha256"] == kept["model_sha256"]
    assert final["mlflow_synced"] is True and not unsynced.exists()
    log = (work / "results/test/logs/train/exp_sin_pi_x_plus_y2/w2-1-1_k3/N100_seed0/G3.log").read_text()
    assert "reusing the result" in log and "trained in" not in log
    run = client(work).get_run(final["mlflow_run_id"])
    assert run.info.status == "FINISHED" and len(client(work).get_metric_history(run.info.run_id, "test_rmse")) == 5


# ---- configuration errors stop everything before any job --------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"bogus_key": 1}, "config error: unknown key(s) 'bogus_key'"),
        ({"grids": [0, 3]}, "config error: 'grids[0]' = 0: 0 is less than the minimum of 1"),
        ({"grids": [6, 3]}, "config error: 'grids' = [6, 3]: must be strictly increasing"),
        ({"data_sizes": []}, "config error: 'data_sizes' = []: [] should be non-empty"),
        ({"functions": ["no_such_module_xyz:f"]}, "cannot import module 'no_such_module_xyz'"),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, overrides, message):
    work = workdir(tmp_path, **overrides)
    result = snakemake(work, check=False)
    assert result.returncode != 0 and message in result.output
    assert not (work / "results").exists() and not (work / "mlflow.db").exists()


# ---- concurrent sweeps and the parent's status ------------------------------------------------------------


def test_two_sweeps_started_together_in_a_fresh_folder_both_finish(tmp_path):
    """Both used to fail in mlflow_parent while MLflow migrated the new SQLite schema twice at once,
    leaving the store half-migrated for good."""
    work = workdir(tmp_path)
    for name in ("par1", "par2"):
        (work / "config" / f"{name}.yaml").write_text(yaml.safe_dump({"sweep": name, "data_sizes": [100]}))
    processes = [
        subprocess.Popen(
            [
                *command("results/" + name + "/report/mlflow.json", tiny=False),
                "--configfile",
                "config/test.yaml",
                f"config/{name}.yaml",
            ],
            cwd=work,
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("par1", "par2")
    ]
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-4000:]
    frame = runs(work)
    parents = frame[frame["tags.mlflow.parentRunId"].isna()]
    assert sorted(parents["tags.mlflow.runName"]) == ["par1", "par2"] and set(parents["status"]) == {"FINISHED"}
    assert (children(frame)["status"] == "FINISHED").sum() == 4  # 2 grid levels x 1 N per sweep


def test_a_failing_config_under_a_finished_sweeps_name_leaves_its_parent_finished(tmp_path):
    work = workdir(tmp_path, data_sizes=[100])
    snakemake(work)
    parent_id = json.loads((work / "results/test/mlflow_parent.json").read_text())["run_id"]
    assert client(work).get_run(parent_id).info.status == "FINISHED"
    # passes the config check (a 4-point probe) and fails in its dataset job
    (work / "bigfail.py").write_text(
        "def f(x):\n    if x.shape[0] > 4:\n        raise RuntimeError('no')\n    return x[:, [0]]\n\nf.n_var = 2\n"
    )
    bad = workdir(tmp_path / "bad", functions=["bigfail:f"], data_sizes=[100])
    (work / "config" / "extra.yaml").write_text((bad / "config" / "extra.yaml").read_text())
    failed = snakemake(work, check=False)
    assert failed.returncode != 0 and "stays FINISHED" in failed.output
    assert client(work).get_run(parent_id).info.status == "FINISHED"
    # the good config again: nothing to do, and the parent still says FINISHED
    (work / "config" / "extra.yaml").write_text(yaml.safe_dump({"data_sizes": [100]}))
    again = snakemake(work)
    assert "Nothing to be done" in again.output
    assert client(work).get_run(parent_id).info.status == "FINISHED"


def test_a_failed_parent_is_finished_again_once_every_output_is_there(tmp_path):
    work = workdir(tmp_path, data_sizes=[100])
    snakemake(work)
    parent_file = work / "results/test/mlflow_parent.json"
    parent_id = json.loads(parent_file.read_text())["run_id"]
    # what a failed invocation that had re-opened the parent leaves: FAILED and the marker
    client(work).set_terminated(parent_id, "FAILED")
    (work / "results/test/mlflow_parent.failed").write_text("earlier\n")
    again = snakemake(work)
    assert "Nothing to be done" in again.output and "set FINISHED again" in again.output
    assert client(work).get_run(parent_id).info.status == "FINISHED"
    assert not (work / "results/test/mlflow_parent.failed").exists()


def test_cli_overrides_work(tmp_path):
    work = workdir(tmp_path)
    dry = snakemake(work, "-n", "--config", "grids=[3,6,12]", "steps=7", 'mlflow={"experiment": "other"}').output
    assert re.search(r"^train\s+6$", dry, re.M)
    bad = snakemake(work, "-n", "--config", "optimizer=SGD", check=False)
    assert bad.returncode != 0
    assert "config error: 'optimizer' = 'SGD': 'SGD' is not one of ['LBFGS', 'Adam']" in bad.output


def test_lint_is_clean_except_the_documented_waiver(tmp_path):
    work = workdir(tmp_path)
    result = snakemake(work, "--lint", tiny=False, check=False)
    titles = set(re.findall(r"^    \* (.+?):?$", result.output, re.M))
    # waived in workflow/README.md: the workflow runs in the project's one environment (make setup)
    assert titles <= {"Specify a conda environment or container for each rule."}, titles


# ---- a results folder from an earlier kanlib ---------------------------------------------------------------

EARLIER = "4ae1920"  # the last commit before the one-implementation core and the family registry


def test_a_finished_sweep_of_an_earlier_kanlib_resumes_without_retraining(tmp_path):
    """A tiny sweep with KANs, MLPs and two seeds finished by kanlib at 4ae1920 (its own Snakefile and
    package, from a git worktree): this checkout's Snakefile has no train job to run on it, and running it
    trains nothing and logs no second run of any job."""
    if shutil.which("git") is None:
        pytest.skip("needs git for a worktree of the earlier commit")
    found = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{EARLIER}^{{commit}}"], capture_output=True)
    if found.returncode != 0:
        pytest.skip(f"commit {EARLIER} is not in this clone's history")
    earlier = tmp_path / "earlier"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(earlier), EARLIER], check=True,
                   capture_output=True)  # fmt: skip
    try:
        work = workdir(tmp_path, seeds=[0, 1], mlp={"widths": [[2, 4, 1]], "activations": ["silu"], "steps": 4})
        shutil.rmtree(work / "config")  # the configs of that time (a user's own, as they were)
        shutil.copytree(earlier / "config", work / "config")
        extra = {"seeds": [0, 1], "mlp": {"widths": [[2, 4, 1]], "activations": ["silu"], "steps": 4}}
        (work / "config" / "extra.yaml").write_text(yaml.safe_dump(extra))
        old = subprocess.run(
            [SNAKEMAKE, "-s", str(earlier / "Snakefile"), "--cores", "2", "--configfile", "config/test.yaml",
             "config/extra.yaml"],
            cwd=work, env=environment(PYTHONPATH=str(earlier)), capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert old.returncode == 0, (old.stdout + old.stderr)[-4000:]
        # that kanlib trained one initialisation per chain: the same setting now (the default, 4, retrains)
        (work / "config" / "extra.yaml").write_text(yaml.safe_dump({**extra, "restarts": 1}))
        before = children(runs(work))  # 2 sizes x (2 levels + 1 MLP) x 2 seeds
        assert len(before) == 12 and before["tags.kanlib.job"].is_unique and (before["status"] == "FINISHED").all()
        dry = snakemake(work, "-n")
        assert not re.search(r"^train\w*\s+\d+$", dry.output, re.M), dry.output[-3000:]  # no train job to run
        snakemake(work)
        assert not re.search(r"rule train", snakemake(work).output)  # (nothing left: the run above did it all)
        kids = children(runs(work))
        assert set(kids["run_id"]) == set(before["run_id"]) and (kids["status"] == "FINISHED").all()
        results = pd.read_csv(work / "results/test/results.csv")
        assert sorted(results["family"]) == ["kan"] * 8 + ["mlp"] * 4
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(earlier)], capture_output=True)
