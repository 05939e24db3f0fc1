"""One MLP loss-and-gradient evaluation: kanlib's hand-written pass against autograd, side by side.

    python benchmarks/mlp_eval.py [--threads 1] [--n 1000] [--repeats 300]

For the MLP widths of config/paper_fig3_1.yaml's 2-input functions (and one 100-input one): the
CPU time of one ``MLP.mse_and_grad_t`` (what L-BFGS calls ~20 times a step) against the same
evaluation through autograd (the reference: forward, ``torch.autograd.grad``), and the largest
difference between their gradients (0: bit for bit).
"""

from __future__ import annotations

import argparse
import time

import torch

from kanlib import MLP

WIDTHS = [
    [2, 5, 1],
    [2, 20, 1],
    [2, 100, 1],
    [2, 20, 20, 20, 1],
    [2, 50, 50, 50, 1],
    [2, 100, 100, 100, 100, 1],
    [100, 10, 1],
]


def autograd_evaluation(model: MLP, x_t: torch.Tensor, y_t: torch.Tensor) -> torch.Tensor:
    """The reference: the loss through the module's forward and its gradients from autograd."""
    with torch.enable_grad():
        residual = model(x_t[0].T) - y_t[0].T
        loss = torch.mean(residual * residual)
        params = list(model.parameters())
        for param, grad in zip(params, torch.autograd.grad(loss, params)):
            param.grad = grad
    return loss.detach()


def cpu_ms(function, repeats: int) -> float:
    function()
    started = time.process_time()
    for _ in range(repeats):
        function()
    return (time.process_time() - started) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), N = {args.n}, float64, CPU ms per evaluation")
    print(f"{'width':>24s} {'autograd':>9s} {'kanlib':>8s} {'speedup':>8s} {'max |grad diff|':>16s}")
    generator = torch.Generator().manual_seed(0)
    for width in WIDTHS:
        model = MLP(width=width, activation="silu", seed=0)
        x_t = torch.rand(1, width[0], args.n, dtype=torch.float64, generator=generator) * 2 - 1  # (S=1, d, N)
        y_t = torch.rand(1, 1, args.n, dtype=torch.float64, generator=generator)
        reference = cpu_ms(lambda: autograd_evaluation(model, x_t, y_t), args.repeats)
        expected = [p.grad.clone() for p in model.parameters()]
        ours = cpu_ms(lambda: model.mse_and_grad_t(x_t, y_t), args.repeats)
        difference = max(float((p.grad - e).abs().max()) for p, e in zip(model.parameters(), expected))
        label = "-".join(map(str, width))
        print(f"{label:>24s} {reference:9.3f} {ours:8.3f} {reference / ours:7.2f}x {difference:16.1e}")


if __name__ == "__main__":
    main()
