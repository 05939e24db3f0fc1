"""Rule report_summary: the exponent table (CSV), the summary (Markdown + HTML) and the laws file of the sweep."""

import sys

from kanlib.analysis.report import write_summary
from kanlib.workflow.runtime import exit_job, start_job
from kanlib.workflow.tracking import git_commit

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
        laws_json=out.laws,
        history_csv=snakemake.input.history,
        frontier_csv=out.frontier,
        frontier_points_csv=out.frontier_points,
        # read here, not a param: a change of config that leaves results.csv alone reruns nothing
        config=snakemake.config,
        git_commit=git_commit(),
    )
except ValueError as error:
    sys.exit(f"report_summary: {error}")
log.info("%d fits; summary in %s, laws in %s", len(exponents), out.summary, out.laws)

exit_job()  # skip the interpreter teardown (~1 s)
