"""Loss and gradients at fixed parameters, two checkouts of kanlib side by side.

Each checkout runs in its own process and evaluates the same models (fixed seeds, parameters drawn
from a fixed generator, the same data) through its public calls: KANs of several shapes and MLPs,
one model (``mse_and_grad``) and stacks of 4 (``KANStack``/``MLPStack``, ``mse_and_grad_t``), on the
C kernels and on the torch path (``KANLIB_CPU_KERNEL=torch``). Printed per case: the largest relative
difference of the loss and of every gradient entry (relative to the largest entry of that
gradient) between the checkouts.

    python benchmarks/agreement_ab.py --repos /tmp/before .
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, sys, torch
from kanlib import KAN, MLP, KANStack, MLPStack
out = {}
g = torch.Generator().manual_seed(0)
cases = [("kan", [2, 1, 1], 5), ("kan", [2, 5, 1], 20), ("kan", [4, 4, 2, 1], 10), ("kan", [3, 2], 50),
         ("mlp", [2, 16, 1], None), ("mlp", [4, 20, 20, 1], None)]
for family, width, grid in cases:
    for S in (1, 4):
        def build(seed):
            model = KAN(width=width, grid=grid, k=3, seed=seed) if family == "kan" else MLP(width=width, seed=seed)
            with torch.no_grad():
                for p in model.parameters():
                    noise = torch.Generator().manual_seed(seed + p.numel())
                    p.copy_(torch.randn(p.shape, generator=noise, dtype=p.dtype) * 0.5 + p)
            return model
        x = torch.rand(S, 300, width[0], generator=g, dtype=torch.float64) * 2.2 - 1.1
        y = torch.randn(S, 300, width[-1], generator=g, dtype=torch.float64)
        models = [build(s) for s in range(S)]
        if S == 1:
            model = models[0]
            if hasattr(model, "mse_and_grad"):
                losses = [float(model.mse_and_grad(x[0], y[0]))]
            else:  # an MLP before the one-implementation core: its feature-major call
                losses = [float(model.mse_and_grad_t(x[0].T.contiguous(), y[0].T.contiguous()))]
            grads = [p.grad.reshape(-1).tolist() for p in model.parameters()]
        else:
            stack = (KANStack if family == "kan" else MLPStack).stack(models)
            losses = stack.mse_and_grad_t(x.transpose(1, 2).contiguous(), y.transpose(1, 2).contiguous()).tolist()
            grads = [p.grad.reshape(-1).tolist() for p in stack.parameters()]
        out[f"{family} {width} G{grid} S={S}"] = {"losses": losses, "grads": grads}
json.dump(out, open(sys.argv[1], "w"))
"""


def run(repo: str, env: dict, path: Path) -> dict:
    environment = dict(os.environ, PYTHONPATH=repo, **env)
    subprocess.run([sys.executable, "-c", CHILD, str(path)], env=environment, cwd="/", check=True)
    return json.loads(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repos", nargs=2, required=True, help="the reference checkout and the one compared with it")
    args = parser.parse_args()
    repos = [str(Path(r).resolve()) for r in args.repos]
    print(f"reference {repos[0]}, compared {repos[1]}")
    print("| case | path | loss: max rel. diff | gradient: max diff / max |entry| |")
    print("|---|---|---|---|")
    worst = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for path_name, env in (("C kernels", {}), ("torch path", {"KANLIB_CPU_KERNEL": "torch"})):
            results = [run(repo, env, Path(folder) / f"{i}.json") for i, repo in enumerate(repos)]
            for case in results[0]:
                a, b = results[0][case], results[1][case]
                loss = max(abs(p - q) / abs(p) for p, q in zip(a["losses"], b["losses"]))
                grad = max(
                    float(np.max(np.abs(np.subtract(p, q))) / max(np.max(np.abs(p)), 1e-300))
                    for p, q in zip(a["grads"], b["grads"])
                )
                if "mlp" in case and path_name == "torch path":
                    continue  # (an MLP has one path)
                worst = max(worst, loss, grad)
                print(f"| {case} | {path_name if 'kan' in case else 'torch'} | {loss:.1e} | {grad:.1e} |")
    print(f"largest relative difference: {worst:.1e}")


if __name__ == "__main__":
    main()
