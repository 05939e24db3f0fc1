"""Rule report_figures: every figure of one (function, width, k), PNG + PDF."""

import sys
import time

from kanlib.analysis.catalog import figure_stems
from kanlib.analysis.report import config_label, write_figures
from kanlib.workflow.runtime import exit_job, start_job

log = start_job(snakemake.log[0])
configuration = (snakemake.params.function, snakemake.wildcards.width, int(snakemake.wildcards.k))
started = time.monotonic()
try:
    count = write_figures(
        snakemake.input.results,
        snakemake.input.history,
        configuration,
        snakemake.params.settings,
        {stem: snakemake.output[stem] for stem in figure_stems()},
    )
except ValueError as error:
    sys.exit(f"report_figures: {error}")
log.info("%d figures for %s in %.1f s", count, config_label(*configuration), time.monotonic() - started)

exit_job()  # skip the interpreter teardown of matplotlib (~1 s)
