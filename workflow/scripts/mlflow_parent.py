"""Create the sweep's MLflow store, experiment and parent run; record them in mlflow_parent.json.

This is the only job that may create the store: every other job depends on its output
(SQLite stores created by several processes at once end up corrupt).
"""
import os
import sys
import tempfile
from pathlib import Path

import yaml

import kanlib
from kanlib import tracking
from kanlib.results import write_json
from kanlib.sweep import exit_job, job_logger

log = job_logger(snakemake.log[0])
config = snakemake.config
uri = tracking.resolve_tracking_uri(config["mlflow"]["tracking_uri"])
log.info("tracking URI %s (MLFLOW_TRACKING_URI %s)", uri, "set" if os.environ.get("MLFLOW_TRACKING_URI") else "unset")

# The parent's params: the whole config, flattened ('mlflow.experiment', 'grids', ...); the config as an artifact.
params = tracking.flatten_params({key: value for key, value in config.items()})
tags = {"kanlib.version": kanlib.__version__, "git_commit": tracking.git_commit(), **tracking.host_tags()}
with tempfile.TemporaryDirectory() as folder:
    config_file = Path(folder) / "config.yaml"
    config_file.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    try:
        parent = tracking.create_parent_run(uri, snakemake.params.experiment, snakemake.params.sweep, params, tags,
                                            artifacts=[config_file], retry_seconds=config["mlflow"]["retry_seconds"])
    except tracking.TrackingError as error:
        log.error("%s", error)
        sys.exit(f"mlflow_parent: {error}")

write_json(snakemake.output[0], parent)
log.info("parent run %s in experiment %r (id %s)", parent["run_id"], parent["experiment"], parent["experiment_id"])

exit_job()  # skip the interpreter teardown of torch and mlflow (~1 s)
