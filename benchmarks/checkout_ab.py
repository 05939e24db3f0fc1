"""The seed sweep's 20 kanlib fits with two checkouts of kanlib, in alternating processes.

Each repetition runs one process per checkout (alternating which goes first) and torch thread
count; each process times the 20 fits of benchmarks/seed_sweep.py (wall and CPU time, the
datasets built before the clock starts) and prints the final train/test RMSE of every cell.
Printed: per-run times, medians per checkout and thread count, and each checkout's largest
relative RMSE deviation from the first one's (0 when the fits are bit-identical).

    python benchmarks/checkout_ab.py --repos /tmp/before . --reps 3 --threads 1 2
    python benchmarks/checkout_ab.py --repos . . --bracket-rtol 1e-9 ''   # the zoom before 0.2.0's fix
    python benchmarks/checkout_ab.py --repos /tmp/b12696a . . --env '' '' KANLIB_CPU_KERNEL=torch

``--env``: per checkout, NAME=VALUE pairs (comma-separated) set in that variant's processes, or ''.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

CHILD = """
import contextlib, io, json, sys, time
import torch
torch.set_num_threads(int(sys.argv[1]))
sys.path.insert(0, sys.argv[2] + "/benchmarks")
from seed_sweep import datasets, run_kanlib
from kanlib import training
if sys.argv[3]:
    make = training.LBFGS
    def with_rtol(*args, **kwargs):
        optimizer = make(*args, **kwargs)
        optimizer.bracket_rtol = float(sys.argv[3])
        return optimizer
    training.LBFGS = with_rtol
data = datasets("cpu")
wall, cpu = time.perf_counter(), time.process_time()
with contextlib.redirect_stdout(io.StringIO()):
    train, test, _ = run_kanlib(data, "cpu")
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(json.dumps({"wall": wall, "cpu": cpu, "train": train.tolist(), "test": test.tolist()}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repos", nargs="+", required=True, help="checkouts (each holds kanlib/ and benchmarks/)")
    parser.add_argument("--bracket-rtol", nargs="*", default=None, help="per checkout: LBFGS.bracket_rtol or ''")
    parser.add_argument("--env", nargs="*", default=None, help="per checkout: NAME=VALUE[,NAME=VALUE] or ''")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    repos = [str(Path(r).resolve()) for r in args.repos]
    rtols = args.bracket_rtol or [""] * len(repos)
    labels = [" ".join(filter(None, parts)) for parts in zip(repos, rtols, args.env or [""] * len(repos))]
    extra = [dict(pair.split("=", 1) for pair in spec.split(",") if pair) for spec in (args.env or [""] * len(repos))]
    variants = list(range(len(repos)))
    runs: dict[tuple[int, int], list[dict]] = {}
    for rep in range(args.reps):
        for threads in args.threads:
            order = variants[rep % len(variants) :] + variants[: rep % len(variants)]
            for v in order:
                env = dict(os.environ, PYTHONPATH=repos[v], **extra[v])
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, str(threads), repos[v], rtols[v]],
                    env=env,
                    cwd="/",
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                result = json.loads(out.strip().splitlines()[-1])
                runs.setdefault((v, threads), []).append(result)
                print(
                    f"rep {rep} {labels[v]} threads {threads}: wall {result['wall']:.2f} s, cpu {result['cpu']:.2f} s",
                    flush=True,
                )
    first = runs[(0, args.threads[0])][0]
    for (v, threads), results in sorted(runs.items()):
        wall = np.median([r["wall"] for r in results])
        cpu = np.median([r["cpu"] for r in results])
        deviation = max(
            float(np.max(np.abs(np.array(r[key]) / np.array(first[key]) - 1)))
            for r in results
            for key in ("train", "test")
        )
        print(
            f"{labels[v]} threads {threads}: median wall {wall:.2f} s, cpu {cpu:.2f} s over {len(results)}; "
            f"largest RMSE deviation from the first checkout {deviation:.2e}"
        )


if __name__ == "__main__":
    main()
