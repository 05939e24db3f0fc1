"""The report rules (workflow/rules/report.smk); the work is in kanlib.report.

report_figures   every figure of one (function, width, k), PNG + PDF
report_summary   the exponent table (CSV) and the summary (Markdown + HTML) of the sweep
report_mlflow    figures, summary and exponent table to the parent MLflow run (folder report/),
                 each fitted exponent as a metric, parent set FINISHED; records what it logged
                 in report/mlflow.json. An unreachable store fails this job only (naming the URI):
                 the report files are outputs of the other two and stay.
"""
import os
import sys
import time

from kanlib.sweep import exit_job, job_logger

log = job_logger(snakemake.log[0])
rule, config = snakemake.rule, snakemake.config


def read_tables():
    import pandas as pd

    results = pd.read_csv(snakemake.input.results, dtype={"width": str})
    history = pd.read_csv(snakemake.input.history, dtype={"width": str}) if "history" in snakemake.input.keys() else None
    return results, history


if rule == "report_figures":
    from kanlib import report
    from kanlib.figures import save_figure

    results, history = read_tables()
    function, width, k = snakemake.params.function, snakemake.wildcards.width, int(snakemake.wildcards.k)
    results = report.select_configuration(results, function, width, k)
    history = report.select_configuration(history, function, width, k)
    if results.empty:
        sys.exit(f"report_figures: results.csv has no rows for {report.config_label(function, width, k)}")
    settings = snakemake.params.settings
    exponents = report.exponent_table(results, confidence=settings["confidence"],
                                      divergence_factor=settings["divergence_factor"], n_boot=settings["n_boot"])
    started = time.monotonic()
    for stem, figure in report.figure_set(results, history, exponents).items():
        save_figure(figure, snakemake.output[stem])
    log.info("%d figures for %s in %.1f s", len(report.FIGURES), report.config_label(function, width, k),
             time.monotonic() - started)

elif rule == "report_summary":
    from kanlib import report

    results, _ = read_tables()
    settings = snakemake.params.settings
    exponents = report.exponent_table(results, confidence=settings["confidence"],
                                      divergence_factor=settings["divergence_factor"], n_boot=settings["n_boot"])
    # figures (inputs of this rule) by path relative to summary.md: <report>/<function>/w<width>_k<k>/<stem>.png
    report_folder, summary_folder = os.path.dirname(snakemake.output.summary_html), os.path.dirname(snakemake.output.summary)
    figure_paths = {
        configuration: {stem: os.path.relpath(
            os.path.join(report_folder, report.config_dir(*configuration), f"{stem}.png"), summary_folder)
            for stem in report.FIGURES}
        for configuration in report.configurations(results)}
    missing = {path for paths in figure_paths.values() for path in paths.values()} - {
        os.path.relpath(path, summary_folder) for path in snakemake.input.figures}
    if missing:
        sys.exit(f"report_summary: the summary would link figures that are not inputs of the rule: {sorted(missing)}")
    document = report.build_summary(results, exponents, snakemake.params.sweep, figure_paths,
                                    divergence_factor=settings["divergence_factor"])
    report.write_text_atomic(snakemake.output.exponents,
                             exponents.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    report.write_text_atomic(snakemake.output.summary, report.to_markdown(document))
    report.write_text_atomic(snakemake.output.summary_html,
                             report.to_html(document, f"KAN scaling sweep {snakemake.params.sweep}"))
    log.info("%d fits; summary in %s", len(exponents), snakemake.output.summary)

elif rule == "report_mlflow":
    import json

    import pandas as pd

    from kanlib import report, tracking

    with open(snakemake.input.parent) as stream:
        parent = json.load(stream)
    uri = tracking.resolve_tracking_uri(config["mlflow"]["tracking_uri"])
    retry_seconds = config["mlflow"]["retry_seconds"]
    root = os.path.dirname(snakemake.input.summary_html)  # results/<sweep>/report
    artifacts = [(path, os.path.join("report", os.path.dirname(os.path.relpath(path, root))).rstrip("/"))
                 for path in [*snakemake.input.pngs, *snakemake.input.pdfs]]
    artifacts += [(path, "report") for path in
                  (snakemake.input.summary, snakemake.input.summary_html, snakemake.input.exponents)]
    metrics = report.mlflow_metrics(pd.read_csv(snakemake.input.exponents, dtype={"width": str}))
    try:
        client = tracking.connect(uri, retry_seconds)
        # the sweep is complete once this runs (its inputs need every grid level): FINISHED, also after a
        # failed invocation's onerror handler set it FAILED
        tracking.finish_parent(client, parent["run_id"], uri=uri, retry_seconds=retry_seconds,
                               artifacts=artifacts, metrics=metrics)
    except tracking.TrackingError as error:
        log.error("%s", error)
        sys.exit(f"report_mlflow: {error} (the report files are written; run the same command again once the "
                 "store is reachable to log them)")
    logged = {"run_id": parent["run_id"], "tracking_uri": uri, "logged_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "artifacts": [f"{folder}/{os.path.basename(path)}" for path, folder in artifacts], "metrics": metrics}
    report.write_text_atomic(snakemake.output[0], json.dumps(logged, indent=2) + "\n")
    log.info("logged %d artifacts and %d metrics to parent run %s in %s", len(artifacts), len(metrics),
             parent["run_id"], uri)

else:
    sys.exit(f"workflow/scripts/report.py does not know rule {rule!r}")

exit_job()  # skip the interpreter teardown (~1 s)
