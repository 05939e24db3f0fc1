"""The data axis: for each training-set size N, the best model a family reaches, and how it scales.

A *frontier point* is, for one (function, family, N, seed), the model with the lowest validation
error among the family's models that learnt their target (a KAN chain's grid levels, an MLP's
widths); its test error then measures the chosen model honestly (the test set played no part in the
choice). Two measures, each choosing and scoring with its own statistic (:data:`MEASURES`): the mean
(RMSE) and the median of the squared error.

Over N the points give two power laws, fitted per seed and combined with a Student t interval over
seeds (:func:`kanlib.analysis.fits.seed_lines_power_law`):

* best size ∝ N^delta (size: the grid size G for families with grids, else the parameter count);
* best test error ∝ N^-gamma.

For splines of order k below the interpolation threshold the error falls as G^-(k+1), so a frontier
that grows G ∝ N^delta falls as N^-gamma with gamma = (k + 1) delta; a KAN's threshold lies near as
many parameters as training points. A best size at the largest size trained is a lower bound
(``at_size_end``); a point whose training RMSE still fell over its last steps ran out of steps
rather than converging (``still_improving``).

Held-out check (:func:`held_out_predictions`): the laws are refitted without some N and predict the
best size and error there, with a prediction interval, against what was measured; beside them a
joint model of the test error over (G, N) (:func:`fit_error_surface`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

from ..families import chained_families
from .catalog import DATA_AXIS_MIN_SIZES
from .fits import fit_power_law, geometric_mean, learnt_rows, predict_over_seeds, seed_lines_power_law

__all__ = [
    "MEASURES",
    "frontier_points",
    "fit_frontier",
    "held_out_predictions",
    "ErrorSurface",
    "fit_error_surface",
    "recommendations",
    "data_for_target",
    "has_validation_errors",
]

#: measure -> (validation column the model is chosen on, test column it is scored on)
MEASURES: dict[str, tuple[str, str]] = {
    "mean": ("val_rmse", "test_rmse"),
    "median": ("val_median_rmse", "test_median_rmse"),
}
KEYS = ["function", "family", "n_train", "seed"]
#: a chosen level whose training RMSE fell by more than this (relative) over its last
#: STILL_IMPROVING_STEPS steps was still improving when its steps ran out
STILL_IMPROVING_RTOL = 1e-3
STILL_IMPROVING_STEPS = 10


def size_column(family: str) -> str:
    """What a family's best size is: the grid size for families with grid chains, else parameters."""
    return "grid_size" if family in chained_families() else "n_params"


def _still_improving(history: pd.DataFrame | None, chosen: pd.DataFrame) -> pd.Series:
    if history is None or history.empty:
        return pd.Series(False, index=chosen.index)
    keys = [c for c in ("function", "family", "width", "n_train", "seed", "grid_size", "activation") if c in history]
    ends = (
        history.sort_values("step")
        .groupby(keys, dropna=False)["train_rmse"]
        .agg(lambda r: r.iloc[-1] < (1 - STILL_IMPROVING_RTOL) * r.iloc[max(0, len(r) - 1 - STILL_IMPROVING_STEPS)])
        .rename("still_improving")
        .reset_index()
    )
    merged = chosen[keys].astype(object).merge(ends.astype(object), on=keys, how="left")
    return pd.Series(merged["still_improving"].fillna(False).astype(bool).to_numpy(), index=chosen.index)


def frontier_points(results: pd.DataFrame, measure: str = "mean", history: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (function, family, N, seed): the model chosen on validation, its size and errors.

    Columns: the keys, ``measure``, ``size_column`` (grid_size or n_params), ``size`` (its value),
    ``width``, ``grid_size``, ``n_params``, ``val`` (the validation error it was chosen on), ``test``
    (its test error by the same statistic), ``test_rmse``, ``test_interior_rmse``,
    ``test_outside_mse_share``, ``at_size_end`` (the largest size its family trained at that N: a
    lower bound on the best size) and ``still_improving``. Rows of chains that did not learn their
    target, and rows without a validation error, are not candidates.
    """
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {sorted(MEASURES)}; got {measure!r}")
    val, test = MEASURES[measure]
    missing = [c for c in (*KEYS, val, test, "n_params") if c not in results]
    if missing:
        raise ValueError(
            f"the results table lacks {missing}: the frontier needs each model's validation error "
            "(sweeps since the validation split existed; rerun the datasets and models to add it)"
        )
    candidates = learnt_rows(results)
    finite = np.isfinite(candidates[[val, test]].to_numpy(dtype=float)).all(axis=1)
    candidates = candidates[finite & (candidates[test].to_numpy(dtype=float) > 0)].copy()
    if candidates.empty:
        return pd.DataFrame(columns=[*KEYS, "measure", "size_column", "size", "val", "test"])
    candidates["size_column"] = candidates["family"].map(size_column)
    candidates["size"] = np.where(
        candidates["size_column"] == "grid_size",
        candidates["grid_size"].astype(float),
        candidates["n_params"].astype(float),
    )
    chosen = candidates.loc[candidates.groupby(KEYS)[val].idxmin()].copy()
    largest = candidates.groupby(KEYS)["size"].max().rename("_largest")
    chosen = chosen.join(largest, on=KEYS)
    chosen["at_size_end"] = chosen["size"] >= chosen["_largest"]
    chosen["still_improving"] = _still_improving(history, chosen)
    chosen["measure"], chosen["val"], chosen["test"] = measure, chosen[val], chosen[test]
    columns = [*KEYS, "measure", "size_column", "size", "width", "grid_size", "n_params", "val", "test"]
    extra = [c for c in ("test_rmse", "test_interior_rmse", "test_outside_mse_share", "k") if c in chosen]
    out = chosen[columns + extra + ["at_size_end", "still_improving"]]
    return out.sort_values(KEYS).reset_index(drop=True)


def _law(x, y, seeds, confidence: float):
    """The seeds' combined law, or one seed's OLS law (then the interval is over the points)."""
    if len(np.unique(seeds)) >= 2:
        return seed_lines_power_law(x, y, seeds, confidence)
    return fit_power_law(x, y, confidence)


def fit_frontier(points: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """delta (best size ∝ N^delta) and gamma (best test error ∝ N^-gamma) per (function, family,
    measure) with their intervals; ``theory_gamma`` = (k + 1) delta for families with grids. Groups
    with fewer than 3 data sizes get no fit (a row with a note)."""
    rows = []
    for (function, family, measure), group in points.groupby(["function", "family", "measure"], sort=True):
        base = {
            "function": function,
            "family": family,
            "measure": measure,
            "size_column": group["size_column"].iloc[0],
            "n_sizes": group["n_train"].nunique(),
            "n_seeds": group["seed"].nunique(),
            "at_size_end": int(group["at_size_end"].sum()),
            "still_improving": int(group["still_improving"].sum()),
            "n_points": len(group),
        }
        if base["n_sizes"] < 3:
            rows.append({**base, "note": f"{base['n_sizes']} data size(s): a law needs at least 3"})
            continue
        n, seeds = group["n_train"].to_numpy(float), group["seed"].to_numpy()
        size_law = _law(n, group["size"].to_numpy(float), seeds, confidence)
        error_law = _law(n, group["test"].to_numpy(float), seeds, confidence)
        k = group["k"].dropna().iloc[0] if "k" in group and group["k"].notna().any() else None
        grids = family in chained_families() and k is not None
        rows.append(
            {
                **base,
                "delta": -size_law.alpha,
                "delta_low": -size_law.alpha_high,
                "delta_high": -size_law.alpha_low,
                "size_prefactor": size_law.prefactor,
                "gamma": error_law.alpha,
                "gamma_low": error_law.alpha_low,
                "gamma_high": error_law.alpha_high,
                "error_prefactor": error_law.prefactor,
                "ci_method": error_law.ci_method,
                "confidence": confidence,
                "theory_gamma": (float(k) + 1) * -size_law.alpha if grids else np.nan,
                "note": "",
            }
        )
    return pd.DataFrame(rows)


# ---- the joint model of the error over (G, N) ---------------------------------------------------------


@dataclass(frozen=True)
class ErrorSurface:
    """test error(G, N) = A G^-a + B (G / N)^b: an approximation term falling with the grid and a
    term growing with the grid points per training point (the coefficients the data no longer pin
    down). Its best grid at N is G* = (a A / (b B))^(1/(a+b)) N^(b/(a+b)), so delta = b / (a + b)
    and gamma = a delta. Fitted robustly on log10 values (scipy.optimize.least_squares, soft L1)."""

    A: float
    a: float
    B: float
    b: float
    rms_log10_residual: float
    n_cells: int

    def __call__(self, grid, n) -> np.ndarray:
        grid, n = np.asarray(grid, dtype=float), np.asarray(n, dtype=float)
        return self.A * grid ** (-self.a) + self.B * (grid / n) ** self.b

    def best(self, n: float, grids: Sequence[float]) -> tuple[float, float]:
        """(best grid, its error) at n, the grid within the range trained (a fine geometric scan)."""
        scan = np.geomspace(min(grids), max(grids), 2000)
        errors = self(scan, n)
        return float(scan[np.argmin(errors)]), float(errors.min())


def fit_error_surface(table: pd.DataFrame, error: str = "test_rmse") -> ErrorSurface:
    """Fit :class:`ErrorSurface` to the geometric means over seeds of ``error`` per (grid_size,
    n_train) of one (function, family with grids) table; several starts, the best kept."""
    cells = table.groupby(["grid_size", "n_train"])[error].agg(geometric_mean).dropna()
    if len(cells) < 5:
        raise ValueError(f"an error surface needs at least 5 (grid_size, n_train) cells; got {len(cells)}")
    grid = cells.index.get_level_values(0).to_numpy(float)
    n = cells.index.get_level_values(1).to_numpy(float)
    log_y = np.log10(cells.to_numpy(float))

    def residuals(p):  # p = log10 A, a, log10 B, b
        model = 10.0 ** p[0] * grid ** (-p[1]) + 10.0 ** p[2] * (grid / n) ** p[3]
        return np.log10(model) - log_y

    best = None
    for a0 in (1.0, 2.0, 4.0):
        for b0 in (0.5, 1.0, 2.0):
            start = [log_y.max(), a0, log_y.min() + 1, b0]
            fit = optimize.least_squares(
                residuals, start, loss="soft_l1", f_scale=0.3, bounds=([-30, 0, -30, 0], [30, 10, 30, 10])
            )
            if best is None or fit.cost < best.cost:
                best = fit
    p = best.x
    return ErrorSurface(
        A=float(10.0 ** p[0]),
        a=float(p[1]),
        B=float(10.0 ** p[2]),
        b=float(p[3]),
        rms_log10_residual=float(np.sqrt(np.mean(residuals(p) ** 2))),
        n_cells=len(cells),
    )


def held_out_predictions(
    points: pd.DataFrame,
    results: pd.DataFrame | None = None,
    held_out: Sequence[int] | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Refit without the ``held_out`` data sizes (default: the largest) and predict each one's best
    size and best test error, per (function, family, measure), against the geometric means over seeds
    measured there. ``method`` "frontier": the laws of :func:`fit_frontier` with prediction intervals
    (:func:`kanlib.analysis.fits.predict_over_seeds`); "surface": :func:`fit_error_surface` on the
    results of the other sizes (families with grids; no interval). ``log10_error``: log10
    (predicted / measured)."""
    rows = []
    for (function, family, measure), group in points.groupby(["function", "family", "measure"], sort=True):
        sizes = sorted(group["n_train"].unique())
        targets = list(held_out) if held_out is not None else sizes[-1:]
        for target in targets:
            fitted = group[group["n_train"] != target]
            there = group[group["n_train"] == target]
            if there.empty or fitted["n_train"].nunique() < 3 or fitted["seed"].nunique() < 2:
                continue
            measured_size, measured = geometric_mean(there["size"]), geometric_mean(there["test"])
            n, seeds = fitted["n_train"].to_numpy(float), fitted["seed"].to_numpy()
            base = {"function": function, "family": family, "measure": measure, "held_out_n": int(target)}
            size = predict_over_seeds(n, fitted["size"].to_numpy(float), seeds, target, confidence)
            error = predict_over_seeds(n, fitted["test"].to_numpy(float), seeds, target, confidence)
            rows.append(
                {
                    **base,
                    "method": "frontier",
                    "predicted_size": size[0],
                    "predicted_size_low": size[1],
                    "predicted_size_high": size[2],
                    "measured_size": measured_size,
                    "size_inside": size[1] <= measured_size <= size[2],
                    "predicted_test": error[0],
                    "predicted_test_low": error[1],
                    "predicted_test_high": error[2],
                    "measured_test": measured,
                    "test_inside": error[1] <= measured <= error[2],
                    "log10_error": float(np.log10(error[0] / measured)),
                }
            )
            if results is None or family not in chained_families():
                continue
            table = learnt_rows(results)
            table = table[(table["function"] == function) & (table["family"] == family)]
            table = table[table["n_train"] != target]
            try:
                surface = fit_error_surface(table, MEASURES[measure][1])
            except ValueError:
                continue
            grid, predicted = surface.best(target, table["grid_size"].unique())
            rows.append(
                {
                    **base,
                    "method": "surface",
                    "predicted_size": grid,
                    "measured_size": measured_size,
                    "predicted_test": predicted,
                    "measured_test": measured,
                    "log10_error": float(np.log10(predicted / measured)),
                }
            )
    return pd.DataFrame(rows)


def recommendations(points: pd.DataFrame, data_sizes: Sequence[int], confidence: float = 0.95) -> pd.DataFrame:
    """ "For N = ..., use size ≈ ... (expected test error ... [interval])" per (function, family,
    measure) from the laws over all measured N; the interval is for one new seed (what a user who
    trains once may expect, :func:`kanlib.analysis.fits.predict_over_seeds` ``new_seed=True``).
    ``extrapolated`` marks an N outside the measured range."""
    rows = []
    for (function, family, measure), group in points.groupby(["function", "family", "measure"], sort=True):
        if group["n_train"].nunique() < 3 or group["seed"].nunique() < 2:
            continue
        n, seeds = group["n_train"].to_numpy(float), group["seed"].to_numpy()
        for target in data_sizes:
            size = predict_over_seeds(n, group["size"].to_numpy(float), seeds, target, confidence, new_seed=True)
            error = predict_over_seeds(n, group["test"].to_numpy(float), seeds, target, confidence, new_seed=True)
            rows.append(
                {
                    "function": function,
                    "family": family,
                    "measure": measure,
                    "n_train": int(target),
                    "size_column": group["size_column"].iloc[0],
                    "size": size[0],
                    "test": error[0],
                    "test_low": error[1],
                    "test_high": error[2],
                    "extrapolated": not (n.min() <= target <= n.max()),
                }
            )
    return pd.DataFrame(rows)


def data_for_target(points: pd.DataFrame, target: float, confidence: float = 0.95) -> pd.DataFrame:
    """The N each (function, family, measure) needs for a best test error of ``target``: each seed's
    law solved for N (log10 N = (log10 target - intercept) / slope), combined as the mean of log10 N
    with a Student t interval over seeds (none for one seed). A seed whose error does not fall with N
    never gets there (``n_needed`` NaN when none does); ``extrapolated`` marks an N outside the
    measured range."""
    rows = []
    for (function, family, measure), group in points.groupby(["function", "family", "measure"], sort=True):
        lines = [
            stats.linregress(np.log10(seed_rows["n_train"].astype(float)), np.log10(seed_rows["test"].astype(float)))
            for _, seed_rows in group.groupby("seed")
            if seed_rows["n_train"].nunique() >= 2
        ]
        log_n = np.array([(np.log10(target) - line.intercept) / line.slope for line in lines if line.slope < 0])
        row = {"function": function, "family": family, "measure": measure, "target": target}
        if log_n.size == 0:
            rows.append({**row, "n_needed": np.nan, "n_needed_low": np.nan, "n_needed_high": np.nan})
            continue
        half = (
            stats.t.ppf(0.5 + confidence / 2, log_n.size - 1) * log_n.std(ddof=1) / np.sqrt(log_n.size)
            if log_n.size > 1
            else np.nan
        )
        center = log_n.mean()
        measured = group["n_train"]
        rows.append(
            {
                **row,
                "n_needed": 10.0**center,
                "n_needed_low": 10.0 ** (center - half),
                "n_needed_high": 10.0 ** (center + half),
                "extrapolated": not (measured.min() <= 10.0**center <= measured.max()),
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class FrontierReport:
    """Everything the report says about the data axis, for both measures (:func:`frontier_report`)."""

    points: pd.DataFrame  # frontier_points, both measures
    fits: pd.DataFrame  # fit_frontier
    held_out: pd.DataFrame  # held_out_predictions (the largest N)
    recommendations: pd.DataFrame  # at each measured N and two doublings beyond
    targets: pd.DataFrame  # data_for_target at the report's target RMSE

    @property
    def empty(self) -> bool:
        return self.fits.empty


def has_validation_errors(results: pd.DataFrame) -> bool:
    """Whether the results carry validation errors (datasets written before the validation split have
    none), which the data axis chooses its models on."""
    return "val_rmse" in results and bool(results["val_rmse"].notna().any())


def frontier_report(
    results: pd.DataFrame, history: pd.DataFrame | None = None, confidence: float = 0.95, target_rmse: float = 1e-4
) -> FrontierReport:
    """The data axis of a sweep with at least 3 N (a law over N needs 3): frontier points by both
    measures, their laws, the held-out check at the largest N, recommendations and the N each family
    needs for ``target_rmse`` (empty tables with fewer N or no validation errors)."""
    empty = FrontierReport(*(pd.DataFrame() for _ in range(5)))
    if results["n_train"].nunique() < DATA_AXIS_MIN_SIZES or not has_validation_errors(results):
        return empty
    points = pd.concat([frontier_points(results, measure, history) for measure in MEASURES], ignore_index=True)
    if points.empty:
        return empty
    sizes = sorted(points["n_train"].unique())
    beyond = [int(sizes[-1] * 2), int(sizes[-1] * 4)]
    return FrontierReport(
        points=points,
        fits=fit_frontier(points, confidence),
        held_out=held_out_predictions(points, results, confidence=confidence),
        recommendations=recommendations(points, [*map(int, sizes), *beyond], confidence),
        targets=data_for_target(points, target_rmse, confidence),
    )
