"""kanlib.training.outside_training_range / range_split_errors: which test points leave the range the
training points span at some layer, on models whose layer inputs are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import torch

from kanlib import KAN, MLP, create_dataset, outside_training_range, range_split_errors, validation_errors


def silu(x: float) -> float:
    return x / (1.0 + math.exp(-x))


def hand_set_mlp() -> MLP:
    """MLP [1,1,1] with hidden input silu(3x) and output 2h + 0.5."""
    model = MLP(width=[1, 1, 1], activation="silu", seed=0)
    with torch.no_grad():
        model.layers[0].weight.fill_(3.0)
        model.layers[0].bias.zero_()
        model.layers[1].weight.fill_(2.0)
        model.layers[1].bias.fill_(0.5)
    return model


def test_a_point_inside_the_input_box_can_leave_the_hidden_layers_range():
    model = hand_set_mlp()
    train = torch.tensor([[-1.0], [-0.1], [1.0]], dtype=torch.float64)
    # hidden range of the training points: [silu(-3), silu(3)] = [-0.142, 2.858]; silu(3x) has its minimum
    # -0.278 at 3x = -1.278, so x = -0.5 (inside [-1, 1]) gives silu(-1.5) = -0.273: outside at layer 1
    test = torch.tensor([[-0.5], [0.0], [0.5], [1.2], [-1.5]], dtype=torch.float64)
    hidden_train = [silu(3 * x) for x in (-1.0, -0.1, 1.0)]
    expected = [
        not (-1.0 <= x <= 1.0) or not (min(hidden_train) <= silu(3 * x) <= max(hidden_train))
        for x in (-0.5, 0.0, 0.5, 1.2, -1.5)
    ]
    assert expected == [True, False, False, True, True]
    assert outside_training_range(model, train, test).tolist() == expected


def test_the_split_of_the_test_error_matches_a_direct_computation():
    model = hand_set_mlp()
    train = torch.tensor([[-1.0], [-0.1], [1.0]], dtype=torch.float64)
    x = np.array([-0.5, 0.0, 0.5, 1.2, -1.5])
    labels = np.array([0.3, 0.4, 2.0, 7.0, -1.0])
    dataset = {
        "train_input": train,
        "train_label": torch.zeros(3, 1, dtype=torch.float64),
        "test_input": torch.tensor(x[:, None]),
        "test_label": torch.tensor(labels[:, None]),
    }
    predictions = np.array([2 * silu(3 * v) + 0.5 for v in x])
    squared = (predictions - labels) ** 2
    outside = np.array([True, False, False, True, True])
    split = range_split_errors(model, dataset)
    assert split["test_outside_count"] == 3
    assert math.isclose(split["test_outside_mse_share"], squared[outside].sum() / squared.sum(), rel_tol=1e-12)
    assert math.isclose(split["test_interior_rmse"], math.sqrt(squared[~outside].mean()), rel_tol=1e-12)


def test_a_kan_counts_its_first_layers_inputs_and_every_hidden_layers():
    """KAN [2,3,1]: outside when a raw input leaves the training box, or a hidden activation (computed
    here layer by layer through the public forward of a one-layer KAN with the same weights) leaves its range."""
    generator = torch.Generator().manual_seed(0)
    model = KAN(width=[2, 3, 1], grid=5, k=3, seed=1)
    first = KAN(width=[2, 3], grid=5, k=3, seed=1)  # the same first layer: same seed, same initialisation
    first.layers[0].load_state_dict(model.layers[0].state_dict())
    train = torch.rand(200, 2, dtype=torch.float64, generator=generator) * 1.6 - 0.8  # inside [-0.8, 0.8]^2
    test = torch.rand(300, 2, dtype=torch.float64, generator=generator) * 2.0 - 1.0  # [-1, 1]^2: some outside
    hidden_train, hidden_test = first(train), first(test)
    expected = ((test < train.min(0).values) | (test > train.max(0).values)).any(1) | (
        (hidden_test < hidden_train.min(0).values) | (hidden_test > hidden_train.max(0).values)
    ).any(1)
    got = outside_training_range(model, train, test)
    assert torch.equal(got, expected)
    assert 0 < int(got.sum()) < 300


def test_the_validation_split_is_drawn_like_the_training_set_and_scored_on_its_own():
    f = lambda x: x[:, 0] ** 2  # noqa: E731
    plain = create_dataset(f, n_var=1, train_num=200, test_num=50, seed=4)
    with_val = create_dataset(f, n_var=1, train_num=200, test_num=50, seed=4, val_num=4000)
    for key, tensor in plain.items():  # adding it leaves the train and test points as they were
        assert torch.equal(with_val[key], tensor)
    x = with_val["val_input"][:, 0].numpy()
    assert x.min() >= -1 and x.max() <= 1 and abs(x.mean()) < 0.05 and abs(x.var() - 1 / 3) < 0.02  # uniform
    assert not np.isin(x, with_val["train_input"][:, 0].numpy()).any()
    model = hand_set_mlp()  # 2 silu(3x) + 0.5 against x^2: errors computed directly
    errors = (2 * torch.nn.functional.silu(3 * with_val["val_input"]) + 0.5 - with_val["val_label"]).pow(2)[:, 0]
    scores = validation_errors(model, with_val)
    assert math.isclose(scores["val_rmse"], float(errors.mean().sqrt()), rel_tol=1e-12)
    assert math.isclose(scores["val_median_rmse"], float(np.sqrt(np.median(errors.numpy()))), rel_tol=1e-2)
    assert all(math.isnan(value) for value in validation_errors(model, plain).values())
