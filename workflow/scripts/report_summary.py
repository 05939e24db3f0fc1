"""Rule report_summary: the exponent table (CSV) and the summary (Markdown + HTML) of the sweep."""

import sys

from kanlib.analysis.report import write_summary
from kanlib.workflow.runtime import exit_job, job_logger

log = job_logger(snakemake.log[0])
out = snakemake.output
try:
    exponents = write_summary(
        snakemake.input.results,
        snakemake.params.sweep,
        snakemake.params.settings,
        snakemake.input.figures,
        summary_md=out.summary,
        summary_html=out.summary_html,
        exponents_csv=out.exponents,
    )
except ValueError as error:
    sys.exit(f"report_summary: {error}")
log.info("%d fits; summary in %s", len(exponents), out.summary)

exit_job()  # skip the interpreter teardown (~1 s)
