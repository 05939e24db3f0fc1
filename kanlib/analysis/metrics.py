"""The fitted exponents as flat MLflow metric names, for the sweep's parent run.

``alpha_test_rmse_vs_grid_N3000`` (and ``..._ci_low`` / ``..._ci_high``), the thresholds
``threshold_grid_N100`` and ``threshold_params_per_sample_N100``; with several configurations the
names carry the function and width (``alpha_test_rmse_vs_grid_xy_w2-1-1_N3000``). The family
comparison's: ``alpha_vs_params_<family>_<function>_N<n>``, ``params_at_target_...``,
``best_test_rmse_...``. NaN values are left out (MLflow would store them as metrics that plot as
nothing).
"""

from __future__ import annotations

import math

import pandas as pd

from ..functions import function_slug
from .tables import configurations

__all__ = ["alpha_metric_name", "mlflow_metrics", "family_mlflow_metrics", "frontier_mlflow_metrics"]

_X_SHORT = {"grid_size": "grid", "n_params": "params"}


def _finite(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


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
    the sweep has several configurations."""
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


def family_mlflow_metrics(comparison: pd.DataFrame) -> dict[str, float]:
    """``alpha_vs_params_<family>_<function>_N<n>`` (and ``_ci_low`` / ``_ci_high``), the
    parameter counts ``params_at_target_<family>_<function>_N<n>`` and the best test RMSE
    ``best_test_rmse_<family>_<function>_N<n>``."""
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


def frontier_mlflow_metrics(fits: pd.DataFrame) -> dict[str, float]:
    """``gamma_<measure>_<family>_<function>`` and ``delta_<measure>_<family>_<function>`` (and
    ``_ci_low`` / ``_ci_high``) of :func:`kanlib.analysis.frontier.fit_frontier`'s table."""
    metrics: dict[str, float] = {}
    for row in fits.to_dict("records"):
        tail = f"{row['measure']}_{row['family']}_{function_slug(row['function'])}"
        for law in ("gamma", "delta"):
            for suffix, column in (("", law), ("_ci_low", f"{law}_low"), ("_ci_high", f"{law}_high")):
                if _finite(row.get(column)):
                    metrics[f"{law}_{tail}{suffix}"] = float(row[column])
    return metrics
