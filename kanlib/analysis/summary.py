"""The summary a researcher reads first: the numbers of :mod:`~kanlib.analysis.tables` in words and
display tables, as a :class:`~kanlib.analysis.document.Document`.

It opens with the answer (``Test RMSE falls as G^-α with α = ... [CI] at N=...``), then per
configuration the exponent table, the interpolation thresholds and the points each fit used or
excluded, the test- and train-RMSE tables laid out like the seed's (rows N, columns G), a
description of RMSE against N (no power law is forced), and for the seed's configuration our
values beside the seed's published ones. A sweep with MLPs opens with which family scales better.

Numbers are printed as: exponents with 2 decimals, RMSEs as ``8.21e-03``, ratios with 2
significant digits (2 decimals between 0.01 and 100); a value that is missing or not finite as
``n/a``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from ..families import REGISTRY, describe
from .catalog import DATA_AXIS_MIN_SIZES, figure_spec
from .document import Document
from .fits import DEFAULT_DIVERGENCE_FACTOR, chain_rows, data_scaling_table, learnt_rows, not_learnt_chains, rmse_pivot
from .frontier import has_validation_errors
from .reference import SEED_GRID_SIZES, SEED_TRAIN_SIZES
from .tables import (
    FIT_SPECS,
    SEED_CONFIGURATION,
    config_label,
    configurations,
    failed_rows,
    fits_of,
    seed_comparison,
    seed_exponents,
    seed_spread,
    select_configuration,
)

__all__ = ["answer_sentence", "family_answers", "answer_document", "build_summary"]

_X_WORDS = {"grid_size": "G", "n_params": "params"}
_METRIC_WORDS = {
    "test_rmse": "test RMSE",
    "train_rmse": "train RMSE",
    "test_median_rmse": "test median-RMSE",
    "test_interior_rmse": "interior test RMSE",
}
_EMPTY = "The results table is empty: no grid level finished, nothing to report."


# ---- numbers as text ----------------------------------------------------------------------------------------


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
    if not _finite(value):
        return "n/a"
    return str(int(value)) if float(value).is_integer() else f"{float(value):g}"


def _label(value) -> str:
    """A table's row or column label (N or G)."""
    return str(int(value)) if float(value).is_integer() else str(value)


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


def _threshold_phrase(row) -> str:
    """``G=10 (0.45 params/sample)``."""
    text = f"G={_integer(row['threshold_grid'])}"
    if _finite(row["threshold_params_per_sample"]):
        text += f" ({_ratio(row['threshold_params_per_sample'])} params/sample)"
    return text


# ---- the answer ---------------------------------------------------------------------------------------------


def answer_sentence(results: pd.DataFrame, exponents: pd.DataFrame) -> str:
    """The one-sentence answer for one configuration (``results`` and ``exponents`` filtered to it).

    ``Test RMSE falls as G^-α with α = 3.94 [3.55, 4.33] at N=3000 (theory k+1 = 4; ...), up to
    ...; interpolation threshold at G=10 (0.45 params/sample) for N=100, ...``: the exponent is
    the one fitted at the largest N that has a fit; the thresholds are every N's that has one.
    """
    grids = sorted(results["grid_size"].unique())
    theory = int(results["k"].iloc[0]) + 1
    if learnt_rows(results).empty:
        return (
            f"No exponent: none of the {_plural(len(not_learnt_chains(results)), 'chain')} learnt the target "
            f"({_rule_text()}); more `restarts` "
            "or steps at the first level may find a fit that does."
        )
    if len(grids) < 2:
        return (
            f"No exponent: the sweep has a single grid size (G={_integer(grids[0]) if grids else 'none'}); "
            f"a power law in G needs at least two (theory α = k+1 = {theory})."
        )
    fits = fits_of(exponents, "grid_size", "test_rmse")
    fitted = fits[fits["alpha"].map(_finite)]
    if fitted.empty:
        reasons = "; ".join(f"N={int(r['n_train'])}: {r['note'] or 'no fit'}" for _, r in fits.iterrows())
        return f"No exponent could be fitted for test RMSE vs G ({reasons}); theory α = k+1 = {theory}."
    best = fitted.iloc[-1]
    used = _used_text(best["points_used"]).split(", ")
    span = f"G={used[0]}..{used[-1]}" if len(used) > 1 else f"G={used[0]}"
    verb = "falls as" if float(best["alpha"]) > 0 else "does not fall with G: it scales as"
    # the interval's level only when there is an interval ("2 points, no CI" says why there is none)
    has_interval = _finite(best["alpha_low"]) and _finite(best["alpha_high"])
    interval = f"{int(best['confidence'] * 100)}% CI, " if has_interval else ""
    sentence = (
        f"Test RMSE {verb} G^-α with α = {_alpha_text(best)} at N={int(best['n_train'])} "
        f"(theory k+1 = {theory}; {interval}fit over {span})"
    )
    return sentence + _thresholds_clause(fits, int(best["n_train"]), grids[-1]) + "."


def _thresholds_clause(fits: pd.DataFrame, n_best: int, largest_grid) -> str:
    """The answer's part about interpolation thresholds, for the fit at ``n_best`` and every other N."""
    thresholds = fits[fits["threshold_grid"].map(_finite)]
    others = thresholds[thresholds["n_train"] != n_best]
    own = thresholds[thresholds["n_train"] == n_best]
    clause = ""
    if not own.empty:
        clause += f", up to its interpolation threshold at {_threshold_phrase(own.iloc[0])}"
    if not others.empty:
        parts = [f"{_threshold_phrase(r)} for N={int(r['n_train'])}" for _, r in others.iterrows()]
        smaller = (others["n_train"] < n_best).all()
        clause += (
            "; smaller training sets stop improving earlier: interpolation threshold at "
            if own.empty and smaller
            else "; interpolation threshold at "
        ) + _join_words(parts)
    if thresholds.empty:
        clause += f"; no interpolation threshold within G ≤ {_integer(largest_grid)} at any N"
    elif own.empty:
        clause += f"; none for N={n_best} within G ≤ {_integer(largest_grid)}"
    return clause


# ---- display tables (cells as the text the summary prints) --------------------------------------------------


def _pivot_display(pivot: pd.DataFrame, formatter=_rmse, corner: str = "N \\ G") -> pd.DataFrame:
    """A pivot (rows N, columns G) as a display table with the row labels as first column."""
    table = pivot.map(formatter)
    table.columns = [_label(column) for column in pivot.columns]
    table.insert(0, corner, [_label(n) for n in pivot.index])
    return table.reset_index(drop=True)


def _fit_label(x: str, metric: str) -> str:
    return f"{_METRIC_WORDS[metric]} vs {_X_WORDS[x]}"


def _exponent_display(exponents: pd.DataFrame) -> pd.DataFrame:
    """Rows N, columns the fits (α [CI]), theory, R² of the test-vs-G fit, seeds."""
    # a fit's column only where the table has its metric (e.g. no median-based RMSE in older tables)
    columns = [_fit_label(x, metric) for x, metric in FIT_SPECS if metric in set(exponents["metric"])]
    texts = pd.DataFrame(
        {
            "n_train": exponents["n_train"].to_numpy(),
            "fit": [_fit_label(x, m) for x, m in zip(exponents["x"], exponents["metric"])],
            "text": [_alpha_text(row) for _, row in exponents.iterrows()],
        }
    )
    table = texts.pivot(index="n_train", columns="fit", values="text").reindex(columns=columns).fillna("n/a")
    main = fits_of(exponents, "grid_size", "test_rmse").set_index("n_train").reindex(table.index)
    table["theory"] = main["theory_alpha"].map(_integer)
    table["R² (test vs G)"] = main["r_squared"].map(lambda value: _number(value, 3))
    table["seeds"] = main["n_seeds"].map(_integer)
    table.insert(0, "N", [_label(n) for n in table.index])
    return table.reset_index(drop=True).rename_axis(columns=None)


def _threshold_display(exponents: pd.DataFrame) -> pd.DataFrame:
    fits = fits_of(exponents, "grid_size", "test_rmse")
    return pd.DataFrame(
        {
            "N": fits["n_train"].map(_label),
            "threshold G": fits["threshold_grid"].map(lambda g: _integer(g) if _finite(g) else "none"),
            "params/sample at threshold": fits["threshold_params_per_sample"].map(
                lambda r: _ratio(r) if _finite(r) else "–"
            ),
            "points used (G)": fits["points_used"].map(_used_text),
            "excluded (G: reason)": fits["points_excluded"].map(_excluded_text),
            "note": fits["note"].map(lambda note: note if isinstance(note, str) else ""),
        }
    ).reset_index(drop=True)


def _seed_exponent_display(ours: pd.DataFrame, theirs: pd.DataFrame) -> pd.DataFrame:
    """Per N: our exponent and threshold beside those of the seed's published table."""
    sizes = sorted(set(ours.index) & set(theirs.index))

    def threshold(table, n_train):
        value = table.loc[n_train, "threshold_grid"]
        return _integer(value) if _finite(value) else "none"

    return pd.DataFrame(
        {
            "N": [_label(n) for n in sizes],
            "α ours": [_alpha_text(ours.loc[n]) for n in sizes],
            "α seed's table": [_alpha_text(theirs.loc[n]) for n in sizes],
            "threshold G ours": [threshold(ours, n) for n in sizes],
            "threshold G seed's table": [threshold(theirs, n) for n in sizes],
        }
    )


def _family_display(comparison: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for row in comparison.itertuples(index=False):
        rows.append(
            {
                "function": row.function,
                "N": str(int(row.n_train)),
                "family": describe(row.family).label,
                "α in P, 95% CI": _alpha_text(row._asdict()),
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


# ---- sections of a configuration ----------------------------------------------------------------------------


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
    table = _pivot_display(summary.pivot.T, corner="G")
    table.columns = ["G", *(f"N={int(n)}" for n in sizes)]
    table["largest / smallest N"] = [_ratio(v) for v in per_grid["ratio_largest_to_smallest_n"]]
    table["monotone in N"] = [
        "yes" if m else ("n/a" if p < 2 else "no")
        for m, p in zip(per_grid["monotone_non_increasing"], per_grid["n_points"])
    ]
    document.paragraph(
        "At a fixed grid no power law in N is fitted (the seed shows no clean one either; the data axis "
        "section fits the best model at each N). Per grid size: test RMSE at each N, "
        "the ratio of the RMSE at the largest N to that at the smallest (below 1: more data helped) "
        "and whether it never rises as N grows."
    )
    document.table(table)
    valid = per_grid[per_grid["n_points"] >= 2]
    if not valid.empty:
        document.bullets(_data_scaling_points(valid, sizes))


def _data_scaling_points(valid: pd.DataFrame, sizes: list) -> list[str]:
    """What the ratios largest / smallest N say, per grid size (``valid``: grid sizes with two N or more)."""
    ratio, monotone = valid["ratio_largest_to_smallest_n"], valid["monotone_non_increasing"]
    grids = [f"G={int(g)}" for g in valid["grid_size"]]
    falling = [g for g, r, m in zip(grids, ratio, monotone) if m and r < 0.5]
    flat = [g for g, r in zip(grids, ratio) if 0.5 <= r <= 2]
    rising = [g for g, r in zip(grids, ratio) if r > 2]
    not_monotone = [g for g, m in zip(grids, monotone) if not m]
    low, high = ratio.min(), ratio.max()
    g_low, g_high = int(valid.loc[ratio.idxmin(), "grid_size"]), int(valid.loc[ratio.idxmax(), "grid_size"])
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
    return points


def _seed_setting(results: pd.DataFrame) -> str:
    steps = sorted(results["steps"].dropna().unique()) if "steps" in results else []
    optimizers = sorted(results["optimizer"].dropna().astype(str).unique()) if "optimizer" in results else []
    if list(steps) == [50] and [o.upper() for o in optimizers] == ["LBFGS"]:
        return "Same setting as the seed (50 LBFGS steps per grid level, grid extension)."
    return (
        f"Note: the seed trained 50 LBFGS steps per grid level; this sweep used "
        f"{', '.join(str(int(s)) for s in steps) or '?'} {', '.join(optimizers) or '?'} steps."
    )


def _seed_section(document: Document, results: pd.DataFrame, exponents: pd.DataFrame) -> None:
    comparison = seed_comparison(results, exponents)
    if comparison is None:
        if not results.empty and configurations(results)[0] == SEED_CONFIGURATION:
            document.paragraph(
                "This is the seed's configuration, but the sweep shares no (N, G) with the "
                f"seed's published table (N in {list(SEED_TRAIN_SIZES)}, G in "
                f"{list(SEED_GRID_SIZES)}): no comparison."
            )
        return
    document.heading(3, "Comparison with the seed's published numbers")
    document.paragraph(
        f"{_seed_setting(results)} Ratio ours / seed's (below 1: ours lower): {comparison['within_2x']} of "
        f"{comparison['cells']} test-RMSE cells agree within a factor 2; {comparison['within_2x_below']} of "
        f"{comparison['cells_below']} among the cells at or below both runs' interpolation thresholds. Past a "
        "threshold the test RMSE is set by overfitting, which depends on the data sample and the "
        "initialisation, so there the runs can differ by orders of magnitude."
    )
    document.paragraph("**Seed's published test RMSE** (pykan docs Example 8; KAN paper Fig. 2.3):")
    document.table(_pivot_display(comparison["seed_test"]))
    document.paragraph("**Test RMSE, ours / seed's:**")
    document.table(_pivot_display(comparison["ratio_test"], _ratio))
    document.paragraph("**Train RMSE, ours / seed's:**")
    document.table(_pivot_display(comparison["ratio_train"], _ratio))
    exponent_rows = _seed_exponent_display(
        fits_of(exponents, "grid_size", "test_rmse").set_index("n_train"), seed_exponents()
    )
    if not exponent_rows.empty:
        document.paragraph(
            "**Exponent of test RMSE vs G and threshold, the same rule applied to the seed's "
            "published table** (all five of its grid sizes):"
        )
        document.table(exponent_rows)


def _rule_text() -> str:
    """The KAN family's rule for a chain that did not learn (kanlib.families.Family.not_learned_relative_rmse)."""
    kan = REGISTRY["kan"]
    return (
        f"relative train RMSE above {kan.not_learned_relative_rmse:g} at the chain's first level that is "
        f"at least its level {kan.judged_level} and has G ≥ {kan.judged_grid} (its last, in a shorter chain)"
    )


def _not_learnt_text(results: pd.DataFrame, stuck: pd.DataFrame) -> str:
    """Which chains did not learn the target, by the rule of kanlib.families.learned_target."""
    chains = results.drop_duplicates([c for c in ("n_train", "seed") if c in results.columns])
    listed = ", ".join(
        f"N={int(row['n_train'])} seed {int(row['seed'])}"
        + (f" ({row['judged_relative_train_rmse']:.2g})" if _finite(row.get("judged_relative_train_rmse")) else "")
        for _, row in stuck.iterrows()
    )
    return (
        f"**{len(stuck)} of {_plural(len(chains), 'chain')} did not learn the target** ({_rule_text()}; "
        f"relative: over the training labels' standard deviation): {listed}. They are left out of the exponents "
        "and the tables below and marked in the figures; `restarts` in the config trains several "
        "initialisations at the first level and continues with the best by training RMSE."
    )


def _rmse_sections(document: Document, results: pd.DataFrame) -> None:
    """The test- and train-RMSE tables (rows N, columns G), with the seed spread when there are seeds."""
    n_seeds = results["seed"].nunique()
    document.heading(3, "Test RMSE (rows N, columns G, like the seed's table)")
    if n_seeds > 1:
        document.paragraph(f"Geometric mean over {n_seeds} seeds; the spread (largest / smallest seed) follows.")
    document.table(_pivot_display(rmse_pivot(results, "test_rmse")))
    spread = seed_spread(results) if n_seeds > 1 else None
    if spread is not None:
        document.paragraph("**Seed spread of test RMSE** (largest / smallest over seeds):")
        document.table(_pivot_display(spread, _ratio))
    mean_note = " (geometric mean over seeds)" if n_seeds > 1 else ""
    document.heading(3, f"Train RMSE (rows N, columns G){mean_note}")
    document.table(_pivot_display(rmse_pivot(results, "train_rmse")))
    if "test_outside_mse_share" in results.columns and results["test_outside_mse_share"].notna().any():
        _outside_section(document, results, n_seeds)


def _outside_section(document: Document, results: pd.DataFrame, n_seeds: int) -> None:
    """The share of the test MSE that test points outside the training range carry (rows N, columns G)."""
    document.heading(3, "Test points outside the training range (share of the test MSE, rows N, columns G)")
    largest = " (the largest over seeds)" if n_seeds > 1 else ""
    document.paragraph(
        "The test points that leave, at some layer, the range the training points span (there a spline "
        f"extrapolates on coefficients no training point constrained) carry this share of the test MSE{largest}; "
        "`results.csv` has their count (`test_outside_count`) and the RMSE of the others (`test_interior_rmse`). "
        "Where it is near 100% the mean-based test RMSE measures those few points rather than the fit: "
        "the exponents by the median-based and the interior test RMSE are in the table above."
    )
    share = results.pivot_table(index="n_train", columns="grid_size", values="test_outside_mse_share", aggfunc="max")
    document.table(_pivot_display(share, lambda value: f"{float(value):.0%}" if _finite(value) else "n/a"))


def _figures_section(document: Document, paths: dict[str, str]) -> None:
    document.heading(3, "Figures")
    for stem in ("fit_test_rmse_vs_grid", "test_rmse_vs_grid"):
        if stem in paths:
            document.image(paths[stem], figure_spec(stem).description)
    document.bullets(f"`{path}`: {figure_spec(stem).description}" for stem, path in paths.items())


def _configuration_section(
    document: Document, results: pd.DataFrame, exponents: pd.DataFrame, figure_paths: dict[str, str] | None, *, alone
) -> None:
    """Everything about one (function, width, k); ``results`` and ``exponents`` filtered to it."""
    document.heading(2, config_label(*configurations(results)[0]))
    if not alone:
        document.paragraph(answer_sentence(results, exponents))
    document.heading(3, "Exponents α (RMSE ∝ x^-α), 95% CI")
    if results["grid_size"].nunique() < 2:
        document.paragraph(
            f"No exponent: the sweep has a single grid size (G={_integer(results['grid_size'].iloc[0])})."
        )
    document.table(_exponent_display(exponents))
    document.heading(3, "Interpolation threshold and the points of each fit")
    document.table(_threshold_display(exponents))
    stuck = not_learnt_chains(results)
    if not stuck.empty:
        document.paragraph(_not_learnt_text(results, stuck))
    learnt = learnt_rows(results)
    if not learnt.empty:  # the tables, like the fits, hold the chains that learnt the target
        _rmse_sections(document, learnt)
        _data_scaling_section(document, learnt)
        _seed_section(document, learnt, exponents)
    if figure_paths:
        _figures_section(document, figure_paths)


def _failed_lines(results: pd.DataFrame) -> list[str]:
    def reason(row) -> str:  # a partial report's missing levels say why (column "reason")
        text = row.get("reason")
        return f": {text}" if isinstance(text, str) and text else ""

    return [
        f"{config_label(r['function'], r['width'], int(r['k']))}: N={int(r['n_train'])} seed {int(r['seed'])} "
        f"G={int(r['grid_size'])} (test RMSE {r['test_rmse']:g}, train RMSE {r['train_rmse']:g}){reason(r)}"
        for _, r in failed_rows(results).iterrows()
    ]


# ---- the sweep ----------------------------------------------------------------------------------------------


def _sweep_paragraph(results: pd.DataFrame, configs: list) -> str:
    seeds = sorted(int(s) for s in results["seed"].unique())
    steps = sorted(int(s) for s in results["steps"].dropna().unique()) if "steps" in results else []
    optimizers = sorted(results["optimizer"].dropna().astype(str).unique()) if "optimizer" in results else []
    return (
        f"Sweep: {_plural(len(configs), 'configuration')}; "
        f"N ∈ {{{', '.join(str(int(n)) for n in sorted(results['n_train'].unique()))}}}; "
        f"G ∈ {{{', '.join(str(int(g)) for g in sorted(results['grid_size'].unique()))}}} (one chain per N and seed, "
        f"each level initialised from the previous one by grid extension); "
        f"{_plural(len(seeds), 'seed')} ({', '.join(map(str, seeds))}); "
        f"{', '.join(map(str, steps)) or '?'} {', '.join(optimizers) or ''} steps per level; "
        f"{len(results)} grid levels, {len(failed_rows(results))} without a finite RMSE."
    )


def _method_paragraph(several_seeds: bool, divergence_factor: float) -> str:
    ci_method = (
        "Student t interval over the seeds' own exponents"
        if several_seeds
        else "OLS standard error with Student t (one seed)"
    )
    return (
        f"Method: RMSE = C·x^-α fitted by least squares in log-log space, per N, over the grid sizes below the "
        f"interpolation threshold; 95% interval of α from the {ci_method}. The threshold is the G of minimal "
        f"test RMSE when test RMSE rises after it; points beyond it, and points whose test/train RMSE ratio "
        f"exceeds {divergence_factor:g}, are excluded. Theory for splines of order k: α = k+1 (in G; in the "
        "parameter count too once parameters ∝ G). Seeds are averaged geometrically."
    )


# What decides a job's bits besides its inputs (config cpu_code_path, kanlib.reproducibility).
_SETTING_COLUMNS = ("cpu_code_path", "mkl_cbwr", "blas_core", "threads", "torch_version", "mkl_version")


def _setting_text(setting: dict) -> str:
    if pd.isna(setting.get("cpu_code_path")):
        return "no record (trained by a kanlib before 0.2)"
    threads = setting.get("threads")
    return (
        f"cpu_code_path {setting['cpu_code_path']} (MKL_CBWR {setting.get('mkl_cbwr')}, OpenBLAS "
        f"{setting.get('blas_core')} kernels), {_plural(int(float(threads)), 'thread') if threads else '? threads'}, "
        f"torch {setting.get('torch_version')}, MKL {setting.get('mkl_version')}"
    )


def numerics_paragraph(results: pd.DataFrame) -> str:
    """Whether every job of the sweep computed with the same CPU setting: the same inputs then give the
    same bits on any x86-64 CPU with AVX2 (cpu_code_path avx2; docs/guide.md, "The same numbers on
    another CPU")."""
    columns = [column for column in _SETTING_COLUMNS if column in results]
    if "cpu_code_path" not in columns:
        return ""
    results = results[results["torch_version"].notna()]  # the jobs that wrote a metrics.json
    if results.empty:
        return ""
    counts = results[columns].value_counts(dropna=False, sort=True)
    cpus = sorted(results["cpu_model"].dropna().astype(str).unique()) if "cpu_model" in results else []
    on = f", on {_join_words(cpus)}" if cpus else ""
    if len(counts) == 1:
        setting = dict(zip(columns, counts.index[0]))
        native = setting.get("cpu_code_path") == "native" and len(cpus) > 1
        return f"Computed with: {_setting_text(setting)}{on}; the same for all {_plural(len(results), 'job')}." + (
            " With the native code path the bits depend on the CPU type: the jobs ran on several." if native else ""
        )
    parts = [f"{_plural(int(n), 'job')} with {_setting_text(dict(zip(columns, key)))}" for key, n in counts.items()]
    return (
        f"**Not every job computed with the same setting** ({len(counts)} settings{on}): {'; '.join(parts)}. "
        "Their numbers can differ from the first rounding on, and a chain carries that to later levels "
        "(docs/guide.md, 'The same numbers on another CPU'); `snakemake --forcerun train` retrains every "
        "job under the current one."
    )


def answer_document(
    results: pd.DataFrame,
    exponents: pd.DataFrame,
    tables: bool = False,
    comparison: pd.DataFrame | None = None,
    frontier=None,
) -> Document:
    """The answer: one sentence per configuration, and with ``tables`` each configuration's exponent
    table after it (the MLflow parent run's description and the report's front page). With a family
    ``comparison`` (:func:`kanlib.analysis.tables.family_comparison`), its answer per function comes
    first; with a ``frontier`` (:func:`kanlib.analysis.frontier.frontier_report`), the data axis's
    answer per function and family follows the grid's."""
    document = Document()
    configs = configurations(results)
    if not configs:
        document.paragraph(_EMPTY)
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
    data_axis = frontier_answers(frontier) if frontier is not None and not frontier.empty else []
    if data_axis:
        document.paragraph("**Data axis** (the best model at each N, chosen on a validation split):")
        document.bullets(data_axis)
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
    frontier=None,
    frontier_figures: dict[str, str] | None = None,
) -> Document:
    """The sweep's summary (see the module docstring for its parts).

    Parameters
    ----------
    results : pandas.DataFrame
        The aggregated results table (every configuration; NaN rows of failed jobs allowed).
    exponents : pandas.DataFrame
        :func:`kanlib.analysis.tables.exponent_table` of ``results``.
    sweep : str
        The sweep's name (title).
    figure_paths : dict, optional
        Per configuration, figure stem -> path relative to the summary file; the two main
        figures are embedded, the others listed.
    divergence_factor : float
        The test/train ratio the threshold rule used (stated in the text).
    comparison : pandas.DataFrame, optional
        :func:`kanlib.analysis.tables.family_comparison`'s table when the sweep has MLPs: its answer
        opens the summary and its section follows, with ``family_figures`` (function -> figure path)
        embedded.
    frontier : kanlib.analysis.frontier.FrontierReport, optional
        The data axis of a sweep with at least 3 N: its answer and section, with ``frontier_figures``
        (function -> figure path) embedded.
    """
    document = Document()
    document.heading(1, f"KAN scaling sweep `{sweep}`: summary")
    configs = configurations(results)
    if not configs:
        document.paragraph(_EMPTY)
        return document
    document.blocks += answer_document(results, exponents, comparison=comparison, frontier=frontier).blocks
    if comparison is not None and not comparison.empty:
        _family_section(document, comparison, family_figures)
    if frontier is not None and not frontier.empty:
        _frontier_section(document, frontier, frontier_figures)
    elif results["n_train"].nunique() >= DATA_AXIS_MIN_SIZES and not has_validation_errors(results):
        document.paragraph(
            "No data axis: it chooses each N's best model on a validation split, and these results have no "
            "validation errors (datasets written by earlier versions of kanlib have no validation split; rerun the "
            "sweep in a new folder to get one)."
        )
    numerics = numerics_paragraph(results)
    results = chain_rows(results)  # the sections below are the KAN family's
    document.paragraph(_sweep_paragraph(results, configs))
    document.paragraph(_method_paragraph(results["seed"].nunique() > 1, divergence_factor))
    if numerics:
        document.paragraph(numerics)
    for configuration in configs:
        _configuration_section(
            document,
            select_configuration(results, *configuration),
            select_configuration(exponents, *configuration),
            (figure_paths or {}).get(configuration),
            alone=len(configs) == 1,
        )
    failed = _failed_lines(results)
    if failed:
        document.heading(2, "Grid levels without a finite RMSE")
        document.paragraph("Left out of every fit, table cell and figure (failed or diverged jobs):")
        document.bullets(failed)
    return document


# ---- model families (KAN against MLP): kanlib.analysis.families ---------------------------------------------


def _params_phrase(family: str, row) -> str:
    name = describe(family).label
    if _finite(row["params_at_target"]):
        return f"{name} needs {_integer(row['params_at_target'])} parameters"
    return (
        f"{name} never gets there (best {_rmse(row['best_test_rmse'])} with {_integer(row['best_n_params'])} "
        "parameters)"
    )


def _family_verdict(ordered: pd.DataFrame, level: str) -> tuple[str, str]:
    """(which family scales faster, how sure) for two fitted families, the faster one first."""
    better, worse = ordered.index[0], ordered.index[1]
    intervals = all(
        _finite(ordered.loc[f, "alpha_low"]) and _finite(ordered.loc[f, "alpha_high"]) for f in (better, worse)
    )
    faster = f"{describe(better).label} scales faster than {describe(worse).label}"
    if not intervals:
        return faster, "how sure is unknown: a fit without an interval (2 points, one seed)"
    if float(ordered.loc[better, "alpha_low"]) > float(ordered.loc[worse, "alpha_high"]):
        return faster, f"the {level} intervals do not overlap"
    return (
        f"neither family scales measurably faster ({describe(better).label} ahead by its point estimate)",
        f"the {level} intervals overlap, so the data do not tell the two apart",
    )


def _family_sentence(function: str, at_n: pd.DataFrame) -> str:
    """Which family scales better on one function at one N, by how much, and how sure we are."""
    rows = at_n.set_index("family")
    head = f"On {function} (N={int(at_n['n_train'].iloc[0])})"
    fitted = rows[rows["alpha"].map(_finite)]
    alphas = " against ".join(f"{_alpha_text(rows.loc[f])} for {describe(f).label}" for f in rows.index)
    target = _rmse(at_n["target_rmse"].iloc[0])
    reach = f"To reach test RMSE {target}, " + " and ".join(_params_phrase(f, rows.loc[f]) for f in rows.index) + "."
    if len(fitted) < 2:
        missing = [
            f"{describe(f).label} ({rows.loc[f, 'note'] or 'no fit'})" for f in rows.index if f not in fitted.index
        ]
        return f"{head}, no family comparison of exponents: no fit for {_join_words(missing)}. {reach}"
    ordered = fitted.sort_values("alpha", ascending=False)
    difference = float(ordered["alpha"].iloc[0] - ordered["alpha"].iloc[1])
    verdict, sureness = _family_verdict(ordered, f"{int(at_n['confidence'].iloc[0] * 100)}%")
    return f"{head}, {verdict}: test RMSE ∝ P^-α with α = {alphas} (Δα = {difference:.2f}; {sureness}). {reach}"


def family_answers(comparison: pd.DataFrame) -> list[str]:
    """One sentence per function at its largest N: which family scales better, by how much, how sure."""
    answers = []
    for function, rows in comparison.groupby("function", sort=False):
        largest = rows[rows["n_train"] == rows["n_train"].max()]
        answers.append(_family_sentence(str(function), largest))
    return answers


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
        name = describe(row.family).label
        document.paragraph(f"**{name}, {row.function}, N={int(row.n_train)}**: used {row.points_used or 'none'}.")
        if isinstance(row.points_excluded, str) and row.points_excluded:
            document.bullets(f"not used: {item}" for item in row.points_excluded.split("; "))
        if isinstance(row.note, str) and row.note:
            document.paragraph(f"Note: {row.note}.")
    for function, path in (figure_paths or {}).items():
        document.image(path, f"{function}: test RMSE against the parameter count, KAN and MLP")


# ---- the data axis: kanlib.analysis.frontier -----------------------------------------------------------------

_MEASURE_WORDS = {"mean": "the RMSE", "median": "the median squared error"}


def _interval(row, name: str) -> str:
    return f"{_number(row[name])} [{_number(row[name + '_low'])}, {_number(row[name + '_high'])}]"


def _size_word(row) -> str:
    return "G" if row["size_column"] == "grid_size" else "P"


def frontier_answers(report) -> list[str]:
    """One sentence per (function, family) with a data law: gamma and delta by the RMSE, the median's
    beside them, and the held-out check at the largest N."""
    answers = []
    fits = report.fits.dropna(subset=["gamma"]) if "gamma" in report.fits else report.fits.iloc[0:0]
    for (function, family), rows in fits.groupby(["function", "family"], sort=False):
        rows = rows.set_index("measure")
        if "mean" not in rows.index:
            continue
        mean, size = rows.loc["mean"], _size_word(rows.loc["mean"])
        sentence = (
            f"{function}, {describe(family).label}: grown together, test RMSE falls as N^-γ with γ = "
            f"{_interval(mean, 'gamma')} at best {size} ≈ {_number(mean['size_prefactor'])}·N^δ, δ = "
            f"{_interval(mean, 'delta')}"
        )
        if _finite(mean.get("theory_gamma")):
            sentence += f" (splines below the threshold: γ = (k+1)δ = {_number(mean['theory_gamma'])})"
        if "median" in rows.index:
            median = rows.loc["median"]
            sentence += (
                f"; by the median squared error γ = {_interval(median, 'gamma')}, δ = {_interval(median, 'delta')}"
            )
        held = report.held_out
        if not held.empty:
            check = held[
                (held["function"] == function)
                & (held["family"] == family)
                & (held["measure"] == "mean")
                & (held["method"] == "frontier")
            ]
            if not check.empty:
                c = check.iloc[0]
                verdict = "inside" if c["test_inside"] else "outside"
                sentence += (
                    f". Fitted without N={int(c['held_out_n'])}, the law predicts its best test RMSE "
                    f"{_rmse(c['predicted_test'])} "
                    f"[{_rmse(c['predicted_test_low'])}, {_rmse(c['predicted_test_high'])}]; "
                    f"measured {_rmse(c['measured_test'])}, {verdict} the interval"
                )
        answers.append(sentence + ".")
    return answers


def _frontier_table(points: pd.DataFrame) -> pd.DataFrame:
    """Per function, family and N: the best size and its test errors, geometric means over seeds."""
    from .fits import geometric_mean

    rows = []
    for (function, family, n), group in points.groupby(["function", "family", "n_train"], sort=False):
        by = {m: g for m, g in group.groupby("measure")}
        mean = by.get("mean", group.iloc[0:0])
        median = by.get("median", group.iloc[0:0])
        size = _size_word(group.iloc[0])
        rows.append(
            {
                "function": function,
                "family": describe(family).label,
                "N": int(n),
                "best size (RMSE)": f"{size} = {_number(geometric_mean(mean['size']), 1)}" if len(mean) else "n/a",
                "test RMSE": _rmse(geometric_mean(mean["test"])) if len(mean) else "n/a",
                "interior test RMSE": _rmse(geometric_mean(mean["test_interior_rmse"]))
                if "test_interior_rmse" in mean and len(mean)
                else "n/a",
                "outside share": _number(mean["test_outside_mse_share"].median())
                if "test_outside_mse_share" in mean and len(mean)
                else "n/a",
                "best size (median)": f"{size} = {_number(geometric_mean(median['size']), 1)}"
                if len(median)
                else "n/a",
                "test median-RMSE": _rmse(geometric_mean(median["test"])) if len(median) else "n/a",
                "lower bounds (RMSE / median)": f"{int(mean['at_size_end'].sum())} / "
                f"{int(median['at_size_end'].sum())}",
                "still improving (RMSE / median)": f"{int(mean['still_improving'].sum())} / "
                f"{int(median['still_improving'].sum())}",
            }
        )
    return pd.DataFrame(rows)


def _frontier_fits_display(fits: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for row in fits.to_dict("records"):
        fitted = _finite(row.get("gamma"))
        rows.append(
            {
                "function": row["function"],
                "family": describe(row["family"]).label,
                "measure": row["measure"],
                "δ (size ∝ N^δ)": _interval(row, "delta") if fitted else "n/a",
                "γ (error ∝ N^-γ)": _interval(row, "gamma") if fitted else "n/a",
                "(k+1)δ": _number(row.get("theory_gamma")),
                "sizes × seeds": f"{row['n_sizes']} × {row['n_seeds']}",
                "note": row.get("note") or "",
            }
        )
    return pd.DataFrame(rows)


def _held_out_display(held: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for row in held.to_dict("records"):
        interval = row["method"] == "frontier"
        rows.append(
            {
                "function": row["function"],
                "family": describe(row["family"]).label,
                "measure": row["measure"],
                "held-out N": int(row["held_out_n"]),
                "model": "power laws" if interval else "error surface",
                "predicted size": _number(row["predicted_size"], 1)
                + (
                    f" [{_number(row['predicted_size_low'], 1)}, {_number(row['predicted_size_high'], 1)}]"
                    if interval
                    else ""
                ),
                "measured size": _number(row["measured_size"], 1),
                "predicted test": _rmse(row["predicted_test"])
                + (f" [{_rmse(row['predicted_test_low'])}, {_rmse(row['predicted_test_high'])}]" if interval else ""),
                "measured test": _rmse(row["measured_test"]),
                "inside": ("yes" if row["test_inside"] else "no") if interval else "",
                "log10 error": _number(row["log10_error"]),
            }
        )
    return pd.DataFrame(rows)


def _held_out_verdicts(held: pd.DataFrame) -> list[str]:
    """Per (function, family, measure): which model predicted the held-out best test error closer."""
    lines = []
    for (function, family, measure), rows in held.groupby(["function", "family", "measure"], sort=False):
        errors = rows.set_index("method")["log10_error"].abs()
        if len(errors) < 2:
            continue
        better = "the power laws" if errors.idxmin() == "frontier" else "the error surface"
        lines.append(
            f"{function}, {describe(family).label}, by {_MEASURE_WORDS[measure]}: {better} predicted closer "
            f"(|log10 error| {_number(errors.get('frontier'))} against {_number(errors.get('surface'))})"
        )
    return lines


def _frontier_section(document: Document, report, figure_paths: dict[str, str] | None) -> None:
    document.heading(2, "Data axis: the best model at each training-set size N")
    document.paragraph(
        "For each function, family, N and seed the model with the lowest validation error is kept (the "
        "validation split is drawn like the training set; the test set plays no part in the choice), among "
        "the models of chains that learnt their target: a KAN's grid levels, an MLP's widths. Its test error "
        "measures the choice. By the RMSE, models are chosen on the validation RMSE and scored by the test "
        "RMSE; by the median, on the validation and test median squared error. Over N, best size ∝ N^δ "
        "(G for KANs, parameters P for MLPs) and best test error ∝ N^-γ are fitted per seed and combined: "
        "the mean of the seeds' exponents with a 95% Student t interval over seeds (one seed: OLS over N). "
        "For splines of order k, γ = (k+1)δ below the interpolation threshold. A best size at the largest "
        "size trained is a lower bound ('lower bounds', chosen models per measure); 'still improving' counts "
        "chosen models whose training RMSE still fell by more than 0.1% over their last 10 steps."
    )
    document.table(_frontier_fits_display(report.fits))
    document.paragraph(
        "Frontier points, geometric means over seeds ('outside share': median share of the test MSE "
        "from test points outside the training range):"
    )
    document.table(_frontier_table(report.points))
    if not report.held_out.empty:
        document.paragraph(
            "Held-out check: the laws refitted without the largest N predict its best size and test error "
            "(power laws: 95% prediction interval for the mean over the same seeds), beside a joint model of "
            "the test error over (G, N), A·G^-a + B·(G/N)^b fitted robustly on log values (KANs). log10 error: "
            "log10(predicted / measured)."
        )
        document.table(_held_out_display(report.held_out))
        document.bullets(_held_out_verdicts(report.held_out))
    if not report.recommendations.empty:
        rec = report.recommendations[report.recommendations["measure"] == "mean"]
        document.paragraph("Recommendations by the RMSE (interval: what one new seed may expect):")
        document.table(
            pd.DataFrame(
                {
                    "function": rec["function"],
                    "family": [describe(f).label for f in rec["family"]],
                    "N": rec["n_train"].astype(int),
                    "use size ≈": [f"{_size_word(r)} ≈ {_number(r['size'], 1)}" for _, r in rec.iterrows()],
                    "expected test RMSE": [
                        f"{_rmse(r['test'])} [{_rmse(r['test_low'])}, {_rmse(r['test_high'])}]"
                        for _, r in rec.iterrows()
                    ],
                    "extrapolated": ["yes" if e else "" for e in rec["extrapolated"]],
                }
            )
        )
    if not report.targets.empty:
        targets = report.targets[report.targets["measure"] == "mean"]
        lines = []
        for row in targets.to_dict("records"):
            needed = (
                f"N ≈ {_integer(row['n_needed'])}"
                + (
                    f" [{_integer(row['n_needed_low'])}, {_integer(row['n_needed_high'])}]"
                    if _finite(row["n_needed_low"])
                    else ""
                )
                + (" (extrapolated)" if row.get("extrapolated") else "")
                if _finite(row["n_needed"])
                else "never, by its law"
            )
            lines.append(f"{row['function']}, {describe(row['family']).label}: {needed}")
        if lines:
            document.paragraph(f"Training points needed for a best test RMSE of {_rmse(targets['target'].iloc[0])}:")
            document.bullets(lines)
    for function, path in (figure_paths or {}).items():
        document.image(path, f"{function}: the frontier over (N, G) and the best test RMSE against N")
