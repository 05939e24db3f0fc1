"""Rules train and train_mlp: one grid level of one KAN chain, or one MLP of the baseline family,
logged as a child of the sweep's MLflow parent run.

The job's logic (unsynced results, fingerprints, MLflow params and tags) is in
kanlib.workflow.train_job; this script maps Snakemake's objects onto it.
"""

import sys

import torch

from kanlib.functions import get_function
from kanlib.workflow.runtime import exit_job, start_job
from kanlib.workflow.train_job import JobIdentity, TrackingSettings, TrainJobError, TrainOutputs, run_train_job

log = start_job(snakemake.log[0])
torch.set_num_threads(snakemake.threads)

wildcards = snakemake.wildcards
if snakemake.rule == "train_mlp":
    identity = JobIdentity.create_mlp(
        snakemake.config,
        get_function(snakemake.params.function),
        function_slug=wildcards.function,
        width=wildcards.width,
        activation=wildcards.activation,
        n_train=int(wildcards.n),
        seed=int(wildcards.seed),
        threads=snakemake.threads,
        data_file=snakemake.input.data,
    )
else:
    identity = JobIdentity.create(
        snakemake.config,
        get_function(snakemake.params.function),
        function_slug=wildcards.function,
        width=wildcards.width,
        k=int(wildcards.k),
        n_train=int(wildcards.n),
        seed=int(wildcards.seed),
        grid=int(wildcards.grid),
        threads=snakemake.threads,
        data_file=snakemake.input.data,
        init_checkpoint=snakemake.input.get("init"),
    )
outputs = TrainOutputs(model=snakemake.output.model, history=snakemake.output.history, metrics=snakemake.output.metrics)
try:
    run_train_job(
        identity,
        parent_file=snakemake.input.parent,
        outputs=outputs,
        settings=TrackingSettings.from_config(snakemake.config),
        log=log,
    )
except TrainJobError as error:
    sys.exit(str(error))

exit_job()  # skip the interpreter teardown of torch and mlflow (~1 s)
