"""Stacks of models against the same models trained one by one through the public calls.

Every reference here is a lone model (KAN, KAN.fit, an LBFGS of one model) run model by model. On
the CPU a stack evaluates each model on its own tensors (kanlib.stack.each_model) and its optimizer
gives each model its own numbers, so the comparisons are exact (the worst difference is 0).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kanlib import KAN, MLP, KANStack, MLPStack, StackMemoryError, create_dataset
from kanlib.functions import get_function
from kanlib.optim import LBFGS

SEED_TARGET = get_function("exp_sin_pi_x_plus_y2")


def two_outputs(x):
    return torch.cat([SEED_TARGET(x), torch.sin(torch.pi * x[:, :1]) * x[:, 1:]], dim=1)


def datasets(n_models: int, n_train: int, target=SEED_TARGET, n_test: int = 200) -> list[dict]:
    """One dataset per model (different draws, one size), as the seeds of a sweep point have."""
    return [create_dataset(target, n_var=2, train_num=n_train, test_num=n_test, seed=100 + s) for s in range(n_models)]


def stacked_inputs(data: list[dict], key: str = "train_input") -> torch.Tensor:
    return torch.stack([dataset[key] for dataset in data])  # (S, N, d)


def assert_same_models(stack: KANStack, models: list[KAN]) -> None:
    for s, (alone, from_stack) in enumerate(zip(models, stack.unstack())):
        state, other = alone.state_dict(), from_stack.state_dict()
        assert state.keys() == other.keys()
        for name in state:
            assert torch.equal(state[name], other[name]), f"model {s}: {name} differs"


def chain_alone(data, seeds, grids, **fit_options):
    """The seed notebook's chain (grid extension between levels), one model after another."""
    results, models = [], []
    for seed, dataset in zip(seeds, data):
        model, per_level = None, []
        for grid in grids:
            fresh = KAN(width=[2, 1, 1], grid=grid, k=3, seed=seed)
            model = fresh if model is None else fresh.initialize_from_another_model(model, dataset["train_input"])
            per_level.append(model.fit(dataset, progress=False, **fit_options))
        results.append(per_level)
        models.append(model)
    return results, models


def chain_stacked(data, seeds, grids, **fit_options):
    stack, per_level = None, []
    for grid in grids:
        if stack is None:
            stack = KANStack.stack([KAN(width=[2, 1, 1], grid=grid, k=3, seed=seed) for seed in seeds])
        else:
            stack = stack.refine(grid, stacked_inputs(data))
        per_level.append(stack.fit(data, progress=False, **fit_options))
    return per_level, stack


def worst_relative_difference(alone: list[list[dict]], stacked: list[list[dict]], key: str, steps=None) -> float:
    worst = 0.0
    for s, per_level in enumerate(alone):
        for level, result in enumerate(per_level):
            a = np.asarray(result[key][:steps])
            b = np.asarray(stacked[level][s][key][:steps])
            worst = max(worst, float(np.max(np.abs(a - b) / np.abs(a))))
    return worst


# ---- building and splitting ----------------------------------------------------------------------


def test_stack_and_unstack_round_trip_exactly(tmp_path):
    data = datasets(3, 60)
    models = [KAN(width=[2, 3, 2], grid=6, k=3, seed=s, grid_eps=0.5) for s in range(3)]
    for model, dataset in zip(models, data):
        model.update_grid_from_samples(dataset["train_input"])  # non-uniform grids (quantiles mixed in)
    stack = KANStack.stack(models)
    assert stack.n_models == 3 and stack.seeds == [0, 1, 2] and stack.n_params == models[0].n_params
    assert_same_models(stack, models)
    for s, model in enumerate(stack.unstack()):  # a split model is an ordinary KAN: its checkpoint loads
        loaded = KAN.load(model.save(tmp_path / f"model{s}.pt"))
        assert loaded.config() == models[s].config()
        assert torch.equal(loaded(data[s]["test_input"]), models[s](data[s]["test_input"]))


def test_a_stack_needs_one_architecture():
    with pytest.raises(ValueError, match="grid=6"):
        KANStack.stack([KAN(width=[2, 1, 1], grid=5, seed=0), KAN(width=[2, 1, 1], grid=6, seed=1)])
    with pytest.raises(ValueError, match="width"):
        KANStack.stack([KAN(width=[2, 1, 1], seed=0), KAN(width=[2, 2, 1], seed=1)])
    with pytest.raises(ValueError, match="list of kanlib.KAN"):
        KANStack.stack([])


# ---- forward, gradients, grids -------------------------------------------------------------------


@pytest.mark.parametrize("grid_eps", [1.0, 0.0], ids=["uniform grids", "quantile grids"])
@pytest.mark.parametrize("n_train", [64, 97])
def test_forward_and_gradients_equal_each_single_model(grid_eps, n_train):
    data = datasets(4, n_train, two_outputs)
    models = [KAN(width=[2, 3, 2], grid=5, k=3, seed=s, grid_eps=grid_eps) for s in range(4)]
    for model, dataset in zip(models, data):
        model.update_grid_from_samples(dataset["train_input"])
    stack = KANStack.stack(models)
    x, y = stacked_inputs(data), stacked_inputs(data, "train_label")

    # the training path: hand-written gradients, no autograd
    losses = stack.mse_and_grad(x, y)
    stacked_grads = [p.grad.clone() for p in stack.parameters()]
    for s, (model, dataset) in enumerate(zip(models, data)):
        loss = model.mse_and_grad(dataset["train_input"], dataset["train_label"])
        assert float(loss) == float(losses[s])
        for p, grad in zip(model.parameters(), stacked_grads):
            assert torch.equal(p.grad[0], grad[s])

    # autograd through the stacked layers: outputs, parameter and input gradients
    for p in stack.parameters():
        p.grad = None
    x_shared = data[0]["test_input"].clone().requires_grad_(True)
    out = stack(x_shared)  # one shared input for every model: (N, d) -> (S, N, out)
    (out**2).sum().backward()
    for s, model in enumerate(models):
        for p in model.parameters():
            p.grad = None
        x_alone = data[0]["test_input"].clone().requires_grad_(True)
        out_alone = model(x_alone)
        assert torch.equal(out_alone, out[s])
        (out_alone**2).sum().backward()
        for p, q in zip(model.parameters(), stack.parameters()):
            assert torch.equal(p.grad[0], q.grad[s])
    assert x_shared.grad is not None


@pytest.mark.parametrize("grid_eps", [1.0, 0.5])
def test_grid_updates_per_model_equal_single_grid_updates(grid_eps):
    data = datasets(3, 80, two_outputs)
    models = [KAN(width=[2, 2, 2], grid=7, k=3, seed=s, grid_eps=grid_eps) for s in range(3)]
    stack = KANStack.stack(models)
    stack.update_grid_from_samples(stacked_inputs(data))
    for model, dataset in zip(models, data):
        model.update_grid_from_samples(dataset["train_input"])
    assert_same_models(stack, models)


def test_grid_extension_per_model_equals_initialize_from_another_model():
    data = datasets(3, 90)
    parents = [KAN(width=[2, 1, 1], grid=5, k=3, seed=s, grid_eps=0.5) for s in range(3)]
    for parent, dataset in zip(parents, data):
        parent.fit(dataset, steps=4, progress=False)  # trained, with updated (non-uniform) grids
    children = [
        KAN(width=[2, 1, 1], grid=12, k=3, seed=s, grid_eps=0.5).initialize_from_another_model(parent, d["train_input"])
        for s, (parent, d) in enumerate(zip(parents, data))
    ]
    stack = KANStack.stack(parents).refine(12, stacked_inputs(data))
    assert stack.grid_size == 12 and [c.grid for c in stack.configs] == [12, 12, 12]
    assert_same_models(stack, children)
    # a shared sample set works too
    shared = KANStack.stack(parents).refine(12, data[0]["train_input"])
    assert_same_models(
        shared,
        [
            KAN(width=[2, 1, 1], grid=12, k=3, seed=s, grid_eps=0.5).initialize_from_another_model(
                p, data[0]["train_input"]
            )
            for s, p in enumerate(parents)
        ],
    )


# ---- training ----------------------------------------------------------------------------------


def test_lbfgs_of_several_models_is_independent_lbfgs_runs():
    """S Rosenbrock problems of different starts and scales, each as an LBFGS of that one problem solves it."""
    starts = torch.tensor([[-1.2, 1.0, -0.5, 0.8], [0.3, -0.7, 1.5, 0.1], [2.0, 2.0, -2.0, 0.5]], dtype=torch.float64)
    scales = torch.tensor([100.0, 10.0, 1.0], dtype=torch.float64)

    def rosenbrock(x, scale):  # x (..., 4)
        return torch.sum(scale[..., None] * (x[..., 1:] - x[..., :-1] ** 2) ** 2 + (1 - x[..., :-1]) ** 2, dim=-1)

    alone = []
    for start, scale in zip(starts, scales):
        x = start[None].clone().requires_grad_(True)  # (1, 4): one model
        optimizer = LBFGS([x], max_iter=15, stall_rtol=1e-5)

        def closure(x=x, scale=scale):
            x.grad = None
            value = rosenbrock(x, scale)
            value.backward()
            return value.detach()

        losses = [optimizer.step(closure)[0] for _ in range(6)]
        optimizer.release()
        alone.append((losses, x.detach()[0].clone()))

    xs = starts.clone().requires_grad_(True)
    optimizer = LBFGS([xs], max_iter=15, stall_rtol=1e-5)

    def batched_closure():
        xs.grad = None
        values = rosenbrock(xs, scales)  # (S,)
        values.sum().backward()
        return values.detach()

    losses = [optimizer.step(batched_closure) for _ in range(6)]
    optimizer.release()
    for s, (alone_losses, alone_x) in enumerate(alone):
        assert [step[s] for step in losses] == alone_losses
        assert torch.equal(xs.detach()[s], alone_x)


def test_each_model_follows_its_lone_trajectory():
    """Each model's own dataset, the seed chain's calls (grid extension, grid updates, stall rule):
    every step's train and test RMSE and evaluation count equal the lone fit's (worst difference 0)."""
    data = datasets(3, 150)
    options = dict(steps=12, stop_grid_update_step=30)
    alone, models = chain_alone(data, [0, 1, 2], [5, 10], **options)
    stacked, stack = chain_stacked(data, [0, 1, 2], [5, 10], **options)
    for key in ("train_loss", "test_loss"):
        assert worst_relative_difference(alone, stacked, key) == 0.0  # exactly equal
    for s in range(3):
        for level in range(2):
            assert stacked[level][s]["n_evals"] == alone[s][level]["n_evals"]
    assert_same_models(stack, models)


def test_a_stalled_model_keeps_its_parameters_while_the_others_train():
    """Per-model stopping: model 1 stalls (its later steps take no evaluation) while models 0 and 2
    go on; every model ends where its lone fit ends."""
    data = datasets(3, 60, n_test=50)
    models = [KAN(width=[2, 1, 1], grid=3, k=3, seed=s) for s in range(3)]
    stack = KANStack.stack(models)
    stacked = stack.fit(data, steps=15, update_grid=False, progress=False)
    alone = [model.fit(dataset, steps=15, update_grid=False, progress=False) for model, dataset in zip(models, data)]
    assert stacked[1]["n_evals"][-1] == 0 and stacked[0]["n_evals"][-1] > 0 and stacked[2]["n_evals"][-1] > 0
    for s in range(3):
        assert stacked[s]["n_evals"] == alone[s]["n_evals"]
        assert stacked[s]["train_loss"] == alone[s]["train_loss"] and stacked[s]["test_loss"] == alone[s]["test_loss"]
    assert_same_models(stack, models)


def test_a_shared_dataset_and_a_stacked_dict_train_as_the_lone_fits():
    data = datasets(1, 120)[0]
    alone = [KAN(width=[2, 1, 1], grid=5, seed=s).fit(data, steps=8, progress=False) for s in range(3)]
    stack = KANStack.stack([KAN(width=[2, 1, 1], grid=5, seed=s) for s in range(3)])
    shared = stack.fit(data, steps=8, progress=False)  # one dict of (N, d) tensors for every model
    for s in range(3):
        assert shared[s]["train_loss"] == alone[s]["train_loss"] and shared[s]["test_loss"] == alone[s]["test_loss"]
    stacked_dict = {key: torch.stack([value] * 3) for key, value in data.items()}  # (S, N, d)
    again = KANStack.stack([KAN(width=[2, 1, 1], grid=5, seed=s) for s in range(3)]).fit(
        stacked_dict, steps=8, progress=False
    )
    assert [r["train_loss"] for r in again] == [r["train_loss"] for r in alone]


@pytest.mark.parametrize(
    "options",
    [
        dict(opt="Adam", lr=0.01),
        dict(batch=50),
        dict(loss_fn=lambda p, t: torch.mean((p - t) ** 2)),
        dict(lamb=0.01, lamb_coef=0.5),
        dict(grid_eps=0.5),
    ],
    ids=["Adam", "minibatch", "custom loss_fn", "regulariser", "quantile grids (torch path)"],
)
def test_other_fit_options_train_as_the_lone_fits(options):
    data = datasets(2, 100)
    grid_eps = options.pop("grid_eps", 1.0)
    alone = [
        KAN(width=[2, 2, 1], grid=5, seed=s, grid_eps=grid_eps).fit(d, steps=5, progress=False, **options)
        for s, d in enumerate(data)
    ]
    stack = KANStack.stack([KAN(width=[2, 2, 1], grid=5, seed=s, grid_eps=grid_eps) for s in range(2)])
    stacked = stack.fit(data, steps=5, progress=False, **options)
    for s in range(2):
        for key in ("train_loss", "test_loss", "reg", "n_evals"):
            assert stacked[s][key] == alone[s][key], key  # exactly equal: each model evaluated on its own


def test_fit_stack_checks_its_inputs():
    stack = KANStack.stack([KAN(width=[2, 1, 1], grid=5, seed=s) for s in range(2)])
    data = datasets(3, 50)
    with pytest.raises(ValueError, match="list of 2 dataset dicts"):
        stack.fit(data, steps=1, progress=False)
    with pytest.raises(ValueError, match="one size"):
        stack.fit([data[0], datasets(1, 40)[0]], steps=1, progress=False)
    with pytest.raises(ValueError, match="lamb must be >= 0"):
        stack.fit(data[:2], steps=1, lamb=-0.1, progress=False)
    with pytest.raises(ValueError, match="unknown fit"):
        stack.fit(data[:2], steps=1, progres=False)


# ---- memory ----------------------------------------------------------------------------------------


def test_the_memory_check_fires_before_training_and_names_s_and_the_estimate():
    stack = KANStack.stack([KAN(width=[2, 1, 1], grid=5, seed=s) for s in range(4)])
    data = datasets(4, 100)
    before = [p.detach().clone() for p in stack.parameters()]
    estimate = stack.memory_estimate(100, 200)
    with pytest.raises(StackMemoryError, match=r"S=4 models \[2, 1, 1\].*needs an estimated .* GiB"):
        stack.fit(data, steps=2, progress=False, max_bytes=estimate - 1)
    assert all(torch.equal(p, q) for p, q in zip(before, stack.parameters()))  # nothing trained
    stack.fit(data, steps=1, progress=False, max_bytes=estimate)  # fits exactly at the estimate
    bigger = KANStack.stack([KAN(width=[2, 1, 1], grid=5, seed=s) for s in range(8)])
    assert bigger.memory_estimate(100, 200) > 1.9 * estimate  # grows with S
    assert stack.memory_estimate(1000, 200) > 5 * estimate  # and with N


# ---- the MLP family ----------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["silu", "tanh", "relu"])
def test_mlp_stack_equals_each_single_mlp(activation, tmp_path):
    data = datasets(3, 70, two_outputs)
    models = [MLP(width=[2, 6, 5, 2], activation=activation, seed=s) for s in range(3)]
    stack = MLPStack.stack(models)
    assert stack.n_params == models[0].n_params and stack.seeds == [0, 1, 2]
    x, y = stacked_inputs(data), stacked_inputs(data, "train_label")
    losses = stack.mse_and_grad(x, y)
    for s, (model, dataset) in enumerate(zip(models, data)):
        loss = model.mse_and_grad(dataset["train_input"], dataset["train_label"])
        assert float(loss) == float(losses[s])
        for p, q in zip(model.parameters(), stack.parameters()):
            assert torch.equal(p.grad[0], q.grad[s])
        assert torch.equal(model(dataset["test_input"]), stack(stacked_inputs(data, "test_input"))[s])
    alone = [model.fit(dataset, steps=6, progress=False) for model, dataset in zip(models, data)]
    stacked = stack.fit(data, steps=6, progress=False)
    for s in range(3):
        assert stacked[s]["train_loss"] == alone[s]["train_loss"] and stacked[s]["test_loss"] == alone[s]["test_loss"]
        assert stacked[s]["n_evals"] == alone[s]["n_evals"]
    for s, model in enumerate(stack.unstack()):  # round trip through the MLP's own checkpoint
        loaded = MLP.load(model.save(tmp_path / f"mlp{s}.pt"))
        for p, q in zip(loaded.parameters(), models[s].parameters()):
            assert torch.equal(p, q)
