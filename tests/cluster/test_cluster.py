"""The sweep on a real SLURM, logging to a real ``mlflow server`` (``make test-cluster``).

Needs the single-node SLURM of tests/cluster/start_slurm.sh (root; the session fixture runs the
script, which is idempotent and installs SLURM with apt when missing). Each test works in its own
temporary working directory, as tests/workflow/test_workflow.py does, submits through profiles/slurm (or
profiles/slurm-gpu) and runs its own mlflow server on a free loopback port with a temporary SQLite
store (kanlib.workflow.mlflow_server, the documented way). Every Snakemake run is wrapped in `timeout`;
SLURM jobs a test leaves behind are cancelled by id.
"""

from __future__ import annotations

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

from kanlib.workflow import mlflow_server, sweep

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
RUNS = "results/test/runs/exp_sin_pi_x_plus_y2/w2-1-1_k3"
LEVELS = ["N100_seed0/G3", "N100_seed0/G6", "N200_seed0/G3", "N200_seed0/G6"]
# what a level measured: identical on SLURM and locally (same data, seeds and thread count)
MEASURED = ["train_rmse", "test_rmse", "min_test_rmse", "reg", "n_evals", "n_params", "model_sha256"]
RESULT_COLUMNS = [
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
    "device",
    "prev_grid_size",
    "grid_level",
    "n_evals",
    "reg",
    "dtype",
]
SNAKEMAKE_LIMIT = 300  # seconds for one Snakemake run on the cluster

pytestmark = pytest.mark.cluster


# ---- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def slurm():
    """The single-node SLURM (started if it is not running)."""
    if shutil.which("sbatch") is None and os.geteuid() != 0:
        pytest.fail("SLURM is not installed and installing it needs root: run `make test-cluster` as root")
    result = subprocess.run(
        ["bash", str(REPO / "tests/cluster/start_slurm.sh")], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"tests/cluster/start_slurm.sh failed:\n{result.stdout}{result.stderr}"
    return shutil.which("sbatch")


@pytest.fixture
def server(tmp_path):
    """A real mlflow server on a free loopback port, SQLite store in tmp; stopped afterwards."""
    folder = tmp_path / "mlflow-server"
    info = mlflow_server.start(folder, port=0, timeout=120)
    yield info
    mlflow_server.stop(folder)


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    """The tiny sweep's train levels and table from a local run (default executor, SQLite store)."""
    work = workdir(tmp_path_factory.mktemp("local"))
    result = run(work, "results/test/results.csv", profile=None, env=environment())
    assert result.returncode == 0, result.output[-5000:]
    return {"metrics": level_metrics(work), "results": pd.read_csv(work / "results/test/results.csv")}


# ---- helpers ------------------------------------------------------------------------------------------


def workdir(tmp_path: Path, **overrides) -> Path:
    work = tmp_path / "work"
    shutil.copytree(REPO / "config", work / "config")
    (work / "config" / "extra.yaml").write_text(yaml.safe_dump(overrides))
    return work


def environment(**extra) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MLFLOW_", "KANLIB_SLURM_", "SNAKEMAKE_", "SLURM_"))
    }
    env.update(MLFLOW_DISABLE_TELEMETRY="true", **extra)
    return env


def command(*targets, profile="slurm", extra=(), configs=("config/test.yaml", "config/extra.yaml")) -> list[str]:
    profile_args = ["--profile", str(REPO / "profiles" / profile)] if profile else ["--cores", "2"]
    return [
        "timeout",
        "-k",
        "30",
        str(SNAKEMAKE_LIMIT),
        SNAKEMAKE,
        "-s",
        str(REPO / "Snakefile"),
        *profile_args,
        *extra,
        *targets,
        "--configfile",
        *configs,
    ]


def run(work: Path, *targets, profile="slurm", env=None, extra=(), configs=None) -> subprocess.CompletedProcess:
    configs = configs or ("config/test.yaml", "config/extra.yaml")
    try:
        result = subprocess.run(
            command(*targets, profile=profile, extra=extra, configs=configs),
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=SNAKEMAKE_LIMIT + 60,
        )
    finally:
        cancel_leftover_jobs(work)
    result.output = result.stdout + result.stderr
    return result


def slurm_job_ids(work: Path) -> dict[str, set[int]]:
    """SLURM job ids that Snakemake submitted from ``work``, by rule (from .snakemake/slurm_logs/rule_<rule>/)."""
    ids: dict[str, set[int]] = {}
    for log in (work / ".snakemake" / "slurm_logs").rglob("*.log"):
        top = log.relative_to(work / ".snakemake" / "slurm_logs").parts[0]
        ids.setdefault(top.removeprefix("rule_"), set()).add(int(log.stem))
    return ids


def cancel_leftover_jobs(work: Path) -> None:
    ids = [str(i) for group in slurm_job_ids(work).values() for i in group]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=30)


def scontrol_job(job_id) -> dict[str, str]:
    text = subprocess.run(["scontrol", "show", "job", str(job_id)], capture_output=True, text=True, timeout=30).stdout
    return dict(re.findall(r"(\w+)=(\S*)", text))


def level_metrics(work: Path) -> dict[str, dict]:
    return {level: json.loads((work / RUNS / level / "metrics.json").read_text()) for level in LEVELS}


def level_wildcards(level: str) -> str:
    """N100_seed0/G3 -> 100_0__G3 (how the plugin names a train job's n, seed and level wildcards, its '/' as '_')."""
    return level.replace("N", "").replace("_seed", "_").replace("/G", "__G")


def train_log(work: Path, level: str) -> str:
    return (work / "results/test/logs/train/exp_sin_pi_x_plus_y2/w2-1-1_k3" / f"{level}.log").read_text()


def mlflow_runs(uri: str) -> pd.DataFrame:
    import mlflow

    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.search_runs(experiment_names=["kan-scaling"], output_format="pandas")
    finally:
        mlflow.set_tracking_uri(None)


def assert_current_runs_match_files(uri: str, work: Path) -> tuple[pd.Series, pd.DataFrame]:
    """One parent (FINISHED); per level exactly one current FINISHED child under it, the run its
    metrics.json names, whose final metrics equal the file's. Returns (parent, children)."""
    from mlflow.tracking import MlflowClient

    frame = mlflow_runs(uri)
    parents = frame[frame["tags.mlflow.parentRunId"].isna()]
    assert len(parents) == 1, parents[["run_id", "status"]]
    parent = parents.iloc[0]
    assert parent["status"] == "FINISHED"
    children = frame[frame["tags.mlflow.parentRunId"].notna()]
    assert (children["tags.mlflow.parentRunId"] == parent["run_id"]).all()
    superseded = children.get("tags.kanlib.superseded_by", pd.Series(index=children.index, dtype=object))
    current = children[superseded.isna()]
    assert (current["status"] == "FINISHED").all(), current[["tags.kanlib.job", "status"]]
    assert sorted(current["tags.kanlib.job"]) == sorted(f"exp_sin_pi_x_plus_y2/w2-1-1_k3/{lvl}" for lvl in LEVELS)
    client = MlflowClient(tracking_uri=uri)
    for level, metrics in level_metrics(work).items():
        run = client.get_run(metrics["mlflow_run_id"])
        assert run.info.status == "FINISHED" and run.data.tags["kanlib.job"].endswith(level)
        assert run.data.metrics["final_train_rmse"] == metrics["train_rmse"]
        assert run.data.metrics["final_test_rmse"] == metrics["test_rmse"]
        assert run.data.metrics["total_evals"] == metrics["n_evals"]
        assert len(client.get_metric_history(run.info.run_id, "test_rmse")) == metrics["steps"]
    return parent, children


def assert_same_measurements(work: Path, reference: dict) -> None:
    for level, metrics in level_metrics(work).items():
        assert {key: metrics[key] for key in MEASURED} == {key: reference["metrics"][level][key] for key in MEASURED}, (
            level
        )
    results = pd.read_csv(work / "results/test/results.csv")
    pd.testing.assert_frame_equal(results[RESULT_COLUMNS], reference["results"][RESULT_COLUMNS])


# ---- the tiny sweep on SLURM -----------------------------------------------------------------------------


def test_tiny_sweep_on_slurm_with_mlflow_server(slurm, server, local_reference, tmp_path):
    work = workdir(tmp_path)
    env = environment(MLFLOW_TRACKING_URI=server.uri, KANLIB_SLURM_PARTITION="debug")
    started = time.monotonic()
    result = run(work, env=env)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.output[-6000:]

    # Only train jobs went to SLURM, one job each; the cheap rules ran locally.
    submitted = slurm_job_ids(work)
    assert set(submitted) == {"train"}, submitted
    metrics = level_metrics(work)
    job_ids = {level: int(m["slurm_job_id"]) for level, m in metrics.items()}
    assert set(job_ids.values()) == submitted["train"] and len(submitted["train"]) == len(LEVELS)
    for level, job_id in job_ids.items():
        job = scontrol_job(job_id)
        assert job["JobState"] == "COMPLETED" and job["Partition"] == "debug", job
        assert job["Comment"] == f"rule_train_wildcards_exp_sin_pi_x_plus_y2_w2-1-1_k3_{level_wildcards(level)}", job
        assert int(job["NumCPUs"]) == 1 and job["MinMemoryNode"] == "800M" and job["TimeLimit"] == "00:06:00", job
    listed = subprocess.run(
        ["squeue", "-h", "--states=all", "-o", "%i %T", "-j", ",".join(map(str, job_ids.values()))],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.split()
    assert dict(zip(listed[::2], listed[1::2])) == {str(i): "COMPLETED" for i in job_ids.values()}

    # MLflow: everything in the server's store, all FINISHED under one parent, with the SLURM job ids.
    parent, children = assert_current_runs_match_files(server.uri, work)
    assert len(children) == len(LEVELS)
    for level, m in metrics.items():
        row = children[children["run_id"] == m["mlflow_run_id"]].iloc[0]
        assert row["tags.slurm_job_id"] == str(job_ids[level])
        assert m["mlflow_tracking_uri"] == server.uri  # the exported URI reached the SLURM job
    assert parent["tags.mlflow.runName"] == "test"
    assert (work / "results/test/report/mlflow.json").is_file()  # report rules ran (locally)
    assert not (work / "mlflow.db").exists() and not (work / "mlruns").exists()  # nothing went to a local store

    # Identical to a local run of the same config with the same thread count.
    assert_same_measurements(work, local_reference)
    print(
        f"\nSLURM tiny sweep: {elapsed:.1f} s wall, {len(submitted['train'])} SLURM jobs "
        f"({sorted(submitted['train'])}), {len(children) + 1} MLflow runs (1 parent, {len(children)} children)"
    )


# ---- the server dies mid-sweep --------------------------------------------------------------------------------


def test_server_killed_mid_sweep_loses_nothing(slurm, server, local_reference, tmp_path):
    """Kill the mlflow server once the first level is logged; the jobs still training keep their results
    in unsynced/ and fail naming the URI. Recovery as documented: restart the server, rerun the same
    command. Then every level has a FINISHED run equal to its files, none trained twice."""
    work = workdir(tmp_path, mlflow={"retry_seconds": 1})
    env = environment(MLFLOW_TRACKING_URI=server.uri)
    target = "results/test/results.csv"
    extra = ["--retries", "0"]
    log_path = tmp_path / "run1.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command(target, extra=extra),
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        deadline = time.monotonic() + SNAKEMAKE_LIMIT
        while not re.search(r"^Finished jobid: \d+ \(Rule: train\)", log_path.read_text(), re.M):
            assert process.poll() is None, f"snakemake ended early:\n{log_path.read_text()[-5000:]}"
            assert time.monotonic() < deadline, "no train job finished"
            time.sleep(0.2)
        os.killpg(server.pid, signal.SIGKILL)  # the server dies (as in a crash: no clean shutdown)
        while "Error in rule train" not in log_path.read_text():
            assert process.poll() is None, f"snakemake ended without a failed job:\n{log_path.read_text()[-5000:]}"
            assert time.monotonic() < deadline, "no train job failed"
            time.sleep(0.2)
        # Recovery, part 1: restart the server (same store, same port) while this Snakemake winds down.
        restarted = mlflow_server.start(server.dir, port=server.port, timeout=120)
        assert restarted.uri == server.uri
        assert process.wait(timeout=SNAKEMAKE_LIMIT) != 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        cancel_leftover_jobs(work)
    stashed = {
        level: json.loads((work / RUNS / level / "unsynced" / "metrics.json").read_text())
        for level in LEVELS
        if (work / RUNS / level / "unsynced" / "metrics.json").is_file()
    }
    assert stashed, "no level was left unsynced"
    assert all(not m["mlflow_synced"] for m in stashed.values())
    for level in stashed:  # each failed naming the URI (its own log and its SLURM job's log)
        message = f"MLflow tracking store {server.uri} is unreachable"
        assert message in train_log(work, level)
        (slurm_log,) = (work / ".snakemake/slurm_logs/rule_train").glob(f"*_{level_wildcards(level)}/*.log")
        assert message in slurm_log.read_text()

    # Recovery, part 2: rerun the same command.
    second = run(work, target, env=env, extra=extra)
    assert second.returncode == 0, second.output[-6000:]

    parent, children = assert_current_runs_match_files(server.uri, work)
    final = level_metrics(work)
    for level, kept in stashed.items():  # synced from unsynced/, not trained again
        assert final[level]["model_sha256"] == kept["model_sha256"]
        assert final[level]["wall_time_s"] == kept["wall_time_s"]
        assert "reusing the result" in train_log(work, level)
        assert not (work / RUNS / level / "unsynced").exists()
    assert_same_measurements(work, local_reference)
    print(
        f"\nserver killed mid-sweep: {len(stashed)} level(s) kept in unsynced/ and synced by the rerun; "
        f"{len(children)} child runs ({(children['status'] != 'FINISHED').sum()} interrupted ones superseded)"
    )


# ---- a paper preset's batched seeds on SLURM ---------------------------------------------------------------

PAPER_MINIATURE = {  # config/paper_fig3_1.yaml (3 seeds, batch_seeds on) cut to one function and tiny sizes
    "functions": [{"name": "xy", "widths": [[2, 2, 1]], "mlp_widths": [[2, 5, 1]]}],
    "grids": [3, 5],
    "steps": 2,
    "stop_grid_update_step": 1,
    "grid_update_num": 1,
    "data_sizes": [100],
    "test_num": 100,
}
PAPER_RUNS = "results/paper_fig3_1/runs/xy"
PAPER_SEEDS = [0, 1, 2]


def paper_metrics(work: Path) -> dict[str, dict]:
    """Every seed's metrics.json of the miniature: KAN levels G3 and G5 and the MLP, by job path."""
    jobs = [f"w2-2-1_k3/N100_seed{seed}/G{grid}" for seed in PAPER_SEEDS for grid in (3, 5)]
    jobs += [f"mlp_w2-5-1_silu/N100_seed{seed}" for seed in PAPER_SEEDS]
    return {job: json.loads((work / PAPER_RUNS / job / "metrics.json").read_text()) for job in jobs}


def test_paper_preset_trains_its_seeds_in_one_slurm_job_per_level(slurm, server, tmp_path):
    """config/paper_fig3_1.yaml through profiles/slurm: each grid level (and the MLP) is one SLURM job
    for its 3 seeds (train_seeds, train_mlp_seeds) with the resources sized for 3 models; every seed
    still gets its own files and FINISHED MLflow child run, equal to the same miniature run locally."""
    configs = ("config/paper_fig3_1.yaml", "config/extra.yaml")
    local = workdir(tmp_path / "local", **PAPER_MINIATURE)
    reference = run(local, profile=None, env=environment(), configs=configs)
    assert reference.returncode == 0, reference.output[-6000:]
    work = workdir(tmp_path / "slurm", **PAPER_MINIATURE)
    env = environment(MLFLOW_TRACKING_URI=server.uri, KANLIB_SLURM_PARTITION="debug")
    result = run(work, env=env, configs=configs)
    assert result.returncode == 0, result.output[-6000:]

    submitted = slurm_job_ids(work)
    assert {rule: len(ids) for rule, ids in submitted.items()} == {"train_seeds": 2 + 1}, submitted  # 2 levels, 1 MLP
    metrics = paper_metrics(work)
    by_job: dict[int, set[int]] = {}
    for job, m in metrics.items():
        by_job.setdefault(int(m["slurm_job_id"]), set()).add(m["seed"])
        # KAN seeds train as one stack, but at the first level, where each seed's restarts (4 by default)
        # train as a stack of their own; MLP seeds one after another in their job (faster on a CPU)
        first = job.endswith("G3")
        assert m["stack_size"] == (1 if job.startswith("mlp") or first else 3), job
        assert m["restarts"] == (4 if first else 1), job
        assert m["mlflow_tracking_uri"] == server.uri, job
    assert set(by_job) == submitted["train_seeds"]
    assert all(seeds == set(PAPER_SEEDS) for seeds in by_job.values())  # one job, the three seeds
    for job_id in by_job:
        job = scontrol_job(job_id)
        assert job["JobState"] == "COMPLETED" and job["Partition"] == "debug", job
        preset = yaml.safe_load((REPO / "config/paper_fig3_1.yaml").read_text())
        config = {**yaml.safe_load((REPO / "config/config.yaml").read_text()), **preset, **PAPER_MINIATURE}
        model, level = re.match(r"rule_train_seeds_wildcards_xy_(\S+?)_100_(_G\d+)?$", job["Comment"]).groups()
        wildcards = {"function": "xy", "model": model, "n": 100, "seed": 0, "level": (level or "").replace("_", "/")}
        spec = sweep.job_from_wildcards(config, wildcards)  # the MLP's budget: the KAN chain's 2 x 2 steps
        expected = sweep.job_family(spec).resources(config, spec, 1, 3)
        assert int(job["NumCPUs"]) == 1 and job["MinMemoryNode"] == f"{expected['mem_mb']}M", job
        assert job["TimeLimit"] == f"00:{expected['runtime']:02d}:00", job

    # MLflow: one FINISHED child per seed and job under the one parent, tagged with the stack's size.
    frame = mlflow_runs(server.uri)
    parents = frame[frame["tags.mlflow.parentRunId"].isna()]
    assert len(parents) == 1 and parents.iloc[0]["status"] == "FINISHED"
    children = frame[frame["tags.mlflow.parentRunId"].notna()]
    assert len(children) == len(metrics) and (children["status"] == "FINISHED").all()
    assert set(children["run_id"]) == {m["mlflow_run_id"] for m in metrics.values()}
    stack_sizes = {m["mlflow_run_id"]: str(m["stack_size"]) for m in metrics.values()}
    assert (children["tags.kanlib.stack_size"] == children["run_id"].map(stack_sizes)).all()

    # The same numbers as the local run (its seeds batched the same way, on this machine's CPU).
    for job, m in paper_metrics(local).items():
        for key in ("train_rmse", "test_rmse", "n_evals", "n_params", "model_sha256"):
            assert metrics[job][key] == m[key], (job, key)


# ---- the GPU profile ------------------------------------------------------------------------------------------


def test_gpu_profile_requests_a_gpu_and_device_cuda(slurm, tmp_path):
    """profiles/slurm-gpu: train jobs are submitted with --gpus (the model from KANLIB_SLURM_GPU_MODEL),
    their job step too, and they train with device cuda. The test node has no GPU: wrappers of sbatch
    and srun (first on PATH, which the jobs inherit) record the calls and drop --gpus; the job then
    fails, naming the missing CUDA, and its MLflow run is FAILED."""
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    for tool in ("sbatch", "srun"):
        (wrappers / tool).write_text(
            "#!/bin/bash\n"
            f'printf "%s\\n" "$*" >> {tmp_path}/{tool}_calls.txt\n'
            'args=(); for a in "$@"; do case "$a" in --gpus=*) ;; *) args+=("$a");; esac; done\n'
            f'exec {shutil.which(tool)} "${{args[@]}}"\n'
        )
        (wrappers / tool).chmod(0o755)
    work = workdir(tmp_path, mlflow={"retry_seconds": 2})
    env = environment(KANLIB_SLURM_GPU_MODEL="h200", KANLIB_SLURM_PARTITION="debug")
    env["PATH"] = f"{wrappers}:{env['PATH']}"
    level = f"{RUNS}/N100_seed0/G3/metrics.json"
    # Snakemake would idle ~20 s after the failure (the plugin backs off when no job succeeds): once it
    # has seen the job fail, stop it (Ctrl-C).
    log_path = tmp_path / "snakemake.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command(level, profile="slurm-gpu", extra=["--retries", "0"]),
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        deadline = time.monotonic() + SNAKEMAKE_LIMIT
        while "Error in rule train" not in log_path.read_text() and process.poll() is None:
            assert time.monotonic() < deadline, "the train job did not fail"
            time.sleep(0.2)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) != 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        cancel_leftover_jobs(work)
    assert "SLURM status is: 'FAILED'" in log_path.read_text()
    (sbatch,) = (tmp_path / "sbatch_calls.txt").read_text().splitlines()
    assert "--gpus=h200:1" in sbatch.split() and " -p debug " in sbatch and "--mem 2300" in sbatch, sbatch
    (srun,) = (tmp_path / "srun_calls.txt").read_text().splitlines()
    assert "--gpus=1" in srun.split(), srun
    log = (work / "results/test/logs/train/exp_sin_pi_x_plus_y2/w2-1-1_k3/N100_seed0/G3.log").read_text()
    assert "device 'cuda' requested but CUDA is not available" in log, log
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work}/mlflow.db")
    (failed,) = client.search_runs(
        [client.get_experiment_by_name("kan-scaling").experiment_id], "tags.`kanlib.role` = 'child'"
    )
    assert failed.info.status == "FAILED" and failed.data.params["device_requested"] == "cuda"
    (job_id,) = slurm_job_ids(work)["train"]
    assert failed.data.tags["slurm_job_id"] == str(job_id)
