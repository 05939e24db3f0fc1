"""The seed sweep's 20 kanlib fits with the line search's zoom before and after its fix, interleaved.

Before (kanlib <= 0.2.0): the zoom ended once its bracket moved the parameters by < 1e-9 relative;
right after a grid update, with a gradient of ~1e-10, that ended every line search at once and the
G=50/100 fits stopped for good. After: the optimizer's own tolerance_change (1e-12). Each
repetition runs both variants (alternating which goes first) on the same datasets as
benchmarks/seed_sweep.py; printed: wall and CPU time per variant and data size, and both
test-RMSE tables beside the seed's.

    python benchmarks/line_search_zoom.py                 # 2 repetitions, 2 torch threads
    python benchmarks/line_search_zoom.py --reps 3 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time

import numpy as np
import torch
from seed_sweep import DATA_SIZES, GRIDS, datasets, print_table, run_kanlib

from kanlib import training
from kanlib.analysis.reference import SEED_TEST_RMSE

VARIANTS = {"before (zoom to 1e-9)": 1e-9, "after (zoom to tolerance_change)": None}


def with_bracket_rtol(rtol):
    """training.fit's LBFGS with ``bracket_rtol`` set (None: the optimizer's own)."""
    original = training.LBFGS

    def make(*args, **kwargs):
        optimizer = original(*args, **kwargs)
        if rtol is not None:
            optimizer.bracket_rtol = rtol
        return optimizer

    return original, make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = datasets("cpu")
    times = {name: [] for name in VARIANTS}
    tests = {}
    for rep in range(args.reps):
        order = list(VARIANTS) if rep % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            original, make = with_bracket_rtol(VARIANTS[name])
            training.LBFGS = make
            try:
                wall, cpu = time.perf_counter(), time.process_time()
                with contextlib.redirect_stdout(io.StringIO()):
                    _, test, seconds = run_kanlib(data, "cpu")
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            finally:
                training.LBFGS = original
            times[name].append((wall, cpu))
            tests[name] = test
            print(
                f"rep {rep} {name:33s} wall {wall:6.2f} s  cpu {cpu:6.2f} s  per N "
                + " / ".join(f"{s:.2f}" for s in seconds.sum(axis=1)),
                flush=True,
            )
    for name in VARIANTS:
        walls, cpus = zip(*times[name])
        print(f"\n{name}: wall {np.median(walls):.2f} s, cpu {np.median(cpus):.2f} s (medians over {args.reps})")
        print_table(f"{name}: test RMSE", tests[name])
    print_table("seed test RMSE (published)", np.array([[SEED_TEST_RMSE[n][g] for g in GRIDS] for n in DATA_SIZES]))


if __name__ == "__main__":
    main()
