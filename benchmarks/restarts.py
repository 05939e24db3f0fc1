"""Poor minima and restarts: the detection rule's evidence, stuck chains against R, and what R costs.

Part ``detection``: the relative train RMSE (train RMSE / standard deviation of the training labels)
at the first and the fourth level of the presets' chains (the default sweep, Fig. 2.3 and Fig. 3.1,
5-20 model seeds each) and after the kan_vs_mlp preset's MLP fits. A chain that learnt its target
sits orders of magnitude below one that learnt roughly the labels' mean; the rule's threshold and
level go where the two are apart for every function.

Part ``restarts``: [2,1,1] on exp(sin(pi x) + y^2), N = 1000, G = 3, 200 L-BFGS steps (pykan's
function-fitting tutorial), model seeds 0..19: how many are stuck when the best of R = 1, 2, 4, 8
initialisations (kanlib.restarts.best_of) continues; then the CPU time of the first level and of the
whole chain G = 3..100 with R against R = 1, alternating, one thread. With ``--pykan-python`` (a
Python with pykan 0.2.8), the same model seeds and data on pykan.

    python benchmarks/restarts.py --parts detection restarts
    python benchmarks/restarts.py --parts pykan --pykan-python /tmp/pykan28/bin/python   # a Python with pykan 0.2.8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch

from kanlib import KAN, MLP, KANStack, best_of, create_dataset, restart_seeds
from kanlib.families import REGISTRY
from kanlib.functions import get_function

KAN_RULE, MLP_RULE = REGISTRY["kan"].not_learned_relative_rmse, REGISTRY["mlp"].not_learned_relative_rmse

SEEDS = range(20)
CHAIN = [3, 5, 10, 20, 50, 100]

# (label, function, width, grids up to the judged (fourth) level, steps, stop_grid_update_step, N, seeds)
PRESET_CHAINS = [
    *[
        (f"default sweep N={n}", "exp_sin_pi_x_plus_y2", [2, 1, 1], [5, 10, 20, 50], 50, 30, n, range(20))
        for n in (100, 1000)
    ],
    ("Fig. 2.3 [2,1,1]", "exp_sin_pi_x_plus_y2", [2, 1, 1], [3, 5, 10, 20], 200, 50, 1000, range(20)),
    ("Fig. 2.3 [2,5,1]", "exp_sin_pi_x_plus_y2", [2, 5, 1], [3, 5, 10, 20], 200, 50, 1000, range(10)),
    ("Fig. 3.1 J0(20x) [1,1]", "bessel_j0_20x", [1, 1], [3, 5, 10, 20], 200, 50, 1000, range(10)),
    ("Fig. 3.1 xy [2,2,1]", "xy", [2, 2, 1], [3, 5, 10, 20], 200, 50, 1000, range(10)),
    ("Fig. 3.1 100d [100,1,1]", "exp_mean_sin_sq_100d", [100, 1, 1], [3, 5, 10, 20], 200, 50, 1000, range(5)),
    ("Fig. 3.1 4d [4,4,2,1]", "exp_composition_4d", [4, 4, 2, 1], [3, 5, 10, 20], 200, 50, 1000, range(5)),
]
MLP_FITS = [  # kan_vs_mlp: N = 1000, 350 steps
    (function, [n_var, *hidden, 1])
    for function, n_var in (("exp_sin_pi_x_plus_y2", 2), ("xy", 2))
    for hidden in ([5], [20, 20], [50, 50, 50])
]


def dataset_for(function: str, n: int, seed: int = 0) -> dict:
    target = get_function(function)
    return create_dataset(target, n_var=target.n_var, train_num=n, seed=seed)


def relative(rmse: float, dataset: dict) -> float:
    return rmse / float(dataset["train_label"].std())


def _values(values) -> str:
    return " ".join(f"{v:.2g}" for v in sorted(values))


def detection() -> None:
    print("## Relative train RMSE (train RMSE / std of the training labels) at the first and fourth level\n")
    print(
        f"rule (kanlib.families): a KAN chain did not learn its target when the value at its fourth level is "
        f"above {KAN_RULE}; an MLP when its fit ends above {MLP_RULE}\n"
    )
    print("| chains | models | first level, sorted | fourth level, sorted | above at the first | above at the fourth |")
    print("|---|---|---|---|---|---|")
    for label, function, width, grids, steps, stop, n, seeds in PRESET_CHAINS:
        data = dataset_for(function, n)
        stack, levels = None, []
        for grid in grids:
            fresh = KANStack.stack([KAN(width=width, grid=grid, k=3, seed=s) for s in seeds])
            stack = fresh if stack is None else fresh.initialize_from_another_model(stack, data["train_input"])
            fits = stack.fit(data, steps=steps, stop_grid_update_step=stop, progress=False)
            levels.append([relative(f["train_loss"][-1], data) for f in fits])
        first, fourth = levels[0], levels[-1]
        above = [sum(v > KAN_RULE for v in level) for level in (first, fourth)]
        print(
            f"| {label}, G={grids[0]} and {grids[-1]} | {len(seeds)} | {_values(first)} | {_values(fourth)} "
            f"| {above[0]} | {above[1]} |",
            flush=True,
        )
    for function, width in MLP_FITS:
        data = dataset_for(function, 1000)
        values = [
            relative(MLP(width=width, seed=s).fit(data, steps=350, progress=False)["train_loss"][-1], data)
            for s in range(5)
        ]
        above = sum(v > MLP_RULE for v in values)
        print(f"| kan_vs_mlp MLP {function} {width} (one fit) | 5 | {_values(values)} | | {above} | |", flush=True)


def first_level(seeds, restarts: int, data: dict) -> list[float]:
    """Each model seed's chosen relative train RMSE with ``restarts`` candidates."""
    chosen = []
    for seed in seeds:
        _, result = best_of(
            lambda s: KAN(width=[2, 1, 1], grid=3, k=3, seed=s),
            seed,
            restarts,
            data,
            steps=200,
            stop_grid_update_step=50,
            progress=False,
        )
        chosen.append(relative(result["train_loss"][-1], data))
    return chosen


def chain(seed: int, restarts: int, data: dict) -> tuple[float, float]:
    """The chain G = 3..100 from the best of ``restarts``: (CPU seconds, final train RMSE)."""
    cpu = time.process_time()
    model, _ = best_of(
        lambda s: KAN(width=[2, 1, 1], grid=3, k=3, seed=s),
        seed,
        restarts,
        data,
        steps=200,
        stop_grid_update_step=50,
        progress=False,
    )
    for grid in CHAIN[1:]:
        model = model.refine(grid)
        result = model.fit(data, steps=200, stop_grid_update_step=50, progress=False)
    return time.process_time() - cpu, result["train_loss"][-1]


PYKAN = r"""
import json, sys, torch
torch.set_default_dtype(torch.float64)
from kan import KAN
data = torch.load(sys.argv[1])
out = []
for seed in json.loads(sys.argv[2]):
    model = KAN(width=[2, 1, 1], grid=3, k=3, seed=seed, auto_save=False)
    result = model.fit(data, opt="LBFGS", steps=200, log=1000)
    out.append(float(result["train_loss"][-1]))
print(json.dumps(out))
"""


def restarts(reps: int) -> None:
    torch.set_num_threads(1)
    data = dataset_for("exp_sin_pi_x_plus_y2", 1000)
    print("\n## Stuck first levels against R ([2,1,1], N = 1000, G = 3, 200 steps, model seeds 0..19)\n")
    print("| R | stuck after the first level (relative train RMSE above the threshold) | chosen, median |")
    print("|---|---|---|")
    for R in (1, 2, 4, 8):
        values = first_level(SEEDS, R, data)
        stuck = sum(v > KAN_RULE for v in values)
        print(f"| {R} | {stuck} of {len(values)} | {np.median(values):.3g} |", flush=True)
    print("\n## CPU time: the chain G = 3..100 (200 steps a level) with R against R = 1, one thread, alternating\n")
    print("| R | model seeds | CPU s per chain (median) | ratio to R = 1 (paired median) | stuck at G = 100 |")
    print("|---|---|---|---|---|")
    seeds = list(SEEDS)[:reps]
    times = {R: [] for R in (1, 2, 4, 8)}
    finals = {R: [] for R in times}
    for i, seed in enumerate(seeds):
        order = list(times) if i % 2 == 0 else list(times)[::-1]
        for R in order:
            seconds, final = chain(seed, R, data)
            times[R].append(seconds)
            finals[R].append(relative(final, data))
    for R in times:
        ratio = np.median([t / b for t, b in zip(times[R], times[1])])
        stuck = sum(v > KAN_RULE for v in finals[R])
        print(f"| {R} | {len(seeds)} | {np.median(times[R]):.2f} | {ratio:.2f} | {stuck} of {len(seeds)} |")
    print(f"\nrestart seeds of model seed 0 (R = 8): {restart_seeds(0, 8)}")


def pykan(pykan_python: str) -> None:
    """The same model seeds and data on pykan 0.2.8 (its own Python), R = 1."""
    data = dataset_for("exp_sin_pi_x_plus_y2", 1000)
    print("\n## pykan 0.2.8, the same model seeds and data, R = 1\n")
    print("| R | stuck after the first level (relative train RMSE above the threshold) | chosen, median |")
    print("|---|---|---|")
    path = "/tmp/restarts_dataset.pt"
    torch.save({key: value.clone() for key, value in data.items()}, path)
    done = subprocess.run(
        [pykan_python, "-c", PYKAN, path, json.dumps(list(SEEDS))], capture_output=True, text=True, cwd="/tmp"
    )
    if done.returncode:
        print(f"\npykan failed: {done.stderr[-2000:]}")
    else:
        values = [relative(v, data) for v in json.loads(done.stdout.strip().splitlines()[-1])]
        stuck = sum(v > KAN_RULE for v in values)
        print(f"| pykan 0.2.8, R = 1 | {stuck} of {len(values)} | {np.median(values):.3g} |")
        print(f"\npykan 0.2.8 relative train RMSEs: {' '.join(f'{v:.2g}' for v in values)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--parts", nargs="+", default=["detection", "restarts"], choices=["detection", "restarts", "pykan"]
    )
    parser.add_argument("--pykan-python", help="a Python with pykan 0.2.8 installed")
    parser.add_argument("--chains", type=int, default=6, help="model seeds whose whole chain is timed")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads (the timing part: 1)", file=sys.stderr)
    if "detection" in args.parts:
        detection()
    if "restarts" in args.parts:
        restarts(args.chains)
    if "pykan" in args.parts:
        pykan(args.pykan_python)


if __name__ == "__main__":
    main()
