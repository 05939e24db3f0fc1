"""KAN scaling-law sweeps: datasets -> chains of grid levels -> one table, tracked in MLflow.

    snakemake --cores 2                                  # the default sweep (config/config.yaml)
    snakemake --cores 2 --configfile config/test.yaml    # another config, merged on top
    snakemake --cores 2 --config steps=20 'grids=[5,10]' # overrides

Rules, outputs and the MLflow layout: workflow/README.md.
"""

import os
import sys

from snakemake.utils import min_version, validate

import kanlib.workflow.sweep as sweep

min_version("9.0")

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


envvars:
    "MLFLOW_DISABLE_TELEMETRY",


configfile: "config/config.yaml"


# Check the whole config before any job: the JSON schema, then what a schema cannot say.
SCHEMA = "workflow/schemas/config.schema.yaml"
sweep.coerce_cli_strings(config, os.path.join(workflow.basedir, SCHEMA))
with sweep.schema_errors():
    validate(config, SCHEMA)
# the target functions are probed once, by the main process (not again in each cluster job)
sweep.check_config(config, probe_functions=workflow.is_main_process)


include: "workflow/rules/common.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/mlflow.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"


# snakemake --report report.html: the front page, then every report() output with its caption. The
# front page opens with the sweep's answer and exponent tables once report_summary has written them
# (results/<sweep>/report/front.rst); before that, the sweep's description alone.
_FRONT_PAGE = os.path.abspath(f"{sweep.results_dir(config)}/report/front.rst")


report: _FRONT_PAGE if os.path.isfile(_FRONT_PAGE) else "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        rules.aggregate.output,
        REPORT_OUTPUTS,


# A failed invocation set the parent FAILED, and every output is present now (another invocation
# finished the sweep, or the failure was of another config): the parent says FINISHED again.
if workflow.is_main_process:
    from kanlib.workflow.tracking import restore_finished_parent

    _message = restore_finished_parent(
        PARENT_JSON,
        resolve_tracking_uri(config["mlflow"]["tracking_uri"]),
        [*rules.aggregate.output, *REPORT_OUTPUTS],
    )
    if _message:
        print(_message, file=sys.stderr)
