"""The analysis layer: power-law fits with intervals and interpolation thresholds
(:mod:`~kanlib.analysis.fits`, :mod:`~kanlib.analysis.families`), the report's numbers
(:mod:`~kanlib.analysis.tables`), its text (:mod:`~kanlib.analysis.summary`, rendered by
:mod:`~kanlib.analysis.document`), its figures (:mod:`~kanlib.analysis.figures`, listed in
:mod:`~kanlib.analysis.catalog`), the fitted laws as a file (:mod:`~kanlib.analysis.laws`), the
MLflow metric names (:mod:`~kanlib.analysis.metrics`), the files the report rules write
(:mod:`~kanlib.analysis.report`) and the seed's published numbers (:mod:`~kanlib.analysis.reference`).

It works on the workflow's tables (pandas) and never imports torch, mlflow or snakemake.
"""
