"""Spline ends, a first screen with library calls: pykan's convention (each layer's grid follows the
training activations: update_grid during the first 50 steps of a level) against grids that stay where
they were built (``update_grid=False``: every layer's grid on [-1, 1], the known input domain for the
first layer) and against the first layer alone on [-1, 1] (hidden grids following the data), on
the seed's function ([2,1,1]) and xy ([2,2,1]), N = 1000, model seeds 0-4 (the best
of 4 initialisations at G = 3), grid extension G = 3 ... 200, 200 L-BFGS steps a level.

Per level: train RMSE; the test RMSE on 1000 test points (mean, median and interior: the points
inside the training range at every layer, kanlib.range_split_errors), the share of the test MSE
that the other points carry; and the RMSE over the whole domain from 2^17 scrambled Sobol points
(a handful of test points makes the 1000-point mean noisy). Geometric means over the seeds.

    python benchmarks/spline_ends.py [--seeds 5] [--grids 3 5 10 20 50 100 200] [--conventions pykan fixed input]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.stats import qmc

from kanlib import KAN, best_of, create_dataset, range_split_errors
from kanlib.functions import get_function
from kanlib.training import median_rmse

CASES = [("exp_sin_pi_x_plus_y2", [2, 1, 1]), ("xy", [2, 2, 1])]
FOLLOW = {"update_grid": True, "grid_update_num": 10, "stop_grid_update_step": 50}


class InputDomainKAN(KAN):
    """The first layer's grid stays on [-1, 1] (the inputs' known domain); hidden grids follow the data."""

    @torch.no_grad()
    def update_grids(self, x: torch.Tensor) -> None:
        x = self.layers[0](x)
        for layer in self.layers[1:]:
            layer.update_grid_from_samples(x)
            x = layer(x)


# label: (model class, fit options)
CONVENTIONS = {
    "pykan": ("pykan (grids follow the data)", KAN, FOLLOW),
    "fixed": ("grids fixed on [-1, 1]", KAN, {"update_grid": False}),
    "input": ("first layer on [-1, 1], hidden grids follow the data", InputDomainKAN, FOLLOW),
}


def domain_rmse(model, target, points: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(points) - target(points)).pow(2).mean().sqrt())


def chain(function: str, width, seed: int, grids: list[int], model_class, options: dict, points) -> list[dict]:
    target = get_function(function)
    data = create_dataset(target, n_var=target.n_var, train_num=1000, test_num=1000, seed=seed)
    rows, model = [], None
    for grid in grids:
        if model is None:
            model, _ = best_of(  # candidates one by one: the same numbers as a stack, and the class kept
                lambda s: model_class(width=width, grid=grid, k=3, seed=s),
                seed + 1,
                4,
                data,
                steps=200,
                progress=False,
                **options,
            )
        else:
            model = model.refine(grid)
            model.fit(data, steps=200, progress=False, **options)
        with torch.no_grad():
            train = float((model(data["train_input"]) - data["train_label"]).pow(2).mean().sqrt())
            test = float((model(data["test_input"]) - data["test_label"]).pow(2).mean().sqrt())
        split = range_split_errors(model, data)
        rows.append(
            {
                "grid": grid,
                "train": train,
                "test": test,
                "median": median_rmse(model, data["test_input"], data["test_label"]),
                "interior": split["test_interior_rmse"],
                "share": split["test_outside_mse_share"],
                "domain": domain_rmse(model, target, points[target.n_var]),
                "relative_train": train / float(data["train_label"].std()),
            }
        )
    return rows


def gmean(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.exp(np.mean(np.log(values)))) if np.all(values > 0) else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--grids", type=int, nargs="+", default=[3, 5, 10, 20, 50, 100, 200])
    parser.add_argument("--conventions", nargs="+", default=list(CONVENTIONS), choices=list(CONVENTIONS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    points = {  # 2^17 scrambled Sobol points over [-1, 1]^d
        d: torch.tensor(qmc.Sobol(d, scramble=True, seed=0).random_base2(17) * 2 - 1, dtype=torch.float64)
        for d in {target_width[0] for _, target_width in CASES}
    }
    print(f"torch {torch.__version__}, one thread; model seeds 0-{args.seeds - 1}; N = 1000; 200 steps a level\n")
    for function, width in CASES:
        for name in args.conventions:
            label, model_class, options = CONVENTIONS[name]
            started = time.process_time()
            chains = [
                chain(function, width, seed, args.grids, model_class, options, points) for seed in range(args.seeds)
            ]
            seconds = time.process_time() - started
            stuck = sum(rows[min(3, len(rows) - 1)]["relative_train"] > 0.1 for rows in chains)
            print(f"## {function}, KAN {width}, {label}: {seconds:.0f} s CPU, {stuck} chains stuck\n")
            print(
                "| G | train | test (mean) | test (median) | test (interior) | share outside, largest | whole domain |"
            )
            print("|---|---|---|---|---|---|---|")
            for index, grid in enumerate(args.grids):
                level = [rows[index] for rows in chains]
                cells = [gmean([row[key] for row in level]) for key in ("train", "test", "median", "interior")]
                share = max(row["share"] for row in level)
                domain = gmean([row["domain"] for row in level])
                print(
                    f"| {grid} | " + " | ".join(f"{value:.2e}" for value in cells) + f" | {share:.0%} | {domain:.2e} |",
                    flush=True,
                )
            print()


if __name__ == "__main__":
    main()
