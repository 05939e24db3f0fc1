"""Rule report_families: KAN against MLP for one function, test RMSE against the parameter count."""

import sys

from kanlib.analysis.report import write_family_figure
from kanlib.workflow.runtime import exit_job, start_job

log = start_job(snakemake.log[0])
try:
    write_family_figure(
        snakemake.input.results, snakemake.params.function, snakemake.params.settings, snakemake.output.png
    )
except ValueError as error:
    sys.exit(f"report_families: {error}")
log.info("KAN against MLP for %s: %s", snakemake.params.function, snakemake.output.png)

exit_job()  # skip the interpreter teardown of matplotlib (~1 s)
