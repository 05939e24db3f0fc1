"""The Snakemake profiles under profiles/ and the resources the rules request (no SLURM needed;
tests/cluster/test_cluster.py runs them on a real one)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import kan_resources

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
GPU_ONLY = {"set-resources", "config"}


def load_profile(name: str, **environ) -> dict:
    """A profile as Snakemake reads it (YTE template rendered with ``environ`` as the environment)."""
    import yte

    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith("KANLIB_SLURM_")]:
            del os.environ[key]
        os.environ.update(environ)
        with open(REPO / "profiles" / name / "config.yaml") as stream:
            return yte.process_yaml(stream, require_use_yte=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_all_profiles_live_in_profiles_where_snakemake_finds_the_default():
    # Snakemake 9 looks for the workflow profile in profiles/default next to the Snakefile (or in the
    # working directory); workflow/profiles/ would not be found with the Snakefile at the top level.
    assert sorted(p.name for p in (REPO / "profiles").iterdir()) == ["default", "slurm", "slurm-gpu"]
    default = yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())
    assert default["rerun-incomplete"] is True  # a hard kill's incomplete jobs are redone without asking
    # a changed training setting (params) or input reruns a job; the text of a rule's script: line does not
    assert {"params", "input", "mtime"} <= set(default["rerun-triggers"]) and "code" not in default["rerun-triggers"]


def test_slurm_profile_defaults_have_no_site_values():
    profile = load_profile("slurm")
    assert profile["executor"] == "slurm" and profile["slurm-status-command"] == "squeue"
    assert profile["default-resources"] == {"runtime": 30, "mem_mb": 1000}  # no partition, account or QOS
    assert "groups" not in profile  # grouping is opt-in
    assert load_profile("slurm", KANLIB_SLURM_GROUP_CHAINS="1")["groups"] == {"train": "chain", "train_seeds": "chain"}
    assert "groups" not in load_profile("slurm", KANLIB_SLURM_GROUP_CHAINS="0")


def test_site_settings_come_from_the_environment():
    profile = load_profile(
        "slurm-gpu",
        KANLIB_SLURM_PARTITION="gpu",
        KANLIB_SLURM_ACCOUNT="proj1",
        KANLIB_SLURM_QOS="short",
        KANLIB_SLURM_GPU_MODEL="a100",
        KANLIB_SLURM_GPUS="2",
    )
    assert profile["default-resources"] == {
        "runtime": 30,
        "mem_mb": 1000,
        "slurm_partition": "gpu",
        "slurm_account": "proj1",
        "qos": "short",
    }
    rules = ("train", "train_mlp", "train_seeds", "train_mlp_seeds")
    assert profile["set-resources"] == {rule: {"gpu": 2, "gpu_model": "a100"} for rule in rules}
    assert profile["config"] == {"device": "cuda"}
    assert load_profile("slurm-gpu")["set-resources"] == {rule: {"gpu": 1} for rule in rules}


@pytest.mark.parametrize("environ", [{}, {"KANLIB_SLURM_PARTITION": "p", "KANLIB_SLURM_ACCOUNT": "a"}])
def test_gpu_profile_is_the_slurm_profile_plus_the_gpu_part(environ):
    cpu, gpu = load_profile("slurm", **environ), load_profile("slurm-gpu", **environ)
    assert {key: value for key, value in gpu.items() if key not in GPU_ONLY} == cpu
    # the comments document the same variables
    names = set(re.findall(r"KANLIB_SLURM_\w+", (REPO / "profiles/slurm/config.yaml").read_text()))
    assert names <= set(re.findall(r"KANLIB_SLURM_\w+", (REPO / "profiles/slurm-gpu/config.yaml").read_text()))


def test_train_resources_scale_with_n_g_width_and_retries():
    small = kan_resources(100, 5, [2, 1, 1], 3, 50)
    assert small == {"mem_mb": 800, "runtime": 6, "cpus_per_task": 1}
    big_n = kan_resources(1_000_000, 5, [2, 1, 1], 3, 50)
    big_g = kan_resources(1_000_000, 1000, [2, 1, 1], 3, 50)
    wide = kan_resources(1_000_000, 5, [4, 4, 2, 1], 3, 50)
    # local B-splines and banded normal equations: neither grows much with G
    assert small["mem_mb"] < big_n["mem_mb"] <= big_g["mem_mb"] and big_n["mem_mb"] < wide["mem_mb"]
    assert small["runtime"] < big_n["runtime"] <= big_g["runtime"] and big_n["runtime"] < wide["runtime"]
    assert kan_resources(100, 5, [2, 1, 1], 3, 50, attempt=2) == {
        "mem_mb": 1600,
        "runtime": 12,
        "cpus_per_task": 1,
    }
    gpu = kan_resources(100, 5, [2, 1, 1], 3, 50, threads=4, device="cuda")
    assert gpu == {"mem_mb": 800 + 1500, "runtime": 6, "cpus_per_task": 4}


def test_slurm_dry_run_gives_train_jobs_their_resources(tmp_path):
    """Train jobs carry cpus_per_task (= threads), mem_mb and runtime from their family's estimate (kanlib.families).
    (That only they are submitted, the rest being localrules, is checked on a real SLURM.)"""
    shutil.copytree(REPO / "config", tmp_path / "config")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "KANLIB_SLURM_"))}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    result = subprocess.run(
        [
            SNAKEMAKE,
            "-s",
            str(REPO / "Snakefile"),
            "--profile",
            str(REPO / "profiles/slurm"),
            "-n",
            "--configfile",
            "config/test.yaml",
            "--config",
            "threads=2",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    blocks = re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)+)", result.stdout + result.stderr, re.M)
    train = [body for name, body in blocks if name == "train"]
    assert len(train) == 4
    for body in train:
        assert "cpus_per_task=2" in body and "mem_mb=800" in body and "runtime=6" in body, body
