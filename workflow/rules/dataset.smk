rule dataset:
    """Sample one training set of size N and the fixed test set for a (function, seed)."""
    output:
        DATA,
    log:
        f"{LOGS}/dataset/{{function}}/N{{n}}_seed{{seed}}.log",
    wildcard_constraints:
        **WILDCARDS,
    # before the MLPs: a dataset starts its KAN chain (see the train rules' priority)
    priority: 1
    threads: 1
    resources:
        mem_mb=dataset_mem_mb,
        runtime=5,
    params:
        function=function_name,
        test_num=config["test_num"],
        input_range=config["input_range"],
    script:
        "../scripts/dataset.py"
