rule aggregate:
    """One table of every grid level (CSV + Parquet), the step histories, a plot of test RMSE vs G;
    all logged to the parent MLflow run, which is then set FINISHED."""
    input:
        metrics=[f"{run}/metrics.json" for run in run_dirs()],
        histories=[f"{run}/history.csv" for run in run_dirs()],
        parent=ancient(PARENT_JSON),
    output:
        results=f"{RESULTS}/results.csv",
        parquet=f"{RESULTS}/results.parquet",
        history=f"{RESULTS}/history.csv",
        plot=f"{RESULTS}/test_rmse_vs_grid.png",
        plot_pdf=f"{RESULTS}/test_rmse_vs_grid.pdf",
    log:
        f"{LOGS}/aggregate.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/aggregate.py"
