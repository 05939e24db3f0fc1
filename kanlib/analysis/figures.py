"""Figures for KAN scaling-law sweeps.

Every plotting function takes the workflow's DataFrames (see
:mod:`kanlib.analysis.fits`) and returns a :class:`matplotlib.figure.Figure`.
Figures are built directly as ``Figure`` objects, without ``pyplot``, so no
global matplotlib state (backend, rcParams, open-figure registry) is touched
and nothing needs closing. :func:`save_figure` writes a PNG plus a vector copy
beside it, atomically.

The plotting functions expect results for a single ``(function, width, k)``
configuration and raise ``ValueError`` otherwise; filter the table first.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator
from scipy import stats

from ..families import REGISTRY, chained_families, describe
from ..files import atomic_path
from .fits import (
    CONFIG_COLUMNS,
    GROUP_COLUMNS,
    learning_mask,
    require_single_configuration,
    rmse_pivot,
    summarize_over_seeds,
)

__all__ = [
    "METRIC_LABELS",
    "save_figure",
    "plot_rmse_vs_grid",
    "plot_rmse_vs_data",
    "plot_loss_staircase",
    "plot_rmse_heatmap",
    "plot_fitted_power_laws",
    "plot_family_comparison",
    "plot_frontier",
]

#: Axis label of each metric column.
METRIC_LABELS: dict[str, str] = {"train_rmse": "train RMSE", "test_rmse": "test RMSE"}

_X_LABELS = {"grid_size": "grid size G", "n_params": "number of parameters"}


# --------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------


def save_figure(
    figure: Figure,
    path_png: str | os.PathLike,
    vector_format: str = "pdf",
    dpi: int = 150,
) -> tuple[Path, Path]:
    """Write ``figure`` as PNG and as a vector file beside it, atomically.

    Each file is first written to a temporary name in the target folder and
    then moved into place with :func:`os.replace`, so a reader (or Snakemake)
    never sees a half-written file.

    Parameters
    ----------
    figure : matplotlib.figure.Figure
    path_png : path-like
        Target PNG path; must end in ``.png``. Missing folders are created.
    vector_format : {"pdf", "svg"}, default "pdf"
        Format of the copy written beside the PNG (same stem).
    dpi : int, default 150
        Resolution of the PNG.

    Returns
    -------
    tuple of pathlib.Path
        ``(png_path, vector_path)``.
    """
    png_path = Path(path_png)
    if png_path.suffix.lower() != ".png":
        raise ValueError(f"path_png must end in .png, got {str(png_path)!r}")
    if vector_format not in ("pdf", "svg"):
        raise ValueError(f"vector_format must be 'pdf' or 'svg', got {vector_format!r}")
    vector_path = png_path.with_suffix(f".{vector_format}")
    png_path.parent.mkdir(parents=True, exist_ok=True)
    # Fixed metadata keeps the files byte-reproducible across runs.
    metadata = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}
    _save_atomically(figure, png_path, "png", dpi=dpi, metadata=None)
    _save_atomically(figure, vector_path, vector_format, dpi=dpi, metadata=metadata[vector_format])
    return png_path, vector_path


def _save_atomically(figure: Figure, path: Path, file_format: str, dpi: int, metadata: dict | None) -> None:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format=file_format, dpi=dpi, metadata=metadata)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _check_metric(metric: str) -> None:
    if metric not in METRIC_LABELS:
        raise ValueError(f"metric must be one of {list(METRIC_LABELS)}, got {metric!r}")


def _title(frame: pd.DataFrame) -> str:
    function, width, k = (frame[c].iloc[0] for c in CONFIG_COLUMNS)
    layers = ",".join(str(width).split("-"))
    return f"{function}: KAN [{layers}], k={k}"


def _colors(count: int, colormap: str = "viridis") -> list:
    """``count`` colours spread over a colormap, avoiding its pale top end."""
    cmap: Colormap = colormaps[colormap]
    if count == 1:
        return [cmap(0.3)]
    return [cmap(v) for v in np.linspace(0.0, 0.85, count)]


def _new_axes(figsize: tuple[float, float] = (6.4, 4.8)):
    figure = Figure(figsize=figsize, layout="constrained")
    return figure, figure.add_subplot()


def _seed_summary(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (N, G) geometric mean / min / max of ``metric`` over the seeds whose chains learnt the
    target (all seeds when none did), finite cells only."""
    require_single_configuration(results)
    learnt = learning_mask(results)
    summary = summarize_over_seeds(results[learnt] if learnt.any() else results, metrics=[metric])
    return summary[np.isfinite(summary[metric].to_numpy(dtype=float))]


def _chains(count: int) -> str:
    return f"{count} chain" if count == 1 else f"{count} chains"


def _draw_not_learnt(ax, results: pd.DataFrame, x: str, metric: str) -> None:
    """Grey crosses at every level of the chains that did not learn the target (left out of the lines)."""
    stuck = results[~learning_mask(results)]
    if not stuck.empty:
        ax.plot(
            stuck[x].to_numpy(dtype=float),
            stuck[metric].to_numpy(dtype=float),
            "x",
            color="0.5",
            label=f"did not learn the target ({_chains(stuck.drop_duplicates(['n_train', 'seed']).shape[0])})",
        )


def _label_log_axis_at(axis, values) -> None:
    """Major ticks of a log axis at the sweep's own values (G or N), labelled plainly ("5", "100"),
    instead of powers of ten; left alone for more than 12 values (they would crowd)."""
    values = sorted({float(v) for v in values})
    if not values or len(values) > 12:
        return
    axis.set_major_locator(FixedLocator(values))
    axis.set_major_formatter(FixedFormatter([f"{v:g}" for v in values]))
    axis.set_minor_locator(NullLocator())


def _draw_seed_spread(ax, x: np.ndarray, cells: pd.DataFrame, metric: str, color) -> None:
    """Shade min-max over seeds where a cell has more than one seed."""
    if (cells[f"{metric}_n_seeds"] > 1).any():
        ax.fill_between(
            x,
            cells[f"{metric}_min"].to_numpy(dtype=float),
            cells[f"{metric}_max"].to_numpy(dtype=float),
            color=color,
            alpha=0.2,
            linewidth=0,
        )


# --------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------


def plot_rmse_vs_grid(results: pd.DataFrame, metric: str = "test_rmse") -> Figure:
    """RMSE versus grid size, one line per training-set size N.

    Log-log axes, markers at the geometric mean over seeds, a shaded min-max
    band across seeds where there are several, and a dashed
    ``G**-(k+1)`` reference line. The reference starts at the smallest G, at
    the geometric mean over N of the RMSE there, and runs to the largest G.

    Parameters
    ----------
    results : pandas.DataFrame
        Results table for one (function, width, k).
    metric : {"test_rmse", "train_rmse"}

    Returns
    -------
    matplotlib.figure.Figure
        Legend entries ``"N=100", ...`` then ``"$G^{-4}$"`` (for k = 3).
    """
    _check_metric(metric)
    summary = _seed_summary(results, metric)
    if summary.empty:
        raise ValueError(f"no finite {metric} values to plot")
    figure, ax = _new_axes()
    train_sizes = sorted(summary["n_train"].unique())
    for color, n_train in zip(_colors(len(train_sizes)), train_sizes):
        cells = summary[summary["n_train"] == n_train].sort_values("grid_size")
        grid = cells["grid_size"].to_numpy(dtype=float)
        ax.plot(grid, cells[metric].to_numpy(dtype=float), "o-", color=color, label=f"N={n_train}")
        _draw_seed_spread(ax, grid, cells, metric, color)
    _draw_not_learnt(ax, results, "grid_size", metric)

    order = int(summary["k"].iloc[0]) + 1
    smallest_grid = float(summary["grid_size"].min())
    largest_grid = float(summary["grid_size"].max())
    anchor = float(stats.gmean(summary.loc[summary["grid_size"] == smallest_grid, metric]))
    reference_grid = np.geomspace(smallest_grid, largest_grid, 50)
    ax.plot(
        reference_grid,
        anchor * (reference_grid / smallest_grid) ** (-order),
        "--",
        color="black",
        linewidth=1.2,
        label=rf"$G^{{-{order}}}$",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    _label_log_axis_at(ax.xaxis, summary["grid_size"])
    ax.set_xlabel("grid size G")
    ax.set_ylabel(METRIC_LABELS[metric])
    ax.set_title(_title(summary))
    ax.legend()
    return figure


def plot_rmse_vs_data(results: pd.DataFrame, metric: str = "test_rmse") -> Figure:
    """RMSE versus training-set size N, one line per grid size G (log-log).

    Markers at the geometric mean over seeds, min-max band across seeds.

    Parameters
    ----------
    results : pandas.DataFrame
        Results table for one (function, width, k).
    metric : {"test_rmse", "train_rmse"}

    Returns
    -------
    matplotlib.figure.Figure
        Legend entries ``"G=5", ...``.
    """
    _check_metric(metric)
    summary = _seed_summary(results, metric)
    if summary.empty:
        raise ValueError(f"no finite {metric} values to plot")
    figure, ax = _new_axes()
    grid_sizes = sorted(summary["grid_size"].unique())
    for color, grid_size in zip(_colors(len(grid_sizes), "plasma"), grid_sizes):
        cells = summary[summary["grid_size"] == grid_size].sort_values("n_train")
        n_train = cells["n_train"].to_numpy(dtype=float)
        ax.plot(n_train, cells[metric].to_numpy(dtype=float), "s-", color=color, label=f"G={grid_size}")
        _draw_seed_spread(ax, n_train, cells, metric, color)
    _draw_not_learnt(ax, results, "n_train", metric)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _label_log_axis_at(ax.xaxis, summary["n_train"])
    ax.set_xlabel("training-set size N")
    ax.set_ylabel(METRIC_LABELS[metric])
    ax.set_title(_title(summary))
    ax.legend()
    return figure


def plot_loss_staircase(history: pd.DataFrame) -> Figure:
    """Train and test RMSE along the grid-extension chain, one panel per N.

    Each panel shows, for every seed, train RMSE (solid) and test RMSE
    (dashed) against ``cumulative_step`` on a log y axis. A dotted vertical
    line marks each grid extension (the first step of every grid level after
    the first) and every level is labelled with its ``G``; the boundaries are
    taken from the panel's first seed.

    Parameters
    ----------
    history : pandas.DataFrame
        History table for one (function, width, k).

    Returns
    -------
    matplotlib.figure.Figure
        One axes per N; each has legend entries ``"train"``, ``"test"`` (one
        seed) or ``"train, seed s"``, ``"test, seed s"`` (several seeds).
    """
    required = [*GROUP_COLUMNS, "seed", "grid_size", "cumulative_step", "train_rmse", "test_rmse"]
    missing = [c for c in required if c not in history.columns]
    if missing:
        raise ValueError(f"history table is missing columns {missing}")
    require_single_configuration(history)
    if history.empty:
        raise ValueError("history table is empty")
    train_sizes = sorted(history["n_train"].unique())
    figure = Figure(figsize=(4.0 * len(train_sizes), 3.8), layout="constrained")
    axes = figure.subplots(1, len(train_sizes), sharey=True, squeeze=False)[0]
    for ax, n_train in zip(axes, train_sizes):
        chains = history[history["n_train"] == n_train]
        seeds = sorted(chains["seed"].unique())
        for seed_index, seed in enumerate(seeds):
            color = f"C{seed_index % 10}"
            chain = chains[chains["seed"] == seed].sort_values("cumulative_step")
            suffix = f", seed {seed}" if len(seeds) > 1 else ""
            steps = chain["cumulative_step"].to_numpy(dtype=float)
            ax.plot(steps, chain["train_rmse"].to_numpy(dtype=float), "-", color=color, label=f"train{suffix}")
            ax.plot(
                steps,
                chain["test_rmse"].to_numpy(dtype=float),
                "--",
                color="C3" if len(seeds) == 1 else color,
                label=f"test{suffix}",
            )
        first_chain = chains[chains["seed"] == seeds[0]]
        level_starts = first_chain.groupby("grid_size")["cumulative_step"].min().sort_values()
        for index, (grid_size, start) in enumerate(level_starts.items()):
            if index > 0:
                ax.axvline(float(start), color="grey", linestyle=":", linewidth=1.0)
            ax.text(
                float(start),
                0.98,
                f" G={grid_size}",
                transform=ax.get_xaxis_transform(),
                rotation=90,
                va="top",
                ha="left",
                fontsize=8,
                color="dimgrey",
            )
        ax.set_yscale("log")
        ax.set_xlabel("cumulative LBFGS step")
        ax.set_title(f"N={n_train}")
        ax.legend(fontsize=8, loc="lower left")
    axes[0].set_ylabel("RMSE")
    figure.suptitle(_title(history))
    return figure


def plot_rmse_heatmap(results: pd.DataFrame, metric: str = "test_rmse") -> Figure:
    """Heatmap of log10 RMSE over training-set size N (rows) and grid size G (columns).

    Cells are the geometric mean over seeds and are annotated with the value
    (``"7.3e-03"``); cells without a finite value show ``"n/a"``.

    Parameters
    ----------
    results : pandas.DataFrame
        Results table for one (function, width, k).
    metric : {"test_rmse", "train_rmse"}

    Returns
    -------
    matplotlib.figure.Figure
        The heatmap axes plus a colorbar axes.
    """
    _check_metric(metric)
    pivot = rmse_pivot(results, metric)
    values = pivot.to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_values = np.where(values > 0, np.log10(values), np.nan)
    if not np.isfinite(log_values).any():
        raise ValueError(f"no finite {metric} values to plot")
    figure, ax = _new_axes((1.3 * pivot.shape[1] + 2.5, 0.8 * pivot.shape[0] + 2.0))
    image = ax.imshow(np.ma.masked_invalid(log_values), cmap="viridis", aspect="auto", origin="upper")
    low, high = np.nanmin(log_values), np.nanmax(log_values)
    middle = (low + high) / 2.0
    for row in range(values.shape[0]):
        for column in range(values.shape[1]):
            value = values[row, column]
            finite = np.isfinite(log_values[row, column])
            ax.text(
                column,
                row,
                f"{value:.1e}" if finite else "n/a",
                ha="center",
                va="center",
                fontsize=8,
                color=("white" if log_values[row, column] < middle else "black") if finite else "black",
            )
    ax.set_xticks(range(pivot.shape[1]), [str(g) for g in pivot.columns])
    ax.set_yticks(range(pivot.shape[0]), [str(n) for n in pivot.index])
    ax.set_xlabel("grid size G")
    ax.set_ylabel("training-set size N")
    ax.set_title(_title(results))
    figure.colorbar(image, ax=ax, label=f"log10 {METRIC_LABELS[metric]}")
    return figure


def _parse_grid_list(text: str) -> set[float]:
    return {float(item) for item in str(text).split(",") if item.strip()}


def plot_fitted_power_laws(results: pd.DataFrame, fits: pd.DataFrame) -> Figure:
    """Data with the fitted power laws and their exponent confidence bands.

    For each N: points at the geometric mean over seeds, filled where used in
    the fit and hollow where excluded (threshold / divergence / beyond the
    minimum), with error bars from the smallest to the largest seed where
    there are several seeds; the fitted line over the range of used points; and a shaded
    band obtained by varying ``alpha`` over ``[alpha_low, alpha_high]``
    about the data centroid ``x_pivot`` (no band when the interval is NaN).

    Parameters
    ----------
    results : pandas.DataFrame
        Results table for one (function, width, k).
    fits : pandas.DataFrame
        Output of :func:`kanlib.analysis.fit_scaling_laws` for the same
        configuration (single ``x`` and ``metric``).

    Returns
    -------
    matplotlib.figure.Figure
        One legend entry per N (the fitted line, labelled with ``alpha`` and
        its interval, or the points with "no fit"), plus "excluded" when any
        point was excluded.
    """
    for column in ("x", "metric"):
        if fits[column].nunique() != 1:
            raise ValueError(f"fits must hold a single {column!r}, found {sorted(fits[column].unique())}")
    x_column = str(fits["x"].iloc[0])
    metric = str(fits["metric"].iloc[0])
    _check_metric(metric)
    summary = _seed_summary(results, metric)
    function, width, k = (summary[c].iloc[0] for c in CONFIG_COLUMNS)
    fits = fits[(fits["function"] == function) & (fits["width"] == width) & (fits["k"] == k)]
    if fits.empty:
        raise ValueError(f"fits has no rows for configuration {(function, width, k)}")

    figure, ax = _new_axes()
    train_sizes = sorted(summary["n_train"].unique())
    any_excluded = False
    for color, n_train in zip(_colors(len(train_sizes)), train_sizes):
        cells = summary[summary["n_train"] == n_train].sort_values("grid_size")
        fit_rows = fits[fits["n_train"] == n_train]
        fit = fit_rows.iloc[0] if len(fit_rows) else None
        used_grids = _parse_grid_list(fit["points_used"]) if fit is not None else set()
        used = cells["grid_size"].astype(float).isin(used_grids).to_numpy()
        x_values = cells[x_column].to_numpy(dtype=float)
        y_values = cells[metric].to_numpy(dtype=float)
        has_fit = fit is not None and np.isfinite(fit["alpha"])
        ax.scatter(
            x_values[used],
            y_values[used],
            color=color,
            zorder=3,
            label=None if has_fit else f"N={n_train}: no fit",
        )
        if (~used).any():
            any_excluded = True
            ax.scatter(x_values[~used], y_values[~used], facecolors="none", edgecolors=color, zorder=3)
        if (cells[f"{metric}_n_seeds"] > 1).any():  # seed spread: smallest to largest seed
            ax.errorbar(
                x_values,
                y_values,
                yerr=[
                    y_values - cells[f"{metric}_min"].to_numpy(dtype=float),
                    cells[f"{metric}_max"].to_numpy(dtype=float) - y_values,
                ],
                fmt="none",
                ecolor=color,
                elinewidth=1.0,
                capsize=0.0,  # no cap lines: ax.get_lines() stays the fitted lines
                zorder=2,
            )
        if not has_fit:
            continue
        used_x = x_values[used]
        line_x = np.geomspace(used_x.min(), used_x.max(), 50)
        alpha, low, high = float(fit["alpha"]), float(fit["alpha_low"]), float(fit["alpha_high"])
        interval = f" [{low:.2f}, {high:.2f}]" if np.isfinite(low) and np.isfinite(high) else ""
        ax.plot(
            line_x,
            float(fit["prefactor"]) * line_x ** (-alpha),
            "-",
            color=color,
            label=rf"N={n_train}: $\alpha$={alpha:.2f}{interval}",
        )
        if interval:
            pivot_x = float(fit["x_pivot"])
            pivot_y = float(fit["prefactor"]) * pivot_x ** (-alpha)
            curves = [pivot_y * (line_x / pivot_x) ** (-a) for a in (low, high)]
            ax.fill_between(line_x, np.fmin(*curves), np.fmax(*curves), color=color, alpha=0.2, linewidth=0)
    _draw_not_learnt(ax, results, x_column, metric)
    handles, labels = ax.get_legend_handles_labels()
    if any_excluded:
        handles.append(Line2D([], [], marker="o", linestyle="none", markerfacecolor="none", markeredgecolor="grey"))
        labels.append("excluded")
    ax.set_xscale("log")
    ax.set_yscale("log")
    if x_column == "grid_size":
        _label_log_axis_at(ax.xaxis, summary["grid_size"])
    ax.set_xlabel(_X_LABELS.get(x_column, x_column))
    ax.set_ylabel(METRIC_LABELS[metric])
    confidence = float(fits["confidence"].iloc[0]) if "confidence" in fits else 0.95
    ax.set_title(f"{_title(summary)}; {confidence:.0%} CI of $\\alpha$ (theory {k + 1})")
    ax.legend(handles, labels, fontsize=8)
    return figure


def rmse_vs_grid_figure(results, metric: str = "test_rmse"):
    """:func:`plot_rmse_vs_grid` for one (function, width, k); for several, their
    figures stacked into one (one panel each, in table order)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    def one(frame):
        try:
            return plot_rmse_vs_grid(frame, metric)
        except ValueError as error:  # e.g. no finite value to plot: say so in the panel
            figure = Figure(figsize=(6.4, 4.8))
            figure.text(
                0.5,
                0.5,
                f"{', '.join(str(v) for v in frame[list(CONFIG_COLUMNS)].iloc[0])}:\n{error}",
                ha="center",
                va="center",
            )
            return figure

    groups = [frame for _, frame in results.groupby(list(CONFIG_COLUMNS), sort=False)]
    if len(groups) == 1:
        return one(groups[0])
    images = []
    for frame in groups:
        canvas = FigureCanvasAgg(one(frame))
        canvas.draw()
        images.append(np.asarray(canvas.buffer_rgba()))
    columns = min(2, len(images))
    rows = math.ceil(len(images) / columns)
    figure = Figure(figsize=(6.4 * columns, 4.8 * rows), layout="constrained")
    for index, image in enumerate(images):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(image)
        axes.set_axis_off()
    return figure


def plot_family_comparison(points: pd.DataFrame, comparison: pd.DataFrame) -> Figure:
    """Test RMSE against the parameter count for every model family of one function, a panel per N.

    KAN points joined along their grid chain (one line per width), MLP points joined by depth (one
    line per depth and activation, in order of P); filled where the family's fit used the point
    (its lower envelope below the interpolation threshold), hollow where not. Each family's fitted
    line (dashed) spans its used points and is labelled with α and its interval; the reference
    rates α = k+1 and α = (k+1)/d (the KAN paper's Fig. 3.1) are dotted grey lines through the
    smallest KAN point.

    points, comparison: :func:`kanlib.analysis.families.compare_families` for one function.
    """
    if points.empty:
        raise ValueError("no finite point to draw")
    if points["function"].nunique() != 1:
        raise ValueError(f"points must hold one function, found {sorted(points['function'].unique())}")
    sizes = sorted(int(n) for n in points["n_train"].unique())
    figure = Figure(figsize=(6.4 * min(len(sizes), 3), 4.8), layout="constrained")
    axes = figure.subplots(1, len(sizes), squeeze=False)[0]
    depth_markers = ["o", "s", "^", "D", "v", "P"]
    for ax, n_train in zip(axes, sizes):
        at_n = points[points["n_train"] == n_train]
        kan = at_n[at_n["family"].isin(chained_families())]
        for family in REGISTRY.values():
            members = at_n[at_n["family"] == family.name]
            if family.chained:  # one line per chain (width and k), along its grid levels
                lines, style = members.groupby(["width", "k"], sort=True), "-"
            else:  # one line per depth and the rest of the model's identity (an MLP's activation)
                lines, style = members.groupby(["depth", "activation"], sort=True, dropna=False), ":"
            for index, (key, line) in enumerate(lines):
                line = line.sort_values("n_params")
                marker = depth_markers[index % len(depth_markers)]
                width = ",".join(str(key[0]).split("-")) if family.chained else None
                label = f"{family.label} [{width}]" if family.chained else f"{family.label} depth {int(key[0]) + 1}"
                if not family.chained and isinstance(key[1], str):
                    label += f" ({key[1]})"
                ax.plot(line["n_params"], line["test_rmse"], style, color=family.color, alpha=0.6)
                _scatter_used(ax, line, family.color, marker, label)
        fits = comparison[comparison["n_train"] == n_train]
        for fit in fits.itertuples(index=False):
            used = at_n[(at_n["family"] == fit.family) & at_n["used"]]
            if not np.isfinite(fit.alpha) or used.empty:
                continue
            p = np.geomspace(used["n_params"].min(), used["n_params"].max(), 50)
            center = float(stats.gmean(used["n_params"]))
            # the least-squares line of slope -alpha through the points passes through their log-space centroid
            level = float(stats.gmean(used["test_rmse"] * (used["n_params"] / center) ** fit.alpha))
            interval = (
                f" [{fit.alpha_low:.2f}, {fit.alpha_high:.2f}]"
                if np.isfinite(fit.alpha_low) and np.isfinite(fit.alpha_high)
                else " (no CI)"
            )
            ax.plot(
                p,
                level * (p / center) ** -fit.alpha,
                "--",
                color=describe(fit.family).color,
                linewidth=2,
                label=f"{describe(fit.family).label} fit: α = {fit.alpha:.2f}{interval}",
            )
        if not kan.empty:
            anchor = kan.sort_values("n_params").iloc[0]
            p = np.geomspace(float(at_n["n_params"].min()), float(at_n["n_params"].max()), 50)
            theory = fits.set_index("family")["theory_alpha"] if not fits.empty else pd.Series(dtype=float)
            for index, family in enumerate(REGISTRY.values()):
                if family.name in theory.index:
                    alpha = float(theory[family.name])
                    ax.plot(
                        p,
                        anchor["test_rmse"] * (p / anchor["n_params"]) ** -alpha,
                        color="grey",
                        linestyle=(0, (1, 1 + 2 * index)),
                        label=f"α = {alpha:g} ({family.theory_label})",
                    )
        ax.set_xscale("log")
        ax.set_yscale("log")
        lowest = float(at_n["test_rmse"].min())
        ax.set_ylim(bottom=lowest / 10)
        ax.set_xlabel("number of parameters")
        ax.set_ylabel("test RMSE")
        ax.set_title(f"{points['function'].iloc[0]}, N={n_train}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    return figure


def _scatter_used(ax, frame: pd.DataFrame, color, marker: str, label: str) -> None:
    """Points filled where the fit used them, hollow where not."""
    used = frame[frame["used"]]
    other = frame[~frame["used"]]
    ax.plot(used["n_params"], used["test_rmse"], linestyle="none", marker=marker, color=color, label=label)
    ax.plot(
        other["n_params"],
        other["test_rmse"],
        linestyle="none",
        marker=marker,
        markerfacecolor="none",
        color=color,
        label=None if used.size else label,
    )


def plot_frontier(results: pd.DataFrame, report) -> Figure:
    """The data axis of one function. Left (the KAN chain): geometric mean test RMSE over (N, G), the
    best G chosen on validation at each N (by the RMSE, circles; by the median, squares) and the
    threshold line where a KAN has as many parameters as training points. Right: each family's best
    test RMSE against N (seeds faint, geometric mean solid), its fitted N^-gamma law (dashed), and
    the prediction for the largest N from the other sizes with its interval (error bar).

    results: one function's results; report: :func:`kanlib.analysis.frontier.frontier_report` of it.
    """
    from .fits import geometric_mean, learnt_rows

    if report.empty:
        raise ValueError("no data law to draw (a sweep with one N, or no validation errors)")
    if results["function"].nunique() != 1:
        raise ValueError(f"results must hold one function, found {sorted(results['function'].unique())}")
    figure = Figure(figsize=(12.8, 4.8), layout="constrained")
    left, right = figure.subplots(1, 2)
    kan = learnt_rows(results[results["family"].isin(chained_families())])
    if not kan.empty:
        cells = kan.groupby(["grid_size", "n_train"])["test_rmse"].agg(geometric_mean).unstack()  # G x N
        grids, sizes = cells.index.to_numpy(float), cells.columns.to_numpy(float)

        def edges(values):  # cell edges at geometric midpoints
            inner = np.sqrt(values[1:] * values[:-1])
            return np.concatenate([[values[0] ** 2 / inner[0]], inner, [values[-1] ** 2 / inner[-1]]])

        mesh = left.pcolormesh(edges(sizes), edges(grids), np.log10(cells.to_numpy(float)), cmap="viridis_r")
        figure.colorbar(mesh, ax=left, label="log10 test RMSE (geometric mean over seeds)")
        for measure, marker in (("mean", "o"), ("median", "s")):
            chosen = report.points[
                (report.points["measure"] == measure) & report.points["family"].isin(chained_families())
            ]
            best = chosen.groupby("n_train")["size"].agg(geometric_mean)
            left.plot(
                best.index,
                best.to_numpy(),
                marker=marker,
                color="white",
                markeredgecolor="black",
                label=f"best G on validation ({'RMSE' if measure == 'mean' else 'median'})",
            )
        width = [int(w) for w in str(kan["width"].iloc[0]).split("-")]
        k = int(kan["k"].iloc[0])
        edges_count = sum(a * b for a, b in zip(width, width[1:]))
        n_line = np.geomspace(sizes.min(), sizes.max(), 50)
        # parameters = edges (G + k + 2) = N
        left.plot(n_line, n_line / edges_count - k - 2, "--", color="red", label="parameters = N")
        left.set(
            xscale="log",
            yscale="log",
            xlabel="training points N",
            ylabel="grid size G",
            ylim=(grids.min() * 0.8, grids.max() * 1.25),
            title="KAN: test RMSE over (N, G)",
        )
        left.legend(fontsize="small", loc="upper left")
    else:
        left.set_axis_off()
    points = report.points[report.points["measure"] == "mean"]
    for family, rows in points.groupby("family"):
        color = describe(family).color
        for _, seed_rows in rows.groupby("seed"):
            right.plot(seed_rows["n_train"], seed_rows["test"], "-", color=color, alpha=0.2)
        mean = rows.groupby("n_train")["test"].agg(geometric_mean)
        right.plot(
            mean.index, mean.to_numpy(), "o-", color=color, label=f"{describe(family).label}, best on validation"
        )
        fit = report.fits[(report.fits["family"] == family) & (report.fits["measure"] == "mean")]
        if not fit.empty and np.isfinite(fit["gamma"].iloc[0]):
            f = fit.iloc[0]
            n = np.geomspace(rows["n_train"].min(), rows["n_train"].max(), 50)
            right.plot(
                n,
                f["error_prefactor"] * n ** (-f["gamma"]),
                "--",
                color=color,
                label=f"N^-γ, γ = {f['gamma']:.2f} [{f['gamma_low']:.2f}, {f['gamma_high']:.2f}]",
            )
        held = report.held_out
        if not held.empty:
            check = held[(held["family"] == family) & (held["measure"] == "mean") & (held["method"] == "frontier")]
            for c in check.to_dict("records"):
                right.errorbar(
                    c["held_out_n"] * 1.08,
                    c["predicted_test"],
                    yerr=[
                        [c["predicted_test"] - c["predicted_test_low"]],
                        [c["predicted_test_high"] - c["predicted_test"]],
                    ],
                    fmt="x",
                    color=color,
                    capsize=4,
                    label=f"predicted without N={c['held_out_n']}",
                )
    right.set(
        xscale="log",
        yscale="log",
        xlabel="training points N",
        ylabel="test RMSE of the chosen model",
        title=f"{results['function'].iloc[0]}: best test RMSE against N",
    )
    right.legend(fontsize="small")
    return figure
