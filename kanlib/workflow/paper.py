"""The KAN paper's quantitative claims (Liu et al. 2024, arXiv 2404.19756, Fig. 2.3 and Fig. 3.1)
measured on a finished sweep of config/paper_fig2_3.yaml or config/paper_fig3_1.yaml.

    python -m kanlib.workflow.paper results/paper_fig2_3 [results/paper_fig3_1 ...] > numbers.md

Reads the sweep's own files (results.csv, history.csv, report/families.csv, and for the boundary
table each level's model.pt and dataset; hence the workflow layer, not kanlib.analysis) and prints
markdown: the numbers docs/paper.md cites, each with how it was measured. Conventions:

- A *poor minimum* is a chain that did not learn its target by the sweep's own verdict
  (``learned_target``, :func:`kanlib.families.learned_target`: relative train RMSE above 0.1 at a
  KAN chain's fourth level, G = 20 in the presets): it says nothing about scaling, so per-seed fits
  skip it and say so.
- Exponents: ``RMSE = C G^-alpha`` by OLS in log-log space (:func:`kanlib.analysis.fits.fit_power_law`,
  95% OLS-t interval) per seed, over a stated range of G.
- A staircase step: at an extension G_i -> G_i+1 the train RMSE falls more than twice as fast over
  the first ``STAIR_STEPS`` steps of the new level as over the last ``STAIR_STEPS`` of the old one
  (mean decrease of log10 RMSE per step).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.families import compare_families, family_points
from ..analysis.fits import fit_power_law, learning_mask

__all__ = ["STAIR_STEPS", "fig2_3_numbers", "fig3_1_numbers", "main"]

STAIR_STEPS = 10


def _read(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    results = pd.read_csv(folder / "results.csv")
    history = pd.read_csv(folder / "history.csv")
    return results[results["family"] == "kan"], history[history["family"] == "kan"]


def _edges(width: str) -> int:
    sizes = [int(part) for part in width.split("-")]
    return sum(a * b for a, b in zip(sizes, sizes[1:]))


def _fit_text(grids, values) -> str:
    grids, values = np.asarray(grids, float), np.asarray(values, float)
    keep = np.isfinite(values) & (values > 0)
    if keep.sum() < 2:
        return "n/a"
    fit = fit_power_law(grids[keep], values[keep])
    if math.isnan(fit.alpha_low):
        return f"{fit.alpha:.2f} (2 points)"
    return f"{fit.alpha:.2f} [{fit.alpha_low:.2f}, {fit.alpha_high:.2f}]"


def _poor_minimum(chain: pd.DataFrame) -> bool:
    """The chain did not learn its target (its ``learned_target`` verdict; a table written before
    that column existed says nothing, and its chains count as learnt)."""
    return not learning_mask(chain).all()


def staircase_table(history: pd.DataFrame) -> list[str]:
    """Per chain: extensions where the train RMSE falls faster right after than right before, and
    the train RMSE at the end of each level."""
    lines = [
        f"| width | seed | extensions where the fall is > 2x faster after than before ({STAIR_STEPS} steps each side) "
        "| train RMSE at the end of each level (G: RMSE) |",
        "|---|---|---|---|",
    ]
    for (width, seed), chain in history.groupby(["width", "seed"]):
        chain = chain.sort_values("cumulative_step")
        grids = list(dict.fromkeys(chain["grid_size"]))
        faster, total = 0, 0
        for before_grid, after_grid in zip(grids, grids[1:]):
            before = np.log10(chain[chain["grid_size"] == before_grid]["train_rmse"].to_numpy()[-STAIR_STEPS - 1 :])
            after = np.log10(chain[chain["grid_size"] == after_grid]["train_rmse"].to_numpy()[: STAIR_STEPS + 1])
            if len(before) < 2 or len(after) < 2:
                continue
            rate_before = (before[0] - before[-1]) / (len(before) - 1)
            rate_after = (after[0] - after[-1]) / (len(after) - 1)
            total += 1
            faster += rate_after > 2 * max(rate_before, 0.0)
        ends = ", ".join(f"{grid}: {chain[chain['grid_size'] == grid]['train_rmse'].iloc[-1]:.1e}" for grid in grids)
        lines.append(f"| [{width.replace('-', ',')}] | {seed} | {faster} of {total} | {ends} |")
    return lines


def boundary_table(folder: Path, results: pd.DataFrame) -> list[str]:
    """Per chain not in a poor minimum and per G: the test points whose first-layer outputs leave
    the range the training points' outputs span (the next layer's splines were fitted only there),
    their share of the test MSE, and the test RMSE of the other points (from the saved models)."""
    import torch

    from ..model import KAN
    from .results import load_dataset

    lines = [
        "Test points whose first-layer outputs fall outside the range of the training points' "
        "(where the next layer's splines saw no data), from each level's model.pt:",
        "",
        "| width | seed | G | such test points | their share of the test MSE | test RMSE of the others | all |",
        "|---|---|---|---|---|---|---|",
    ]
    for (width, seed), chain in results.groupby(["width", "seed"]):
        chain = chain.sort_values("grid_size")
        if _poor_minimum(chain) or width.count("-") < 2:
            continue
        function = chain["function"].iloc[0]
        n_train = int(chain["n_train"].iloc[0])
        dataset, _ = load_dataset(folder / "data" / function / f"N{n_train}_seed{seed}.pt")
        for grid in chain["grid_size"]:
            model_file = (
                folder / "runs" / function / f"w{width}_k3" / f"N{n_train}_seed{seed}" / f"G{grid}" / "model.pt"
            )
            if not model_file.is_file():
                continue
            model = KAN.load(model_file)
            with torch.no_grad():
                hidden_train = model.layers[0](dataset["train_input"])  # (N, width[1])
                hidden_test = model.layers[0](dataset["test_input"])
                squared = (model(dataset["test_input"]) - dataset["test_label"]).pow(2).mean(1)  # (N_test,)
            low, high = hidden_train.min(0).values, hidden_train.max(0).values
            outside = ((hidden_test < low) | (hidden_test > high)).any(1)
            share = float(squared[outside].sum() / squared.sum())
            inside = float(squared[~outside].mean().sqrt())
            lines.append(
                f"| [{width.replace('-', ',')}] | {seed} | {grid} | {int(outside.sum())} | {share:.3f} | "
                f"{inside:.1e} | {float(squared.mean().sqrt()):.1e} |"
            )
    return lines


def fig2_3_numbers(folder: Path) -> list[str]:
    """Fig. 2.3's claims measured on a paper_fig2_3 sweep (markdown lines)."""
    results, history = _read(Path(folder))
    n_train = int(results["n_train"].iloc[0])
    lines = [f"## Fig. 2.3 measured on `{folder}` (N = {n_train})", "", "### Staircases", ""]
    lines += staircase_table(history)
    lines += ["", "### Test RMSE minimum against the interpolation threshold", ""]
    lines += [
        "The paper's threshold: parameters per grid point × G = N, i.e. G* = N / edges "
        "([2,5,1]: 15 edges, G* = 1000/15 ≈ 67; the paper observes G ~ 50).",
        "",
        "| width | seed | poor minimum | G* = N/edges | G of min test RMSE (mean) | min | "
        "G of min test median-RMSE | min |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (width, seed), chain in results.groupby(["width", "seed"]):
        chain = chain.sort_values("grid_size")
        best_mean = chain.loc[chain["test_rmse"].idxmin()]
        best_median = chain.loc[chain["test_median_rmse"].idxmin()]
        lines.append(
            f"| [{width.replace('-', ',')}] | {seed} | {'yes' if _poor_minimum(chain) else 'no'} | "
            f"{n_train / _edges(width):.0f} | {int(best_mean['grid_size'])} | {best_mean['test_rmse']:.1e} | "
            f"{int(best_median['grid_size'])} | {best_median['test_median_rmse']:.1e} |"
        )
    lines += ["", "### Exponents in G per seed (RMSE ∝ G^-α, OLS in log-log, 95% OLS-t interval)", ""]
    lines += [
        "Ranges: *to threshold* = G from 3 up to the G of that chain's minimal test RMSE (mean) or "
        "test median-RMSE (median); *3-200* = the range over which the paper draws its reference lines "
        "(the levels before G = 500, where optimisation stalls). Chains in a poor minimum are listed, not fitted.",
        "",
        "| width | seed | test RMSE (mean), to threshold | test RMSE (mean), 3-200 | "
        "test median-RMSE, to threshold | test median-RMSE, 3-200 | train RMSE, 3-200 | "
        "test RMSE (mean) vs parameters P, to threshold |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (width, seed), chain in results.groupby(["width", "seed"]):
        chain = chain.sort_values("grid_size")
        label = f"| [{width.replace('-', ',')}] | {seed} |"
        if _poor_minimum(chain):
            level = chain.iloc[min(3, len(chain) - 1)]
            lines.append(
                f"{label} poor minimum (train RMSE {level['train_rmse']:.2f} at G={level['grid_size']}) | | | | | |"
            )
            continue
        grids = chain["grid_size"].to_numpy(float)
        cells = []
        for metric in ("test_rmse", "test_median_rmse"):
            values = chain[metric].to_numpy(float)
            stop = int(np.argmin(values))
            cells.append(_fit_text(grids[: stop + 1], values[: stop + 1]) + f" (G=3..{int(grids[stop])})")
            upto = grids <= 200
            cells.append(_fit_text(grids[upto], values[upto]))
        upto = grids <= 200
        cells.append(_fit_text(grids[upto], chain["train_rmse"].to_numpy(float)[upto]))
        stop = int(np.argmin(chain["test_rmse"].to_numpy(float)))  # the paper's Fig. 3.1 axis: parameters
        params = chain["n_params"].to_numpy(float)
        cells.append(_fit_text(params[: stop + 1], chain["test_rmse"].to_numpy(float)[: stop + 1]))
        lines.append(f"{label} {' | '.join(cells)} |")
    lines += ["", "### Where the mean-based test error comes from", ""]
    lines += boundary_table(Path(folder), results)
    lines += ["", "### Test and train RMSE per level (every seed)", ""]
    for metric in ("test_rmse", "test_median_rmse", "train_rmse"):
        table = results.pivot_table(index=["width", "seed"], columns="grid_size", values=metric)
        lines.append(f"**{metric}**")
        lines.append("")
        lines.append("| width | seed | " + " | ".join(f"G={g}" for g in table.columns) + " |")
        lines.append("|---|---|" + "---|" * len(table.columns))
        for (width, seed), row in table.iterrows():
            lines.append(f"| [{width.replace('-', ',')}] | {seed} | " + " | ".join(f"{v:.1e}" for v in row) + " |")
        lines.append("")
    return lines


FAMILY_HEADER = [
    "| function | d | family | α [95% CI] | vs 4 | vs 4/d | best test RMSE (P) | P for RMSE 1e-4 | points used |",
    "|---|---|---|---|---|---|---|---|---|",
]


def _family_rows(families: pd.DataFrame, results: pd.DataFrame) -> list[str]:
    """One markdown row per (function, family) of a families table (report/families.csv's columns)."""
    lines = []
    for _, row in families.iterrows():
        function_rows = results[results["function"] == row["function"]]
        d = int(str(function_rows["width"].iloc[0]).split("-")[0])
        alpha = f"{row['alpha']:.2f} [{row['alpha_low']:.2f}, {row['alpha_high']:.2f}]"
        target = "never" if pd.isna(row["params_at_target"]) else f"{row['params_at_target']:.0f}"
        lines.append(
            f"| {row['function']} | {d} | {row['family']} | {alpha} | {row['alpha'] - 4:+.2f} | "
            f"{row['alpha'] - 4 / d:+.2f} | {row['best_test_rmse']:.1e} ({row['best_n_params']:.0f}) | {target} | "
            f"{int(row['n_points'])} |"
        )
    return lines


def _kan_against_mlp(kan: pd.DataFrame, mlp: pd.DataFrame, column: str, below: set, function: str) -> dict:
    """For each KAN level (log ``column`` averaged over seeds) with an MLP of at most its size: whether it
    beats the best such MLP. Counts over all levels and over those in ``below`` (below the threshold),
    and the worst KAN/MLP ratio with its P."""
    counts = {"wins": 0, "levels": 0, "below_wins": 0, "below_levels": 0}
    worst = (0.0, None)
    for _, level in kan.iterrows():
        smaller = mlp[mlp["n_params"] <= level["n_params"]]
        if smaller.empty:
            continue
        ratio = math.exp(level[column] - smaller[column].min())
        below_threshold = (function, str(level["width"]), float(level["grid_size"])) in below
        counts["levels"] += 1
        counts["wins"] += ratio < 1
        counts["below_levels"] += below_threshold
        counts["below_wins"] += below_threshold and ratio < 1
        if ratio > worst[0]:
            worst = (ratio, int(level["n_params"]))
    counts["worst"] = f"{worst[0]:.2g} (P={worst[1]})" if worst[1] is not None else "n/a"
    return counts


def fig3_1_numbers(folder: Path) -> list[str]:
    """Fig. 3.1's claims measured on a paper_fig3_1 sweep (markdown lines)."""
    folder = Path(folder)
    families = pd.read_csv(folder / "report" / "families.csv")
    results = pd.read_csv(folder / "results.csv")
    lines = [f"## Fig. 3.1 measured on `{folder}`", ""]
    lines += [
        "α: test RMSE ∝ P^-α over each family's lower envelope below its interpolation threshold "
        "(kanlib.analysis.families; interval: Student t over the seeds' own exponents). Reference: α = k+1 = 4 (the "
        "paper's KAN theory) and 4/d (Sharma & Kaplan's, for a d-input function).",
        "",
        *FAMILY_HEADER,
    ]
    lines += _family_rows(families, results)
    if "test_median_rmse" in results:
        # the same envelopes and fits by the median squared test error (robust to a few far test points)
        by_median, _ = compare_families(results.assign(test_rmse=results["test_median_rmse"]))
        lines += [
            "",
            "The same by the square root of the median squared test error (seeds and intervals as above):",
            "",
            *FAMILY_HEADER,
        ]
        lines += _family_rows(by_median, results)
    lines += ["", "### KAN against MLP per parameter", ""]
    lines += [
        "For every KAN level (geometric mean over seeds): the best MLP (geometric mean over seeds) with at "
        "most as many parameters, and whether the KAN's test RMSE is lower; by the test RMSE (mean over the "
        "test points) and by the square root of the median squared test error (robust to a few test points "
        "outside the range the training data reached). The last columns count only the KAN levels below "
        "their chain's interpolation threshold (those its scaling fit uses; past it a KAN fits its training "
        "points and no longer generalises, at N = 1000 from G = 10-100 on).",
        "",
        "| function | KAN levels beating every MLP of at most its size | KAN levels "
        "| worst KAN/MLP RMSE ratio (at P) | the same by median: wins | worst ratio (at P) "
        "| below the threshold: KAN levels | wins (mean) | wins (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    points = family_points(results)
    below = {
        (row.function, str(row.width), float(row.grid_size))
        for row in points[(points["family"] == "kan") & points["eligible"]].itertuples()
    }
    columns = ["test_rmse"] + (["test_median_rmse"] if "test_median_rmse" in results else [])
    logs = results.assign(**{column: np.log(results[column]) for column in columns})
    means = logs.groupby(["function", "family", "width", "grid_size", "n_params"], dropna=False)[columns]
    means = means.mean().reset_index()
    for function, rows in means.groupby("function"):
        kan, mlp = rows[rows["family"] == "kan"], rows[rows["family"] == "mlp"]
        by_mean = _kan_against_mlp(kan, mlp, "test_rmse", below, function)
        by_median = _kan_against_mlp(kan, mlp, columns[-1], below, function) if len(columns) > 1 else None
        cells = [by_mean["wins"], by_mean["levels"], by_mean["worst"]]
        cells += [by_median["wins"], by_median["worst"]] if by_median else ["n/a", "n/a"]
        cells += [by_mean["below_levels"], by_mean["below_wins"], by_median["below_wins"] if by_median else "n/a"]
        lines.append(f"| {function} | " + " | ".join(str(cell) for cell in cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    folders = [Path(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    if not folders:
        sys.exit("usage: python -m kanlib.workflow.paper results/<sweep> [...]")
    for folder in folders:
        if not (folder / "results.csv").is_file():
            sys.exit(f"{folder}: no results.csv (run the sweep first)")
        # a sweep with MLPs: Fig. 3.1's comparison; KAN chains only (Fig. 2.3, or Fig. 3.1's KAN half): per chain
        has_mlp = (pd.read_csv(folder / "results.csv")["family"] == "mlp").any()
        print("\n".join(fig3_1_numbers(folder) if has_mlp else fig2_3_numbers(folder)))
        print()


if __name__ == "__main__":
    main()
