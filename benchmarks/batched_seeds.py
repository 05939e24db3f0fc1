"""S seeds of the seed chain trained one after another and as one stack, side by side.

The seed chain: f(x, y) = exp(sin(pi x) + y^2), KAN [2, 1, 1], k = 3, G = 5, 10, 20, 50, 100
chained by grid extension, 50 L-BFGS steps per level, stop_grid_update_step = 30; seed s trains on
its own dataset (create_dataset(seed=s)) of N samples. For N = 1000 and 3000 and S = 1, 4, 16:
the wall time of the S chains run one after another (KAN.fit) and as one KANStack
(KANStack.fit), their ratio, the stack's time against one seed alone, loss evaluations, and the
worst relative deviation of each model's final test RMSE (every level) between the stack and its
lone run. Times are this process's CPU time (with one thread it is what the work costs, whatever
else the machine runs) and, in brackets, wall time.

    python benchmarks/batched_seeds.py --threads 1
    python benchmarks/batched_seeds.py --threads 2 --sizes 1000 --seeds 1 4
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from kanlib import KAN, KANStack, create_dataset
from kanlib.functions import get_function

GRIDS = [5, 10, 20, 50, 100]
STEPS = 50
FIT = dict(opt="LBFGS", steps=STEPS, stop_grid_update_step=30, progress=False)


def clock() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def elapsed(started: tuple[float, float]) -> tuple[float, float]:
    now = clock()
    return now[0] - started[0], now[1] - started[1]


def chain_alone(seed: int, dataset: dict, device: str):
    """One seed's chain, as the seed notebook runs it: ((cpu, wall) seconds, final test RMSE per level, evaluations)."""
    started = clock()
    model, test, evals = None, [], 0
    for grid in GRIDS:
        fresh = KAN(width=[2, 1, 1], grid=grid, k=3, seed=seed, device=device)
        model = fresh if model is None else fresh.initialize_from_another_model(model, dataset["train_input"])
        result = model.fit(dataset, **FIT)
        test.append(result["test_loss"][-1])
        evals += sum(result["n_evals"])
    return elapsed(started), np.array(test), evals


def chain_stacked(seeds: list[int], datasets: list[dict], device: str):
    """The same chains as one stack: ((cpu, wall) seconds, final test RMSE (S, levels), batched evaluations)."""
    started = clock()
    inputs = torch.stack([dataset["train_input"] for dataset in datasets]).to(device)
    stack, test, evals = None, [], 0
    for grid in GRIDS:
        if stack is None:
            stack = KANStack.stack([KAN(width=[2, 1, 1], grid=grid, k=3, seed=seed, device=device) for seed in seeds])
        else:
            stack = stack.refine(grid, inputs)
        results = stack.fit(datasets, **FIT)
        test.append([result["test_loss"][-1] for result in results])
        evals += sum(max(result["n_evals"][step] for result in results) for step in range(STEPS))
    return elapsed(started), np.array(test).T, evals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000], help="training set sizes N")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 4, 16], help="stack sizes S")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} CPU thread(s)", flush=True)
    target = get_function("exp_sin_pi_x_plus_y2")
    largest = max(args.seeds)
    rows = []
    for n in args.sizes:
        datasets = [create_dataset(target, n_var=2, train_num=n, seed=s, device=args.device) for s in range(largest)]
        # lone chains and stacks interleaved, so that load changes on a shared machine hit both
        alone_seconds, alone_test, alone_evals = [], [], []
        for size in sorted(args.seeds):
            for seed in range(len(alone_seconds), size):
                seconds, test, evals = chain_alone(seed, datasets[seed], args.device)
                alone_seconds.append(seconds)
                alone_test.append(test)
                alone_evals.append(evals)
                print(
                    f"  N={n} seed {seed:2d} alone: {seconds[0]:6.2f} s ({seconds[1]:.2f}), {evals} evaluations",
                    flush=True,
                )
            seconds, test, evals = chain_stacked(list(range(size)), datasets[:size], args.device)
            deviation = np.max(np.abs(test - np.array(alone_test[:size])) / np.array(alone_test[:size]), axis=1)
            worst = np.array2string(deviation, precision=1)
            print(
                f"  N={n} stack of {size:2d}: {seconds[0]:6.2f} s ({seconds[1]:.2f}), {evals} batched evaluations; "
                f"worst relative deviation of each model's final test RMSE from its lone run: {worst}",
                flush=True,
            )
            sequential = tuple(sum(s[i] for s in alone_seconds[:size]) for i in range(2))
            rows.append((n, size, sequential, seconds, alone_seconds[0], sum(alone_evals[:size]), evals,
                         float(deviation.max())))  # fmt: skip

    print("\nCPU seconds (wall seconds in brackets)")
    print("| N | S | one after another | one stack | speed-up | stack / seed 0 alone | "
          "evaluations (sum alone / stack) | worst rel. deviation of test RMSE |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for n, size, sequential, stacked, one, evals_alone, evals_stack, deviation in rows:
        print(
            f"| {n} | {size} | {sequential[0]:.1f} ({sequential[1]:.1f}) | {stacked[0]:.1f} ({stacked[1]:.1f}) "
            f"| {sequential[0] / stacked[0]:.2f}x | {stacked[0] / one[0]:.2f}x | {evals_alone} / {evals_stack} "
            f"| {deviation:.1e} |"
        )


if __name__ == "__main__":
    main()
