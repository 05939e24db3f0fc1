"""The analysis layer: power-law fits with intervals and interpolation thresholds
(:mod:`~kanlib.analysis.fits`), the report's figures (:mod:`~kanlib.analysis.figures`, listed in
:mod:`~kanlib.analysis.catalog`), the summary (:mod:`~kanlib.analysis.report`) and the seed's
published numbers (:mod:`~kanlib.analysis.reference`).

It works on the workflow's tables (pandas) and never imports torch, mlflow or snakemake.
"""
