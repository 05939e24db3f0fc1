"""The scaling-law report of a sweep: exponent table, summary (Markdown and HTML), MLflow metrics, figures.

Called by the workflow's report rules (``workflow/rules/report.smk``) on the aggregated tables
(see :mod:`kanlib.analysis.fits` for their columns):

* :func:`exponent_table`: every power-law fit of the sweep, test and train RMSE against grid
  size G and against the parameter count, per (function, width, k, N);
* :func:`build_summary` -> :func:`to_markdown` / :func:`to_html` (:mod:`~kanlib.analysis.document`):
  the summary a researcher reads first. It opens with the answer (``test RMSE falls as G^-alpha with alpha = ... [CI] at
  N=...``), then per configuration the exponent table, the interpolation thresholds and the
  points each fit used or excluded, the test- and train-RMSE tables laid out like the seed's
  (rows N, columns G), a description of RMSE against N (no power law is forced), and for the
  seed's configuration our values beside the seed's published ones;
* :func:`mlflow_metrics`: the fitted exponents as flat MLflow metric names
  (``alpha_test_rmse_vs_grid_N3000``);
* :func:`figure_set`: every figure of one configuration; one that cannot be drawn (no finite
  value, e.g. every job of it failed) becomes a panel that says why, so the report is complete.

Nothing here imports torch; matplotlib is imported only by :func:`figure_set`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..files import atomic_write_text
from ..functions import function_slug
from .catalog import FIGURES, figure_spec
from .document import Document, to_html, to_markdown, to_rst
from .families import COMPARISON_COLUMNS, compare_families, has_families
from .fits import (
    CONFIG_COLUMNS,
    DEFAULT_DIVERGENCE_FACTOR,
    data_scaling_table,
    fit_scaling_laws,
    kan_rows,
    rmse_pivot,
    summarize_over_seeds,
)
from .reference import SEED_GRID_SIZES, SEED_TRAIN_SIZES, seed_reference_frame

__all__ = [
    "FIT_SPECS",
    "SEED_CONFIGURATION",
    "Document",
    "configurations",
    "config_label",
    "config_dir",
    "select_configuration",
    "exponent_table",
    "alpha_metric_name",
    "mlflow_metrics",
    "answer_sentence",
    "seed_comparison",
    "build_summary",
    "to_markdown",
    "to_html",
    "to_rst",
    "figure_set",
    "read_results",
    "report_exponents",
    "write_figures",
    "write_summary",
    "family_comparison",
    "has_families",
    "family_answers",
    "family_mlflow_metrics",
    "write_family_figure",
]

#: The fits of the exponent table: (x, metric).
FIT_SPECS: tuple[tuple[str, str], ...] = (
    ("grid_size", "test_rmse"),
    ("grid_size", "train_rmse"),
    ("n_params", "test_rmse"),
    ("n_params", "train_rmse"),
    # the KAN paper's Fig. 2.3: the mean is dominated by a few boundary points, the median is not
    ("grid_size", "test_median_rmse"),
)

#: (function, width, k) of the seed experiment, whose published table :mod:`kanlib.analysis.reference` holds.
SEED_CONFIGURATION: tuple[str, str, int] = ("exp_sin_pi_x_plus_y2", "2-1-1", 3)

_X_SHORT = {"grid_size": "grid", "n_params": "params"}
_X_WORDS = {"grid_size": "G", "n_params": "params"}
_METRIC_WORDS = {
    "test_rmse": "test RMSE",
    "train_rmse": "train RMSE",
    "test_median_rmse": "test median-RMSE",
}


# ----------------------------------------------------------------------------------------------------------
# Configurations
# ----------------------------------------------------------------------------------------------------------


def configurations(results: pd.DataFrame) -> list[tuple[str, str, int]]:
    """The KAN (function, width, k) configurations of a results table, in table order (MLP rows,
    which have no k, are the family comparison's: :mod:`kanlib.analysis.families`)."""
    results = kan_rows(results)
    if results.empty:
        return []
    frame = results[list(CONFIG_COLUMNS)].drop_duplicates()
    return [(str(f), str(w), int(k)) for f, w, k in frame.itertuples(index=False)]


def config_label(function: str, width: str, k: int) -> str:
    """``exp_sin_pi_x_plus_y2, KAN [2,1,1], k=3``."""
    return f"{function}, KAN [{','.join(str(width).split('-'))}], k={k}"


def config_dir(function: str, width: str, k: int) -> str:
    """The configuration's folder below ``results/<sweep>/report/``: ``<function slug>/w<width>_k<k>``."""
    return f"{function_slug(function)}/w{width}_k{k}"


def select_configuration(frame: pd.DataFrame, function: str, width: str, k: int) -> pd.DataFrame:
    """KAN rows of ``frame`` (results, history or exponents) for one configuration."""
    frame = kan_rows(frame)
    mask = (
        (frame["function"].astype(str) == str(function))
        & (frame["width"].astype(str) == str(width))
        & (frame["k"].astype(int) == int(k))
    )
    return frame[mask]


# ----------------------------------------------------------------------------------------------------------
# Exponents
# ----------------------------------------------------------------------------------------------------------


def exponent_table(
    results: pd.DataFrame,
    confidence: float = 0.95,
    divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR,
    n_boot: int = 1000,
) -> pd.DataFrame:
    """Every fit of :data:`FIT_SPECS` for every (function, width, k, N) of ``results``.

    One row per fit, the columns of :func:`kanlib.analysis.fit_scaling_laws` (``x`` says the
    scaling variable, ``metric`` the error). Groups that cannot be fitted (one grid size, failed
    jobs, everything beyond the threshold) get NaN ``alpha`` and the reason in ``note``. KAN rows
    only; the median-based RMSE's fit only where the table has that column with a value (tables
    written before it existed have none).
    """
    results = kan_rows(results)
    frames = [
        fit_scaling_laws(
            results, x=x, metric=metric, confidence=confidence, divergence_factor=divergence_factor, n_boot=n_boot
        )
        for x, metric in FIT_SPECS
        if metric != "test_median_rmse" or (metric in results.columns and results[metric].notna().any())
    ]
    table = pd.concat(frames, ignore_index=True)
    order = {spec: index for index, spec in enumerate(FIT_SPECS)}
    table["_order"] = [order[(x, m)] for x, m in zip(table["x"], table["metric"])]
    table = table.sort_values(["function", "width", "k", "_order", "n_train"], kind="stable")
    return table.drop(columns="_order").reset_index(drop=True)


def alpha_metric_name(x: str, metric: str, n_train: int, configuration: tuple[str, str, int] | None = None) -> str:
    """MLflow metric name of one fitted exponent: ``alpha_test_rmse_vs_grid_N3000``.

    With ``configuration`` (a sweep of several): ``alpha_test_rmse_vs_grid_<function>_w<width>_N3000``.
    """
    name = f"alpha_{metric}_vs_{_X_SHORT[x]}"
    if configuration is not None:
        function, width, _ = configuration
        name += f"_{function_slug(function)}_w{width}"
    return f"{name}_N{int(n_train)}"


def mlflow_metrics(exponents: pd.DataFrame) -> dict[str, float]:
    """The parent run's metrics: each finite ``alpha`` (and its interval as ``..._ci_low`` /
    ``..._ci_high``), and per N the interpolation threshold ``threshold_grid_N<n>`` and
    ``threshold_params_per_sample_N<n>`` where there is one. Names carry function and width when
    the sweep has several configurations. NaN values are left out."""
    several = len(configurations(exponents)) > 1
    metrics: dict[str, float] = {}
    for row in exponents.itertuples(index=False):
        configuration = (row.function, row.width, int(row.k)) if several else None
        name = alpha_metric_name(row.x, row.metric, row.n_train, configuration)
        for suffix, value in (("", row.alpha), ("_ci_low", row.alpha_low), ("_ci_high", row.alpha_high)):
            if _finite(value):
                metrics[name + suffix] = float(value)
        if row.x == "grid_size" and row.metric == "test_rmse":
            tail = (f"_{function_slug(row.function)}_w{row.width}" if several else "") + f"_N{int(row.n_train)}"
            if _finite(row.threshold_grid):
                metrics["threshold_grid" + tail] = float(row.threshold_grid)
            if _finite(row.threshold_params_per_sample):
                metrics["threshold_params_per_sample" + tail] = float(row.threshold_params_per_sample)
    return metrics


# ----------------------------------------------------------------------------------------------------------
# Formatting helpers
# ----------------------------------------------------------------------------------------------------------


def _finite(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _rmse(value) -> str:
    return f"{float(value):.2e}" if _finite(value) else "n/a"


def _number(value, digits: int = 2) -> str:
    return f"{float(value):.{digits}f}" if _finite(value) else "n/a"


def _ratio(value) -> str:
    if not _finite(value):
        return "n/a"
    value = float(value)
    return f"{value:.2g}" if (value < 0.01 or value >= 100) else f"{value:.2f}"


def _integer(value) -> str:
    return (
        str(int(value))
        if _finite(value) and float(value).is_integer()
        else (f"{float(value):g}" if _finite(value) else "n/a")
    )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _join_words(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _alpha_text(row) -> str:
    """``3.94 [3.55, 4.33]``, ``3.60 (2 points, no CI)`` or ``no fit``."""
    if not _finite(row["alpha"]):
        return "no fit"
    text = _number(row["alpha"])
    if _finite(row["alpha_low"]) and _finite(row["alpha_high"]):
        return f"{text} [{_number(row['alpha_low'])}, {_number(row['alpha_high'])}]"
    return f"{text} ({int(row['n_points'])} points, no CI)"


def _excluded_text(points_excluded: str) -> str:
    if not isinstance(points_excluded, str) or not points_excluded:
        return "none"
    return "; ".join(f"G={item}" for item in points_excluded.split("; "))


def _used_text(points_used: str) -> str:
    if not isinstance(points_used, str) or not points_used:
        return "none"
    return ", ".join(points_used.split(","))


# ----------------------------------------------------------------------------------------------------------
# The answer
# ----------------------------------------------------------------------------------------------------------


def _fits(exponents: pd.DataFrame, x: str, metric: str) -> pd.DataFrame:
    rows = exponents[(exponents["x"] == x) & (exponents["metric"] == metric)]
    return rows.sort_values("n_train")


def _threshold_phrase(row) -> str:
    """``G=10 (0.45 params/sample)``."""
    text = f"G={_integer(row['threshold_grid'])}"
    if _finite(row["threshold_params_per_sample"]):
        text += f" ({_ratio(row['threshold_params_per_sample'])} params/sample)"
    return text


def answer_sentence(results: pd.DataFrame, exponents: pd.DataFrame) -> str:
    """The one-sentence answer for one configuration (``results`` and ``exponents`` filtered to it).

    ``test RMSE falls as G^-α with α = 3.94 [3.55, 4.33] at N=3000 (theory k+1 = 4), until the
    interpolation threshold at G=10 (0.45 params/sample) for N=100, ...``: the exponent is the
    one fitted at the largest N that has a fit; the thresholds are every N's that has one.
    """
    grids = sorted(results["grid_size"].unique())
    k = int(results["k"].iloc[0])
    theory = k + 1
    if len(grids) < 2:
        return (
            f"No exponent: the sweep has a single grid size (G={_integer(grids[0]) if grids else 'none'}); "
            f"a power law in G needs at least two (theory α = k+1 = {theory})."
        )
    fits = _fits(exponents, "grid_size", "test_rmse")
    fitted = fits[fits["alpha"].map(_finite)]
    thresholds = fits[fits["threshold_grid"].map(_finite)]
    if fitted.empty:
        reasons = "; ".join(f"N={int(r['n_train'])}: {r['note'] or 'no fit'}" for _, r in fits.iterrows())
        return f"No exponent could be fitted for test RMSE vs G ({reasons}); theory α = k+1 = {theory}."
    best = fitted.iloc[-1]
    n_best = int(best["n_train"])
    used = _used_text(best["points_used"]).replace(", ", ",")
    used_range = used.split(",")
    span = f"G={used_range[0]}..{used_range[-1]}" if len(used_range) > 1 else f"G={used}"
    verb = "falls as" if float(best["alpha"]) > 0 else "does not fall with G: it scales as"
    # the interval's level only when there is an interval ("2 points, no CI" says why there is none)
    has_interval = _finite(best["alpha_low"]) and _finite(best["alpha_high"])
    interval = f"{int(best['confidence'] * 100)}% CI, " if has_interval else ""
    sentence = (
        f"Test RMSE {verb} G^-α with α = {_alpha_text(best)} at N={n_best} "
        f"(theory k+1 = {theory}; {interval}fit over {span})"
    )
    others = thresholds[thresholds["n_train"] != n_best]
    own = thresholds[thresholds["n_train"] == n_best]
    if not own.empty:
        sentence += f", up to its interpolation threshold at {_threshold_phrase(own.iloc[0])}"
    if not others.empty:
        parts = [f"{_threshold_phrase(r)} for N={int(r['n_train'])}" for _, r in others.iterrows()]
        smaller = (others["n_train"] < n_best).all()
        sentence += (
            "; smaller training sets stop improving earlier: interpolation threshold at "
            if own.empty and smaller
            else "; interpolation threshold at "
        ) + _join_words(parts)
    if thresholds.empty:
        sentence += f"; no interpolation threshold within G ≤ {_integer(grids[-1])} at any N"
    elif own.empty:
        sentence += f"; none for N={n_best} within G ≤ {_integer(grids[-1])}"
    return sentence + "."


# ----------------------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------------------


def _pivot_table(pivot: pd.DataFrame, formatter=_rmse, corner: str = "N \\ G") -> pd.DataFrame:
    """A pivot (rows N, columns G) as a display table with the row labels as first column."""
    table = pd.DataFrame({corner: [str(int(n)) for n in pivot.index]})
    for column in pivot.columns:
        table[str(int(column)) if float(column).is_integer() else str(column)] = [
            formatter(v) for v in pivot[column].to_numpy()
        ]
    return table


def _exponent_display(exponents: pd.DataFrame) -> pd.DataFrame:
    """Rows N, columns the four fits (α [CI]), theory, R² of the test-vs-G fit."""
    rows = []
    for n_train in sorted(exponents["n_train"].unique()):
        at_n = exponents[exponents["n_train"] == n_train]
        row = {"N": str(int(n_train))}
        for x, metric in FIT_SPECS:
            if metric not in set(exponents["metric"]):  # e.g. no median-based RMSE in older tables
                continue
            fit = at_n[(at_n["x"] == x) & (at_n["metric"] == metric)]
            row[f"{_METRIC_WORDS[metric]} vs {_X_WORDS[x]}"] = _alpha_text(fit.iloc[0]) if len(fit) else "n/a"
        main = at_n[(at_n["x"] == "grid_size") & (at_n["metric"] == "test_rmse")]
        row["theory"] = _integer(main["theory_alpha"].iloc[0]) if len(main) else "n/a"
        row["R² (test vs G)"] = _number(main["r_squared"].iloc[0], 3) if len(main) else "n/a"
        row["seeds"] = str(int(main["n_seeds"].iloc[0])) if len(main) else "n/a"
        rows.append(row)
    return pd.DataFrame(rows)


def _threshold_display(exponents: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, fit in _fits(exponents, "grid_size", "test_rmse").iterrows():
        rows.append(
            {
                "N": str(int(fit["n_train"])),
                "threshold G": _integer(fit["threshold_grid"]) if _finite(fit["threshold_grid"]) else "none",
                "params/sample at threshold": _ratio(fit["threshold_params_per_sample"])
                if _finite(fit["threshold_params_per_sample"])
                else "–",
                "points used (G)": _used_text(fit["points_used"]),
                "excluded (G: reason)": _excluded_text(fit["points_excluded"]),
                "note": fit["note"] if isinstance(fit["note"], str) and fit["note"] else "",
            }
        )
    return pd.DataFrame(rows)


def _data_scaling_section(document: Document, results: pd.DataFrame) -> None:
    document.heading(3, "Test RMSE against training-set size N")
    summary = data_scaling_table(results, "test_rmse")
    per_grid = summary.per_grid
    sizes = list(summary.pivot.index)
    if len(sizes) < 2:
        document.paragraph(
            f"The sweep has a single training-set size (N={sizes[0] if sizes else 'none'}): "
            "nothing to say about scaling with data."
        )
        return
    table = pd.DataFrame({"G": [str(int(g)) for g in summary.pivot.columns]})
    for n_train in sizes:
        table[f"N={int(n_train)}"] = [_rmse(summary.pivot.loc[n_train, g]) for g in summary.pivot.columns]
    table["largest / smallest N"] = [_ratio(v) for v in per_grid["ratio_largest_to_smallest_n"]]
    table["monotone in N"] = [
        "yes" if m else ("n/a" if p < 2 else "no")
        for m, p in zip(per_grid["monotone_non_increasing"], per_grid["n_points"])
    ]
    document.paragraph(
        "No power law in N is fitted (the seed shows no clean one either). Per grid size: test RMSE at each N, "
        "the ratio of the RMSE at the largest N to that at the smallest (below 1: more data helped) "
        "and whether it never rises as N grows."
    )
    document.table(table)
    valid = per_grid[per_grid["n_points"] >= 2]
    if valid.empty:
        return
    falling = [
        f"G={int(g)}"
        for g, r, m in zip(valid["grid_size"], valid["ratio_largest_to_smallest_n"], valid["monotone_non_increasing"])
        if m and r < 0.5
    ]
    flat = [f"G={int(g)}" for g, r in zip(valid["grid_size"], valid["ratio_largest_to_smallest_n"]) if 0.5 <= r <= 2]
    rising = [f"G={int(g)}" for g, r in zip(valid["grid_size"], valid["ratio_largest_to_smallest_n"]) if r > 2]
    not_monotone = [f"G={int(g)}" for g, m in zip(valid["grid_size"], valid["monotone_non_increasing"]) if not m]
    low, high = valid["ratio_largest_to_smallest_n"].min(), valid["ratio_largest_to_smallest_n"].max()
    g_low = int(valid.loc[valid["ratio_largest_to_smallest_n"].idxmin(), "grid_size"])
    g_high = int(valid.loc[valid["ratio_largest_to_smallest_n"].idxmax(), "grid_size"])
    if high > 10 * low:
        verdict = "the effect of more data depends strongly on G, so no single power law in N describes these curves"
    else:
        verdict = "a similar effect at every G"
    points = [
        f"From N={int(sizes[0])} to N={int(sizes[-1])} the test RMSE changes by a factor between "
        f"{_ratio(low)} (G={g_low}) and {_ratio(high)} (G={g_high}): {verdict}."
    ]
    if falling:
        points.append(f"Falls monotonically with N (by more than half): {_join_words(falling)}.")
    if flat:
        points.append(f"Roughly flat in N (ratio between 0.5 and 2): {_join_words(flat)}.")
    if rising:
        points.append(f"Higher at the largest N than at the smallest: {_join_words(rising)}.")
    if not_monotone:
        points.append(f"Not monotone in N: {_join_words(not_monotone)}.")
    document.bullets(points)


def _seed_fits() -> pd.DataFrame:
    reference = seed_reference_frame()
    function, width, k = SEED_CONFIGURATION
    reference = reference.assign(function=function, width=width, k=k, seed=0)
    return fit_scaling_laws(reference, x="grid_size", metric="test_rmse").set_index("n_train")


def seed_comparison(results: pd.DataFrame) -> dict | None:
    """Our RMSE beside the seed's published one, for the seed's configuration only.

    ``results`` holds one configuration. Returns None unless it is :data:`SEED_CONFIGURATION`
    and shares at least one (N, G) cell with the seed's table; else a dict with ``seed_test``
    (the seed's published test RMSE, rows N, columns G, over the common cells),
    ``ratio_test`` and ``ratio_train`` (ours / seed's), ``cells`` (number of common cells with a
    finite ratio) and ``within_2x`` (how many of them agree within a factor 2).
    """
    if results.empty or configurations(results)[0] != SEED_CONFIGURATION:
        return None
    sizes = [n for n in sorted(results["n_train"].unique()) if int(n) in SEED_TRAIN_SIZES]
    grids = [g for g in sorted(results["grid_size"].unique()) if int(g) in SEED_GRID_SIZES]
    if not sizes or not grids:
        return None
    reference = seed_reference_frame()
    out: dict = {}
    for metric in ("test_rmse", "train_rmse"):
        ours = rmse_pivot(results, metric).loc[sizes, grids]
        theirs = reference.pivot(index="n_train", columns="grid_size", values=metric).loc[
            [int(n) for n in sizes], [int(g) for g in grids]
        ]
        theirs.index, theirs.columns = ours.index, ours.columns
        out[f"seed_{metric.split('_')[0]}"] = theirs
        out[f"ratio_{metric.split('_')[0]}"] = ours / theirs
    ratios = out["ratio_test"].to_numpy(dtype=float)
    finite = ratios[np.isfinite(ratios)]
    out["cells"] = int(finite.size)
    out["within_2x"] = int(np.sum(np.abs(np.log2(finite)) <= 1.0 + 1e-9))
    return out


def _seed_section(document: Document, results: pd.DataFrame, exponents: pd.DataFrame) -> None:
    comparison = seed_comparison(results)
    if comparison is None:
        if not results.empty and configurations(results)[0] == SEED_CONFIGURATION:
            document.paragraph(
                "This is the seed's configuration, but the sweep shares no (N, G) with the "
                f"seed's published table (N in {list(SEED_TRAIN_SIZES)}, G in "
                f"{list(SEED_GRID_SIZES)}): no comparison."
            )
        return
    document.heading(3, "Comparison with the seed's published numbers")
    steps = sorted(results["steps"].dropna().unique()) if "steps" in results else []
    optimizers = sorted(results["optimizer"].dropna().astype(str).unique()) if "optimizer" in results else []
    setting = (
        "Same setting as the seed (50 LBFGS steps per grid level, grid extension)."
        if list(steps) == [50] and [o.upper() for o in optimizers] == ["LBFGS"]
        else f"Note: the seed trained 50 LBFGS steps per grid level; this sweep used "
        f"{', '.join(str(int(s)) for s in steps) or '?'} {', '.join(optimizers) or '?'} steps."
    )
    seed_fits = _seed_fits()
    ours = _fits(exponents, "grid_size", "test_rmse").set_index("n_train")

    def threshold(table, n_train):
        value = table["threshold_grid"].get(n_train, np.nan) if n_train in table.index else np.nan
        return float(value) if _finite(value) else math.inf

    ratio = comparison["ratio_test"]
    below = [
        float(ratio.loc[n, g])
        for n in ratio.index
        for g in ratio.columns
        if g <= min(threshold(ours, n), threshold(seed_fits, n)) and _finite(ratio.loc[n, g])
    ]
    agree_below = sum(abs(math.log2(r)) <= 1.0 + 1e-9 for r in below)
    document.paragraph(
        f"{setting} Ratio ours / seed's (below 1: ours lower): {comparison['within_2x']} of "
        f"{comparison['cells']} test-RMSE cells agree within a factor 2; {agree_below} of {len(below)} among the "
        "cells at or below both runs' interpolation thresholds. Past a threshold the test RMSE is set by "
        "overfitting, which depends on the data sample and the initialisation, so there the runs can differ "
        "by orders of magnitude."
    )
    document.paragraph("**Seed's published test RMSE** (pykan docs Example 8; KAN paper Fig. 2.3):")
    document.table(_pivot_table(comparison["seed_test"]))
    document.paragraph("**Test RMSE, ours / seed's:**")
    document.table(_pivot_table(comparison["ratio_test"], _ratio))
    document.paragraph("**Train RMSE, ours / seed's:**")
    document.table(_pivot_table(comparison["ratio_train"], _ratio))
    rows = []
    for n_train in sorted(set(ours.index) & set(seed_fits.index)):
        rows.append(
            {
                "N": str(int(n_train)),
                "α ours": _alpha_text(ours.loc[n_train]),
                "α seed's table": _alpha_text(seed_fits.loc[n_train]),
                "threshold G ours": _integer(ours.loc[n_train, "threshold_grid"])
                if _finite(ours.loc[n_train, "threshold_grid"])
                else "none",
                "threshold G seed's table": _integer(seed_fits.loc[n_train, "threshold_grid"])
                if _finite(seed_fits.loc[n_train, "threshold_grid"])
                else "none",
            }
        )
    if rows:
        document.paragraph(
            "**Exponent of test RMSE vs G and threshold, the same rule applied to the seed's "
            "published table** (all five of its grid sizes):"
        )
        document.table(pd.DataFrame(rows))


def _failed_rows(results: pd.DataFrame) -> list[str]:
    bad = results[
        ~(
            np.isfinite(results["test_rmse"].to_numpy(dtype=float))
            & np.isfinite(results["train_rmse"].to_numpy(dtype=float))
        )
    ]

    def reason(row) -> str:  # a partial report's missing levels say why (column "reason")
        text = row.get("reason")
        return f": {text}" if isinstance(text, str) and text else ""

    return [
        f"{config_label(r['function'], r['width'], int(r['k']))}: N={int(r['n_train'])} seed {int(r['seed'])} "
        f"G={int(r['grid_size'])} (test RMSE {r['test_rmse']:g}, train RMSE {r['train_rmse']:g}){reason(r)}"
        for _, r in bad.iterrows()
    ]


def _spread_table(results: pd.DataFrame) -> pd.DataFrame | None:
    summary = summarize_over_seeds(results, metrics=["test_rmse"])
    if (summary["test_rmse_n_seeds"] <= 1).all():
        return None
    spread = summary.assign(spread=summary["test_rmse_max"] / summary["test_rmse_min"]).pivot(
        index="n_train", columns="grid_size", values="spread"
    )
    return _pivot_table(spread, _ratio)


def answer_document(
    results: pd.DataFrame, exponents: pd.DataFrame, tables: bool = False, comparison: pd.DataFrame | None = None
) -> Document:
    """The answer: one sentence per configuration, and with ``tables`` each configuration's exponent
    table after it (the MLflow parent run's description and the report's front page). With a family
    ``comparison`` (:func:`family_comparison`), its answer per function comes first."""
    document = Document()
    configs = configurations(results)
    if not configs:
        document.paragraph("The results table is empty: no grid level finished, nothing to report.")
        return document
    if comparison is not None and not comparison.empty:
        document.paragraph("**KAN against MLP.**")
        document.bullets(family_answers(comparison))
        if tables:
            document.table(_family_display(comparison))
    answers = []
    for configuration in configs:
        sentence = answer_sentence(
            select_configuration(results, *configuration), select_configuration(exponents, *configuration)
        )
        answers.append(f"**{config_label(*configuration)}**: {sentence}" if len(configs) > 1 else sentence)
    if len(answers) == 1:
        document.paragraph(f"**Answer.** {answers[0]}")
    else:
        document.paragraph("**Answer.**")
        document.bullets(answers)
    if tables:
        for configuration in configs:
            document.paragraph(f"**Exponents α (RMSE ∝ x^-α), 95% CI: {config_label(*configuration)}**")
            document.table(_exponent_display(select_configuration(exponents, *configuration)))
    return document


def build_summary(
    results: pd.DataFrame,
    exponents: pd.DataFrame,
    sweep: str,
    figure_paths: dict[tuple[str, str, int], dict[str, str]] | None = None,
    divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR,
    comparison: pd.DataFrame | None = None,
    family_figures: dict[str, str] | None = None,
) -> Document:
    """The sweep's summary (see the module docstring for its parts).

    Parameters
    ----------
    results : pandas.DataFrame
        The aggregated results table (every configuration; NaN rows of failed jobs allowed).
    exponents : pandas.DataFrame
        :func:`exponent_table` of ``results``.
    sweep : str
        The sweep's name (title).
    figure_paths : dict, optional
        Per configuration, figure stem -> path relative to the summary file; the two main
        figures are embedded, the others listed.
    divergence_factor : float
        The test/train ratio the threshold rule used (stated in the text).
    comparison : pandas.DataFrame, optional
        :func:`family_comparison`'s table when the sweep has MLPs: its answer opens the summary and
        its section follows, with ``family_figures`` (function -> figure path) embedded.
    """
    document = Document()
    document.heading(1, f"KAN scaling sweep `{sweep}`: summary")
    configs = configurations(results)
    if not configs:
        document.paragraph("The results table is empty: no grid level finished, nothing to report.")
        return document
    document.blocks += answer_document(results, exponents, comparison=comparison).blocks  # the answer first
    if comparison is not None and not comparison.empty:
        _family_section(document, comparison, family_figures)
    results = kan_rows(results)  # the sections below are the KAN family's

    seeds = sorted(int(s) for s in results["seed"].unique())
    steps = sorted(int(s) for s in results["steps"].dropna().unique()) if "steps" in results else []
    optimizers = sorted(results["optimizer"].dropna().astype(str).unique()) if "optimizer" in results else []
    n_failed = len(_failed_rows(results))
    document.paragraph(
        f"Sweep: {_plural(len(configs), 'configuration')}; "
        f"N ∈ {{{', '.join(str(int(n)) for n in sorted(results['n_train'].unique()))}}}; "
        f"G ∈ {{{', '.join(str(int(g)) for g in sorted(results['grid_size'].unique()))}}} (one chain per N and seed, "
        f"each level initialised from the previous one by grid extension); "
        f"{_plural(len(seeds), 'seed')} ({', '.join(map(str, seeds))}); "
        f"{', '.join(map(str, steps)) or '?'} {', '.join(optimizers) or ''} steps per level; "
        f"{len(results)} grid levels, {n_failed} without a finite RMSE."
    )
    ci_method = (
        "bootstrap over seeds (percentile interval)"
        if len(seeds) > 1
        else "OLS standard error with Student t (one seed)"
    )
    document.paragraph(
        f"Method: RMSE = C·x^-α fitted by least squares in log-log space, per N, over the grid sizes below the "
        f"interpolation threshold; 95% interval of α from the {ci_method}. The threshold is the G of minimal "
        f"test RMSE when test RMSE rises after it; points beyond it, and points whose test/train RMSE ratio "
        f"exceeds {divergence_factor:g}, are excluded. Theory for splines of order k: α = k+1 (in G; in the "
        "parameter count too once parameters ∝ G). Seeds are averaged geometrically."
    )

    for configuration in configs:
        config_results = select_configuration(results, *configuration)
        config_exponents = select_configuration(exponents, *configuration)
        document.heading(2, config_label(*configuration))
        if len(configs) > 1:
            document.paragraph(answer_sentence(config_results, config_exponents))

        document.heading(3, "Exponents α (RMSE ∝ x^-α), 95% CI")
        if config_results["grid_size"].nunique() < 2:
            document.paragraph(
                f"No exponent: the sweep has a single grid size (G={_integer(config_results['grid_size'].iloc[0])})."
            )
        document.table(_exponent_display(config_exponents))
        document.heading(3, "Interpolation threshold and the points of each fit")
        document.table(_threshold_display(config_exponents))

        several_seeds = config_results["seed"].nunique() > 1
        mean_note = " (geometric mean over seeds)" if several_seeds else ""
        document.heading(3, "Test RMSE (rows N, columns G, like the seed's table)")
        if several_seeds:
            document.paragraph(
                f"Geometric mean over {config_results['seed'].nunique()} seeds; "
                "the spread (largest / smallest seed) follows."
            )
        document.table(_pivot_table(rmse_pivot(config_results, "test_rmse")))
        spread = _spread_table(config_results) if several_seeds else None
        if spread is not None:
            document.paragraph("**Seed spread of test RMSE** (largest / smallest over seeds):")
            document.table(spread)
        document.heading(3, f"Train RMSE (rows N, columns G){mean_note}")
        document.table(_pivot_table(rmse_pivot(config_results, "train_rmse")))

        _data_scaling_section(document, config_results)
        _seed_section(document, config_results, config_exponents)

        paths = (figure_paths or {}).get(configuration)
        if paths:
            document.heading(3, "Figures")
            for stem in ("fit_test_rmse_vs_grid", "test_rmse_vs_grid"):
                if stem in paths:
                    document.image(paths[stem], figure_spec(stem).description)
            document.bullets(f"`{path}`: {figure_spec(stem).description}" for stem, path in paths.items())

    failed = _failed_rows(results)
    if failed:
        document.heading(2, "Grid levels without a finite RMSE")
        document.paragraph("Left out of every fit, table cell and figure (failed or diverged jobs):")
        document.bullets(failed)
    return document


# ----------------------------------------------------------------------------------------------------------
# Model families (KAN against MLP): kanlib.analysis.families
# ----------------------------------------------------------------------------------------------------------

_FAMILY_NAMES = {"kan": "KAN", "mlp": "MLP"}


def family_comparison(results: pd.DataFrame, settings: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`kanlib.analysis.families.compare_families` with the report's settings."""
    return compare_families(
        results,
        confidence=settings["confidence"],
        divergence_factor=settings["divergence_factor"],
        n_boot=settings["n_boot"],
        target_rmse=settings.get("target_rmse", 1e-4),
    )


def _params_phrase(family: str, row) -> str:
    name = _FAMILY_NAMES.get(family, family)
    if _finite(row["params_at_target"]):
        return f"{name} needs {_integer(row['params_at_target'])} parameters"
    return (
        f"{name} never gets there (best {_rmse(row['best_test_rmse'])} with {_integer(row['best_n_params'])} "
        "parameters)"
    )


def _family_sentence(function: str, at_n: pd.DataFrame) -> str:
    """Which family scales better on one function at one N, by how much, and how sure we are."""
    rows = at_n.set_index("family")
    n_train = int(at_n["n_train"].iloc[0])
    head = f"On {function} (N={n_train})"
    fitted = rows[rows["alpha"].map(_finite)]
    alphas = " against ".join(f"{_alpha_text(rows.loc[f])} for {_FAMILY_NAMES.get(f, f)}" for f in rows.index)
    target = _rmse(at_n["target_rmse"].iloc[0])
    reach = f"To reach test RMSE {target}, " + " and ".join(_params_phrase(f, rows.loc[f]) for f in rows.index) + "."
    if len(fitted) < 2:
        missing = [
            f"{_FAMILY_NAMES.get(f, f)} ({rows.loc[f, 'note'] or 'no fit'})"
            for f in rows.index
            if f not in fitted.index
        ]
        return f"{head}, no family comparison of exponents: no fit for {_join_words(missing)}. {reach}"
    ordered = fitted.sort_values("alpha", ascending=False)
    better, worse = ordered.index[0], ordered.index[1]
    difference = float(ordered["alpha"].iloc[0] - ordered["alpha"].iloc[1])
    intervals = all(
        _finite(ordered.loc[f, "alpha_low"]) and _finite(ordered.loc[f, "alpha_high"]) for f in (better, worse)
    )
    level = f"{int(at_n['confidence'].iloc[0] * 100)}%"
    if not intervals:
        sureness = "how sure is unknown: a fit without an interval (2 points, one seed)"
        verdict = f"{_FAMILY_NAMES[better]} scales faster than {_FAMILY_NAMES[worse]}"
    elif float(ordered.loc[better, "alpha_low"]) > float(ordered.loc[worse, "alpha_high"]):
        sureness = f"the {level} intervals do not overlap"
        verdict = f"{_FAMILY_NAMES[better]} scales faster than {_FAMILY_NAMES[worse]}"
    else:
        sureness = f"the {level} intervals overlap, so the data do not tell the two apart"
        verdict = f"neither family scales measurably faster ({_FAMILY_NAMES[better]} ahead by its point estimate)"
    return f"{head}, {verdict}: test RMSE ∝ P^-α with α = {alphas} (Δα = {difference:.2f}; {sureness}). {reach}"


def family_answers(comparison: pd.DataFrame) -> list[str]:
    """One sentence per function at its largest N: which family scales better, by how much, how sure."""
    answers = []
    for function, rows in comparison.groupby("function", sort=False):
        largest = rows[rows["n_train"] == rows["n_train"].max()]
        answers.append(_family_sentence(str(function), largest))
    return answers


def _family_display(comparison: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for row in comparison.itertuples(index=False):
        record = row._asdict()
        rows.append(
            {
                "function": row.function,
                "N": str(int(row.n_train)),
                "family": _FAMILY_NAMES.get(row.family, row.family),
                "α in P, 95% CI": _alpha_text(record),
                "reference α": _number(row.theory_alpha),
                "best test RMSE (P)": f"{_rmse(row.best_test_rmse)} ({_integer(row.best_n_params)})",
                f"P for test RMSE {_rmse(row.target_rmse)}": _integer(row.params_at_target)
                if _finite(row.params_at_target)
                else "never",
                "P for the common RMSE": f"{_integer(row.params_at_common)} (at {_rmse(row.common_rmse)})",
                "seeds": str(int(row.n_seeds)),
            }
        )
    return pd.DataFrame(rows)


def _family_section(document: Document, comparison: pd.DataFrame, figure_paths: dict[str, str] | None) -> None:
    document.heading(2, "KAN against MLP: exponents in the parameter count")
    document.paragraph(
        "Per function and N, each family's test RMSE against its parameter count P is fitted as C·P^-α over "
        "the family's lower envelope below its interpolation threshold: for KANs the grid levels each chain's "
        "own fit used; for MLPs the models whose test/train RMSE ratio stays under the divergence factor; of "
        "those, the points no model with fewer parameters beats (the best test RMSE at each P). Reference "
        "rates: α = k+1 (KAN theory) and α = (k+1)/d (MLPs on d inputs, Sharma-Kaplan), as in the KAN paper's "
        "Fig. 3.1. The common RMSE is the worst of the families' best test RMSEs: the lowest level both reach."
    )
    document.table(_family_display(comparison))
    for row in comparison.itertuples(index=False):
        name = _FAMILY_NAMES.get(row.family, row.family)
        document.paragraph(f"**{name}, {row.function}, N={int(row.n_train)}**: used {row.points_used or 'none'}.")
        if isinstance(row.points_excluded, str) and row.points_excluded:
            document.bullets(f"not used: {item}" for item in row.points_excluded.split("; "))
        if isinstance(row.note, str) and row.note:
            document.paragraph(f"Note: {row.note}.")
    for function, path in (figure_paths or {}).items():
        document.image(path, f"{function}: test RMSE against the parameter count, KAN and MLP")


def family_mlflow_metrics(comparison: pd.DataFrame) -> dict[str, float]:
    """``alpha_vs_params_<family>_<function>_N<n>`` (and ``_ci_low`` / ``_ci_high``), and the
    parameter counts ``params_at_target_<family>_<function>_N<n>``; NaN values left out."""
    metrics: dict[str, float] = {}
    for row in comparison.itertuples(index=False):
        tail = f"{row.family}_{function_slug(row.function)}_N{int(row.n_train)}"
        for name, value in (
            (f"alpha_vs_params_{tail}", row.alpha),
            (f"alpha_vs_params_{tail}_ci_low", row.alpha_low),
            (f"alpha_vs_params_{tail}_ci_high", row.alpha_high),
            (f"params_at_target_{tail}", row.params_at_target),
            (f"best_test_rmse_{tail}", row.best_test_rmse),
        ):
            if _finite(value):
                metrics[name] = float(value)
    return metrics


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


# ----------------------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------
# The report rules' calls (workflow/scripts/report_*.py map their inputs and outputs onto these)
# ----------------------------------------------------------------------------------------------------------


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    """results.csv or history.csv as written by the aggregate rule (``width`` kept as text)."""
    return pd.read_csv(path, dtype={"width": str})


def report_exponents(results: pd.DataFrame, settings: dict) -> pd.DataFrame:
    """:func:`exponent_table` with the report's settings (confidence, divergence_factor, n_boot)."""
    return exponent_table(
        results,
        confidence=settings["confidence"],
        divergence_factor=settings["divergence_factor"],
        n_boot=settings["n_boot"],
    )


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
    """
    results = read_results(results_csv)
    exponents = report_exponents(results, settings)
    report_folder, summary_folder = os.path.dirname(summary_html), os.path.dirname(summary_md)
    figure_paths = {
        configuration: {
            stem: os.path.relpath(
                os.path.join(report_folder, config_dir(*configuration), f"{stem}.png"), summary_folder
            )
            for stem in (spec.stem for spec in FIGURES)
        }
        for configuration in configurations(results)
    }
    missing = {path for paths in figure_paths.values() for path in paths.values()} - {
        os.path.relpath(path, summary_folder) for path in figure_pngs
    }
    comparison, family_figures = None, None
    if has_families(results):
        comparison, _ = family_comparison(results, settings)
        family_figures = {
            function: os.path.relpath(
                os.path.join(report_folder, function_slug(function), "families.png"), summary_folder
            )
            for function in comparison["function"].unique()
        }
        missing |= set(family_figures.values()) - {os.path.relpath(path, summary_folder) for path in figure_pngs}
    if missing:
        raise ValueError(f"the summary would link figures that are not inputs of the rule: {sorted(missing)}")
    if families_csv is not None:
        table = comparison if comparison is not None else pd.DataFrame(columns=COMPARISON_COLUMNS)
        atomic_write_text(families_csv, table.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    document = build_summary(
        results,
        exponents,
        sweep,
        figure_paths,
        divergence_factor=settings["divergence_factor"],
        comparison=comparison,
        family_figures=family_figures,
    )
    atomic_write_text(exponents_csv, exponents.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    atomic_write_text(summary_md, to_markdown(document))
    atomic_write_text(summary_html, to_html(document, f"KAN scaling sweep {sweep}"))
    answer = answer_document(results, exponents, tables=True, comparison=comparison)
    if answer_md is not None:
        atomic_write_text(answer_md, to_markdown(answer))
    if front_rst is not None:
        template = Path(front_template).read_text(encoding="utf-8") if front_template else "\n\n"
        title, underline, description = (template.split("\n", 2) + ["", ""])[:3]
        atomic_write_text(front_rst, f"{title}\n{underline}\n\n{to_rst(answer)}\n{description.lstrip()}")
    return exponents
