rule mlflow_parent:
    """Create the MLflow store (once, before any job touches it), the experiment and the sweep's parent run."""
    output:
        PARENT_JSON,
    log:
        f"{LOGS}/mlflow_parent.log",
    # first, beside a dataset job: every train job waits for it (it mostly waits for the run logger)
    priority: 10
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        sweep=SWEEP,
        experiment=config["mlflow"]["experiment"],
    script:
        "../scripts/mlflow_parent.py"


onstart:
    # One MLflow logger process for this run's jobs (kanlib.workflow.runlog): they hand it their
    # runs instead of each importing mlflow and opening the store (about a torch import per job).
    # And one warm process that imports torch once and forks the torch jobs (kanlib.workflow.warm).
    from kanlib.workflow import runlog, warm

    print(runlog.start_server(), file=sys.stderr)
    print(warm.start_server(), file=sys.stderr)


onerror:
    # A failed job (or several, with --keep-going): mark the sweep's parent run FAILED, unless the
    # sweep's report was completed earlier and its parent is FINISHED (a failure that re-opened no
    # train job does not change the sweep's outputs). Then a report of what finished, in
    # results/<sweep>/partial/, and the parent tagged PARTIAL with the missing levels. The next
    # run re-opens the parent (its first train job sets it RUNNING); report_mlflow sets it FINISHED.
    from kanlib.workflow.jobs import partial_report
    from kanlib.workflow.tracking import describe_partial_parent, set_parent_status

    _uri = resolve_tracking_uri(config["mlflow"]["tracking_uri"])
    _message = set_parent_status(
        PARENT_JSON, "FAILED", _uri, completed_marker=f"{RESULTS}/report/mlflow.json"
    )
    if _message:
        print(_message, file=sys.stderr)
    if "stays FINISHED" not in (_message or ""):
        try:
            _partial = partial_report(config)
        except Exception as _error:  # never mask the workflow's own error
            _partial = None
            print(f"could not write the partial report: {_error}", file=sys.stderr)
        if _partial:
            print(
                f"Partial report: {_partial['finished']} jobs finished, {_partial['missing']} "
                f"missing (listed with their reasons) in {_partial['summary']}",
                file=sys.stderr,
            )
            _message = describe_partial_parent(PARENT_JSON, _uri, _partial["answer"])
            if _message:
                print(_message, file=sys.stderr)
