rule train:
    """Train one grid level of one chain: level 0 from scratch, level i from level i-1's model
    (grid extension); log it as a child run of the sweep's MLflow parent."""
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
    threads: config["threads"]
    resources:
        mem_mb=lambda wildcards, attempt: train_resources(wildcards, attempt)["mem_mb"],
        runtime=lambda wildcards, attempt: train_resources(wildcards, attempt)["runtime"],
        cpus_per_task=lambda wildcards, attempt: train_resources(wildcards, attempt)[
            "cpus_per_task"
        ],
    params:
        function=function_name,
        prev_grid=lambda wildcards: sweep.previous_grid(config, int(wildcards.grid)),
        # changing any of these retrains (Snakemake's params trigger); MLflow settings do not
        hp=sweep.hyperparameters(config),
    script:
        "../scripts/train.py"


rule train_mlp:
    """Train one MLP of the baseline family (no chain: one fit of the MLP step budget) on the same
    dataset as the KANs; log it as a child run of the sweep's MLflow parent."""
    input:
        data=DATA,
        # ancient: the parent must exist first, but re-creating it does not retrain anything
        parent=ancient(PARENT_JSON),
    output:
        # written in this order, metrics.json last (the completion marker)
        model=f"{MLP_RUN}/model.pt",
        history=f"{MLP_RUN}/history.csv",
        metrics=f"{MLP_RUN}/metrics.json",
    log:
        f"{LOGS}/train_mlp/{MLP_JOB}.log",
    benchmark:
        f"{MLP_RUN}/benchmark.tsv"
    wildcard_constraints:
        **WILDCARDS,
    threads: config["threads"]
    resources:
        mem_mb=lambda wildcards, attempt: mlp_resources(wildcards, attempt)["mem_mb"],
        runtime=lambda wildcards, attempt: mlp_resources(wildcards, attempt)["runtime"],
        cpus_per_task=lambda wildcards, attempt: mlp_resources(wildcards, attempt)["cpus_per_task"],
    params:
        function=function_name,
        # changing any of these retrains the MLPs (Snakemake's params trigger); MLflow settings do not
        hp=sweep.mlp_hyperparameters(config),
    script:
        "../scripts/train.py"
