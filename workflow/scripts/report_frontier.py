"""Rule report_frontier: the data axis of one function (best model per N, its law), PNG + PDF."""

import sys

from kanlib.analysis.report import write_frontier_figure
from kanlib.workflow.runtime import exit_job, start_job

log = start_job(snakemake.log[0])
try:
    write_frontier_figure(
        snakemake.input.results,
        snakemake.input.history,
        snakemake.params.function,
        snakemake.params.settings,
        snakemake.output.png,
    )
except ValueError as error:
    sys.exit(f"report_frontier: {error}")
log.info("the data axis of %s: %s", snakemake.params.function, snakemake.output.png)

exit_job()  # skip the interpreter teardown of matplotlib (~1 s)
