rule train:
    """Train one job: one model of a family (kanlib.families) on its dataset, a chain's level from the
    previous level's model (a KAN's grid extension); log it as a child run of the sweep's MLflow parent.
    """
    input:
        unpack(train_inputs),
    output:
        # written in this order, metrics.json last (the completion marker)
        model=f"{RUN}/model.pt",
        history=f"{RUN}/history.csv",
        metrics=f"{RUN}/metrics.json",
    log:
        f"{LOGS}/train/{JOB}.log",
    benchmark:
        f"{RUN}/benchmark.tsv"
    wildcard_constraints:
        **WILDCARDS,
    priority: train_priority
    threads: config["threads"]
    resources:
        mem_mb=lambda wildcards, attempt: train_resources(wildcards, attempt)["mem_mb"],
        runtime=lambda wildcards, attempt: train_resources(wildcards, attempt)["runtime"],
        cpus_per_task=lambda wildcards, attempt: train_resources(wildcards, attempt)[
            "cpus_per_task"
        ],
    params:
        function=function_name,
        prev_grid=train_params,
        # changing any of these retrains (Snakemake's params trigger); MLflow settings do not
        hp=train_hyperparameters,
    script:
        "../scripts/train.py"


# batch_seeds (kanlib.workflow.sweep.batch_seeds): the seeds of one model train in one job, as one stack
# (each model follows the trajectory it would alone); one run folder and one MLflow child run per seed.
if BATCH_SEEDS:

    ruleorder: train_seeds > train

    use rule train as train_seeds with:
        input:
            unpack(train_seeds_inputs),
        output:
            # per seed, in seed order; written in this order, metrics.json last (the completion marker)
            model=[f"{run}/model.pt" for run in seed_runs(RUN)],
            history=[f"{run}/history.csv" for run in seed_runs(RUN)],
            metrics=[f"{run}/metrics.json" for run in seed_runs(RUN)],
        log:
            f"{LOGS}/train_seeds/{SEEDS_JOB}.log",
        benchmark:
            f"{LOGS}/benchmarks/train_seeds/{SEEDS_JOB}.tsv"
        params:
            function=function_name,
            prev_grid=train_params,
            seeds=SEEDS,
            hp=train_hyperparameters,
