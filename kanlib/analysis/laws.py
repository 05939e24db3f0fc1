"""The fitted laws of a sweep as one machine-readable file, ``results/<sweep>/report/laws.json``.

Every fit of the exponent table (``exponents.csv``, rounded to 6 digits there) at full precision,
with the points it used, and where they came from: the sweep's config hash and the code version. A
law is ``y = prefactor * x ** -alpha``. Values that do not exist (no fit, no interval, no
threshold) are ``null``.

Fields
------
``format``
    ``"kanlib-laws/2"``: the name and version of this layout (a reader checks it).
``sweep``
    The sweep's name (``results/<sweep>/``).
``config_hash``
    ``"sha256:<hex>"`` of the config the report ran with: the merged config (``config/config.yaml``,
    each ``--configfile`` and ``--config`` on top, the schema's defaults filled in) as JSON with
    sorted keys and no spaces (:func:`config_hash`). The parent MLflow run of the sweep holds that
    config as its artifact ``config.yaml``.
``code_version``
    ``{"kanlib": <version>, "git_commit": <commit of the source tree, or "unknown">}`` of the code
    that fitted the laws (each training run records its own in its ``metrics.json``).
``law``
    ``"y = prefactor * x ** -alpha"``.
``settings``
    ``confidence`` (level of the intervals), ``divergence_factor`` (test/train RMSE ratio above which
    a point counts as interpolating).
``laws``
    One object per fit (a row of ``exponents.csv``), per configuration, scaling variable, error and N:

    - ``function``, ``width`` (``"2-1-1"``), ``k``, ``n_train``: the KAN configuration and the
      training-set size;
    - ``x``: ``"grid_size"`` or ``"n_params"``; ``metric``: ``"test_rmse"``, ``"train_rmse"``,
      ``"test_median_rmse"`` or ``"test_interior_rmse"`` (the test points inside the training
      points' range at every layer);
    - ``alpha``, ``alpha_low``, ``alpha_high``: the exponent and its interval at ``confidence``;
      ``ci_method``: ``"ols-t"`` (one seed: OLS standard error with Student t), ``"seed-lines-t"``
      (several: the mean of the seeds' own exponents, Student t over seeds) or ``""`` (no fit);
    - ``theory_alpha`` (k+1), ``prefactor``, ``r_squared`` (log-log), ``x_pivot`` (geometric mean of
      the used x: where the line is pinned best);
    - ``n_points`` (points in the fit, every seed counted), ``n_seeds``;
    - ``points_used``: ``[{"grid_size", "x", "y", "n_seeds"}, ...]`` by increasing G: the fitted
      points, ``y`` the geometric mean over seeds of ``metric``, ``x`` the mean over seeds of the
      scaling variable (a one-seed fit is the least-squares line through exactly these);
    - ``points_excluded``: ``[{"grid_size", "reason"}, ...]``: beyond the interpolation threshold or
      interpolating (test/train RMSE ratio above ``divergence_factor``);
    - ``threshold_grid``, ``threshold_params_per_sample``: the interpolation threshold (``null``
      when the test RMSE never turns up);
    - ``note``: why there is no fit or no interval, failed rows dropped (``""`` when nothing).
``family_laws``
    KAN against MLP, one object per (function, N, family) of ``families.csv`` (empty without MLPs):
    test RMSE against the parameter count P over the family's lower envelope. ``function``,
    ``n_train``, ``family`` (``"kan"``, ``"mlp"``), ``alpha``, ``alpha_low``, ``alpha_high``,
    ``confidence``, ``ci_method``, ``theory_alpha`` (k+1 for KANs, (k+1)/d for MLPs), ``n_points``,
    ``n_seeds``, ``points_used`` (``[{"label", "n_params", "test_rmse"}, ...]`` by increasing P),
    ``best_test_rmse``, ``best_n_params``, ``target_rmse``, ``params_at_target`` and ``note``.
``data_laws``
    The data axis (:mod:`kanlib.analysis.frontier`; empty lists for a sweep with fewer than 3 N):
    ``laws``, one object per (function, family, measure): ``delta`` (best size ∝ N^delta; size
    ``size_column``: ``grid_size`` or ``n_params``) and ``gamma`` (best test error ∝ N^-gamma), each
    with ``_low``/``_high``, ``size_prefactor``, ``error_prefactor``, ``theory_gamma`` ((k+1) delta),
    ``ci_method`` (``"seed-lines-t"``: mean of the seeds' exponents, Student t over seeds; ``"ols-t"``
    for one seed), ``n_sizes``, ``n_seeds``, ``at_size_end`` (lower bounds), ``still_improving``;
    ``held_out``, the laws refitted without the largest N against what it measured there;
    ``recommendations``, the size and expected test error per N.

Example (the default sweep, ``make run``; one of its 20 laws, shortened)::

    {"format": "kanlib-laws/2", "sweep": "seed",
     "config_hash": "sha256:20110848f181482ff436497419bcf636926610dbee44cc9154a576f981240cc1",
     "code_version": {"kanlib": "0.2.0", "git_commit": "<40 hex digits>"},
     "law": "y = prefactor * x ** -alpha",
     "settings": {"confidence": 0.95, "divergence_factor": 10.0},
     "laws": [..., {"function": "exp_sin_pi_x_plus_y2", "width": "2-1-1", "k": 3, "n_train": 3000,
               "x": "grid_size", "metric": "test_rmse", "alpha": 4.124972571732293,
               "alpha_low": 4.0283280676624305, "alpha_high": 4.221617075802156, "confidence": 0.95,
               "ci_method": "ols-t", "theory_alpha": 4.0, "prefactor": 4.4825026735522675,
               "r_squared": 0.9998374299013494, "x_pivot": 21.867241478865562, "n_points": 5, "n_seeds": 1,
               "points_used": [{"grid_size": 5, "x": 5.0, "y": 0.006316131483000001, "n_seeds": 1}, ...,
                               {"grid_size": 100, "x": 100.0, "y": 2.687588599999999e-08, "n_seeds": 1}],
               "points_excluded": [], "threshold_grid": null, "threshold_params_per_sample": null,
               "note": ""}, ...],
     "family_laws": []}
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from .. import __version__
from .fits import GROUP_COLUMNS, chain_rows, fit_points

__all__ = ["FORMAT", "config_hash", "code_version", "laws_document", "laws_json"]

FORMAT = "kanlib-laws/2"
LAW = "y = prefactor * x ** -alpha"

_LAW_FIELDS = (
    "function",
    "width",
    "k",
    "n_train",
    "x",
    "metric",
    "alpha",
    "alpha_low",
    "alpha_high",
    "confidence",
    "ci_method",
    "theory_alpha",
    "prefactor",
    "r_squared",
    "x_pivot",
    "n_points",
    "n_seeds",
)
_FAMILY_FIELDS = (
    "function",
    "n_train",
    "family",
    "alpha",
    "alpha_low",
    "alpha_high",
    "confidence",
    "ci_method",
    "theory_alpha",
    "n_points",
    "n_seeds",
)
_FAMILY_TAIL = ("best_test_rmse", "best_n_params", "target_rmse", "params_at_target")


def config_hash(config: Mapping) -> str:
    """``"sha256:<hex>"`` of ``config`` as JSON with sorted keys and no spaces."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def code_version(git_commit: str) -> dict[str, str]:
    """The ``code_version`` field: this kanlib's version and the given git commit."""
    return {"kanlib": __version__, "git_commit": git_commit}


def _value(value):
    """A table cell as JSON: numpy scalars as Python ones, NaN as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _whole(value):
    """A grid size as an integer (the exponent table holds thresholds as floats, NaN for none)."""
    return int(value) if isinstance(value, (int, float, np.number)) and float(value).is_integer() else value


def _excluded(points_excluded) -> list[dict]:
    """``"50: reason; 100: reason"`` (the exponent table's column) as ``[{"grid_size", "reason"}]``."""
    if not isinstance(points_excluded, str) or not points_excluded:
        return []
    items = (item.split(": ", 1) for item in points_excluded.split("; "))
    return [{"grid_size": _value(pd.to_numeric(grid)), "reason": reason} for grid, reason in items]


def _point(points: pd.DataFrame, group: tuple, grid: int) -> dict:
    """One fitted point: the seed-averaged ``x`` and ``y`` at grid size ``grid`` of ``group``."""
    point = points.loc[(*group, grid)]
    return {
        "grid_size": grid,
        "x": _value(float(point["x"])),
        "y": _value(float(point["y"])),
        "n_seeds": int(point["n_seeds"]),
    }


def _kan_laws(results: pd.DataFrame, exponents: pd.DataFrame) -> list[dict]:
    results = chain_rows(results)
    points = {
        (x, metric): fit_points(results, x, metric).set_index([*GROUP_COLUMNS, "grid_size"])
        for x, metric in exponents[["x", "metric"]].drop_duplicates().itertuples(index=False)
    }
    laws = []
    for row in exponents.to_dict("records"):
        law = {field: _value(row[field]) for field in _LAW_FIELDS}
        group = (row["function"], row["width"], row["k"], row["n_train"])
        used = [int(g) for g in str(row["points_used"]).split(",") if g]
        law["points_used"] = [_point(points[(row["x"], row["metric"])], group, grid) for grid in used]
        law["points_excluded"] = _excluded(row["points_excluded"])
        law["threshold_grid"] = _value(_whole(row["threshold_grid"]))
        law["threshold_params_per_sample"] = _value(row["threshold_params_per_sample"])
        law["note"] = row["note"] if isinstance(row["note"], str) else ""
        laws.append(law)
    return laws


def _family_laws(comparison: pd.DataFrame | None, points: pd.DataFrame | None) -> list[dict]:
    if comparison is None or points is None:
        return []
    laws = []
    for row in comparison.to_dict("records"):
        law = {field: _value(row[field]) for field in _FAMILY_FIELDS}
        used = points[
            (points["function"] == row["function"])
            & (points["n_train"] == row["n_train"])
            & (points["family"] == row["family"])
            & points["used"]
        ].sort_values("n_params")
        law["points_used"] = [
            {"label": label, "n_params": _value(p), "test_rmse": _value(r)}
            for label, p, r in zip(used["label"], used["n_params"], used["test_rmse"])
        ]
        law.update({field: _value(row[field]) for field in _FAMILY_TAIL})
        law["note"] = row["note"] if isinstance(row["note"], str) else ""
        laws.append(law)
    return laws


def laws_document(
    results: pd.DataFrame,
    exponents: pd.DataFrame,
    *,
    sweep: str,
    settings: Mapping,
    config: Mapping,
    git_commit: str,
    comparison: pd.DataFrame | None = None,
    family_points: pd.DataFrame | None = None,
    frontier=None,
) -> dict:
    """The laws file's content (fields: the module docstring).

    ``exponents``: :func:`kanlib.analysis.tables.exponent_table` of ``results`` (KAN rows);
    ``comparison`` and ``family_points``: :func:`kanlib.analysis.tables.family_comparison` when the
    sweep has MLPs; ``frontier``: :func:`kanlib.analysis.frontier.frontier_report` (its laws,
    held-out check and recommendations go under ``data_laws``); ``config``: the sweep's config
    (hashed); ``git_commit``: the source tree's commit.
    """
    return {
        "format": FORMAT,
        "sweep": sweep,
        "config_hash": config_hash(config),
        "code_version": code_version(git_commit),
        "law": LAW,
        "settings": {key: _value(settings[key]) for key in ("confidence", "divergence_factor")},
        "laws": _kan_laws(results, exponents),
        "family_laws": _family_laws(comparison, family_points),
        "data_laws": _data_laws(frontier),
    }


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{key: _value(value) for key, value in row.items()} for row in frame.to_dict("records")]


def _data_laws(frontier) -> dict:
    """The data axis (:mod:`kanlib.analysis.frontier`): delta and gamma per function, family and
    measure, the held-out predictions and the recommendations; empty lists without one."""
    if frontier is None or frontier.empty:
        return {"laws": [], "held_out": [], "recommendations": []}
    return {
        "laws": _records(frontier.fits),
        "held_out": _records(frontier.held_out),
        "recommendations": _records(frontier.recommendations),
    }


def laws_json(document: Mapping) -> str:
    """The laws file's text (``allow_nan=False``: NaN is no JSON; :func:`laws_document` writes null)."""
    return json.dumps(document, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
