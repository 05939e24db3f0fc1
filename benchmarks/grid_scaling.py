"""Forward+backward cost against grid size: B-spline locality keeps it flat in G.

Prints the time of one forward+backward pass of a [2,1,1] KAN on N samples for
G in {5, 100, 1000}, for kanlib's training path (hand-written gradients), its
autograd path, and pykan 0.2.1 when installed, with the G=1000 / G=5 ratio.

    python benchmarks/grid_scaling.py [--n 3000] [--device cpu|cuda] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from kanlib import KAN, create_dataset

GRIDS = [5, 100, 1000]


def target(x):
    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


def seconds_per_call(fn, device: str, min_time: float = 1.0) -> float:
    for _ in range(5):
        fn()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < min_time:
        fn()
        calls += 1
    sync()
    return (time.perf_counter() - started) / calls


def kanlib_timings(n: int, device: str) -> dict[str, list[float]]:
    dataset = create_dataset(target, train_num=n, device=device)
    x, y = dataset["train_input"], dataset["train_label"]
    x_t, y_t = x.T.contiguous()[None], y.T.contiguous()[None]  # (S=1, features, N)
    out = {"kanlib (training path)": [], "kanlib (autograd)": []}
    for grid in GRIDS:
        model = KAN(width=[2, 1, 1], grid=grid, k=3, device=device)
        model.update_grid_from_samples(x)
        out["kanlib (training path)"].append(seconds_per_call(lambda: model.mse_and_grad_t(x_t, y_t), device))

        def autograd_step():
            model.zero_grad()
            torch.mean((model(x) - y) ** 2).backward()

        out["kanlib (autograd)"].append(seconds_per_call(autograd_step, device))
    return out


def pykan_timings(n: int, device: str) -> list[float] | None:
    try:
        import kan as pykan
    except ImportError:
        return None
    import contextlib
    import io

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        dataset = create_dataset(target, train_num=n, device=device)
        x, y = dataset["train_input"], dataset["train_label"]
        times = []
        for grid in GRIDS:
            with contextlib.redirect_stdout(io.StringIO()):
                model = pykan.KAN(width=[2, 1, 1], grid=grid, k=3, device=device)

            def step():
                model.zero_grad()
                torch.mean((model(x) - y) ** 2).backward()

            times.append(seconds_per_call(step, device))
        return times
    finally:
        torch.set_default_dtype(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-pykan", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"forward+backward, [2,1,1], N={args.n}, float64, device {args.device}, "
        f"{torch.get_num_threads()} thread(s), torch {torch.__version__}"
    )
    rows = kanlib_timings(args.n, args.device)
    if not args.no_pykan:
        pykan = pykan_timings(args.n, args.device)
        if pykan is not None:
            rows["pykan 0.2.1"] = pykan
    print(f"{'implementation':24s}" + "".join(f"{'G=' + str(g):>12s}" for g in GRIDS) + f"{'G1000/G5':>11s}")
    for name, times in rows.items():
        print(f"{name:24s}" + "".join(f"{t * 1e3:10.3f}ms" for t in times) + f"{times[-1] / times[0]:10.2f}x")


if __name__ == "__main__":
    main()
