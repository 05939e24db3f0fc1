"""The workflow layer: what the Snakemake rules call (config checks and job layout, the jobs
themselves, result files, MLflow tracking, the tracking server). It may import the model core
(:mod:`kanlib`) and the analysis layer (:mod:`kanlib.analysis`); neither imports it.

Each module imports its heavy dependencies (torch, mlflow, pandas) where it needs them, so
the Snakefile can import :mod:`kanlib.workflow.sweep` quickly.
"""
