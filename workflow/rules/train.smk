# batch_seeds (kanlib.workflow.sweep.batch_seeds): one job per grid level for all seeds; else one per seed.
if BATCH_SEEDS:

    rule train_seeds:
        """Train one grid level of every seed's chain in one job, as one stack of models (each model
        follows the trajectory it would alone); one run folder and one MLflow child run per seed.
        """
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
        wildcard_constraints:
            **WILDCARDS,
        # a KAN chain's levels run one after another: start them before the MLPs, which
        # have no successors, so the chains are not left to run alone at the end
        priority: 1
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
            seeds=SEEDS,
            # changing any of these retrains (Snakemake's params trigger); MLflow settings do not
            hp=sweep.hyperparameters(config),
        script:
            "../scripts/train.py"

    rule train_mlp_seeds:
        """Train one MLP of the baseline family for every seed in one job, as one stack of models;
        one run folder and one MLflow child run per seed."""
        input:
            data=[DATA.replace("{seed}", str(seed)) for seed in SEEDS],
            # ancient: the parent must exist first, but re-creating it does not retrain anything
            parent=ancient(PARENT_JSON),
        output:
            model=[f"{run}/model.pt" for run in seed_runs(MLP_RUN)],
            history=[f"{run}/history.csv" for run in seed_runs(MLP_RUN)],
            metrics=[f"{run}/metrics.json" for run in seed_runs(MLP_RUN)],
        log:
            f"{LOGS}/train_mlp_seeds/{MLP_SEEDS_JOB}.log",
        benchmark:
            f"{LOGS}/benchmarks/train_mlp_seeds/{MLP_SEEDS_JOB}.tsv"
        wildcard_constraints:
            **WILDCARDS,
        threads: config["threads"]
        resources:
            mem_mb=lambda wildcards, attempt: mlp_resources(wildcards, attempt)["mem_mb"],
            runtime=lambda wildcards, attempt: mlp_resources(wildcards, attempt)["runtime"],
            cpus_per_task=lambda wildcards, attempt: mlp_resources(wildcards, attempt)[
                "cpus_per_task"
            ],
        params:
            function=function_name,
            seeds=SEEDS,
            hp=sweep.mlp_hyperparameters(config),
        script:
            "../scripts/train.py"

else:

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
        # a KAN chain's levels run one after another: start them before the MLPs, which
        # have no successors, so the chains are not left to run alone at the end
        priority: 1
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
            cpus_per_task=lambda wildcards, attempt: mlp_resources(wildcards, attempt)[
                "cpus_per_task"
            ],
        params:
            function=function_name,
            # changing any of these retrains the MLPs (Snakemake's params trigger); MLflow settings do not
            hp=sweep.mlp_hyperparameters(config),
        script:
            "../scripts/train.py"
