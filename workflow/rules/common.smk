# Helpers for the other .smk files: output paths, wildcards, the job list, resources.
# The logic lives in kanlib.workflow.sweep; this file only turns it into Snakemake patterns.
import os
import sys

import kanlib.reproducibility as reproducibility
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
# The sweep's own model families (config `families`) for the report's processes (kanlib.families.describe).
os.environ.update(KANLIB_FAMILIES=" ".join(config.get("families", [])))
# The CPU libraries' kernels (config cpu_code_path): read by MKL and OpenBLAS when a job's process
# starts, so they are set here, before any job (or the warm process) starts ('native': none set).
CPU_CODE_PATH_ENV = reproducibility.environment(config["cpu_code_path"])
os.environ.update(CPU_CODE_PATH_ENV)


envvars:
    "MLFLOW_TRACKING_URI",
    "KANLIB_FAMILIES",
    *CPU_CODE_PATH_ENV,


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
    report_frontier,
    report_summary,
    report_mlflow,


SWEEP = config["sweep"]
RESULTS = sweep.results_dir(config)  # results/<sweep>
LOGS = f"{RESULTS}/logs"
PARENT_JSON = f"{RESULTS}/mlflow_parent.json"

# Path patterns with Snakemake wildcards {function} {model} {n} {seed} {level}: a run folder's {model}
# names the model (a KAN's w2-1-1_k3, an MLP's mlp_w2-32-1_silu) and {level} a chain's grid level (/G5;
# empty for a family without chains); kanlib.families says which family a {model} is.
DATA = sweep.DATA_PATTERN.format(results=RESULTS, function="{function}", n="{n}", seed="{seed}")
RUN = sweep.RUN_PATTERN.format(
    results=RESULTS, function="{function}", model="{model}", n="{n}", seed="{seed}", level="{level}"
)
JOB = "{function}/{model}/N{n}_seed{seed}{level}"  # a train job's path below runs/ and logs/train/

# batch_seeds: one job per model trains every seed (rule train_seeds); its outputs are the seeds' run folders.
BATCH_SEEDS = sweep.batch_seeds(config)
SEEDS = [int(seed) for seed in config["seeds"]]
SEEDS_JOB = "{function}/{model}/N{n}{level}"  # a train_seeds job's path below logs/


def seed_runs(pattern):
    """The run folder pattern of every seed: {seed} filled in, the other wildcards kept."""
    return [pattern.replace("{seed}", str(seed)) for seed in SEEDS]


# What each wildcard may match (the rules use it as their wildcard_constraints).
WILDCARDS = {
    "function": r"[A-Za-z0-9_.\-]+",
    "model": sweep.model_wildcard(),
    "level": sweep.level_wildcard(),
    "n": r"\d+",
    "seed": r"\d+",
    "width": r"\d+(-\d+)+",  # (the report's figures: one per function, width and k)
    "k": r"\d+",
}


def run_dirs():
    """The run folder of every train job of the sweep (every family's, kanlib.families)."""
    return [sweep.run_dir(config, job) for job in sweep.jobs(config)]


def function_name(wildcards):
    """The configured function name (registry name or module:function) of a path's {function}."""
    return sweep.function_of_slug(config, wildcards.function)


def job_of(wildcards, seed=None):
    """The job (kanlib.families.Job) of a train rule's wildcards; ``seed`` for a train_seeds job's seeds."""
    return sweep.job_from_wildcards(
        config, {**wildcards, **({} if seed is None else {"seed": seed})}
    )


def train_inputs(wildcards, seed=None):
    """The dataset, the sweep's parent run, and the model the job starts from (a chain's previous level)."""
    job = job_of(wildcards, seed)
    inputs = {
        "data": sweep.data_path(config, job.function, job.n_train, job.seed),
        # ancient: the parent must exist first, but re-creating it does not retrain anything
        "parent": ancient(PARENT_JSON),
    }
    previous = sweep.job_family(job).previous(config, job)
    if previous is not None:
        inputs["init"] = os.path.join(sweep.run_dir(config, previous), "model.pt")
    return inputs


def train_seeds_inputs(wildcards):
    """train_inputs of every seed: datasets ``data`` and previous models ``init`` (lists, in seed order)."""
    per_seed = [train_inputs(wildcards, seed) for seed in SEEDS]
    inputs = {"data": [i["data"] for i in per_seed], "parent": per_seed[0]["parent"]}
    if "init" in per_seed[0]:
        inputs["init"] = [i["init"] for i in per_seed]
    return inputs


def train_params(wildcards):
    """What the train rule's params say of its job: the previous grid level of a chain. A family without
    chains has none: a sentinel that Snakemake does not record (it records builtin values only), so the
    params it records for such a job are its function and hyperparameters alone."""
    job = job_of(wildcards, SEEDS[0])
    previous = sweep.job_family(job).previous(config, job)
    return (
        previous.get("grid")
        if previous is not None
        else (None if job.get("level") == 0 else sweep.NOT_CHAINED)
    )


def train_hyperparameters(wildcards):
    """The training settings of the job's family (changing one retrains its jobs: Snakemake's params)."""
    return sweep.job_family(job_of(wildcards, SEEDS[0])).hyperparameters(config)


def train_priority(wildcards):
    """A chain's levels run one after another: start them before the jobs of families without chains,
    which have no successors, so the chains are not left to run alone at the end."""
    return 1 if sweep.job_family(job_of(wildcards, SEEDS[0])).chained else 0


def train_resources(wildcards, attempt):
    """mem_mb, runtime (minutes) and cpus_per_task of a train job (its family's estimate): a first
    level trains `restarts` candidates per seed."""
    job = job_of(wildcards, SEEDS[0])
    family = sweep.job_family(job)
    first = family.previous(config, job) is None
    restarts = family.hyperparameters(config).get("restarts", 1) if first else 1
    n_models = (len(SEEDS) if BATCH_SEEDS else 1) * restarts
    return family.resources(config, job, attempt, n_models)


def dataset_mem_mb(wildcards, attempt):
    return (600 + int(wildcards.n) * 64 // 2**20) * attempt
