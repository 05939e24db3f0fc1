"""Published reference numbers for the seed experiment (KAN scaling with grid size).

Source: pykan docs Example 8, KAN paper arXiv 2404.19756
(Liu et al., "KAN: Kolmogorov-Arnold Networks").

Setting of those numbers: target ``f(x, y) = exp(sin(pi x) + y^2)``, KAN of
width ``[2, 1, 1]`` with cubic B-splines (``k = 3``), grid sizes
``G in {5, 10, 20, 50, 100}`` trained one after another with grid extension
(each level initialised from the previous one), 50 LBFGS steps per level, and
training-set sizes ``N in {100, 300, 1000, 3000}``. Values are the RMSE
printed by the seed notebook at the end of each grid level.

The tables are stored as ``{N: {G: rmse}}``. Nothing here is computed; these
constants are what our own sweep is compared against.
"""

from __future__ import annotations

import pandas as pd

#: Grid sizes G of the seed sweep, in training order.
SEED_GRID_SIZES: tuple[int, ...] = (5, 10, 20, 50, 100)

#: Training-set sizes N of the seed sweep.
SEED_TRAIN_SIZES: tuple[int, ...] = (100, 300, 1000, 3000)

#: Published test RMSE, ``SEED_TEST_RMSE[N][G]``.
SEED_TEST_RMSE: dict[int, dict[int, float]] = {
    100: {5: 7.32e-03, 10: 8.06e-04, 20: 3.07e-04, 50: 3.15e-02, 100: 1.65e00},
    300: {5: 6.71e-03, 10: 3.15e-04, 20: 2.34e-05, 50: 5.00e-06, 100: 3.41e-02},
    1000: {5: 6.44e-03, 10: 3.76e-04, 20: 4.69e-05, 50: 1.30e-05, 100: 1.05e-05},
    3000: {5: 6.77e-03, 10: 3.35e-04, 20: 1.86e-05, 50: 4.93e-07, 100: 3.27e-08},
}

#: Published train RMSE, ``SEED_TRAIN_RMSE[N][G]``.
SEED_TRAIN_RMSE: dict[int, dict[int, float]] = {
    100: {5: 5.22e-03, 10: 2.20e-04, 20: 7.01e-06, 50: 1.97e-04, 100: 2.00e-03},
    300: {5: 5.80e-03, 10: 3.19e-04, 20: 1.96e-05, 50: 2.08e-06, 100: 2.81e-07},
    1000: {5: 6.45e-03, 10: 4.14e-04, 20: 4.94e-05, 50: 5.21e-06, 100: 2.12e-06},
    3000: {5: 6.12e-03, 10: 2.98e-04, 20: 1.72e-05, 50: 3.97e-07, 100: 2.61e-08},
}


def seed_reference_frame() -> pd.DataFrame:
    """Return the seed tables as one tidy DataFrame.

    Returns
    -------
    pandas.DataFrame
        One row per (N, G) with columns ``n_train`` (int), ``grid_size``
        (int), ``train_rmse`` (float) and ``test_rmse`` (float), sorted by
        ``n_train`` then ``grid_size``.
    """
    rows = [
        {
            "n_train": n_train,
            "grid_size": grid_size,
            "train_rmse": SEED_TRAIN_RMSE[n_train][grid_size],
            "test_rmse": SEED_TEST_RMSE[n_train][grid_size],
        }
        for n_train in SEED_TRAIN_SIZES
        for grid_size in SEED_GRID_SIZES
    ]
    frame = pd.DataFrame(rows, columns=["n_train", "grid_size", "train_rmse", "test_rmse"])
    return frame.astype({"n_train": "int64", "grid_size": "int64", "train_rmse": "float64", "test_rmse": "float64"})
