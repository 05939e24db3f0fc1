rule mlflow_parent:
    """Create the MLflow store (once, before any job touches it), the experiment and the sweep's parent run."""
    output:
        PARENT_JSON,
    log:
        f"{LOGS}/mlflow_parent.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        sweep=SWEEP,
        experiment=config["mlflow"]["experiment"],
    script:
        "../scripts/mlflow_parent.py"


onerror:
    # A failed job (or several, with --keep-going): mark the sweep's parent run FAILED. The next
    # run re-opens it (its first train job sets it RUNNING) and aggregate sets it FINISHED.
    from kanlib.workflow.tracking import set_parent_status

    _message = set_parent_status(
        PARENT_JSON, "FAILED", resolve_tracking_uri(config["mlflow"]["tracking_uri"])
    )
    if _message:
        print(_message, file=sys.stderr)
