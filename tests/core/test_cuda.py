"""The CUDA path of everything that takes a device, against the same models on the CPU.

Skipped on machines without a GPU; ``bash benchmarks/gpu_check.sh`` runs them on one (docs/benchmarks.md).
Bit equality is not expected across devices (other kernels, other summation orders; the CPU runs the C
kernels): at fixed parameters losses and gradients agree to rounding, and training reaches the same
accuracy class. On one GPU, two identical runs give identical bits under torch's deterministic settings.

``KANLIB_CUDA_TESTS_ON=cpu`` runs this file with the CPU standing in for the GPU, to check the tests'
own logic where no GPU is at hand (the free-GPU-memory test, which needs ``torch.cuda.mem_get_info``,
then skips); it says nothing about the GPU itself.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kanlib import KAN, MLP, KANStack, MLPStack, create_dataset
from kanlib.bspline import extend_grid, uniform_grid
from kanlib.functions import get_function
from kanlib.lstsq import fit_spline_coefficients
from kanlib.training import StackMemoryError, available_memory

REPO = Path(__file__).resolve().parents[2]
DEVICE = os.environ.get("KANLIB_CUDA_TESTS_ON", "cuda")
ON_GPU = DEVICE.startswith("cuda")

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(ON_GPU and not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

TARGET = get_function("exp_sin_pi_x_plus_y2")


def target(x):
    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


def datasets(n_models: int, n: int = 1000) -> list[dict]:
    """Seed s's data as the workflow draws it (data seed s), on the CPU."""
    return [create_dataset(TARGET, n_var=2, train_num=n, test_num=n, seed=s) for s in range(n_models)]


def on(stack, device):
    """An exact copy of ``stack`` on ``device``."""
    return copy.deepcopy(stack).to(device)


def kan_stack(n_models: int, width=(2, 1, 1), grid: int = 5) -> KANStack:
    return KANStack.stack([KAN(width=list(width), grid=grid, k=3, seed=s + 1) for s in range(n_models)])


def mlp_stack(n_models: int, width=(2, 16, 16, 1)) -> MLPStack:
    return MLPStack.stack([MLP(width=list(width), seed=s + 1) for s in range(n_models)])


def feature_major(data: list[dict], device) -> tuple[torch.Tensor, torch.Tensor]:
    """The stacked training inputs and labels, feature-major (S, d, N), as fit hands them to mse_and_grad_t."""
    x = torch.stack([d["train_input"] for d in data]).transpose(1, 2).contiguous().to(device)
    y = torch.stack([d["train_label"] for d in data]).transpose(1, 2).contiguous().to(device)
    return x, y


def loss_and_grads(model, x_t, y_t) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    losses = model.mse_and_grad_t(x_t, y_t)
    return losses.cpu(), {name: p.grad.cpu().clone() for name, p in model.named_parameters()}


def final_test_rmse(results: list[dict]) -> list[float]:
    return [result["test_loss"][-1] for result in results]


def assert_same_accuracy_class(on_device: list[float], on_cpu: list[float]) -> None:
    """Each model within a factor 2 of its CPU twin (rounding moves an L-BFGS path; measured on the CPU,
    a 1e-14 relative change of the start moves a final RMSE by up to ~15%)."""
    for s, (a, b) in enumerate(zip(on_device, on_cpu)):
        assert math.isfinite(a) and 0.5 < a / b < 2.0, f"model {s}: {DEVICE} {a:.3e} against cpu {b:.3e}"


# ---- single models (the first GPU checks) --------------------------------------------------------


def test_training_on_cuda_matches_cpu():
    results = {}
    for device in ("cpu", DEVICE):
        dataset = create_dataset(target, train_num=1000, device=device)
        model = KAN(width=[2, 1, 1], grid=5, k=3, device=device)
        fine = KAN(width=[2, 1, 1], grid=10, k=3, device=device)
        model.fit(dataset, steps=20, progress=False)
        fine.initialize_from_another_model(model, dataset["train_input"])
        results[device] = fine.fit(dataset, steps=20, progress=False)["test_loss"][-1]
        assert fine.device.type == torch.device(device).type
    # LBFGS paths differ by rounding between devices; both must reach the same accuracy class
    # (7.6e-4 on the CPU; with 10 steps a level, as before the restructure, 8.9e-3)
    assert results[DEVICE] < 2e-3 and results["cpu"] < 2e-3
    assert 0.5 < results[DEVICE] / results["cpu"] < 2.0


def test_rank_deficient_least_squares_on_cuda():
    k = 3
    knots = extend_grid(
        uniform_grid(
            torch.tensor([-1.0], dtype=torch.float64, device=DEVICE),
            torch.tensor([1.0], dtype=torch.float64, device=DEVICE),
            100,
        ),
        k,
    )
    x = torch.rand(30, 1, dtype=torch.float64, device=DEVICE) - 1.0  # 30 samples, 103 coefficients, half empty
    y = torch.exp(x).unsqueeze(-1)
    coef = fit_spline_coefficients(x, y, knots, k)
    assert torch.isfinite(coef).all()
    # the fit at the samples is determined (the coefficients of empty intervals are not): compare it to the CPU's
    from kanlib.bspline import evaluate_spline

    cpu = fit_spline_coefficients(x.cpu(), y.cpu(), knots.cpu(), k)
    on_gpu = evaluate_spline(x, knots, coef, k).cpu()
    on_cpu = evaluate_spline(x.cpu(), knots.cpu(), cpu, k)
    torch.testing.assert_close(on_gpu, on_cpu, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(on_gpu[:, 0, 0], y.cpu()[:, 0, 0], rtol=1e-6, atol=1e-8)


# ---- stacks against the same models on the CPU -----------------------------------------------------


@pytest.mark.parametrize(
    "make", [lambda: kan_stack(4, width=(2, 3, 1), grid=7), lambda: mlp_stack(3)], ids=["KANStack", "MLPStack"]
)
def test_stack_loss_and_gradients_match_cpu(make):
    """At the same parameters a stack's losses and gradients on the GPU (all models at once) are the CPU's
    (model by model; C kernels for the KAN) to rounding, and each model's are those of the model alone."""
    cpu = make()
    device = on(cpu, DEVICE)
    assert device.device.type == torch.device(DEVICE).type
    data = datasets(cpu.n_models, n=500)
    cpu_losses, cpu_grads = loss_and_grads(cpu, *feature_major(data, "cpu"))
    x_t, y_t = feature_major(data, DEVICE)
    losses, grads = loss_and_grads(device, x_t, y_t)
    torch.testing.assert_close(losses, cpu_losses, rtol=1e-10, atol=0)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, cpu_grads[name], rtol=1e-8, atol=1e-12, msg=lambda m, n=name: f"{n}: {m}")
    for s, model in enumerate(device.unstack()):
        lone_loss, lone_grads = loss_and_grads(model, x_t[s : s + 1], y_t[s : s + 1])
        torch.testing.assert_close(lone_loss, losses[s : s + 1], rtol=1e-12, atol=0)
        for name, grad in lone_grads.items():
            torch.testing.assert_close(grad, grads[name][s : s + 1], rtol=1e-10, atol=1e-14)


def test_kan_stack_trains_on_cuda_as_on_cpu():
    """A stack of 4 seeds (each its own data, grid updates until step 10) on both devices: each model
    reaches the test RMSE of its CPU twin within a factor 2 (two of these seeds stop in a poor minimum,
    ~0.55, on both)."""
    data = datasets(4)
    results = {}
    for device in ("cpu", DEVICE):
        stack = on(kan_stack(4), device)
        results[device] = stack.fit(data, steps=20, stop_grid_update_step=10, progress=False)
        assert stack.device.type == torch.device(device).type
        assert len(results[device]) == 4 and all(len(r["test_loss"]) == 20 for r in results[device])
    assert_same_accuracy_class(final_test_rmse(results[DEVICE]), final_test_rmse(results["cpu"]))
    assert min(final_test_rmse(results[DEVICE])) < 1e-2


def test_mlp_stack_trains_on_cuda_as_on_cpu():
    data = datasets(3)
    results = {}
    for device in ("cpu", DEVICE):
        stack = on(mlp_stack(3, width=(2, 20, 20, 1)), device)
        results[device] = stack.fit(data, steps=30, progress=False)
    assert_same_accuracy_class(final_test_rmse(results[DEVICE]), final_test_rmse(results["cpu"]))
    for result in results[DEVICE]:
        assert result["test_loss"][-1] < 0.1 * result["test_loss"][0]


# ---- grids -------------------------------------------------------------------------------------------


def trained_pair(n_models: int = 3, steps: int = 5):
    """A KAN stack trained a few steps on the CPU, its exact copy on the device, and their inputs (S, N, 2)."""
    data = datasets(n_models)
    cpu = kan_stack(n_models)
    cpu.fit(data, steps=steps, progress=False)
    x = torch.stack([d["train_input"] for d in data])
    return cpu, on(cpu, DEVICE), x, data


def test_grid_extension_of_a_stack_on_cuda():
    cpu, device, x, data = trained_pair()
    fine_cpu = cpu.refine(10, x)
    fine = device.refine(10, x.to(DEVICE))
    assert fine.device.type == torch.device(DEVICE).type and fine.grid_size == 10 and fine.n_models == 3
    with torch.no_grad():
        expected = fine_cpu(x)
        torch.testing.assert_close(fine(x.to(DEVICE)).cpu(), expected, rtol=1e-7, atol=1e-9)
    # the parent on the CPU, the finer stack on the device (the parent's layers are copied over)
    configs = [dataclasses.replace(config, grid=10) for config in cpu.configs]
    across = KANStack.from_configs(configs, DEVICE).initialize_from_another_model(cpu, x)
    with torch.no_grad():
        torch.testing.assert_close(across(x.to(DEVICE)).cpu(), expected, rtol=1e-7, atol=1e-9)
    results = fine.fit(data, steps=5, progress=False)
    assert all(math.isfinite(r["test_loss"][-1]) for r in results)


def test_grid_update_of_a_stack_on_cuda():
    cpu, device, x, _ = trained_pair()
    cpu.update_grids(x)
    device.update_grids(x.to(DEVICE))
    knots = {name: t for name, t in device.state_dict().items() if name.endswith("knots")}
    assert knots, "a KAN stack has knots buffers"
    expected = cpu.state_dict()
    for name, tensor in knots.items():
        torch.testing.assert_close(tensor.cpu(), expected[name], rtol=1e-12, atol=1e-14)
    with torch.no_grad():
        torch.testing.assert_close(device(x.to(DEVICE)).cpu(), cpu(x), rtol=1e-7, atol=1e-9)


# ---- checkpoints ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", [KAN, MLP], ids=["KAN", "MLP"])
def test_checkpoints_saved_on_cuda_load_on_cpu(tmp_path, family):
    """Each model of a stack trained on the GPU, saved there, loads on the CPU with the same bits."""
    stack = on(kan_stack(3, width=(2, 3, 1)) if family is KAN else mlp_stack(3), DEVICE)
    stack.fit(datasets(3, n=200), steps=3, progress=False)
    x = torch.rand(50, 2, dtype=torch.float64) * 2 - 1
    for s, model in enumerate(stack.unstack()):
        path = model.save(tmp_path / f"seed{s}.pt")
        loaded = family.load(path, device="cpu")
        assert loaded.device.type == "cpu" and loaded.config() == model.config()
        for name, tensor in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], tensor.cpu()), name
        back = family.load(path, device=DEVICE)
        assert back.device.type == torch.device(DEVICE).type
        for name, tensor in model.state_dict().items():
            assert torch.equal(back.state_dict()[name], tensor), name
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x.to(DEVICE)).cpu(), rtol=1e-10, atol=1e-12)


# ---- memory ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not ON_GPU, reason="needs torch.cuda.mem_get_info (a GPU)")
def test_stack_memory_error_against_free_gpu_memory():
    """With the GPU's free memory cut to ~1 GiB (a filler tensor), a stack whose estimate needs more raises
    StackMemoryError before training (its parameters untouched) although it fits the empty GPU; a small
    stack trains in what is left."""
    torch.cuda.empty_cache()
    free_before = torch.cuda.mem_get_info()[0]
    keep = 1 << 30
    filler = torch.empty(free_before - keep, dtype=torch.uint8, device="cuda")
    try:
        free = available_memory(torch.device("cuda"))
        assert free < 2 * keep, f"the filler left {free} bytes free"
        big = kan_stack(4).to("cuda")
        n = 1000
        while big.memory_estimate(n, n) <= 2 * free:
            n *= 2
        assert big.memory_estimate(n, n) < free_before // 2, "the big stack would fit the GPU without the filler"
        dataset = create_dataset(target, train_num=n, test_num=n, device="cuda")  # shared by the 4 models
        before = {name: t.clone() for name, t in big.state_dict().items()}
        with pytest.raises(StackMemoryError, match="available on cuda"):
            big.fit(dataset, steps=1, progress=False)
        for name, tensor in big.state_dict().items():
            assert torch.equal(tensor, before[name]), f"{name} changed: training started"
        small = kan_stack(4).to("cuda")
        assert small.memory_estimate(1000, 1000) < free // 4
        results = small.fit(datasets(4), steps=3, progress=False)
        assert all(math.isfinite(r["test_loss"][-1]) for r in results)
    finally:
        del filler
        torch.cuda.empty_cache()


# ---- determinism -----------------------------------------------------------------------------------------

# Run in a fresh process: torch.use_deterministic_algorithms is process-wide, and cuBLAS reads
# CUBLAS_WORKSPACE_CONFIG when this process first uses it. What needs them on a GPU:
# - index_add_ (a KAN's spline-coefficient gradient in kanlib.layer.layer_backward, and the Gram matrix and
#   right-hand side of a grid update's least squares in kanlib.lstsq) accumulates with atomicAdd on CUDA,
#   in whatever order the threads arrive: the sums, and so the whole L-BFGS path, can change from run to
#   run. use_deterministic_algorithms(True) makes torch take its sorted, fixed-order index_add.
# - cuBLAS (the bmm/baddbmm of every layer) may split a reduction across its workspace differently from
#   call to call; in deterministic mode torch refuses to call it (RuntimeError) unless
#   CUBLAS_WORKSPACE_CONFIG fixes the workspace (":4096:8": 8 buffers of 4 MiB, torch's documented value).
# On the CPU neither is needed (no atomics; MKL/OpenBLAS sum in a fixed order for a fixed thread count).
DETERMINISM_SCRIPT = r"""
import hashlib, json, sys, warnings
import torch
# warn_only: an op without a deterministic implementation warns (printed below) instead of raising, so a
# difference in the bits comes with its cause
torch.use_deterministic_algorithms(True, warn_only=True)
warnings.simplefilter("always")
warnings.showwarning = lambda message, category, *rest: print(f"{category.__name__}: {message}", file=sys.stderr)
from kanlib import KAN, MLP, KANStack, MLPStack, create_dataset
from kanlib.functions import get_function
device = sys.argv[1]
f = get_function("exp_sin_pi_x_plus_y2")
data = [create_dataset(f, n_var=2, train_num=1000, test_num=1000, seed=s) for s in range(4)]
x = torch.stack([d["train_input"] for d in data]).to(device)

def digest(models, results):
    h = hashlib.sha256()
    for model in models:
        for name, tensor in sorted(model.state_dict().items()):
            h.update(name.encode()); h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    h.update(repr([[r[k] for k in ("train_loss", "test_loss", "n_evals")] for r in results]).encode())
    return h.hexdigest()

def run():
    stack = KANStack.stack([KAN(width=[2, 1, 1], grid=5, k=3, seed=s + 1, device=device) for s in range(4)])
    first = stack.fit(data, steps=10, grid_update_num=3, stop_grid_update_step=6, progress=False)
    fine = stack.refine(10, x)
    second = fine.fit(data, steps=5, grid_update_num=2, stop_grid_update_step=4, progress=False)
    mlps = MLPStack.stack([MLP(width=[2, 16, 16, 1], seed=s + 1, device=device) for s in range(2)])
    third = mlps.fit(data[:2], steps=10, progress=False)
    return digest([stack, fine, mlps], first + second + third)

print(json.dumps([run(), run()]))
"""


def test_identical_runs_give_identical_bits():
    """Two identical runs (KAN stack with grid updates, grid extension, MLP stack) in one process on one GPU:
    identical parameters and histories, bit for bit."""
    env = {
        **os.environ,
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    result = subprocess.run(
        [sys.executable, "-c", DETERMINISM_SCRIPT, DEVICE],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    if result.stderr.strip():  # (pytest -rA shows it in the GPU log)
        print(f"stderr of the deterministic runs:\n{result.stderr[-2000:]}")
    first, second = json.loads(result.stdout.strip().splitlines()[-1])
    assert first == second, f"two identical runs on one GPU gave different bits; warnings:\n{result.stderr[-4000:]}"


# ---- the workflow ------------------------------------------------------------------------------------------


def test_tiny_sweep_on_cuda(tmp_path):
    """config/test.yaml through Snakemake and MLflow with ``device: cuda``: every level trained on the GPU."""
    pandas = pytest.importorskip("pandas")
    work = tmp_path / "work"
    shutil.copytree(REPO / "config", work / "config")
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(
        MLFLOW_DISABLE_TELEMETRY="true",
        PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--cores",
        "4",
        "--scheduler",
        "greedy",  # the ILP scheduler needs pulp, which the GPU machine lacks
        "--configfile",
        "config/test.yaml",
        "--config",
        f"device={DEVICE}",
    ]
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    table = pandas.read_csv(work / "results" / "test" / "results.csv")
    assert len(table) == 4, table  # 2 sizes x 2 grids
    assert table["device"].astype(str).str.startswith(torch.device(DEVICE).type).all(), table["device"]
    assert (table["test_rmse"] > 0).all() and table["test_rmse"].map(math.isfinite).all()
