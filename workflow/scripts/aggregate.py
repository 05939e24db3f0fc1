"""Collect every grid level into one table, the step histories and a plot of test RMSE vs G;
log them to the sweep's parent MLflow run and set it FINISHED.

results.csv / results.parquet: one row per train job (columns: kanlib.results.RESULT_COLUMNS, then extras).
history.csv: one row per training step, with the step count running on across each chain's grid levels.
"""
import sys

from kanlib import tracking
from kanlib.figures import save_figure
from kanlib.results import (read_history, read_json, results_table, history_table, rmse_vs_grid_figure,
                            write_table)
from kanlib.sweep import exit_job, job_logger

log = job_logger(snakemake.log[0])
config, out = snakemake.config, snakemake.output

metrics = [read_json(path) for path in snakemake.input.metrics]
results = results_table(metrics)
history = history_table([(m, read_history(path)) for m, path in zip(metrics, snakemake.input.histories)])
write_table(results, out.results)
write_table(results, out.parquet)
write_table(history, out.history)
save_figure(rmse_vs_grid_figure(results, "test_rmse"), out.plot)
log.info("%d grid levels, %d steps; training took %.1f s in all", len(results), len(history),
         results["wall_time_s"].sum())

parent = read_json(snakemake.input.parent)
uri = tracking.resolve_tracking_uri(config["mlflow"]["tracking_uri"])
retry_seconds = config["mlflow"]["retry_seconds"]
try:
    client = tracking.connect(uri, retry_seconds)
    tracking.finish_parent(
        client, parent["run_id"], uri=uri, retry_seconds=retry_seconds,
        artifacts=[(path, "aggregate") for path in (out.results, out.parquet, out.history, out.plot, out.plot_pdf)],
        metrics={"n_grid_levels": len(results), "total_train_time_s": float(results["wall_time_s"].sum()),
                 "best_test_rmse": float(results["test_rmse"].min())})
except tracking.TrackingError as error:
    log.error("%s", error)
    sys.exit(f"aggregate: {error}")
log.info("logged the tables and the plot to parent run %s in %s; set it FINISHED", parent["run_id"], uri)

exit_job()  # skip the interpreter teardown of torch and mlflow (~1 s)
