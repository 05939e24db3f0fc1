"""Rules train_seeds and train_mlp_seeds: one grid level (or one MLP) of every seed in one job,
trained as one stack; one run folder and one MLflow child run per seed, as rules train and train_mlp.

The job's logic is kanlib.workflow.train_job.run_train_stack_job; this script maps Snakemake's
objects onto it.
"""

import sys

import torch

from kanlib.functions import get_function
from kanlib.workflow.runtime import exit_job, start_job
from kanlib.workflow.train_job import (
    JobIdentity,
    TrackingSettings,
    TrainJobError,
    TrainOutputs,
    run_train_stack_job,
)

log = start_job(snakemake.log[0])
torch.set_num_threads(snakemake.threads)

wildcards, config, target = snakemake.wildcards, snakemake.config, get_function(snakemake.params.function)
common = dict(
    function_slug=wildcards.function, width=wildcards.width, n_train=int(wildcards.n), threads=snakemake.threads
)
identities = []
for index, seed in enumerate(snakemake.params.seeds):
    data = snakemake.input.data[index]
    if snakemake.rule == "train_mlp_seeds":
        identity = JobIdentity.create_mlp(
            config, target, **common, activation=wildcards.activation, seed=seed, data_file=data
        )
    else:
        init = snakemake.input.init[index] if "init" in snakemake.input.keys() else None
        identity = JobIdentity.create(
            config,
            target,
            **common,
            k=int(wildcards.k),
            seed=seed,
            grid=int(wildcards.grid),
            data_file=data,
            init_checkpoint=init,
        )
    identities.append(identity)
outputs = [
    TrainOutputs(model=m, history=h, metrics=j)
    for m, h, j in zip(snakemake.output.model, snakemake.output.history, snakemake.output.metrics)
]
try:
    run_train_stack_job(
        identities,
        parent_file=snakemake.input.parent,
        outputs=outputs,
        settings=TrackingSettings.from_config(config),
        log=log,
    )
except TrainJobError as error:
    sys.exit(str(error))

exit_job()  # skip the interpreter teardown of torch and mlflow (~1 s)
