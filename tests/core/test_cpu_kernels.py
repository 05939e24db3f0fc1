"""The fused C kernels (kanlib.cpu_kernels) against the torch path and plain autograd, their build and fallback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from kanlib import KAN, KANStack, cpu_kernels
from kanlib.layer import _KANLayerFunction, layer_forward

F64 = torch.float64
ROOT = Path(__file__).resolve().parents[2]
HAS_COMPILER = shutil.which(os.environ.get("CC") or "cc") is not None


def torch_path(model, x, y):
    """Loss and gradients by autograd through the model's torch layers (an independent reference)."""
    model.zero_grad()
    with torch.enable_grad():
        h = x.T.contiguous()[None]  # (1, in, N): one model
        for layer in model.layers:  # the torch path: the autograd function of kanlib.layer
            basis = layer.basis(h.detach(), derivatives=h.requires_grad)
            derivs = basis.derivatives if basis.derivatives is not None else basis.values
            h = _KANLayerFunction.apply(
                h, layer.coef, layer.scale_base, layer.scale_sp, basis.index, basis.values, derivs, layer.k
            )
        loss = torch.mean((h[0].T - y) ** 2)
        loss.backward()
    return float(loss), [p.grad.clone() for p in model.parameters()]


def random_model(width, grid, k, generator):
    model = KAN(width=width, grid=grid, k=k, seed=1)
    with torch.no_grad():
        for layer in model.layers:
            layer.coef.normal_(generator=generator)
            layer.scale_base.normal_(generator=generator)
    return model


@pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler: the C kernels cannot be built here")
def test_the_c_kernels_are_built_and_used_here():
    assert cpu_kernels.status() == "c"
    model = KAN(width=[2, 3, 1], grid=5, k=3)
    x = torch.rand(10, 2, dtype=F64)
    assert cpu_kernels.usable(x.T, list(model.layers), True)
    assert not cpu_kernels.usable(x.T.float(), list(model.layers), True)  # float32: the torch path
    assert cpu_kernels.kernel_for(model.layers, F64, True) == "c"
    assert cpu_kernels.kernel_for(model.layers, F64, False) == "torch (non-uniform grids)"


@pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler")
@pytest.mark.parametrize("width", [[1, 1], [2, 1, 1], [2, 5, 1], [3, 4, 2], [2, 3, 3, 1]])
@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("grid", [3, 50])
def test_loss_gradients_and_forward_equal_the_torch_path(width, k, grid):
    generator = torch.Generator().manual_seed(k * 100 + grid)
    model = random_model(width, grid, k, generator)
    x = torch.rand(257, width[0], generator=generator, dtype=F64) * 2.6 - 1.3  # some samples outside the grid
    x[0, 0], x[1, 0] = -1e9, 1e9  # far away: every basis function is zero there
    y = torch.randn(257, width[-1], generator=generator, dtype=F64)
    reference_loss, reference_grads = torch_path(model, x, y)
    loss = model.mse_and_grad(x, y)  # the C kernels
    assert float(loss) == pytest.approx(reference_loss, rel=1e-13)
    for grad, reference in zip([p.grad for p in model.parameters()], reference_grads):
        # (random N(0, 1) coefficients on fine grids: large derivatives, so rounding shows at ~1e-10 of the largest)
        torch.testing.assert_close(grad, reference, rtol=1e-8, atol=1e-9 * float(reference.abs().max()))
    with torch.no_grad():
        out = model(x)  # the C kernels
        h = x.T.contiguous()[None]
        for layer in model.layers:  # the torch path's forward
            p = layer._parameters
            h = layer_forward(h, p["coef"], p["scale_base"], p["scale_sp"], layer.basis(h), layer.k)[0]
    torch.testing.assert_close(out, h[0].T, rtol=1e-10, atol=1e-12 * float(h.abs().max()))


@pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler")
def test_a_stack_evaluates_each_model_exactly_as_it_alone():
    generator = torch.Generator().manual_seed(0)
    models = [random_model([2, 3, 2], 7, 3, generator) for _ in range(3)]
    x = torch.rand(3, 101, 2, generator=generator, dtype=F64) * 2 - 1
    y = torch.randn(3, 101, 2, generator=generator, dtype=F64)
    stack = KANStack.stack(models)
    losses = stack.mse_and_grad_t(x.transpose(1, 2).contiguous(), y.transpose(1, 2).contiguous())
    grads = [p.grad.clone() for p in stack.parameters()]
    with torch.no_grad():
        outputs = stack(x)
    for s, model in enumerate(models):
        loss = model.mse_and_grad(x[s], y[s])
        assert float(loss) == float(losses[s])
        assert all(torch.equal(p.grad[0], g[s]) for p, g in zip(model.parameters(), grads))
        with torch.no_grad():
            assert torch.equal(model(x[s]), outputs[s])


@pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler")
def test_the_kept_input_basis_follows_new_inputs_and_grids():
    """The first layer's basis is kept between evaluations; a new input (also one at a freed input's
    address), an input changed in place and a moved grid must each be evaluated afresh."""
    generator = torch.Generator().manual_seed(3)
    model = random_model([2, 2, 1], 5, 3, generator)
    reference = random_model([2, 2, 1], 5, 3, torch.Generator().manual_seed(3))
    y = torch.randn(1, 1, 64, generator=generator, dtype=F64)  # feature-major, one model: (1, out, N)
    for trial in range(4):
        x_t = torch.rand(1, 2, 64, generator=generator, dtype=F64) * 2 - 1  # the last one freed: its address reused
        loss = model.mse_and_grad_t(x_t, y)
        assert float(loss) == pytest.approx(torch_path(reference, x_t[0].T, y[0].T)[0], rel=1e-13), trial
    x_t.mul_(0.5)  # in place: a new version of the same tensor
    expected = torch_path(reference, x_t[0].T, y[0].T)[0]
    assert float(model.mse_and_grad_t(x_t, y)) == pytest.approx(expected, rel=1e-13)
    for m in (model, reference):
        m.update_grid_from_samples(x_t[0].T * 0.9)
    expected = torch_path(reference, x_t[0].T, y[0].T)[0]
    assert float(model.mse_and_grad_t(x_t, y)) == pytest.approx(expected, rel=1e-13)


SUBPROCESS = textwrap.dedent(
    """
    import warnings, torch
    from kanlib import KAN, cpu_kernels
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = KAN(width=[2, 1, 1], grid=5, seed=0)
        x = torch.rand(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        loss = float(model.mse_and_grad(x, x[:, :1]))
    print(cpu_kernels.status())
    print(len([w for w in caught if issubclass(w.category, RuntimeWarning)]))
    print(loss)
    """
)


def run_python(env_overrides: dict, cache: Path) -> list[str]:
    env = dict(os.environ, KANLIB_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT), **env_overrides)
    done = subprocess.run([sys.executable, "-c", SUBPROCESS], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.split("\n")


def test_without_a_compiler_the_torch_path_runs_and_says_why(tmp_path):
    status, warnings, loss = run_python({"CC": str(tmp_path / "no-such-compiler")}, tmp_path / "cache")[:3]
    assert status.startswith("torch (the C kernels could not be built: could not run the C compiler")
    assert warnings == "1"
    assert float(loss) > 0
    assert not list((tmp_path / "cache").glob("*.so"))  # nothing half-built left behind


def test_the_switch_turns_the_c_kernels_off(tmp_path):
    status, warnings, _ = run_python({"KANLIB_CPU_KERNEL": "torch"}, tmp_path / "cache")[:3]
    assert status == "torch (KANLIB_CPU_KERNEL=torch)" and warnings == "0"


@pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler")
def test_concurrent_builds_leave_one_whole_library(tmp_path):
    """Jobs starting together on a fresh cache (a SLURM array on a shared home) all load a whole library."""
    env = dict(os.environ, KANLIB_CACHE_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    processes = [
        subprocess.Popen([sys.executable, "-c", SUBPROCESS], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=300)[0].split("\n") for process in processes]
    assert all(process.returncode == 0 for process in processes)
    assert [out[0] for out in outputs] == ["c"] * 4
    assert len({out[2] for out in outputs}) == 1  # the same loss everywhere
    assert len(list(tmp_path.glob("*.so"))) == 1 and not list(tmp_path.glob(".*partial"))


@pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler")
def test_an_evaluated_model_copies_and_pickles_and_the_copy_uses_its_own_numbers():
    """The kept evaluation plan holds raw addresses: a copy must not take it along (it could not be
    pickled, and a copy evaluating through it would read the original's parameters)."""
    import copy
    import pickle

    generator = torch.Generator().manual_seed(5)
    model = random_model([2, 3, 1], 6, 3, generator)
    x = torch.rand(40, 2, generator=generator, dtype=F64)
    y = torch.rand(40, 1, generator=generator, dtype=F64)
    model.mse_and_grad(x, y)
    for duplicate in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        with torch.no_grad():
            duplicate.layers[0].coef.mul_(2.0)
        loss = float(duplicate.mse_and_grad(x, y))
        assert loss == pytest.approx(torch_path(duplicate, x, y)[0], rel=1e-13)
        assert float(model.mse_and_grad(x, y)) == pytest.approx(torch_path(model, x, y)[0], rel=1e-13)
        assert loss != pytest.approx(float(model.mse_and_grad(x, y)), rel=1e-6)
