"""Sample one dataset: N training points and the fixed test set of a (function, seed).

The test set depends on the seed only, so every N of a seed is scored on the same points.
Labels are computed in float64 whatever the training dtype (train jobs cast).
"""
import torch

import kanlib
from kanlib import create_dataset
from kanlib.functions import get_function
from kanlib.results import save_dataset
from kanlib.sweep import exit_job, function_n_var, job_logger

log = job_logger(snakemake.log[0])
torch.set_num_threads(snakemake.threads)

target = get_function(snakemake.params.function)
n_var = function_n_var(snakemake.config, target.name)
n_train, seed = int(snakemake.wildcards.n), int(snakemake.wildcards.seed)
test_num = int(snakemake.params.test_num)
lower, upper = (float(v) for v in snakemake.params.input_range)

dataset = create_dataset(target, n_var=n_var, ranges=(lower, upper), train_num=n_train, test_num=test_num, seed=seed,
                         dtype=torch.float64)
info = {"function": target.name, "formula": target.formula, "n_var": n_var, "train_num": n_train,
        "test_num": test_num, "seed": seed, "input_range": [lower, upper], "kanlib_version": kanlib.__version__}
save_dataset(snakemake.output[0], dataset, info)
log.info("wrote %s: f = %s, %d train / %d test points, seed %d", snakemake.output[0], target.formula, n_train,
         test_num, seed)

exit_job()  # skip the interpreter teardown of torch and mlflow (~1 s)
