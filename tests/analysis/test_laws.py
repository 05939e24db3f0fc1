"""kanlib.analysis.laws: the laws file on synthetic sweeps with known exponents, checked against
hashlib, numpy's least squares and closed-form geometric means."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from kanlib.analysis import laws, tables
from kanlib.analysis.families import has_families

SETTINGS = {"confidence": 0.95, "divergence_factor": 10.0, "target_rmse": 1e-4}
GRIDS = (5, 10, 20, 50)


def sweep(seeds=(0,), alpha=4.0, noise=0.1, mlp=False) -> pd.DataFrame:
    """KAN test RMSE = 0.5 G^-alpha (log-normal noise) at N=1000, except G=50, which overfits
    (test RMSE up tenfold, train RMSE still falling); with ``mlp`` three MLPs at P^-1."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in seeds:
        for grid in GRIDS:
            clean = 0.5 * grid**-alpha * float(rng.lognormal(0.0, noise))
            test = clean * (1000.0 if grid == 50 else 1.0)
            row = dict(function="f", family="kan", width="2-1-1", activation=None, k=3, n_train=1000, seed=seed)
            rows.append(row | dict(grid_size=grid, n_params=3 * (grid + 5), train_rmse=clean, test_rmse=test))
        for hidden in (5, 10, 20) if mlp else ():
            n_params = 4 * hidden + 1
            test = 0.5 / n_params * float(rng.lognormal(0.0, noise))
            row = dict(function="f", family="mlp", width=f"2-{hidden}-1", activation="silu", k=np.nan)
            rows.append(row | dict(n_train=1000, seed=seed, grid_size=np.nan, n_params=n_params))
            rows[-1] |= dict(train_rmse=test / 2, test_rmse=test)
    return pd.DataFrame(rows)


def document(results: pd.DataFrame, config=None) -> dict:
    exponents = tables.report_exponents(results, SETTINGS)
    comparison, points = tables.family_comparison(results, SETTINGS) if has_families(results) else (None, None)
    text = laws.laws_json(
        laws.laws_document(
            results,
            exponents,
            sweep="s",
            settings=SETTINGS,
            config=config or {"sweep": "s"},
            git_commit="abc",
            comparison=comparison,
            family_points=points,
        )
    )
    return json.loads(text)  # the text is JSON (no NaN token)


def law_of(document: dict, x="grid_size", metric="test_rmse") -> dict:
    return next(law for law in document["laws"] if law["x"] == x and law["metric"] == metric)


def test_config_hash_is_the_sha256_of_the_config_as_sorted_compact_json():
    config = {"sweep": "seed", "grids": [5, 10], "mlflow": {"experiment": "e", "retry_seconds": 5}, "lr": 1.0}
    text = '{"grids":[5,10],"lr":1.0,"mlflow":{"experiment":"e","retry_seconds":5},"sweep":"seed"}'
    assert laws.config_hash(config) == "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    assert laws.config_hash(dict(reversed(config.items()))) == laws.config_hash(config)  # key order is no change
    assert laws.config_hash({**config, "lr": 0.5}) != laws.config_hash(config)


def test_one_seed_law_is_the_least_squares_line_through_its_points():
    result = document(sweep())
    assert result["format"] == laws.FORMAT and result["code_version"]["git_commit"] == "abc"
    assert result["family_laws"] == []
    law = law_of(result)
    assert law["ci_method"] == "ols-t" and [p["grid_size"] for p in law["points_used"]] == [5, 10, 20]
    assert [p["grid_size"] for p in law["points_excluded"]] == [50]
    x, y = (np.log10([p[c] for p in law["points_used"]]) for c in ("x", "y"))
    slope, intercept = np.polyfit(x, y, 1)
    assert law["alpha"] == pytest.approx(-slope, rel=1e-10) and law["prefactor"] == pytest.approx(10**intercept)
    assert law["threshold_grid"] == 20 and isinstance(law["threshold_grid"], int)
    by_params = law_of(result, x="n_params")
    assert [p["x"] for p in by_params["points_used"]] == [3.0 * (g + 5) for g in (5, 10, 20)]


def test_points_of_several_seeds_are_their_geometric_means():
    results = sweep(seeds=(0, 1, 2))
    law = law_of(document(results))
    assert law["ci_method"] == "seed-lines-t" and law["n_seeds"] == 3
    for point in law["points_used"]:
        values = results[(results["family"] == "kan") & (results["grid_size"] == point["grid_size"])]["test_rmse"]
        assert point["y"] == pytest.approx(np.exp(np.log(values).mean()), rel=1e-12) and point["n_seeds"] == 3


def test_a_law_without_a_fit_is_null_not_nan():
    results = sweep()
    results = results[results["grid_size"].isin([5, 50])]  # one point below the threshold: no fit
    law = law_of(document(results))
    assert law["alpha"] is None and law["alpha_low"] is None and law["r_squared"] is None
    assert law["ci_method"] == "" and "needs at least 2" in law["note"]


def test_family_laws_list_the_envelope_points_of_each_family():
    result = document(sweep(mlp=True))
    families = {law["family"]: law for law in result["family_laws"]}
    assert set(families) == {"kan", "mlp"}
    mlp = families["mlp"]
    assert [p["n_params"] for p in mlp["points_used"]] == [21.0, 41.0, 81.0]
    x, y = (np.log10([p[c] for p in mlp["points_used"]]) for c in ("n_params", "test_rmse"))
    assert mlp["alpha"] == pytest.approx(-np.polyfit(x, y, 1)[0], rel=1e-10) and mlp["ci_method"] == "ols-t"
    assert families["kan"]["theory_alpha"] == 4.0 and mlp["theory_alpha"] == 2.0  # k+1 and (k+1)/d, d = 2
