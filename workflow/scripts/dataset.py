"""Rule dataset: N training points and the fixed test set of a (function, seed) -> one .pt file."""

import torch

from kanlib.functions import get_function
from kanlib.workflow.jobs import make_dataset
from kanlib.workflow.runtime import exit_job, start_job
from kanlib.workflow.sweep import function_n_var

log = start_job(snakemake.log[0])
torch.set_num_threads(snakemake.threads)

target = get_function(snakemake.params.function)
info = make_dataset(
    target,
    n_var=function_n_var(snakemake.config, target.name),
    n_train=int(snakemake.wildcards.n),
    test_num=int(snakemake.params.test_num),
    seed=int(snakemake.wildcards.seed),
    input_range=snakemake.params.input_range,
    path=snakemake.output[0],
)
log.info(
    "wrote %s: f = %s, %d train / %d test points, seed %d",
    snakemake.output[0],
    info["formula"],
    info["train_num"],
    info["test_num"],
    info["seed"],
)

exit_job()  # skip the interpreter teardown of torch (~1 s)
