"""kanlib.MLP against independent references: torch.nn.Sequential with the same weights, gradcheck,
the closed-form parameter count, an exactly representable target, and its checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kanlib import KAN, create_dataset
from kanlib.checkpoint import CheckpointError
from kanlib.mlp import MLP, MLPConfig

REFERENCE_ACTIVATIONS = {"silu": nn.SiLU, "tanh": nn.Tanh, "relu": nn.ReLU}


def sequential_copy(model: MLP) -> nn.Sequential:
    """A plain torch model with the same weights (the independent reference)."""
    modules = []
    for index, layer in enumerate(model.layers):
        _, out_features, in_features = layer.weight.shape  # (model axis: one model)
        linear = nn.Linear(in_features, out_features, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(layer.weight[0])
            linear.bias.copy_(layer.bias[0])
        modules.append(linear)
        if index < len(model.layers) - 1:
            modules.append(REFERENCE_ACTIVATIONS[model.activation]())
    return nn.Sequential(*modules)


@pytest.mark.parametrize("activation", ["silu", "tanh", "relu"])
def test_forward_and_gradients_equal_a_plain_sequential(activation):
    model = MLP(width=[3, 7, 5, 1], activation=activation, seed=2)
    reference = sequential_copy(model)
    x = torch.rand(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    y = torch.sin(x.sum(1, keepdim=True))
    assert torch.allclose(model(x), reference(x), rtol=1e-14, atol=1e-15)
    loss = model.mse_and_grad(x, y)
    expected = torch.mean((reference(x) - y) ** 2)
    expected.backward()
    assert float(loss) == pytest.approx(float(expected.detach()), rel=1e-14)
    ours = [p.grad[0] for layer in model.layers for p in (layer.weight, layer.bias)]
    theirs = [p.grad for module in reference if isinstance(module, nn.Linear) for p in (module.weight, module.bias)]
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-15)


def test_gradcheck_in_float64():
    model = MLP(width=[2, 4, 1], activation="tanh", seed=1)
    x = torch.rand(5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(model, (x,))
    weights = [p for p in model.parameters()]
    assert torch.autograd.gradcheck(
        lambda *p: torch.func.functional_call(
            model, dict(zip([n for n, _ in model.named_parameters()], p)), (x.detach(),)
        ),
        tuple(weights),
    )


@pytest.mark.parametrize("width", [[1, 1], [2, 5, 1], [100, 10, 10, 1], [4, 100, 100, 100, 100, 1]])
def test_parameter_count_is_the_closed_form(width):
    expected = sum((a + 1) * b for a, b in zip(width, width[1:]))
    assert MLP(width=width).n_params == expected == MLPConfig(width=tuple(width)).n_params


def test_one_hidden_layer_fits_a_target_it_represents_exactly():
    # a linear function: ReLU units whose pre-activations stay positive on [-1, 1]^2 represent it exactly
    dataset = create_dataset(lambda x: 2 * x[:, [0]] - 3 * x[:, [1]] + 0.5, n_var=2, train_num=200, seed=1)
    model = MLP(width=[2, 4, 1], activation="relu", seed=0)
    result = model.fit(dataset, opt="LBFGS", steps=50, progress=False, stall_rtol=0)
    assert result["train_loss"][-1] < 1e-10 and result["test_loss"][-1] < 1e-9


def test_fit_returns_what_kan_fit_returns_and_skips_grid_updates():
    dataset = create_dataset(lambda x: x[:, [0]] * x[:, [1]], n_var=2, train_num=100, test_num=50)
    kan_result = KAN(width=[2, 2, 1], grid=3).fit(dataset, steps=3, progress=False)
    mlp_result = MLP(width=[2, 8, 1]).fit(dataset, steps=3, progress=False, update_grid=True)
    assert set(mlp_result) == set(kan_result)
    assert len(mlp_result["train_loss"]) == len(mlp_result["test_loss"]) == 3
    adam = MLP(width=[2, 8, 1]).fit(dataset, opt="Adam", steps=5, lr=1e-2, batch=32, progress=False)
    assert adam["train_loss"][-1] < adam["train_loss"][0]


def test_checkpoints_round_trip_and_refuse_the_other_family(tmp_path):
    model = MLP(width=[2, 6, 1], activation="tanh", seed=4)
    path = model.save(tmp_path / "mlp.pt")
    loaded = MLP.load(path)
    x = torch.rand(10, 2, dtype=torch.float64)
    assert loaded.config() == model.config() and torch.equal(loaded(x), model(x))
    with pytest.raises(CheckpointError, match="kanlib.MLP checkpoint, not a kanlib.KAN one: load it with kanlib.MLP"):
        KAN.load(path)
    kan_path = KAN(width=[2, 1]).save(tmp_path / "kan.pt")
    with pytest.raises(CheckpointError, match="kanlib.KAN checkpoint, not a kanlib.MLP one: load it with kanlib.KAN"):
        MLP.load(kan_path)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"width": [2, 4, 1], "activation": "gelu"}, "activation must be one of \\['relu', 'silu', 'tanh'\\]"),
        ({"width": [2]}, "at least 2 layer sizes"),
        ({"width": [2, 0, 1]}, r"width\[1\]"),
        ({"width": [2, 4, 1], "seed": -1}, "seed must be an integer >= 0"),
        ({"width": [2, 4, 1], "dtype": "float16"}, "dtype must be one of"),
    ],
)
def test_bad_arguments_name_themselves(arguments, message):
    with pytest.raises(ValueError, match=message):
        MLP(**arguments)
