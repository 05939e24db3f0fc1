"""Rule mlflow_parent: create the MLflow store, the experiment and the sweep's parent run."""

import sys

from kanlib.workflow.jobs import JobError, create_sweep_parent
from kanlib.workflow.runtime import exit_job, start_job

log = start_job(snakemake.log[0])
try:
    parent = create_sweep_parent(
        snakemake.config, sweep=snakemake.params.sweep, experiment=snakemake.params.experiment, path=snakemake.output[0]
    )
except JobError as error:
    log.error("%s", error)
    sys.exit(str(error))
log.info(
    "parent run %s in experiment %r (id %s), store %s",
    parent["run_id"],
    parent["experiment"],
    parent["experiment_id"],
    parent["tracking_uri"],
)

exit_job()  # skip the interpreter teardown of mlflow (~1 s)
