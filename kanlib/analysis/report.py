"""The report rules' calls: read the aggregated tables, write the figures, the summary, the exponent
table and the laws file (``workflow/scripts/report_*.py`` map their inputs and outputs onto these).

What is written comes from the modules beside this one: the numbers from
:mod:`~kanlib.analysis.tables`, the summary's text from :mod:`~kanlib.analysis.summary` (rendered by
:mod:`~kanlib.analysis.document`), the laws file from :mod:`~kanlib.analysis.laws`, the figures
from :mod:`~kanlib.analysis.figures` (listed in :mod:`~kanlib.analysis.catalog`), the MLflow metric
names from :mod:`~kanlib.analysis.metrics`. The names the workflow layer calls on this module are
imported here from those.

Nothing here imports torch; matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ..files import atomic_write_text
from ..functions import function_slug
from .catalog import FIGURES
from .document import Document, to_html, to_markdown, to_rst
from .families import COMPARISON_COLUMNS, has_families
from .frontier import frontier_report
from .laws import laws_document
from .laws import laws_json as laws_text
from .metrics import family_mlflow_metrics, frontier_mlflow_metrics, mlflow_metrics
from .summary import answer_document, build_summary
from .tables import (
    config_dir,
    config_label,
    configurations,
    family_comparison,
    report_exponents,
    select_configuration,
)

__all__ = [
    "read_results",
    "figure_set",
    "write_figures",
    "write_family_figure",
    "summary_links",
    "front_page",
    "write_summary",
    # from the modules beside this one, for the workflow layer (kanlib.workflow.jobs)
    "Document",
    "to_markdown",
    "answer_document",
    "build_summary",
    "configurations",
    "config_label",
    "config_dir",
    "select_configuration",
    "report_exponents",
    "family_comparison",
    "has_families",
    "mlflow_metrics",
    "family_mlflow_metrics",
    "frontier_mlflow_metrics",
    "write_frontier_figure",
]


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    """results.csv or history.csv as written by the aggregate rule (``width`` kept as text)."""
    return pd.read_csv(path, dtype={"width": str})


def _csv(table: pd.DataFrame) -> str:
    """A table as the report's CSV files hold it (6 significant digits)."""
    return table.to_csv(index=False, float_format="%.6g", lineterminator="\n")


# ---- figures ------------------------------------------------------------------------------------------------


def _placeholder(what: str, error: Exception):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 2.4))
    figure.text(0.5, 0.5, f"{what}:\ncannot be drawn: {error}", ha="center", va="center", wrap=True)
    return figure


def figure_set(results: pd.DataFrame, history: pd.DataFrame, exponents: pd.DataFrame) -> dict:
    """Every figure of :data:`kanlib.analysis.catalog.FIGURES` for one configuration (tables filtered
    to it), stem -> Figure.

    A figure that cannot be drawn (e.g. no finite value) is replaced by a panel naming the problem,
    so that every declared output of the report exists.
    """
    from . import figures

    out = {}
    for spec in FIGURES:
        plot = getattr(figures, spec.plot)
        try:
            if spec.table == "history":
                out[spec.stem] = plot(history, **spec.options)
            elif spec.table == "fits":
                fits = exponents[(exponents["x"] == spec.options["x"]) & (exponents["metric"] == "test_rmse")]
                out[spec.stem] = plot(results, fits)
            else:
                out[spec.stem] = plot(results, **spec.options)
        except (ValueError, KeyError, IndexError) as error:
            label = config_label(*configurations(results)[0]) if not results.empty else "empty results"
            out[spec.stem] = _placeholder(f"{label}: {spec.description}", error)
    return out


def write_figures(
    results_csv, history_csv, configuration: tuple[str, str, int], settings: dict, png_paths: dict[str, str]
) -> int:
    """Draw every figure of one (function, width, k) and save each as PNG (+ PDF beside it).

    png_paths: figure stem -> PNG path (every stem of the catalog). Returns the number of figures.
    Raises ValueError when results.csv has no row of the configuration.
    """
    from .figures import save_figure

    results = select_configuration(read_results(results_csv), *configuration)
    history = select_configuration(read_results(history_csv), *configuration)
    if results.empty:
        raise ValueError(f"results.csv has no rows for {config_label(*configuration)}")
    figures = figure_set(results, history, report_exponents(results, settings))
    for stem, figure in figures.items():
        save_figure(figure, png_paths[stem])
    return len(figures)


def write_family_figure(results_csv, function: str, settings: dict, png_path) -> None:
    """The KAN-against-MLP figure of one function (PNG + PDF beside it)."""
    from .figures import plot_family_comparison, save_figure

    results = read_results(results_csv)
    results = results[results["function"].astype(str) == str(function)]
    if results.empty:
        raise ValueError(f"results.csv has no rows for function {function!r}")
    comparison, points = family_comparison(results, settings)
    try:
        figure = plot_family_comparison(points, comparison)
    except (ValueError, KeyError, IndexError) as error:
        figure = _placeholder(f"{function}: KAN against MLP", error)
    save_figure(figure, png_path)


def write_frontier_figure(results_csv, history_csv, function: str, settings: dict, png_path) -> None:
    """The data-axis figure of one function (:func:`kanlib.analysis.figures.plot_frontier`; PNG + PDF)."""
    from .figures import plot_frontier, save_figure

    results = read_results(results_csv)
    results = results[results["function"].astype(str) == str(function)]
    if results.empty:
        raise ValueError(f"results.csv has no rows for function {function!r}")
    history = read_results(history_csv)
    history = history[history["function"].astype(str) == str(function)]
    report = frontier_report(results, history, settings["confidence"], settings["target_rmse"])
    try:
        figure = plot_frontier(results, report)
    except (ValueError, KeyError, IndexError) as error:
        figure = _placeholder(f"{function}: the data axis", error)
    save_figure(figure, png_path)


# ---- the summary and the tables beside it -------------------------------------------------------------------


def summary_links(
    results: pd.DataFrame, comparison: pd.DataFrame | None, report_folder: str, summary_folder: str
) -> tuple[dict, dict | None]:
    """The figure paths the summary links, relative to its folder: per configuration, figure stem ->
    ``<report>/<function>/w<width>_k<k>/<stem>.png``; with a family ``comparison``, function ->
    ``<report>/<function>/families.png`` (else None)."""

    def link(*parts: str) -> str:
        return os.path.relpath(os.path.join(report_folder, *parts), summary_folder)

    figures = {
        configuration: {spec.stem: link(config_dir(*configuration), f"{spec.stem}.png") for spec in FIGURES}
        for configuration in configurations(results)
    }
    families = None
    if comparison is not None:
        families = {
            function: link(function_slug(function), "families.png") for function in comparison["function"].unique()
        }
    return figures, families


def frontier_links(results: pd.DataFrame, frontier, report_folder: str, summary_folder: str) -> dict:
    """function -> ``<report>/<function>/frontier.png`` relative to the summary, for the functions
    with a data axis (none for a sweep with fewer than 3 N)."""
    if frontier.empty:
        return {}
    return {
        function: os.path.relpath(os.path.join(report_folder, function_slug(function), "frontier.png"), summary_folder)
        for function in frontier.points["function"].unique()
    }


def _check_links(figures: dict, families: dict | None, inputs: Iterable[str], summary_folder: str) -> None:
    """Raise ValueError when the summary would link a figure that is not among ``inputs`` (the rule's)."""
    linked = {path for paths in figures.values() for path in paths.values()} | set((families or {}).values())
    missing = linked - {os.path.relpath(path, summary_folder) for path in inputs}
    if missing:
        raise ValueError(f"the summary would link figures that are not inputs of the rule: {sorted(missing)}")


def front_page(answer: Document, template: str) -> str:
    """The Snakemake report's front page: the template's title, the answer, then the template's text."""
    title, underline, description = (template.split("\n", 2) + ["", ""])[:3]
    return f"{title}\n{underline}\n\n{to_rst(answer)}\n{description.lstrip()}"


def write_summary(
    results_csv,
    sweep: str,
    settings: dict,
    figure_pngs,
    *,
    summary_md,
    summary_html,
    exponents_csv,
    answer_md=None,
    front_rst=None,
    front_template=None,
    families_csv=None,
    laws_json=None,
    config=None,
    git_commit: str = "unknown",
    history_csv=None,
    frontier_csv=None,
    frontier_points_csv=None,
) -> pd.DataFrame:
    """The exponent table (CSV) and the summary (Markdown and HTML) of a sweep; returns the table.

    answer_md: the answer and the exponent tables alone (the MLflow parent run's description);
    front_rst: the Snakemake report's front page: the title of ``front_template``
    (workflow/report/workflow.rst), the answer and exponent tables, then the template's text.

    figure_pngs: the figure files the summary may link (report/<function>/w<width>_k<k>/<stem>.png
    below the folder of summary_html, and report/<function>/families.png when the sweep has MLPs);
    links are written relative to summary.md.

    families_csv: where the KAN-against-MLP comparison table goes (written, with a header only,
    also when the sweep has no MLP).

    laws_json: where the fitted laws go (:mod:`kanlib.analysis.laws`), with the hash of ``config``
    (the sweep's config, required with it) and ``git_commit`` (of the source tree) in them.

    frontier_csv, frontier_points_csv: the data axis's laws and points
    (:func:`kanlib.analysis.frontier.frontier_report`, with ``history_csv`` for which chosen models
    were still improving; header-less empty files for a sweep with fewer than 3 N). Its figures are
    report/<function>/frontier.png.
    """
    if laws_json is not None and config is None:
        raise ValueError("the laws file names the sweep's config by its hash: pass config with laws_json")
    results = read_results(results_csv)
    exponents = report_exponents(results, settings)
    comparison, points = family_comparison(results, settings) if has_families(results) else (None, None)
    summary_folder = os.path.dirname(summary_md)
    figures, families = summary_links(results, comparison, os.path.dirname(summary_html), summary_folder)
    history = read_results(history_csv) if history_csv is not None else None
    frontier = frontier_report(results, history, settings["confidence"], settings["target_rmse"])
    frontier_figures = frontier_links(results, frontier, os.path.dirname(summary_html), summary_folder)
    _check_links(figures, {**(families or {}), **frontier_figures}, figure_pngs, summary_folder)
    document = build_summary(
        results,
        exponents,
        sweep,
        figures,
        divergence_factor=settings["divergence_factor"],
        comparison=comparison,
        family_figures=families,
        frontier=frontier,
        frontier_figures=frontier_figures,
    )
    if frontier_csv is not None:
        atomic_write_text(frontier_csv, _csv(frontier.fits))
    if frontier_points_csv is not None:
        atomic_write_text(frontier_points_csv, _csv(frontier.points))
    if families_csv is not None:
        atomic_write_text(
            families_csv, _csv(comparison if comparison is not None else pd.DataFrame(columns=COMPARISON_COLUMNS))
        )
    atomic_write_text(exponents_csv, _csv(exponents))
    atomic_write_text(summary_md, to_markdown(document))
    atomic_write_text(summary_html, to_html(document, f"KAN scaling sweep {sweep}"))
    answer = answer_document(results, exponents, tables=True, comparison=comparison, frontier=frontier)
    if answer_md is not None:
        atomic_write_text(answer_md, to_markdown(answer))
    if front_rst is not None:
        template = Path(front_template).read_text(encoding="utf-8") if front_template else "\n\n"
        atomic_write_text(front_rst, front_page(answer, template))
    if laws_json is not None:
        laws = laws_document(
            results,
            exponents,
            sweep=sweep,
            settings=settings,
            config=config,
            git_commit=git_commit,
            comparison=comparison,
            family_points=points,
            frontier=frontier,
        )
        atomic_write_text(laws_json, laws_text(laws))
    return exponents
