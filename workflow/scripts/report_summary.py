"""Rule report_summary: the exponent table (CSV) and the summary (Markdown + HTML) of the sweep."""

import sys

from kanlib.analysis.report import write_summary
from kanlib.workflow.runtime import exit_job, start_job

log = start_job(snakemake.log[0])
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
        families_csv=out.families,
        answer_md=out.answer,
        front_rst=out.front,
        front_template=snakemake.input.front_template,
    )
except ValueError as error:
    sys.exit(f"report_summary: {error}")
log.info("%d fits; summary in %s", len(exponents), out.summary)

exit_job()  # skip the interpreter teardown (~1 s)
