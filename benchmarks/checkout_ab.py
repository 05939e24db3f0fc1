"""Two (or more) checkouts of kanlib on the same workloads, alternating task by task.

One worker process per checkout imports its kanlib once; the workloads then run in turns (A, B, B, A,
...), so slow phases of a shared machine hit every checkout alike. Each task's CPU time (process
time: what the work costs, whatever else the machine runs) and wall time are recorded. Printed:
per workload the median CPU time of each checkout, the median of the paired ratios against the first
checkout, the largest relative difference of the final train/test RMSEs from the first checkout's
(0 when the fits are bit-identical) and the geometric mean of their ratios (a chain of fits can
carry a rounding difference to a far-off minimum for a few models: this says whether the changed
checkout's fits end better or worse on the whole).

Workloads:
  seed-sweep   the seed experiment's 20 fits (benchmarks/seed_sweep.py: N = 100..3000, G = 5..100)
  stack-S-N    S seeds of the seed chain at N training points as one stack (KANStack), e.g. stack-16-1000
  fine-S-N     the same with G = 5, 20, 100, 316, 1066 (to the data-axis preset's fine levels), e.g. fine-5-6400
  mlp          the kan_vs_mlp preset's nine MLP shapes on the seed's function, N = 1000, 350 steps each

    python benchmarks/checkout_ab.py --repos /tmp/before . --reps 7 --workloads seed-sweep stack-4-1000
    python benchmarks/checkout_ab.py --repos . . --env '' KANLIB_CPU_KERNEL=torch --workloads seed-sweep

``--env``: per checkout, NAME=VALUE pairs (comma-separated) set in that worker, or ''.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

WORKER = r"""
import contextlib, io, json, sys, time
import torch
torch.set_num_threads(int(sys.argv[1]))
sys.path.insert(0, sys.argv[2] + "/benchmarks")
from seed_sweep import GRIDS, datasets, run_kanlib, target
from kanlib import KAN, MLP, KANStack, create_dataset

data = datasets("cpu")

def stack_chain(S, N, grids):
    sets = [create_dataset(target, n_var=2, train_num=N, seed=s) for s in range(S)]
    x = torch.stack([d["train_input"] for d in sets])
    stack = None
    for grid in grids:
        fresh = KANStack.stack([KAN(width=[2, 1, 1], grid=grid, k=3, seed=s + 1) for s in range(S)])
        stack = fresh if stack is None else fresh.initialize_from_another_model(stack, x)
        results = stack.fit(sets, steps=50, stop_grid_update_step=30, progress=False)
    return [r["train_loss"][-1] for r in results], [r["test_loss"][-1] for r in results]

def mlps():
    dataset = create_dataset(target, n_var=2, train_num=1000, seed=0)
    results = [
        MLP(width=[2, *[h] * depth, 1], seed=2).fit(dataset, steps=350, progress=False)
        for depth in (1, 2, 3)
        for h in (5, 20, 50)
    ]
    return [r["train_loss"][-1] for r in results], [r["test_loss"][-1] for r in results]

for line in sys.stdin:
    workload = line.strip()
    wall, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        if workload == "seed-sweep":
            train, test, _ = run_kanlib(data, "cpu")
            train, test = train.ravel().tolist(), test.ravel().tolist()
        elif workload == "mlp":
            train, test = mlps()
        else:
            name, S, N = workload.split("-")
            train, test = stack_chain(int(S), int(N), (5, 20, 100, 316, 1066) if name == "fine" else GRIDS)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({"wall": wall, "cpu": cpu, "train": train, "test": test}), flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repos", nargs="+", required=True, help="checkouts (each holds kanlib/ and benchmarks/)")
    parser.add_argument("--env", nargs="*", default=None, help="per checkout: NAME=VALUE[,NAME=VALUE] or ''")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workloads", nargs="+", default=["seed-sweep"])
    args = parser.parse_args()
    repos = [str(Path(r).resolve()) for r in args.repos]
    envs = args.env or [""] * len(repos)
    labels = [" ".join(filter(None, parts)) for parts in zip(repos, envs)]
    workers = []
    for repo, spec in zip(repos, envs):
        extra = dict(pair.split("=", 1) for pair in spec.split(",") if pair)
        env = dict(os.environ, PYTHONPATH=repo, **extra)
        command = [sys.executable, "-c", WORKER, str(args.threads), repo]
        pipes = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        workers.append(subprocess.Popen(command, env=env, cwd="/", **pipes))
    runs: dict[tuple[int, str], list[dict]] = {}
    for rep in range(args.reps):
        for workload in args.workloads:
            order = list(range(len(repos)))
            order = order[rep % len(order) :] + order[: rep % len(order)]
            for v in order:
                workers[v].stdin.write(workload + "\n")
                workers[v].stdin.flush()
                result = json.loads(workers[v].stdout.readline())
                runs.setdefault((v, workload), []).append(result)
                times = f"cpu {result['cpu']:.2f} s, wall {result['wall']:.2f} s"
                print(f"rep {rep} {workload} {labels[v]}: {times}", flush=True)
    for worker in workers:
        worker.stdin.close()
        worker.wait()
    print(f"\nthreads {args.threads}, {args.reps} repetitions, medians:")
    print(
        "| workload | checkout | CPU s | wall s | CPU / first checkout's (paired) | max RMSE deviation "
        "| train RMSE ratio, geometric mean | test RMSE ratio, geometric mean |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for workload in args.workloads:
        first = runs[(0, workload)]
        for v, label in enumerate(labels):
            results = runs[(v, workload)]
            ratio = np.median([r["cpu"] / f["cpu"] for r, f in zip(results, first)])
            deviation = max(
                float(np.max(np.abs(np.array(r[key]) / np.array(f[key]) - 1)))
                for r, f in zip(results, first)
                for key in ("train", "test")
            )
            geometric = [
                float(np.exp(np.mean([np.log(np.array(r[key]) / np.array(f[key])) for r, f in zip(results, first)])))
                for key in ("train", "test")
            ]
            cpu = np.median([r["cpu"] for r in results])
            wall = np.median([r["wall"] for r in results])
            print(
                f"| {workload} | {label} | {cpu:.2f} | {wall:.2f} | {ratio:.3f} | {deviation:.1e} "
                f"| {geometric[0]:.3f} | {geometric[1]:.3f} |"
            )


if __name__ == "__main__":
    main()
