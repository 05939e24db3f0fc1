"""The seed experiment's 20 fits (4 data sizes x 5 grid levels), timed, with kanlib and pykan.

Runs the seed notebook's code cell (``Example_8_scaling.rst``) with kanlib and,
when pykan is installed (``pip install -e '.[bench]'`` brings pykan 0.2.1), the
same fits with pykan in the same process, then prints per-fit times, totals,
the speed ratio and both test-RMSE tables beside the seed's published one.

    python benchmarks/seed_sweep.py            # kanlib, then pykan if installed
    python benchmarks/seed_sweep.py --no-pykan
    python benchmarks/seed_sweep.py --device cuda --threads 16
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from kanlib import KAN, create_dataset
from kanlib.analysis.reference import SEED_TEST_RMSE

DATA_SIZES = [100, 300, 1000, 3000]
GRIDS = [5, 10, 20, 50, 100]
STEPS = 50


def target(x):
    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


def datasets(device: str) -> dict[int, dict]:
    """One dataset per size, shared by both libraries so that only the algorithms differ."""
    return {n: create_dataset(target, n_var=2, train_num=n, device=device) for n in DATA_SIZES}


def run_kanlib(data: dict, device: str, sizes=DATA_SIZES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The seed's cell with kanlib (import line changed, progress bar off)."""
    train, test, seconds = (np.zeros((len(sizes), len(GRIDS))) for _ in range(3))
    for j, n in enumerate(sizes):
        dataset = data[n]
        for i, grid in enumerate(GRIDS):
            started = time.perf_counter()
            if i == 0:
                model = KAN(width=[2, 1, 1], grid=grid, k=3, device=device)
            else:
                model = KAN(width=[2, 1, 1], grid=grid, k=3, device=device).initialize_from_another_model(
                    model, dataset["train_input"]
                )
            results = model.fit(dataset, opt="LBFGS", steps=STEPS, stop_grid_update_step=30, progress=False)
            seconds[j, i] = time.perf_counter() - started
            train[j, i], test[j, i] = results["train_loss"][-1], results["test_loss"][-1]
            print(
                f"  kanlib N={n:5d} G={grid:4d}  {seconds[j, i]:6.2f} s  train {train[j, i]:.2e}  "
                f"test {test[j, i]:.2e}  evals {sum(results['n_evals'])}",
                flush=True,
            )
    return train, test, seconds


def run_pykan(data: dict, device: str, sizes=DATA_SIZES) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The seed's cell with pykan on the same datasets, in float64 (pykan 0.2.1 reproduces the
    table only in float64, which it reads from torch's global default dtype)."""
    try:
        import kan as pykan
    except ImportError:
        return None
    import contextlib
    import io
    import os
    import tempfile

    previous_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # pykan reads the global default; restored below
    train, test, seconds = (np.zeros((len(sizes), len(GRIDS))) for _ in range(3))
    cwd = os.getcwd()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            os.chdir(scratch)  # pykan may write checkpoints and figures to the working directory
            for j, n in enumerate(sizes):
                dataset = data[n]
                for i, grid in enumerate(GRIDS):
                    started = time.perf_counter()
                    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                        if i == 0:
                            model = pykan.KAN(width=[2, 1, 1], grid=grid, k=3, device=device)
                        else:
                            model = pykan.KAN(
                                width=[2, 1, 1], grid=grid, k=3, device=device
                            ).initialize_from_another_model(model, dataset["train_input"])
                        results = model.fit(dataset, opt="LBFGS", steps=STEPS, stop_grid_update_step=30)
                    seconds[j, i] = time.perf_counter() - started
                    train[j, i] = float(results["train_loss"][-1])
                    test[j, i] = float(results["test_loss"][-1])
                    print(
                        f"  pykan  N={n:5d} G={grid:4d}  {seconds[j, i]:6.2f} s  train {train[j, i]:.2e}  "
                        f"test {test[j, i]:.2e}",
                        flush=True,
                    )
    finally:
        os.chdir(cwd)
        torch.set_default_dtype(previous_dtype)
    return train, test, seconds


def pykan_available() -> bool:
    try:
        import kan  # noqa: F401
    except ImportError:
        return False
    return True


def print_table(title: str, values: np.ndarray) -> None:
    print(f"\n{title}")
    print("| N \\ G | " + " | ".join(str(g) for g in GRIDS) + " |")
    print("|---" * (len(GRIDS) + 1) + "|")
    for j, n in enumerate(DATA_SIZES):
        print(f"| {n} | " + " | ".join(f"{v:.2e}" for v in values[j]) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--no-pykan", action="store_true", help="skip pykan even when installed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} CPU thread(s)")
    seed = np.array([[SEED_TEST_RMSE[n][g] for g in GRIDS] for n in DATA_SIZES])

    data = datasets(args.device)
    compare = not args.no_pykan and pykan_available()
    # per data size: the kanlib chain, then the pykan chain (interleaved, so load changes hit both)
    k_runs, p_runs = [], []
    for n in DATA_SIZES:
        k_runs.append(run_kanlib(data, args.device, sizes=[n]))
        if compare:
            p_runs.append(run_pykan(data, args.device, sizes=[n]))
    k_train, k_test, k_seconds = (np.concatenate([run[i] for run in k_runs]) for i in range(3))
    print(
        f"\nkanlib total {k_seconds.sum():.2f} s for {k_seconds.size} fits "
        f"({k_seconds.min():.2f}-{k_seconds.max():.2f} s a fit)"
    )
    print_table("kanlib test RMSE", k_test)
    print_table("seed test RMSE (published)", seed)
    print_table("kanlib / seed test RMSE", k_test / seed)

    if not compare:
        print("\npykan not run (not installed or --no-pykan); install the 'bench' extra for the comparison")
        return
    p_train, p_test, p_seconds = (np.concatenate([run[i] for run in p_runs]) for i in range(3))
    print(
        f"pykan total {p_seconds.sum():.2f} s for {p_seconds.size} fits "
        f"({p_seconds.min():.2f}-{p_seconds.max():.2f} s a fit)"
    )
    print_table("pykan test RMSE", p_test)
    print_table("kanlib / pykan test RMSE (<= 2 required, < 1 better)", k_test / p_test)
    print(f"\nspeed ratio pykan / kanlib, whole sweep: {p_seconds.sum() / k_seconds.sum():.1f}x")
    for j, n in enumerate(DATA_SIZES):
        print(
            f"  N={n}: pykan {p_seconds[j].sum():.1f} s, kanlib {k_seconds[j].sum():.2f} s, "
            f"ratio {p_seconds[j].sum() / k_seconds[j].sum():.1f}x"
        )
    print(f"worst cell kanlib/pykan test RMSE ratio: {np.max(k_test / p_test):.2f}")


if __name__ == "__main__":
    main()
