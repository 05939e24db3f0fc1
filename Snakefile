"""KAN scaling-law sweeps: datasets -> chains of grid levels -> one table, tracked in MLflow.

    snakemake --cores 2                                  # the default sweep (config/config.yaml)
    snakemake --cores 2 --configfile config/test.yaml    # another config, merged on top
    snakemake --cores 2 --config steps=20 'grids=[5,10]' # overrides

Rules, outputs and the MLflow layout: workflow/README.md.
"""

import os

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
sweep.check_config(config)


include: "workflow/rules/common.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/mlflow.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"


# snakemake --report report.html: this page, then every report() output with its caption
report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        rules.aggregate.output,
        REPORT_OUTPUTS,
