"""Model families compared by their scaling exponents: test RMSE against the parameter count P.

Conventions, stated once:

* A *point* is one trained model configuration at one parameter count, seeds averaged
  geometrically: a KAN grid level (function, width, k, N, G) or an MLP (function, width,
  activation, N). Its ``n_params`` is the model's trainable scalars.
* A family's exponent α is the slope of ``test RMSE = C * P^-α`` (least squares in log-log space)
  over the family's *lower envelope below the interpolation threshold*, per (function, N):

  1. eligible points: finite, positive test and train RMSE; for a KAN the grid levels its own
     chain fit used (:func:`kanlib.analysis.fits.fit_scaling_laws`: below the chain's interpolation
     threshold, test/train ratio under the divergence factor); for an MLP the points whose test/train
     RMSE ratio is under the divergence factor (an MLP past that ratio interpolates its data);
  2. the lower envelope of the eligible points: sorted by P, a point is kept when its test RMSE is
     below that of every point with fewer parameters (else it is *dominated*); this is the best
     test RMSE reachable at each parameter count, and it ends at the family's minimum test RMSE
     (past it, more parameters did not help: the family's interpolation threshold).

  With one seed the interval is the OLS one (Student t); with several, a Student t interval over
  the seeds' own exponents at the envelope's points (:func:`kanlib.analysis.fits.seed_lines_power_law`).
* Reference rates (the KAN paper, Sec. 3.1): α = k+1 for KANs with splines of order k, and the
  Sharma-Kaplan rate α = (k+1)/d for MLPs on d inputs (the paper draws 4 and 4/d).
* "Parameters to reach" an RMSE: the smallest P among the family's points whose seed-averaged
  test RMSE is at or below it (every finite point counts, eligible or not); NaN when none does.

No torch here (the analysis layer).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..families import REGISTRY, chained_families, describe
from .fits import (
    DEFAULT_DIVERGENCE_FACTOR,
    chain_rows,
    fit_power_law,
    fit_scaling_laws,
    geometric_mean,
    seed_lines_power_law,
)

__all__ = [
    "FAMILIES",
    "COMPARISON_COLUMNS",
    "has_families",
    "family_points",
    "lower_envelope",
    "compare_families",
    "params_to_reach",
]

#: The families, in report order (kanlib.families.REGISTRY).
FAMILIES = tuple(REGISTRY)

COMPARISON_COLUMNS = [
    "function",
    "n_train",
    "family",
    "alpha",
    "alpha_low",
    "alpha_high",
    "ci_method",
    "confidence",
    "theory_alpha",
    "n_points",
    "n_seeds",
    "points_used",
    "points_excluded",
    "best_test_rmse",
    "best_n_params",
    "target_rmse",
    "params_at_target",
    "common_rmse",
    "params_at_common",
    "note",
]


def has_families(results: pd.DataFrame) -> bool:
    """Whether a results table holds more than one model family (a comparison to report)."""
    return "family" in results.columns and results["family"].astype(str).nunique() > 1


def family_points(
    results: pd.DataFrame, divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR, confidence: float = 0.95
) -> pd.DataFrame:
    """Every point of every family (seeds averaged), with whether it is eligible for the fit and why not.

    Columns: ``function, n_train, family, width, activation, k, grid_size, n_params, test_rmse,
    train_rmse, n_seeds, label, depth`` (hidden layers), ``eligible`` and ``reason`` (empty when
    eligible). Rows of failed jobs (non-finite RMSE) are left out.
    """
    frame = results.copy()
    if "family" not in frame.columns:
        frame["family"] = "kan"  # (a table written before the MLP family existed: all KANs)
    if "activation" not in frame.columns:
        frame["activation"] = None
    finite = np.isfinite(frame["test_rmse"].to_numpy(float)) & np.isfinite(frame["train_rmse"].to_numpy(float))
    positive = (frame["test_rmse"].to_numpy(float) > 0) & (frame["train_rmse"].to_numpy(float) > 0)
    frame = frame[finite & positive]
    keys = ["function", "n_train", "family", "width", "activation", "k", "grid_size"]
    # an MLP has no k and no grid size, a KAN no activation: NaN keys are groups too
    points = (
        frame.assign(n_params=frame["n_params"].astype(float))
        .groupby(keys, sort=True, dropna=False)
        .agg(
            n_params=("n_params", "mean"),
            test_rmse=("test_rmse", geometric_mean),
            train_rmse=("train_rmse", geometric_mean),
            n_seeds=("seed", "nunique"),
        )
        .reset_index()
    )
    points["label"] = [describe(row["family"]).point_label(row) for row in points.to_dict("records")]
    points["depth"] = points["width"].astype(str).str.count("-") - 1  # hidden layers
    points["eligible"] = True
    points["reason"] = ""

    # families with chains (KANs): the grid levels each chain's own fit used (below its interpolation threshold)
    chained = points["family"].isin(chained_families())
    kan = chain_rows(results)
    if not kan.empty:
        chain_fits = fit_scaling_laws(
            kan, x="n_params", metric="test_rmse", confidence=confidence, divergence_factor=divergence_factor
        )
        for fit in chain_fits.itertuples(index=False):
            used = {float(g) for g in str(fit.points_used).split(",") if g}
            excluded = dict(item.split(": ", 1) for item in str(fit.points_excluded).split("; ") if ": " in item)
            mask = (
                chained
                & (points["function"] == fit.function)
                & (points["width"].astype(str) == str(fit.width))
                & (points["n_train"] == fit.n_train)
            )
            for index in points.index[mask]:
                grid = float(points.at[index, "grid_size"])
                if grid not in used:
                    points.at[index, "eligible"] = False
                    reason = next((r for g, r in excluded.items() if float(g) == grid), "not used by its chain's fit")
                    points.at[index, "reason"] = f"past its chain's interpolation threshold ({reason})"
    # the other families (MLPs): interpolating when test RMSE exceeds train RMSE by the divergence factor
    ratio = points["test_rmse"] / points["train_rmse"]
    interpolating = ~chained & (ratio > divergence_factor)
    points.loc[interpolating, "eligible"] = False
    points.loc[interpolating, "reason"] = [
        f"interpolating: test/train RMSE ratio {r:.3g} > {divergence_factor:g}" for r in ratio[interpolating]
    ]
    return points.reset_index(drop=True)


def lower_envelope(n_params, test_rmse) -> tuple[np.ndarray, list[str]]:
    """Which points lie on the lower envelope of (P, RMSE), and why each other one does not.

    Sorted by P (ties: the lower RMSE first), a point is on the envelope when its RMSE is strictly
    below the RMSE of every point with fewer (or as many) parameters. Returns a boolean mask in
    the input's order and, per point, '' or ``dominated by P=<p> (test RMSE <r>)``.
    """
    n_params = np.asarray(n_params, dtype=float)
    test_rmse = np.asarray(test_rmse, dtype=float)
    order = np.lexsort((test_rmse, n_params))
    on = np.zeros(n_params.size, dtype=bool)
    reasons = [""] * n_params.size
    best_index = None
    for index in order:
        if best_index is None or test_rmse[index] < test_rmse[best_index]:
            on[index] = True
            best_index = index
        else:
            reasons[index] = f"dominated by P={n_params[best_index]:g} (test RMSE {test_rmse[best_index]:.3g})"
    return on, reasons


def params_to_reach(points: pd.DataFrame, rmse: float) -> float:
    """The smallest parameter count among ``points`` whose test RMSE is at or below ``rmse`` (NaN if none)."""
    reached = points[points["test_rmse"] <= rmse]
    return float(reached["n_params"].min()) if not reached.empty else float("nan")


def _fit_family(group: pd.DataFrame, envelope: pd.DataFrame, confidence: float) -> tuple[dict, list[str]]:
    """The power-law fit over the envelope's points (per-seed rows when several seeds)."""
    notes = []
    if len(envelope) < 2:
        return {}, [f"only {len(envelope)} point(s) on the envelope; a power-law fit needs at least 2"]
    keys = ["family", "width", "activation", "k", "grid_size"]
    selected = group.merge(envelope[keys], on=keys, how="inner")
    seeds = selected["seed"].nunique()
    try:
        if seeds >= 2:
            fit = seed_lines_power_law(
                selected["n_params"].to_numpy(float),
                selected["test_rmse"].to_numpy(float),
                selected["seed"].to_numpy(),
                confidence=confidence,
            )
        else:
            fit = fit_power_law(envelope["n_params"].to_numpy(float), envelope["test_rmse"].to_numpy(float), confidence)
    except ValueError as error:
        return {}, [f"fit failed: {error}"]
    if fit.ci_method == "ols-t" and fit.n_points == 2:
        notes.append("2 points: exact fit, no confidence interval")
    values = {
        "alpha": fit.alpha,
        "alpha_low": fit.alpha_low,
        "alpha_high": fit.alpha_high,
        "ci_method": fit.ci_method,
        "n_points": fit.n_points,
        "n_seeds": int(seeds),
    }
    return values, notes


def compare_families(
    results: pd.DataFrame,
    confidence: float = 0.95,
    divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR,
    target_rmse: float = 1e-4,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each family's exponent in P per (function, N), and the points with their role in the fit.

    Returns ``(comparison, points)``. ``comparison`` has :data:`COMPARISON_COLUMNS`, one row per
    (function, N, family): the fitted α with its interval, the reference α (KAN k+1, MLP (k+1)/d
    with k the sweep's spline order, 3 without KAN rows), the points used and excluded with the
    reason, the best test RMSE and its P, the P needed for ``target_rmse`` and for the *common*
    RMSE (the largest of the families' best RMSEs: the lowest level every family reaches).
    ``points`` is :func:`family_points` plus ``on_envelope`` and ``used`` (in the fit).
    """
    frame = results.copy()
    if "family" not in frame.columns:
        frame["family"] = "kan"  # (a table written before the MLP family existed: all KANs)
    points = family_points(frame, divergence_factor, confidence)
    points["on_envelope"] = False
    points["used"] = False
    kan = chain_rows(frame)
    spline_order = int(kan["k"].iloc[0]) if not kan.empty else 3
    rows = []
    for (function, n_train), at_n in points.groupby(["function", "n_train"], sort=True):
        n_var = int(str(at_n["width"].iloc[0]).split("-")[0])
        family_rows = []
        present = set(at_n["family"])  # registered families in their order, then any other in the table
        for family in [f for f in FAMILIES if f in present] + sorted(present - set(FAMILIES)):
            members = at_n[at_n["family"] == family]
            eligible = members[members["eligible"]]
            on, reasons = lower_envelope(eligible["n_params"], eligible["test_rmse"])
            envelope = eligible[on]
            points.loc[envelope.index, "on_envelope"] = True
            for index, reason in zip(eligible.index, reasons):
                if reason:
                    points.at[index, "reason"] = reason
            group = frame[(frame["family"] == family) & (frame["function"] == function) & (frame["n_train"] == n_train)]
            group = group[np.isfinite(group["test_rmse"].astype(float)) & (group["test_rmse"].astype(float) > 0)]
            fit, notes = _fit_family(group, envelope, confidence)
            if fit:
                points.loc[envelope.index, "used"] = True
            k = int(members["k"].iloc[0]) if family in chained_families() else spline_order
            best = members.loc[members["test_rmse"].idxmin()]
            excluded = members[~points.loc[members.index, "used"]]
            family_rows.append(
                {
                    "function": function,
                    "n_train": int(n_train),
                    "family": family,
                    "alpha": np.nan,
                    "alpha_low": np.nan,
                    "alpha_high": np.nan,
                    "ci_method": "",
                    "confidence": confidence,
                    "n_points": 0,
                    "n_seeds": int(members["n_seeds"].max()),
                    **fit,
                    "theory_alpha": describe(family).theory_alpha(k, n_var),
                    "points_used": "; ".join(
                        f"{r.label} (P={int(r.n_params)})" for r in envelope.sort_values("n_params").itertuples()
                    )
                    if fit
                    else "",
                    "points_excluded": "; ".join(
                        f"{r.label} (P={int(r.n_params)}): {points.at[r.Index, 'reason'] or 'not fitted'}"
                        for r in excluded.sort_values("n_params").itertuples()
                    ),
                    "best_test_rmse": float(best["test_rmse"]),
                    "best_n_params": float(best["n_params"]),
                    "target_rmse": float(target_rmse),
                    "params_at_target": params_to_reach(members, target_rmse),
                    "note": "; ".join(notes),
                }
            )
        common = max(row["best_test_rmse"] for row in family_rows)
        for row in family_rows:
            members = at_n[at_n["family"] == row["family"]]
            row["common_rmse"] = common
            row["params_at_common"] = params_to_reach(members, common)
        rows.extend(family_rows)
    comparison = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    return comparison.astype({"n_train": "int64", "n_points": "int64", "n_seeds": "int64"}), points
