"""CUDA path; skipped on machines without a GPU (run on the GPU with the device tool)."""

import pytest
import torch

from kanlib import KAN, create_dataset
from kanlib.bspline import extend_grid, uniform_grid
from kanlib.lstsq import fit_spline_coefficients

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def target(x):
    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


def test_training_on_cuda_matches_cpu():
    results = {}
    for device in ("cpu", "cuda"):
        dataset = create_dataset(target, train_num=1000, device=device)
        model = KAN(width=[2, 1, 1], grid=5, k=3, device=device)
        fine = KAN(width=[2, 1, 1], grid=10, k=3, device=device)
        model.fit(dataset, steps=10, progress=False)
        fine.initialize_from_another_model(model, dataset["train_input"])
        results[device] = fine.fit(dataset, steps=10, progress=False)["test_loss"][-1]
        assert fine.device.type == device
    # LBFGS paths differ by rounding between devices; both must reach the same accuracy class
    assert results["cuda"] < 1e-3 and results["cpu"] < 1e-3
    assert 0.5 < results["cuda"] / results["cpu"] < 2.0


def test_rank_deficient_least_squares_on_cuda():
    k = 3
    knots = extend_grid(
        uniform_grid(
            torch.tensor([-1.0], dtype=torch.float64, device="cuda"),
            torch.tensor([1.0], dtype=torch.float64, device="cuda"),
            100,
        ),
        k,
    )
    x = torch.rand(30, 1, dtype=torch.float64, device="cuda") - 1.0  # 30 samples, 103 coefficients, half empty
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


def test_save_on_gpu_load_on_cpu(tmp_path):
    model = KAN(width=[2, 3, 1], grid=7, device="cuda")
    path = model.save(tmp_path / "m.pt")
    loaded = KAN.load(path)
    x = torch.rand(10, 2, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x.cuda()).cpu())
