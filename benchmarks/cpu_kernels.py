"""A KAN's loss evaluation on the CPU: the C kernels (kanlib.cpu_kernels) against the torch path.

Per shape, the same model and data evaluated by both in alternating blocks in this process
(``cpu_kernels.disabled()`` selects the torch path): milliseconds per ``mse_and_grad_t`` (the
L-BFGS hot path), median of the blocks, and their ratio; then the largest relative difference of
the loss and gradients between the two (rounding).

    python benchmarks/cpu_kernels.py            # one torch thread
    python benchmarks/cpu_kernels.py --threads 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from kanlib import KAN, KANStack, cpu_kernels

SHAPES = [  # (label, width, grid, N, models in a stack)
    ("seed [2,1,1] G=5", [2, 1, 1], 5, 1000, 1),
    ("seed [2,1,1] G=100", [2, 1, 1], 100, 1000, 1),
    ("seed [2,1,1] G=100", [2, 1, 1], 100, 3000, 1),
    ("Fig. 2.3 [2,5,1] G=100", [2, 5, 1], 100, 1000, 1),
    ("Fig. 3.1 [4,4,2,1] G=20", [4, 4, 2, 1], 20, 1000, 1),
    ("Fig. 3.1 [100,1,1] G=20", [100, 1, 1], 20, 1000, 1),
    ("stack of 16 [2,1,1] G=20", [2, 1, 1], 20, 1000, 16),
]


def timed(call, reps: int) -> float:
    for _ in range(max(5, reps // 10)):
        call()
    started = time.perf_counter()
    for _ in range(reps):
        call()
    return (time.perf_counter() - started) / reps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blocks", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), float64; kernels: {cpu_kernels.status()}")
    print(f"{'shape':>28} {'N':>5}  {'torch ms':>9} {'C ms':>8} {'torch/C':>8}  {'max rel diff':>12}")
    generator = torch.Generator().manual_seed(0)
    for label, width, grid, n, n_models in SHAPES:
        models = [KAN(width=width, grid=grid, k=3, seed=s) for s in range(n_models)]
        model = models[0] if n_models == 1 else KANStack.stack(models)
        shape = (n_models, width[0], n)  # feature-major with the model axis (S = 1 for one model)
        x_t = torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1
        y_t = torch.randn(shape[:-2] + (width[-1], n), generator=generator, dtype=torch.float64)
        reps = max(20, int(2000 * 1000 / (n * n_models * sum(a * b for a, b in zip(width, width[1:])))))

        def c_path():
            return model.mse_and_grad_t(x_t, y_t)

        def torch_path():
            with cpu_kernels.disabled():
                return model.mse_and_grad_t(x_t, y_t)

        times = {"torch": [], "c": []}
        for block in range(args.blocks):
            for name, call in (
                (("torch", torch_path), ("c", c_path)) if block % 2 == 0 else (("c", c_path), ("torch", torch_path))
            ):
                times[name].append(timed(call, reps))
        loss_c = c_path().clone()
        grads_c = [p.grad.clone() for p in model.parameters()]
        loss_t = torch_path()
        diff = float(((loss_c - loss_t).abs() / loss_t.abs()).max())
        for p, g in zip(model.parameters(), grads_c):
            diff = max(diff, float((p.grad - g).abs().max() / p.grad.abs().max()))
        t, c = np.median(times["torch"]), np.median(times["c"])
        print(f"{label:>28} {n:5d}  {t:9.4f} {c:8.4f} {t / c:7.2f}x  {diff:12.1e}", flush=True)


if __name__ == "__main__":
    main()
