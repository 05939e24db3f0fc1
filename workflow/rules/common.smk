# Helpers for the other .smk files: output paths, wildcards, the job list, resources.
# The logic lives in kanlib.workflow.sweep; this file only turns it into Snakemake patterns.
import os
import sys

import kanlib.workflow.sweep as sweep
from kanlib.workflow.runtime import clear_stale_snakemake_locks
from kanlib.workflow.tracking import resolve_tracking_uri

# A Snakemake killed with SIGKILL leaves its locks behind; the next run clears them when their owner
# is gone, and keeps them while jobs of the killed run still run (see the function).
if workflow.is_main_process:
    _removed, _blocked = clear_stale_snakemake_locks()
    for _lock in _removed:
        print(f"Removed stale Snakemake lock {_lock} (left by a killed run)", file=sys.stderr)
    if _blocked:
        print(_blocked, file=sys.stderr)

# The tracking URI every job uses: MLFLOW_TRACKING_URI when set, else the config's (relative SQLite
# paths made absolute). Exported from here, so jobs on other hosts get the same store (the SLURM
# executor submits with `sbatch --export=ALL`); `envvars:` declares that the jobs need it.
os.environ.update(MLFLOW_TRACKING_URI=resolve_tracking_uri(config["mlflow"]["tracking_uri"]))


envvars:
    "MLFLOW_TRACKING_URI",


# Cheap rules run in the main Snakemake process (on a cluster: the submit host), not as cluster jobs;
# only the train jobs are submitted. mlflow_parent, aggregate and report_mlflow talk to the tracking
# server from there.
localrules:
    all,
    dataset,
    mlflow_parent,
    aggregate,
    report_figures,
    report_families,
    report_summary,
    report_mlflow,


SWEEP = config["sweep"]
RESULTS = sweep.results_dir(config)  # results/<sweep>
LOGS = f"{RESULTS}/logs"
PARENT_JSON = f"{RESULTS}/mlflow_parent.json"

# Path patterns with Snakemake wildcards {function} {width} {k} {n} {seed} {grid}.
DATA = sweep.DATA_PATTERN.format(results=RESULTS, function="{function}", n="{n}", seed="{seed}")
RUN = sweep.RUN_PATTERN.format(
    results=RESULTS,
    function="{function}",
    width="{width}",
    k="{k}",
    n="{n}",
    seed="{seed}",
    grid="{grid}",
)
JOB = "{function}/w{width}_k{k}/N{n}_seed{seed}/G{grid}"  # a train job's path below runs/ and logs/train/
MLP_RUN = sweep.MLP_RUN_PATTERN.format(
    results=RESULTS,
    function="{function}",
    width="{width}",
    activation="{activation}",
    n="{n}",
    seed="{seed}",
)
MLP_JOB = "{function}/mlp_w{width}_{activation}/N{n}_seed{seed}"  # an MLP job's path below runs/

# batch_seeds: one job per grid level (per MLP) trains every seed; its outputs are the seeds' run folders.
BATCH_SEEDS = sweep.batch_seeds(config)
SEEDS = [int(seed) for seed in config["seeds"]]
SEEDS_JOB = "{function}/w{width}_k{k}/N{n}/G{grid}"  # a train_seeds job's path below logs/
MLP_SEEDS_JOB = "{function}/mlp_w{width}_{activation}/N{n}"


def seed_runs(pattern):
    """The run folder pattern of every seed: {seed} filled in, the other wildcards kept."""
    return [pattern.replace("{seed}", str(seed)) for seed in SEEDS]


# What each wildcard may match (the rules use it as their wildcard_constraints).
WILDCARDS = {
    "function": r"[A-Za-z0-9_.\-]+",
    "width": r"\d+(-\d+)+",
    "k": r"\d+",
    "n": r"\d+",
    "seed": r"\d+",
    "grid": r"\d+",
    "activation": "|".join(sweep.MLP_ACTIVATIONS),
}


def train_run_dirs():
    """The run folder of every train job of the sweep (every chain's grid levels)."""
    return [sweep.run_dir(config, job.chain, job.grid) for job in sweep.train_jobs(config)]


def mlp_run_dirs():
    """The run folder of every MLP job of the sweep (none unless the config lists MLP widths)."""
    return [sweep.mlp_run_dir(config, job) for job in sweep.mlp_jobs(config)]


def function_name(wildcards):
    """The configured function name (registry name or module:function) of a path's {function}."""
    return sweep.function_of_slug(config, wildcards.function)


def train_inputs(wildcards):
    """The dataset, the sweep's parent run, and (above level 0) the previous grid level's model."""
    inputs = {
        "data": DATA.format(
            function=wildcards["function"], n=wildcards["n"], seed=wildcards["seed"]
        ),
        # ancient: the parent must exist first, but re-creating it does not retrain anything
        "parent": ancient(PARENT_JSON),
    }
    previous = sweep.previous_grid(config, int(wildcards["grid"]))
    if previous is not None:
        inputs["init"] = os.path.join(RUN.format(**{**wildcards, "grid": previous}), "model.pt")
    return inputs


def train_seeds_inputs(wildcards):
    """train_inputs of every seed: datasets ``data`` and previous models ``init`` (lists, in seed order)."""
    per_seed = [train_inputs({**wildcards, "seed": seed}) for seed in SEEDS]
    inputs = {"data": [i["data"] for i in per_seed], "parent": per_seed[0]["parent"]}
    if "init" in per_seed[0]:
        inputs["init"] = [i["init"] for i in per_seed]
    return inputs


def train_resources(wildcards, attempt):
    """mem_mb, runtime (minutes) and cpus_per_task of a train job (see kanlib.workflow.sweep.train_resources)."""
    return sweep.train_resources(
        int(wildcards.n),
        int(wildcards.grid),
        sweep.parse_width(wildcards.width),
        int(wildcards.k),
        int(config["steps"]),
        attempt,
        threads=int(config["threads"]),
        grid_update_num=int(config["grid_update_num"]),
        device=str(config["device"]),
        n_models=len(SEEDS) if BATCH_SEEDS else 1,
    )


def mlp_resources(wildcards, attempt):
    """mem_mb, runtime (minutes) and cpus_per_task of an MLP job (kanlib.workflow.sweep.mlp_resources)."""
    return sweep.mlp_resources(
        int(wildcards.n),
        sweep.parse_width(wildcards.width),
        sweep.mlp_steps(config),
        attempt,
        threads=int(config["threads"]),
        device=str(config["device"]),
        n_models=len(SEEDS) if BATCH_SEEDS else 1,
    )


def dataset_mem_mb(wildcards, attempt):
    return (600 + int(wildcards.n) * 64 // 2**20) * attempt
