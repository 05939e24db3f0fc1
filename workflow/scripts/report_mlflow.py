"""Rule report_mlflow: the report's files and exponents to the parent MLflow run, which is set FINISHED."""

import sys

from kanlib.workflow.jobs import JobError, log_report
from kanlib.workflow.runtime import exit_job, start_job

log = start_job(snakemake.log[0])
inputs = snakemake.input
try:
    logged = log_report(
        snakemake.config,
        parent_file=inputs.parent,
        pngs=inputs.pngs,
        pdfs=inputs.pdfs,
        summary_md=inputs.summary,
        summary_html=inputs.summary_html,
        exponents_csv=inputs.exponents,
        families_csv=inputs.families,
        answer_md=inputs.answer,
        laws_json=inputs.laws,
        frontier_csv=inputs.frontier,
        path=snakemake.output[0],
    )
except JobError as error:
    log.error("%s", error)
    sys.exit(str(error))
log.info(
    "logged %d artifacts and %d metrics to parent run %s in %s",
    len(logged["artifacts"]),
    len(logged["metrics"]),
    logged["run_id"],
    logged["tracking_uri"],
)

exit_job()  # skip the interpreter teardown of mlflow (~1 s)
