"""The numbers of a sweep's report: which configurations it holds, every power-law fit, the seed's
published table beside ours, the seed spread, the failed grid levels, the family comparison.

Everything here returns numbers (DataFrames, dicts); :mod:`~kanlib.analysis.summary` turns them
into the text a researcher reads, :mod:`~kanlib.analysis.metrics` into MLflow metric names and
:mod:`~kanlib.analysis.laws` into the machine-readable laws file. The tables' columns are those of
:mod:`kanlib.analysis.fits`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..functions import function_slug
from .families import compare_families
from .fits import (
    CONFIG_COLUMNS,
    DEFAULT_DIVERGENCE_FACTOR,
    chain_rows,
    fit_scaling_laws,
    learnt_rows,
    rmse_pivot,
    summarize_over_seeds,
)
from .reference import SEED_GRID_SIZES, SEED_TRAIN_SIZES, seed_reference_frame

__all__ = [
    "FIT_SPECS",
    "SEED_CONFIGURATION",
    "configurations",
    "config_label",
    "config_dir",
    "select_configuration",
    "exponent_table",
    "report_exponents",
    "fits_of",
    "family_comparison",
    "seed_exponents",
    "seed_comparison",
    "seed_spread",
    "failed_rows",
]

#: The fits of the exponent table: (x, metric).
FIT_SPECS: tuple[tuple[str, str], ...] = (
    ("grid_size", "test_rmse"),
    ("grid_size", "train_rmse"),
    ("n_params", "test_rmse"),
    ("n_params", "train_rmse"),
    # the KAN paper's Fig. 2.3: the mean is dominated by a few boundary points, the median is not
    ("grid_size", "test_median_rmse"),
    # the test points inside the training points' range at every layer (kanlib.training.range_split_errors)
    ("grid_size", "test_interior_rmse"),
)
#: Errors fitted only where the table has them (tables written before they were measured have none).
OPTIONAL_METRICS: tuple[str, ...] = ("test_median_rmse", "test_interior_rmse")

#: (function, width, k) of the seed experiment, whose published table :mod:`kanlib.analysis.reference` holds.
SEED_CONFIGURATION: tuple[str, str, int] = ("exp_sin_pi_x_plus_y2", "2-1-1", 3)


# ---- configurations -----------------------------------------------------------------------------------------


def configurations(results: pd.DataFrame) -> list[tuple[str, str, int]]:
    """The KAN (function, width, k) configurations of a results table, in table order (MLP rows,
    which have no k, are the family comparison's: :mod:`kanlib.analysis.families`)."""
    results = chain_rows(results)
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
    frame = chain_rows(frame)
    mask = (
        (frame["function"].astype(str) == str(function))
        & (frame["width"].astype(str) == str(width))
        & (frame["k"].astype(int) == int(k))
    )
    return frame[mask]


# ---- exponents ----------------------------------------------------------------------------------------------


def exponent_table(
    results: pd.DataFrame,
    confidence: float = 0.95,
    divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR,
) -> pd.DataFrame:
    """Every fit of :data:`FIT_SPECS` for every (function, width, k, N) of ``results``.

    One row per fit, the columns of :func:`kanlib.analysis.fits.fit_scaling_laws` (``x`` says the
    scaling variable, ``metric`` the error). Groups that cannot be fitted (one grid size, failed
    jobs, everything beyond the threshold) get NaN ``alpha`` and the reason in ``note``. KAN rows
    only; the median-based and interior RMSEs' fits only where the table has that column with a value
    (tables written before it existed have none).
    """
    results = learnt_rows(chain_rows(results))  # a chain that did not learn its target measures no law
    frames = [
        fit_scaling_laws(results, x=x, metric=metric, confidence=confidence, divergence_factor=divergence_factor)
        for x, metric in FIT_SPECS
        if metric not in OPTIONAL_METRICS or (metric in results.columns and results[metric].notna().any())
    ]
    table = pd.concat(frames, ignore_index=True)
    order = {spec: index for index, spec in enumerate(FIT_SPECS)}
    table["_order"] = [order[(x, m)] for x, m in zip(table["x"], table["metric"])]
    table = table.sort_values(["function", "width", "k", "_order", "n_train"], kind="stable")
    return table.drop(columns="_order").reset_index(drop=True)


def report_exponents(results: pd.DataFrame, settings: dict) -> pd.DataFrame:
    """:func:`exponent_table` with the report's settings (confidence, divergence_factor)."""
    return exponent_table(
        results,
        confidence=settings["confidence"],
        divergence_factor=settings["divergence_factor"],
    )


def fits_of(exponents: pd.DataFrame, x: str, metric: str) -> pd.DataFrame:
    """The rows of one fit (scaling variable ``x``, error ``metric``), by increasing N."""
    rows = exponents[(exponents["x"] == x) & (exponents["metric"] == metric)]
    return rows.sort_values("n_train")


def family_comparison(results: pd.DataFrame, settings: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`kanlib.analysis.families.compare_families` with the report's settings."""
    return compare_families(
        learnt_rows(results),
        confidence=settings["confidence"],
        divergence_factor=settings["divergence_factor"],
        target_rmse=settings.get("target_rmse", 1e-4),
    )


# ---- the seed's published table -----------------------------------------------------------------------------


def seed_exponents() -> pd.DataFrame:
    """The test-RMSE-vs-G fits of the seed's published table (the same rule as ours), indexed by N."""
    function, width, k = SEED_CONFIGURATION
    reference = seed_reference_frame().assign(function=function, width=width, k=k, seed=0)
    return fit_scaling_laws(reference, x="grid_size", metric="test_rmse").set_index("n_train")


def _within_2x(ratios: np.ndarray) -> int:
    """How many finite ratios ours / seed's lie within a factor 2 of 1."""
    finite = ratios[np.isfinite(ratios)]
    return int(np.sum(np.abs(np.log2(finite)) <= 1.0 + 1e-9))


def _below_thresholds(ratio: pd.DataFrame, ours: pd.DataFrame, theirs: pd.DataFrame) -> np.ndarray:
    """The finite cells of ``ratio`` (rows N, columns G) at or below both runs' interpolation thresholds."""
    threshold_ours = ours["threshold_grid"].reindex(ratio.index).fillna(np.inf).to_numpy(dtype=float)
    threshold_theirs = theirs["threshold_grid"].reindex(ratio.index).fillna(np.inf).to_numpy(dtype=float)
    grids = ratio.columns.to_numpy(dtype=float)
    below = grids[None, :] <= np.minimum(threshold_ours, threshold_theirs)[:, None]
    values = ratio.to_numpy(dtype=float)[below]
    return values[np.isfinite(values)]


def seed_comparison(results: pd.DataFrame, exponents: pd.DataFrame | None = None) -> dict | None:
    """Our RMSE beside the seed's published one, for the seed's configuration only.

    ``results`` holds one configuration. Returns None unless it is :data:`SEED_CONFIGURATION`
    and shares at least one (N, G) cell with the seed's table; else a dict with ``seed_test``
    (the seed's published test RMSE, rows N, columns G, over the common cells),
    ``ratio_test`` and ``ratio_train`` (ours / seed's), ``cells`` (number of common cells with a
    finite ratio) and ``within_2x`` (how many of them agree within a factor 2). With our
    ``exponents`` (the configuration's :func:`exponent_table`), also ``cells_below`` and
    ``within_2x_below``: the same counts over the cells at or below both runs' interpolation
    thresholds (past a threshold the test RMSE depends on the data sample and the initialisation).
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
    out["cells"] = int(np.isfinite(ratios).sum())
    out["within_2x"] = _within_2x(ratios)
    if exponents is not None:
        ours = fits_of(exponents, "grid_size", "test_rmse").set_index("n_train")
        below = _below_thresholds(out["ratio_test"], ours, seed_exponents())
        out["cells_below"] = int(below.size)
        out["within_2x_below"] = _within_2x(below)
    return out


# ---- seeds and failures -------------------------------------------------------------------------------------


def seed_spread(results: pd.DataFrame) -> pd.DataFrame | None:
    """Largest / smallest test RMSE over seeds, rows N, columns G; None when no cell has two seeds."""
    summary = summarize_over_seeds(results, metrics=["test_rmse"])
    if (summary["test_rmse_n_seeds"] <= 1).all():
        return None
    spread = summary.assign(spread=summary["test_rmse_max"] / summary["test_rmse_min"])
    return spread.pivot(index="n_train", columns="grid_size", values="spread")


def failed_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The grid levels without a finite test or train RMSE (failed or diverged jobs)."""
    finite = np.isfinite(results["test_rmse"].to_numpy(dtype=float)) & np.isfinite(
        results["train_rmse"].to_numpy(dtype=float)
    )
    return results[~finite]
