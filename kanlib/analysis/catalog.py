"""The report's figures: one registry that the report rules, their captions and the summary read.

Each :class:`FigureSpec` names the file stem of the figure (``<stem>.png`` and ``.pdf`` per
configuration), what it shows, the caption file of the Snakemake report
(``workflow/report/<caption>.rst``), its category and labels there, and how it is drawn: a
function of :mod:`kanlib.analysis.figures` applied to one of the sweep's tables.

A new figure is one entry here, one plotting function in ``figures.py`` and one caption file;
the rules (``workflow/rules/report.smk``) and the summary pick it up from this list.

This module imports nothing heavy (the Snakefile reads it at parse time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["FigureSpec", "FIGURES", "DATA_AXIS_MIN_SIZES", "figure_stems", "figure_spec"]

#: the data axis (kanlib.analysis.frontier), its section and its figures need this many training-set
#: sizes N: a law over N fitted on the others and checked on the largest needs 3
DATA_AXIS_MIN_SIZES = 3


@dataclass(frozen=True)
class FigureSpec:
    """One figure of a configuration's report.

    plot: name of the function in :mod:`kanlib.analysis.figures` that draws it;
    table: what that function is given: the results table (with ``options`` as keyword
    arguments), the step history, or the results with the test-RMSE power-law fits in
    ``options["x"]`` from the exponent table.
    """

    stem: str
    description: str
    caption: str
    category: str
    labels: dict[str, str]
    plot: str
    table: Literal["results", "history", "fits"] = "results"
    options: dict[str, str] = field(default_factory=dict)


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec(
        "test_rmse_vs_grid",
        "test RMSE vs grid size G, one line per N, with the G^-(k+1) reference",
        "rmse_vs_grid_test",
        "2. RMSE vs grid size",
        {"metric": "test RMSE"},
        "plot_rmse_vs_grid",
        options={"metric": "test_rmse"},
    ),
    FigureSpec(
        "train_rmse_vs_grid",
        "train RMSE vs grid size G, one line per N, with the G^-(k+1) reference",
        "rmse_vs_grid_train",
        "2. RMSE vs grid size",
        {"metric": "train RMSE"},
        "plot_rmse_vs_grid",
        options={"metric": "train_rmse"},
    ),
    FigureSpec(
        "test_rmse_vs_data",
        "test RMSE vs training-set size N, one line per G",
        "rmse_vs_data_test",
        "4. RMSE vs training-set size",
        {"metric": "test RMSE"},
        "plot_rmse_vs_data",
        options={"metric": "test_rmse"},
    ),
    FigureSpec(
        "train_rmse_vs_data",
        "train RMSE vs training-set size N, one line per G",
        "rmse_vs_data_train",
        "4. RMSE vs training-set size",
        {"metric": "train RMSE"},
        "plot_rmse_vs_data",
        options={"metric": "train_rmse"},
    ),
    FigureSpec(
        "fit_test_rmse_vs_grid",
        "fitted power laws of test RMSE in G with 95% bands",
        "fit_vs_grid",
        "3. Power-law fits",
        {"scaling variable": "grid size G"},
        "plot_fitted_power_laws",
        table="fits",
        options={"x": "grid_size"},
    ),
    FigureSpec(
        "fit_test_rmse_vs_params",
        "fitted power laws of test RMSE in the parameter count with 95% bands",
        "fit_vs_params",
        "3. Power-law fits",
        {"scaling variable": "parameters"},
        "plot_fitted_power_laws",
        table="fits",
        options={"x": "n_params"},
    ),
    FigureSpec(
        "loss_staircase",
        "train and test RMSE vs cumulative step, one panel per N (grid extensions marked)",
        "loss_staircase",
        "5. Training curves",
        {"figure": "RMSE vs cumulative step"},
        "plot_loss_staircase",
        table="history",
    ),
    FigureSpec(
        "test_rmse_heatmap",
        "test RMSE over (N, G)",
        "heatmap",
        "6. Heatmap",
        {"figure": "test RMSE over (N, G)"},
        "plot_rmse_heatmap",
        options={"metric": "test_rmse"},
    ),
)


def figure_stems() -> list[str]:
    """The figures' file stems, in report order."""
    return [spec.stem for spec in FIGURES]


def figure_spec(stem: str) -> FigureSpec:
    for spec in FIGURES:
        if spec.stem == stem:
            return spec
    raise KeyError(f"no figure {stem!r}; known: {figure_stems()}")
