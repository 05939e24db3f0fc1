"""Scaling-law analysis of KAN sweeps: power-law fits, thresholds, summaries.

Pure numpy / scipy / pandas; no torch. The functions take the tables written by
the workflow's aggregate step:

results table (one row per trained grid level)
    ``function, width, k, n_train, seed, grid_size, n_params, steps,
    optimizer, train_rmse, test_rmse, wall_time_s, device, mlflow_run_id``;
    ``test_rmse`` may be NaN for a failed job.
history table (one row per training step)
    ``function, width, k, n_train, seed, grid_size, step, cumulative_step,
    train_rmse, test_rmse``.

Conventions
-----------
* A power law is written ``y = C * x**(-alpha)``, so a *positive* ``alpha``
  means the error falls with ``x``. Theory for splines of order ``k`` below
  the interpolation threshold: ``alpha = k + 1`` (4 for cubic splines).
* Fits are ordinary least squares of ``log10 y`` on ``log10 x`` (:func:`scipy.stats.linregress`).
* Averages over seeds are geometric means (means in log space), the natural
  average for errors spanning many decades. Non-finite and non-positive values
  are left out of such averages.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from ..families import chained_families

__all__ = [
    "CONFIG_COLUMNS",
    "GROUP_COLUMNS",
    "chain_rows",
    "learning_mask",
    "learnt_rows",
    "not_learnt_chains",
    "DEFAULT_DIVERGENCE_FACTOR",
    "PowerLawFit",
    "FinitePoints",
    "InterpolationThreshold",
    "DataScalingSummary",
    "drop_nonfinite_points",
    "fit_power_law",
    "seed_lines_power_law",
    "predict_over_seeds",
    "find_interpolation_threshold",
    "geometric_mean",
    "geometric_std",
    "summarize_over_seeds",
    "require_single_configuration",
    "fit_scaling_laws",
    "fit_points",
    "rmse_pivot",
    "data_scaling_table",
]

#: Columns that identify one model configuration (target, architecture, spline order).
CONFIG_COLUMNS: tuple[str, ...] = ("function", "width", "k")

#: Columns that identify one scaling curve (a configuration at one training-set size).
GROUP_COLUMNS: tuple[str, ...] = ("function", "width", "k", "n_train")

#: Test/train RMSE ratio above which a point counts as overfitting (see
#: :func:`find_interpolation_threshold`).
DEFAULT_DIVERGENCE_FACTOR: float = 10.0

_METRICS = ("train_rmse", "test_rmse", "test_median_rmse", "test_interior_rmse")
_X_COLUMNS = ("grid_size", "n_params")


# --------------------------------------------------------------------------
# Power-law fits
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerLawFit:
    """Result of fitting ``y = prefactor * x**(-alpha)``.

    Attributes
    ----------
    alpha : float
        Exponent; ``alpha = -slope`` of the log10-log10 OLS line.
    alpha_low, alpha_high : float
        Confidence interval of ``alpha`` at level ``confidence``. NaN when it
        cannot be estimated (exactly two points: the line goes through both and
        no residual is left to estimate the error from).
    alpha_stderr : float
        Standard error of the slope (OLS; over seeds: of the mean of the seeds' slopes); NaN for
        two-point fits.
    prefactor : float
        ``C`` in ``y = C x**(-alpha)``, i.e. ``10**intercept``.
    n_points : int
        Number of (x, y) points in the fit (all seeds counted).
    r_squared : float
        Coefficient of determination in log space. NaN when all ``y`` are
        equal (total variance zero).
    x_used : tuple of float
        The distinct ``x`` values used, increasing.
    confidence : float
        Level of the interval, e.g. 0.95.
    ci_method : str
        ``"ols-t"`` (one seed: standard error with Student t, ``n - 2`` dof) or ``"seed-lines-t"``
        (several: the mean of the seeds' own exponents with a Student t interval over seeds).
    log10_x_center, log10_y_center : float
        Centroid of the data in log10 space; the fitted line passes through it.
        Used as the pivot of :meth:`band`.
    """

    alpha: float
    alpha_low: float
    alpha_high: float
    alpha_stderr: float
    prefactor: float
    n_points: int
    r_squared: float
    x_used: tuple[float, ...]
    confidence: float
    ci_method: str
    log10_x_center: float
    log10_y_center: float

    @property
    def exponent(self) -> float:
        """Alias of :attr:`alpha`."""
        return self.alpha

    def predict(self, x: np.ndarray | Sequence[float] | float) -> np.ndarray:
        """Evaluate the fitted line ``prefactor * x**(-alpha)``."""
        return self.prefactor * np.asarray(x, dtype=float) ** (-self.alpha)

    def band(self, x: np.ndarray | Sequence[float] | float) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper curves obtained by varying ``alpha`` over its interval.

        Both curves pivot about the data centroid ``(10**log10_x_center,
        10**log10_y_center)`` where OLS pins the line best, so the band shows
        the exponent's uncertainty only (not the intercept's). NaN when the
        interval is NaN.
        """
        log_x = np.log10(np.asarray(x, dtype=float)) - self.log10_x_center
        curves = [10.0 ** (self.log10_y_center - a * log_x) for a in (self.alpha_low, self.alpha_high)]
        return np.fmin(*curves), np.fmax(*curves)


@dataclass(frozen=True)
class FinitePoints:
    """Points left after :func:`drop_nonfinite_points`.

    Attributes
    ----------
    x, y : numpy.ndarray
        Kept points.
    groups : numpy.ndarray or None
        Kept group labels (e.g. seeds), when groups were given.
    kept_mask : numpy.ndarray
        Boolean mask over the input points.
    dropped : tuple of str
        One description per dropped point, e.g. ``"index 3: x=50, y=nan"``.
    """

    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray | None
    kept_mask: np.ndarray
    dropped: tuple[str, ...]


def _as_1d_float(values: np.ndarray | Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def drop_nonfinite_points(
    x: np.ndarray | Sequence[float],
    y: np.ndarray | Sequence[float],
    groups: np.ndarray | Sequence | None = None,
) -> FinitePoints:
    """Drop points that cannot enter a log-log fit and say which were dropped.

    A point is dropped when ``x`` or ``y`` is NaN, infinite, zero or negative
    (NaN typically comes from a failed job).

    Parameters
    ----------
    x, y : array_like
        Same-length one-dimensional arrays.
    groups : array_like, optional
        Group labels (e.g. seeds) carried along with the kept points.

    Returns
    -------
    FinitePoints
    """
    x_array = _as_1d_float(x, "x")
    y_array = _as_1d_float(y, "y")
    if x_array.shape != y_array.shape:
        raise ValueError(f"x and y must have the same length, got {x_array.size} and {y_array.size}")
    kept = np.isfinite(x_array) & np.isfinite(y_array) & (x_array > 0) & (y_array > 0)
    dropped = tuple(f"index {i}: x={x_array[i]:g}, y={y_array[i]:g}" for i in np.flatnonzero(~kept))
    group_array = None
    if groups is not None:
        group_array = np.asarray(groups)
        if group_array.shape != x_array.shape:
            raise ValueError(f"groups must have the same length as x, got {group_array.size} and {x_array.size}")
        group_array = group_array[kept]
    return FinitePoints(x_array[kept], y_array[kept], group_array, kept, dropped)


def _validate_points(x: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Check x, y for a log-log fit and return them as float arrays."""
    x_array = _as_1d_float(x, "x")
    y_array = _as_1d_float(y, "y")
    if x_array.shape != y_array.shape:
        raise ValueError(f"x and y must have the same length, got {x_array.size} and {y_array.size}")
    for name, array in (("x", x_array), ("y", y_array)):
        bad = np.flatnonzero(~np.isfinite(array))
        if bad.size:
            raise ValueError(
                f"{name} contains non-finite values (NaN/inf) at positions {bad.tolist()}, "
                "e.g. from a failed job; drop them first with drop_nonfinite_points(x, y)"
            )
        bad = np.flatnonzero(array <= 0)
        if bad.size:
            raise ValueError(
                f"{name} must be strictly positive for a log-log fit; non-positive values at positions {bad.tolist()}"
            )
    if x_array.size < 2:
        raise ValueError(
            f"a power-law fit needs at least 2 points, got {x_array.size} "
            "(with exactly 2 points the line is fitted exactly and the confidence interval is NaN)"
        )
    if np.all(x_array == x_array[0]):
        raise ValueError(f"all x values are equal (x={x_array[0]:g}); the exponent is undefined")
    return x_array, y_array


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def fit_power_law(
    x: np.ndarray | Sequence[float],
    y: np.ndarray | Sequence[float],
    confidence: float = 0.95,
) -> PowerLawFit:
    """Fit ``y = C * x**(-alpha)`` by OLS of ``log10 y`` on ``log10 x``.

    The interval is ``alpha +- t_{n-2} * stderr`` where ``stderr`` is the usual
    OLS standard error of the slope and ``t_{n-2}`` the two-sided Student t
    quantile at level ``confidence``. This is exact when the multiplicative
    noise on ``y`` is log-normal with a constant spread.

    Degenerate cases (decisions):

    * fewer than 2 points, non-finite or non-positive values, all-equal ``x``:
      ``ValueError`` with a message naming the problem. NaN rows are *not*
      silently dropped; use :func:`drop_nonfinite_points` to drop them and
      learn which.
    * exactly 2 points: the line goes through both points; ``alpha`` is exact
      but ``alpha_low``, ``alpha_high`` and ``alpha_stderr`` are NaN (no
      residual degrees of freedom). ``r_squared`` is 1.
    * all-equal ``y``: ``alpha = 0`` with a zero-width interval ``[0, 0]``
      (zero residuals); ``r_squared`` is NaN (no variance to explain).

    Parameters
    ----------
    x, y : array_like
        Positive, finite, same-length one-dimensional arrays.
    confidence : float, default 0.95
        Level of the two-sided interval.

    Returns
    -------
    PowerLawFit
    """
    _check_confidence(confidence)
    x_array, y_array = _validate_points(x, y)
    log_x = np.log10(x_array)
    log_y = np.log10(y_array)
    n_points = log_x.size
    line = stats.linregress(log_x, log_y)
    # all-equal y: linregress leaves r and the slope's error undefined (0/0); R² is (nothing to explain),
    # the error is not: every residual is zero
    constant = np.ptp(log_y) == 0
    r_squared = float("nan") if constant else float(line.rvalue) ** 2
    alpha = -float(line.slope) + 0.0  # "+ 0.0" turns -0.0 into 0.0
    if n_points > 2:
        stderr = 0.0 if constant else float(line.stderr)
        t_quantile = float(stats.t.ppf(0.5 + confidence / 2.0, n_points - 2))
        alpha_low, alpha_high = alpha - t_quantile * stderr, alpha + t_quantile * stderr
    else:  # linregress reports stderr 0 for two points; with no residual left it is unknown
        stderr = alpha_low = alpha_high = float("nan")
    return PowerLawFit(
        alpha=alpha,
        alpha_low=alpha_low,
        alpha_high=alpha_high,
        alpha_stderr=stderr,
        prefactor=float(10.0**line.intercept),
        n_points=n_points,
        r_squared=r_squared,
        x_used=tuple(float(v) for v in np.unique(x_array)),
        confidence=confidence,
        ci_method="ols-t",
        log10_x_center=float(log_x.mean()),
        log10_y_center=float(log_y.mean()),
    )


def _seed_lines(x, y, groups) -> tuple[list, float, int, np.ndarray, np.ndarray]:
    """Each group's OLS line of log10 y on log10 x, as (slope, intercept, mean log10 x, Sxx, n) per
    group, the pooled residual variance about the lines and its degrees of freedom, log10 x and
    log10 y, over the groups with at least two distinct x (the others cannot give a slope)."""
    x_array, y_array = _validate_points(x, y)
    group_array = np.asarray(groups)
    if group_array.shape != x_array.shape:
        raise ValueError(f"groups must have the same length as x, got {group_array.size} and {x_array.size}")
    log_x, log_y = np.log10(x_array), np.log10(y_array)
    lines, dof, ss = [], 0, 0.0
    for label in np.unique(group_array):
        mine = group_array == label
        if np.unique(log_x[mine]).size < 2:
            continue
        line = stats.linregress(log_x[mine], log_y[mine])
        residuals = log_y[mine] - (line.intercept + line.slope * log_x[mine])
        ss += float(residuals @ residuals)
        dof += int(mine.sum()) - 2
        centered = log_x[mine] - log_x[mine].mean()
        lines.append((line.slope, line.intercept, log_x[mine].mean(), float(centered @ centered), int(mine.sum())))
    if len(lines) < 2:
        raise ValueError(f"a fit over seeds needs at least 2 seeds with 2 distinct x each; got {len(lines)}")
    return lines, (ss / dof if dof > 0 else 0.0), dof, log_x, log_y


def seed_lines_power_law(
    x: np.ndarray | Sequence[float],
    y: np.ndarray | Sequence[float],
    groups: np.ndarray | Sequence,
    confidence: float = 0.95,
) -> PowerLawFit:
    """Fit ``y = C * x**(-alpha)`` to each group (seed) and combine: ``alpha`` is the mean of the
    groups' exponents, its interval ``mean +- t_{S-1} * sd / sqrt(S)`` over the S groups (the
    two-stage, summary-statistics interval of repeated measures).

    Why not a percentile bootstrap over seeds: at a nominal 95% it covers the true exponent in 73-76%
    of synthetic draws with 3 seeds, 83-84% with 5 and 89-91% with 10 (few seeds have few distinct
    resamples, and the resampled spread is biased low by (S - 1) / S); this interval in 94.0-95.8%
    at 3, 5 and 10 seeds (benchmarks/frontier_coverage.py, benchmarks/results/frontier_coverage.log).
    Groups with fewer than 2 distinct x are left out. The line passes through the data's centroid
    with the mean slope.
    """
    _check_confidence(confidence)
    lines, _, _, log_x, log_y = _seed_lines(x, y, groups)
    slopes = np.array([line[0] for line in lines])
    n_groups = slopes.size
    alpha = -float(slopes.mean()) + 0.0
    stderr = float(slopes.std(ddof=1)) / np.sqrt(n_groups)
    half = float(stats.t.ppf(0.5 + confidence / 2.0, n_groups - 1)) * stderr
    center_x, center_y = float(log_x.mean()), float(log_y.mean())
    residual = log_y - (center_y - alpha * (log_x - center_x))
    total = float(np.sum((log_y - center_y) ** 2))
    return PowerLawFit(
        alpha=alpha,
        alpha_low=alpha - half,
        alpha_high=alpha + half,
        alpha_stderr=stderr,
        prefactor=float(10.0 ** (center_y + alpha * center_x)),
        n_points=int(log_x.size),
        r_squared=1.0 - float(residual @ residual) / total if total > 0 else float("nan"),
        x_used=tuple(float(v) for v in np.unique(10.0**log_x)),
        confidence=confidence,
        ci_method="seed-lines-t",
        log10_x_center=center_x,
        log10_y_center=center_y,
    )


def predict_over_seeds(
    x: np.ndarray | Sequence[float],
    y: np.ndarray | Sequence[float],
    groups: np.ndarray | Sequence,
    x_new: float,
    confidence: float = 0.95,
    new_seed: bool = False,
) -> tuple[float, float, float]:
    """``y`` at ``x_new`` predicted from each seed's power law: (center, low, high) at ``confidence``.

    In log10 the center is the mean of the S seeds' lines at ``x_new``. ``new_seed`` False: the
    interval is for the geometric mean over the same seeds measured at ``x_new`` (each seed's line
    predicts its own point there; OLS prediction variance s^2 (1 + 1/n_s + (x_new - mean x_s)^2 /
    Sxx_s) per seed, s^2 pooled about the seeds' lines, Student t with the pooled degrees of freedom).
    ``new_seed`` True: for one seed not among them (the seeds' spread at ``x_new``, var * (1 + 1/S),
    Student t with S - 1 degrees of freedom): what a user who trains once may expect.
    """
    _check_confidence(confidence)
    lines, residual_var, dof, _, _ = _seed_lines(x, y, groups)
    log_new = np.log10(float(x_new))
    at_new = np.array([intercept + slope * log_new for slope, intercept, _, _, _ in lines])  # (S,)
    n_groups, center = at_new.size, float(at_new.mean())
    if new_seed:
        half = float(stats.t.ppf(0.5 + confidence / 2.0, n_groups - 1)) * np.sqrt(
            float(at_new.var(ddof=1)) * (1 + 1 / n_groups)
        )
    else:
        leverage = sum(1 + 1 / n + (log_new - mean_x) ** 2 / sxx for _, _, mean_x, sxx, n in lines)
        scale = float(stats.t.ppf(0.5 + confidence / 2.0, dof)) if dof > 0 else float("nan")
        half = scale * np.sqrt(residual_var * leverage) / n_groups
    return 10.0**center, 10.0 ** (center - half), 10.0 ** (center + half)


# --------------------------------------------------------------------------
# Interpolation threshold
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class InterpolationThreshold:
    """Which grid sizes of one scaling curve belong to the power-law regime.

    Attributes
    ----------
    grid_sizes : numpy.ndarray
        Grid sizes, increasing (the input sorted).
    used_mask : numpy.ndarray
        Boolean, aligned with :attr:`grid_sizes`; True for points to fit.
    excluded : tuple of (int, str)
        ``(grid_size, reason)`` for each excluded point, reasons joined by
        ``" and "`` when there are several.
    threshold_index : int or None
        Index (into :attr:`grid_sizes`) of the test-RMSE minimum when test
        RMSE rises after it; None when the curve never turns up.
    threshold_grid : int or None
        Grid size at :attr:`threshold_index`.
    threshold_params_per_sample : float or None
        ``n_params / n_train`` at the threshold, when both were given.
    divergence_factor : float
        The test/train ratio above which a point was flagged.
    """

    grid_sizes: np.ndarray
    used_mask: np.ndarray
    excluded: tuple[tuple[int, str], ...]
    threshold_index: int | None
    threshold_grid: int | None
    threshold_params_per_sample: float | None
    divergence_factor: float

    @property
    def used_grid_sizes(self) -> np.ndarray:
        """Grid sizes of the points to fit."""
        return self.grid_sizes[self.used_mask]


def find_interpolation_threshold(
    grid_sizes: np.ndarray | Sequence[float],
    test_rmse: np.ndarray | Sequence[float],
    train_rmse: np.ndarray | Sequence[float] | None = None,
    n_params: np.ndarray | Sequence[float] | None = None,
    n_train: float | None = None,
    divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR,
) -> InterpolationThreshold:
    """Find where a test-RMSE-vs-grid curve leaves the power-law regime.

    Rule (one value per grid size; average seeds first):

    1. Sort by grid size. The *threshold* is the grid size at the minimum of
       test RMSE, provided that minimum is not the last point. Every point
       after it is excluded ("beyond test-RMSE minimum at G=..."). If test
       RMSE is smallest at the largest G (e.g. monotone decreasing), there is
       no threshold and this rule excludes nothing.
    2. When ``train_rmse`` is given, a point whose ``test/train`` ratio exceeds
       ``divergence_factor`` (default 10) is excluded as well ("test/train
       ratio 44 > 10"): the model fits the training points far better than
       the function, i.e. it is interpolating them. This can flag a point at
       or before the minimum.

    The rule looks only at the data; ``n_params`` and ``n_train`` are used only
    to report the parameters-per-sample ratio at the threshold.

    Parameters
    ----------
    grid_sizes : array_like
        Distinct grid sizes.
    test_rmse : array_like
        Test RMSE per grid size, finite.
    train_rmse : array_like, optional
        Train RMSE per grid size. Non-finite entries are not checked.
    n_params : array_like, optional
        Parameter count per grid size.
    n_train : float, optional
        Training-set size.
    divergence_factor : float, default 10
        Test/train ratio above which a point is flagged.

    Returns
    -------
    InterpolationThreshold
    """
    grid_array = _as_1d_float(grid_sizes, "grid_sizes")
    test_array = _as_1d_float(test_rmse, "test_rmse")
    if grid_array.shape != test_array.shape:
        raise ValueError(
            f"grid_sizes and test_rmse must have the same length, got {grid_array.size} and {test_array.size}"
        )
    if grid_array.size == 0:
        raise ValueError("find_interpolation_threshold needs at least one point")
    bad = np.flatnonzero(~np.isfinite(test_array))
    if bad.size:
        raise ValueError(
            f"test_rmse contains non-finite values (NaN/inf) at positions {bad.tolist()}, "
            "e.g. from a failed job; drop those grid sizes first"
        )
    if np.unique(grid_array).size != grid_array.size:
        raise ValueError("grid_sizes must be distinct (average over seeds before detecting the threshold)")
    if divergence_factor <= 1:
        raise ValueError(f"divergence_factor must be > 1, got {divergence_factor}")

    order = np.argsort(grid_array)
    grid_sorted = grid_array[order]
    test_sorted = test_array[order]
    reasons: list[list[str]] = [[] for _ in grid_sorted]

    minimum_index = int(np.argmin(test_sorted))
    threshold_index: int | None = None
    if minimum_index < grid_sorted.size - 1:
        threshold_index = minimum_index
        for i in range(minimum_index + 1, grid_sorted.size):
            reasons[i].append(f"beyond test-RMSE minimum at G={grid_sorted[minimum_index]:g}")

    if train_rmse is not None:
        train_sorted = _as_1d_float(train_rmse, "train_rmse")
        if train_sorted.shape != grid_array.shape:
            raise ValueError("train_rmse must have the same length as grid_sizes")
        train_sorted = train_sorted[order]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = test_sorted / train_sorted
        for i, ratio in enumerate(ratios):
            if np.isfinite(train_sorted[i]) and train_sorted[i] > 0 and ratio > divergence_factor:
                reasons[i].append(f"test/train ratio {ratio:.3g} > {divergence_factor:g}")

    threshold_grid = None if threshold_index is None else _as_int_if_whole(grid_sorted[threshold_index])
    params_per_sample = None
    if threshold_index is not None and n_params is not None and n_train is not None:
        params_sorted = _as_1d_float(n_params, "n_params")
        if params_sorted.shape != grid_array.shape:
            raise ValueError("n_params must have the same length as grid_sizes")
        params_per_sample = float(params_sorted[order][threshold_index] / float(n_train))

    used_mask = np.array([not r for r in reasons], dtype=bool)
    excluded = tuple((_as_int_if_whole(grid_sorted[i]), " and ".join(r)) for i, r in enumerate(reasons) if r)
    return InterpolationThreshold(
        grid_sizes=grid_sorted,
        used_mask=used_mask,
        excluded=excluded,
        threshold_index=threshold_index,
        threshold_grid=threshold_grid,
        threshold_params_per_sample=params_per_sample,
        divergence_factor=float(divergence_factor),
    )


def _as_int_if_whole(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


# --------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------


def geometric_mean(values: np.ndarray | Sequence[float] | pd.Series) -> float:
    """Geometric mean of the finite positive entries; NaN if there are none."""
    array = _positive(values)
    return float(stats.gmean(array)) if array.size else float("nan")


def geometric_std(values: np.ndarray | Sequence[float] | pd.Series) -> float:
    """Geometric standard deviation (``ddof=1``) of the finite positive entries; NaN for fewer than two."""
    array = _positive(values)
    if array.size < 2:
        return float("nan")
    with warnings.catch_warnings():
        # seeds with the same RMSE (a spread of exactly 1) trip scipy's cancellation warning; the
        # result is 1 to the last bits, which is all the spread is read to
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        return float(stats.gstd(array))


def _positive(values) -> np.ndarray:
    """The finite positive entries (a failed job's NaN and non-positive values have no logarithm)."""
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array) & (array > 0)]


def chain_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of families whose jobs form chains of grid levels (KANs, kanlib.families) of a results or
    history table, with ``k`` and ``grid_size`` as integers: what the fits over the grid use.

    A table written before the MLP family existed has no ``family`` column: all its rows are KANs.
    """
    if "family" not in results.columns:
        return results
    kan = results[results["family"].astype(str).isin(chained_families())]
    # (grid_level is empty in a partial report's rows of levels that did not run)
    integers = {c: "int64" for c in ("k", "grid_size", "grid_level") if c in kan.columns and kan[c].notna().all()}
    return kan.astype(integers) if not kan.empty else kan


_CHAIN_KEYS = ("family", *GROUP_COLUMNS, "seed", "activation")


def _chain_keys(results: pd.DataFrame) -> list[str]:
    return [column for column in _CHAIN_KEYS if column in results.columns]


def _chain_last_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Each chain's last level (a family without chains: its one row), which carries the chain's verdict."""
    order = results.sort_values("grid_level", kind="stable") if "grid_level" in results.columns else results
    return order.groupby(_chain_keys(results), sort=True, dropna=False).tail(1)


def learning_mask(results: pd.DataFrame) -> pd.Series:
    """Per row: False where the row's chain did not learn its target, True where it did or the table
    does not say (rows written before the column existed). A chain's verdict is the ``learned_target``
    of its last level (:func:`kanlib.families.learned_target`, judged at the chain's fourth level with G >= 20)."""
    if "learned_target" not in results.columns or results.empty:
        return pd.Series(True, index=results.index)
    flags = results["learned_target"].map({True: True, False: False, "True": True, "False": False})
    last = _chain_last_rows(results.assign(_flag=flags.fillna(True).astype(bool)))
    verdicts = last.set_index(_chain_keys(results))["_flag"]
    keys = pd.MultiIndex.from_frame(results[_chain_keys(results)])
    return pd.Series(verdicts.reindex(keys).fillna(True).astype(bool).to_numpy(), index=results.index)


def learnt_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of chains that learnt their target (or whose table does not say): what fits use."""
    return results[learning_mask(results)]


def not_learnt_chains(results: pd.DataFrame) -> pd.DataFrame:
    """One row per chain that did not learn its target: its last level's row (with the relative
    train RMSE the verdict was judged by, ``judged_relative_train_rmse``)."""
    return _chain_last_rows(results[~learning_mask(results)]).reset_index(drop=True)


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], table: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{table} table is missing columns {missing}; has {list(frame.columns)}")


def _check_choice(value: str, allowed: Sequence[str], name: str) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def summarize_over_seeds(
    results: pd.DataFrame,
    metrics: Sequence[str] = _METRICS,
) -> pd.DataFrame:
    """Average each (configuration, N, G) cell over seeds.

    Parameters
    ----------
    results : pandas.DataFrame
        Results table (see module docstring).
    metrics : sequence of str
        Metric columns to summarise.

    Returns
    -------
    pandas.DataFrame
        One row per ``function, width, k, n_train, grid_size`` with, for each
        metric ``m``: ``m`` (geometric mean over seeds of the finite positive
        values), ``m_min``, ``m_max``, ``m_gstd`` (geometric standard
        deviation, NaN for fewer than 2 values) and ``m_n_seeds`` (number of
        finite positive values); plus ``n_params`` (mean) and ``n_seeds``
        (rows in the cell).
    """
    _require_columns(results, [*GROUP_COLUMNS, "grid_size", *metrics], "results")
    keys = [*GROUP_COLUMNS, "grid_size"]
    # a value without a logarithm (NaN of a failed job, non-positive) counts in no statistic of its metric
    values = results[keys].assign(
        **{metric: results[metric].astype(float).where(lambda v: np.isfinite(v) & (v > 0)) for metric in metrics}
    )
    statistics = {}
    for metric in metrics:
        statistics |= {
            metric: (metric, geometric_mean),
            f"{metric}_min": (metric, "min"),
            f"{metric}_max": (metric, "max"),
            f"{metric}_gstd": (metric, geometric_std),
            f"{metric}_n_seeds": (metric, "count"),
        }
    if "n_params" in results.columns:
        values["n_params"] = results["n_params"].astype(float)
        statistics["n_params"] = ("n_params", "mean")
    statistics["n_seeds"] = (keys[0], "size")
    return values.groupby(keys, sort=True).agg(**statistics).reset_index()


def require_single_configuration(results: pd.DataFrame) -> pd.DataFrame:
    """Return ``results`` unchanged if it holds one (function, width, k), else raise ``ValueError``."""
    configurations = results[list(CONFIG_COLUMNS)].drop_duplicates()
    if len(configurations) != 1:
        found = [tuple(row) for row in configurations.itertuples(index=False)]
        raise ValueError(
            f"expected results for exactly one (function, width, k) configuration, found {found}; "
            "filter the table first, e.g. results[results.function == 'exp_sin']"
        )
    return results


def rmse_pivot(results: pd.DataFrame, metric: str = "test_rmse") -> pd.DataFrame:
    """RMSE table laid out like the seed notebook's: rows N, columns G.

    Each cell is the geometric mean over seeds of the finite positive values
    (NaN if a cell has none, e.g. all its jobs failed).

    Parameters
    ----------
    results : pandas.DataFrame
        Results table for a single (function, width, k) configuration.
    metric : {"test_rmse", "train_rmse"}

    Returns
    -------
    pandas.DataFrame
        Index ``n_train`` (increasing), columns ``grid_size`` (increasing).
    """
    _check_choice(metric, _METRICS, "metric")
    _require_columns(results, [*GROUP_COLUMNS, "grid_size", metric], "results")
    require_single_configuration(results)
    pivot = results.pivot_table(
        index="n_train", columns="grid_size", values=metric, aggfunc=geometric_mean, dropna=False
    )
    pivot = pivot.sort_index().sort_index(axis=1)
    pivot.index.name = "n_train"
    pivot.columns.name = "grid_size"
    return pivot.astype(float)


@dataclass(frozen=True)
class DataScalingSummary:
    """Descriptive summary of error versus training-set size.

    Attributes
    ----------
    pivot : pandas.DataFrame
        Geometric-mean RMSE, rows N, columns G (see :func:`rmse_pivot`).
    per_grid : pandas.DataFrame
        One row per grid size: ``grid_size``, ``n_min``, ``n_max`` (smallest
        and largest N with a finite value), ``rmse_at_n_min``,
        ``rmse_at_n_max``, ``ratio_largest_to_smallest_n``
        (``rmse_at_n_max / rmse_at_n_min``; below 1 means more data helped),
        ``monotone_non_increasing`` (RMSE never rises as N grows, over the
        finite values) and ``n_points``.
    """

    pivot: pd.DataFrame
    per_grid: pd.DataFrame = field(repr=False)


def data_scaling_table(results: pd.DataFrame, metric: str = "test_rmse") -> DataScalingSummary:
    """Describe how RMSE changes with training-set size N at each grid size G.

    No power law in N is fitted: the seed experiment shows no clean one (at a
    fixed small G the error is set by the grid, not by N). The summary
    reports, per G, the ratio of the error at the largest N to that at the
    smallest N and whether the error is monotone non-increasing in N.

    Parameters
    ----------
    results : pandas.DataFrame
        Results table for a single (function, width, k) configuration.
    metric : {"test_rmse", "train_rmse"}

    Returns
    -------
    DataScalingSummary
    """
    pivot = rmse_pivot(results, metric)
    rows = []
    for grid_size, column in pivot.items():
        column = column.dropna()  # the N with a finite RMSE (rmse_pivot's cells are finite or NaN)
        ends = column.iloc[[0, -1]] if len(column) else pd.Series([np.nan, np.nan], index=[np.nan, np.nan])
        rows.append(
            {
                "grid_size": grid_size,
                "n_min": ends.index[0],
                "n_max": ends.index[-1],
                "rmse_at_n_min": ends.iloc[0],
                "rmse_at_n_max": ends.iloc[-1],
                "ratio_largest_to_smallest_n": ends.iloc[-1] / ends.iloc[0],
                "monotone_non_increasing": len(column) > 0 and column.is_monotonic_decreasing,
                "n_points": len(column),
            }
        )
    return DataScalingSummary(pivot=pivot, per_grid=pd.DataFrame(rows))


# --------------------------------------------------------------------------
# Scaling-law table
# --------------------------------------------------------------------------

_FIT_COLUMNS = [
    "function",
    "width",
    "k",
    "n_train",
    "x",
    "metric",
    "alpha",
    "alpha_low",
    "alpha_high",
    "ci_method",
    "confidence",
    "theory_alpha",
    "prefactor",
    "r_squared",
    "n_points",
    "n_seeds",
    "points_used",
    "points_excluded",
    "threshold_grid",
    "threshold_params_per_sample",
    "x_pivot",
    "note",
]


def _usable_mask(frame: pd.DataFrame, metric: str) -> np.ndarray:
    """Rows whose metric and test RMSE are finite and positive: the rows a fit of ``metric`` may use
    (the test RMSE decides the threshold, so a row without one cannot be placed)."""
    values = frame[list(dict.fromkeys([metric, "test_rmse"]))].to_numpy(dtype=float)
    return np.all(np.isfinite(values) & (values > 0), axis=1)


def _usable_rows(group: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, list[str]]:
    """Drop rows whose metric or test RMSE is non-finite or non-positive."""
    columns = list(dict.fromkeys([metric, "test_rmse"]))
    good = _usable_mask(group, metric)
    notes = []
    if not good.all():
        descriptions = []
        for _, row in group.loc[~good].iterrows():
            bad_columns = [c for c in columns if not (np.isfinite(float(row[c])) and float(row[c]) > 0)]
            seed = f" seed={row['seed']}" if "seed" in group.columns else ""
            descriptions.append(
                f"G={row['grid_size']}{seed} ({', '.join(f'{c}={float(row[c]):g}' for c in bad_columns)})"
            )
        notes.append("dropped unusable rows: " + ", ".join(descriptions))
    return group.loc[good], notes


def fit_scaling_laws(
    results: pd.DataFrame,
    x: Literal["grid_size", "n_params"] = "grid_size",
    metric: Literal["test_rmse", "train_rmse"] = "test_rmse",
    confidence: float = 0.95,
    divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR,
) -> pd.DataFrame:
    """Fit ``metric ~ x**(-alpha)`` for every scaling curve in a results table.

    For each ``(function, width, k, n_train)`` group:

    1. Rows whose ``metric`` or ``test_rmse`` is NaN, infinite or
       non-positive (failed jobs) are dropped and listed in ``note``.
    2. Seeds are averaged per grid size (geometric mean).
    3. :func:`find_interpolation_threshold` runs on the averaged test and
       train RMSE; the same points are excluded whichever ``metric`` is fitted,
       so train and test fits cover the same regime.
    4. The power law is fitted on the used points: with one seed by
       :func:`fit_power_law` (``ci_method="ols-t"``); with two or more seeds
       by :func:`seed_lines_power_law` on the per-seed rows
       (``ci_method="seed-lines-t"``).

    A group with fewer than 2 usable points (or any other fitting problem)
    gets NaN ``alpha`` and the reason in ``note`` instead of raising.

    Parameters
    ----------
    results : pandas.DataFrame
        Results table (see module docstring).
    x : {"grid_size", "n_params"}
        Scaling variable.
    metric : {"test_rmse", "train_rmse"}
        Error to fit.
    confidence : float, default 0.95
        Level of the exponent's interval.
    divergence_factor : float, default 10
        Passed to :func:`find_interpolation_threshold`.

    Returns
    -------
    pandas.DataFrame
        One row per group with columns ``function, width, k, n_train, x,
        metric, alpha, alpha_low, alpha_high, ci_method, confidence,
        theory_alpha`` (``k + 1``), ``prefactor, r_squared, n_points``
        (points in the fit, all seeds counted), ``n_seeds`` (seeds with usable
        rows at the fitted grid sizes), ``points_used``
        (grid sizes, e.g. ``"5,10,20"``), ``points_excluded`` (e.g.
        ``"50: beyond test-RMSE minimum at G=20; 100: ..."``: points separated
        by ``"; "``, several reasons for one point joined by ``" and "``; grid sizes also
        when ``x="n_params"``), ``threshold_grid``,
        ``threshold_params_per_sample`` (NaN when none), ``x_pivot`` (geometric
        mean of the used x, where the fitted line is best pinned) and ``note``
        (empty when nothing to report).
    """
    _check_choice(x, _X_COLUMNS, "x")
    _check_choice(metric, _METRICS, "metric")
    _check_confidence(confidence)
    required = [*GROUP_COLUMNS, "seed", "grid_size", "train_rmse", "test_rmse"]
    if x == "n_params":
        required.append("n_params")
    _require_columns(results, list(dict.fromkeys(required)), "results")

    rows = []
    for key, group in results.groupby(list(GROUP_COLUMNS), sort=True):
        function, width, k, n_train = key
        row: dict = {
            "function": function,
            "width": width,
            "k": int(k),
            "n_train": int(n_train),
            "x": x,
            "metric": metric,
            "alpha": np.nan,
            "alpha_low": np.nan,
            "alpha_high": np.nan,
            "ci_method": "",
            "confidence": confidence,
            "theory_alpha": float(k) + 1.0,
            "prefactor": np.nan,
            "r_squared": np.nan,
            "n_points": 0,
            "n_seeds": int(group["seed"].nunique()),
            "points_used": "",
            "points_excluded": "",
            "threshold_grid": np.nan,
            "threshold_params_per_sample": np.nan,
            "x_pivot": np.nan,
        }
        usable, notes = _usable_rows(group, metric)
        if usable.empty:
            notes.append("no usable rows")
            row["note"] = "; ".join(notes)
            rows.append(row)
            continue

        averaged = summarize_over_seeds(usable, metrics=list(dict.fromkeys([metric, "test_rmse", "train_rmse"])))
        averaged = averaged.sort_values("grid_size")
        threshold = find_interpolation_threshold(
            averaged["grid_size"].to_numpy(dtype=float),
            averaged["test_rmse"].to_numpy(dtype=float),
            train_rmse=averaged["train_rmse"].to_numpy(dtype=float),
            n_params=averaged["n_params"].to_numpy(dtype=float) if "n_params" in averaged else None,
            n_train=float(n_train),
            divergence_factor=divergence_factor,
        )
        used_grids = threshold.used_grid_sizes
        row["points_used"] = ",".join(f"{_as_int_if_whole(g)}" for g in used_grids)
        row["points_excluded"] = "; ".join(f"{g}: {reason}" for g, reason in threshold.excluded)
        if threshold.threshold_grid is not None:
            row["threshold_grid"] = threshold.threshold_grid
        if threshold.threshold_params_per_sample is not None:
            row["threshold_params_per_sample"] = threshold.threshold_params_per_sample

        fit_rows = usable[usable["grid_size"].astype(float).isin(used_grids)]
        n_seeds_used = int(fit_rows["seed"].nunique())
        row["n_seeds"] = n_seeds_used
        if used_grids.size < 2:
            notes.append(f"only {used_grids.size} usable point(s); a power-law fit needs at least 2")
        else:
            try:
                if n_seeds_used >= 2:
                    fit = seed_lines_power_law(
                        fit_rows[x].to_numpy(dtype=float),
                        fit_rows[metric].to_numpy(dtype=float),
                        fit_rows["seed"].to_numpy(),
                        confidence=confidence,
                    )
                else:
                    used_averaged = averaged[averaged["grid_size"].astype(float).isin(used_grids)]
                    fit = fit_power_law(
                        used_averaged[x].to_numpy(dtype=float),
                        used_averaged[metric].to_numpy(dtype=float),
                        confidence=confidence,
                    )
            except ValueError as error:
                notes.append(f"fit failed: {error}")
            else:
                row.update(
                    alpha=fit.alpha,
                    alpha_low=fit.alpha_low,
                    alpha_high=fit.alpha_high,
                    ci_method=fit.ci_method,
                    prefactor=fit.prefactor,
                    r_squared=fit.r_squared,
                    n_points=fit.n_points,
                    x_pivot=float(10.0**fit.log10_x_center),
                )
                if fit.ci_method == "ols-t" and fit.n_points == 2:
                    notes.append("2 points: exact fit, no confidence interval")
        row["note"] = "; ".join(notes)
        rows.append(row)

    table = pd.DataFrame(rows, columns=_FIT_COLUMNS)
    return table.astype({"k": "int64", "n_train": "int64", "n_points": "int64", "n_seeds": "int64"})


def fit_points(
    results: pd.DataFrame,
    x: Literal["grid_size", "n_params"] = "grid_size",
    metric: Literal["test_rmse", "train_rmse"] = "test_rmse",
) -> pd.DataFrame:
    """The seed-averaged points of the fits of :func:`fit_scaling_laws` (before any point is excluded).

    One row per ``function, width, k, n_train, grid_size`` with ``x`` (the scaling variable, mean
    over seeds), ``y`` (geometric mean over seeds of ``metric``) and ``n_seeds`` (seeds with a usable
    row), from the rows :func:`fit_scaling_laws` keeps (finite positive ``metric`` and test RMSE).
    A one-seed fit is the OLS line through the points its ``points_used`` names; a fit over several
    seeds is made to their per-seed rows.
    """
    _check_choice(x, _X_COLUMNS, "x")
    _check_choice(metric, _METRICS, "metric")
    usable = results[_usable_mask(results, metric)]
    averaged = summarize_over_seeds(usable, metrics=[metric])
    return averaged[[*GROUP_COLUMNS, "grid_size"]].assign(
        x=averaged[x].astype(float), y=averaged[metric], n_seeds=averaged[f"{metric}_n_seeds"]
    )
