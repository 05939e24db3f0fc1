"""Per-fit time on CPU and GPU across grid size G and data size N.

One fit = the seed's recipe for one grid level: [2,1,1], k=3, 50 LBFGS steps,
grid updates until step 30. Prints a table of seconds per fit and LBFGS
evaluations per device, and the GPU speed-up where CUDA is present.

    python benchmarks/device_fits.py [--grids 5 100 1000] [--sizes 1000 10000 100000] [--steps 50]
"""

from __future__ import annotations

import argparse
import time

import torch

from kanlib import KAN, create_dataset


def target(x):
    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


def one_fit(n: int, grid: int, steps: int, device: str) -> tuple[float, float, int]:
    dataset = create_dataset(target, train_num=n, device=device)
    model = KAN(width=[2, 1, 1], grid=grid, k=3, device=device)
    model.fit(dataset, steps=1, progress=False)  # warm-up: kernels, allocator
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    model = KAN(width=[2, 1, 1], grid=grid, k=3, device=device)
    result = model.fit(dataset, steps=steps, stop_grid_update_step=30, progress=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started, result["test_loss"][-1], sum(result["n_evals"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grids", type=int, nargs="+", default=[5, 100, 1000])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s), GPU: {gpu}, float64, "
        f"{args.steps} LBFGS steps per fit"
    )
    print(
        "| N | G | "
        + " | ".join(f"{d} s/fit | {d} evals | {d} test RMSE" for d in devices)
        + (" | GPU speed-up |" if len(devices) == 2 else " |")
    )
    print("|---" * (2 + 3 * len(devices) + (1 if len(devices) == 2 else 0)) + "|")
    for n in args.sizes:
        for grid in args.grids:
            cells, seconds = [], {}
            for device in devices:
                elapsed, test_rmse, evals = one_fit(n, grid, args.steps, device)
                seconds[device] = elapsed
                cells.append(f"{elapsed:.2f} | {evals} | {test_rmse:.2e}")
            speedup = f" | {seconds['cpu'] / seconds['cuda']:.2f}x |" if len(devices) == 2 else " |"
            print(f"| {n} | {grid} | " + " | ".join(cells) + speedup, flush=True)


if __name__ == "__main__":
    main()
