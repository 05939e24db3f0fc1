"""Rule aggregate: one table of every grid level, the step histories and a plot, logged to the parent run."""

import sys

from kanlib.workflow.jobs import JobError, aggregate_sweep
from kanlib.workflow.runtime import exit_job, start_job

log = start_job(snakemake.log[0])
out = snakemake.output
try:
    totals = aggregate_sweep(
        snakemake.config,
        metrics_files=snakemake.input.metrics,
        history_files=snakemake.input.histories,
        parent_file=snakemake.input.parent,
        results_csv=out.results,
        results_parquet=out.parquet,
        history_csv=out.history,
        plot_png=out.plot,
    )
except JobError as error:
    log.error("%s", error)
    sys.exit(str(error))
log.info(
    "%d grid levels, %d steps, training took %.1f s in all; logged to parent run %s in %s and set it FINISHED",
    totals["n_grid_levels"],
    totals["n_steps"],
    totals["total_train_time_s"],
    totals["run_id"],
    totals["tracking_uri"],
)

exit_job()  # skip the interpreter teardown of mlflow and matplotlib (~1 s)
