"""Restarts (kanlib.restarts.best_of), the rule for a chain that did not learn its target
(kanlib.families.learned_target) and pykan 0.2.8's ``refine(new_grid)`` without inputs.

References: every candidate trained alone through the public calls; the rule on the seed's [2,1,1]
KAN at G = 3 (pykan's function-fitting tutorial: N = 1000, 200 steps), where model seed 0 ends in
the poor minimum (train RMSE 0.67, half the labels' standard deviation) and another seed learns the
target (train RMSE near 1e-2).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kanlib import KAN, MLP, best_of, create_dataset, restart_seeds
from kanlib.families import REGISTRY, learned_target
from kanlib.functions import get_function

FIT = {"steps": 200, "stop_grid_update_step": 50, "progress": False}


@pytest.fixture(scope="module")
def dataset():
    return create_dataset(get_function("exp_sin_pi_x_plus_y2"), n_var=2, train_num=1000, seed=0)


def relative(rmse: float, dataset: dict) -> float:
    return rmse / float(dataset["train_label"].std())


def kan(seed: int) -> KAN:
    return KAN(width=[2, 1, 1], grid=3, k=3, seed=seed)


def test_restart_seeds_start_with_the_models_own_and_only_grow():
    seeds = restart_seeds(7, 8)
    assert seeds[0] == 7 and len(set(seeds)) == 8 and restart_seeds(7, 3) == seeds[:3]
    assert all(0 <= s < 2**63 for s in seeds)
    # other chains' candidates never meet these (63-bit draws; the chains' own seeds are small)
    others = {s for seed in range(50) if seed != 7 for s in restart_seeds(seed, 8)}
    assert not others & set(seeds)
    with pytest.raises(ValueError, match="restarts"):
        restart_seeds(7, 0)


def chain(seed: int, function: str, width: list[int]) -> list[float]:
    """Relative train RMSE after each level of a chain G = 3, 5, 10, 20 (the rule's judged level)."""
    target = get_function(function)
    data = create_dataset(target, n_var=target.n_var, train_num=1000, seed=0)
    model, out = None, []
    for grid in (3, 5, 10, 20):
        model = KAN(width=width, grid=grid, k=3, seed=seed) if model is None else model.refine(grid)
        out.append(relative(model.fit(data, **FIT)["train_loss"][-1], data))
    return out


def test_the_rule_tells_a_stuck_chain_from_one_that_learns_and_from_a_coarse_first_grid():
    stuck, learns = (
        chain(0, "exp_sin_pi_x_plus_y2", [2, 1, 1]),
        chain(restart_seeds(0, 2)[1], "exp_sin_pi_x_plus_y2", [2, 1, 1]),
    )
    assert REGISTRY["kan"].judged_level == 4 and REGISTRY["kan"].judged_grid == 20
    assert min(stuck) > 0.1 and not learned_target("kan", stuck[3])  # the labels' mean learnt, and kept
    assert learns[3] < 1e-3 and learned_target("kan", learns[3])
    # J0(20x) on [1,1]: G = 3 cannot follow it (every seed far off), G = 20 can: judged there, it learnt
    coarse = chain(1, "bessel_j0_20x", [1, 1])
    assert coarse[0] > 0.5 and coarse[3] < 0.05 and learned_target("kan", coarse[3])
    assert not learned_target("kan", float("nan")) and not learned_target("mlp", 0.9) and learned_target("mlp", 0.2)


@pytest.mark.parametrize("as_stack", [True, False])
def test_best_of_keeps_the_lowest_training_rmse_of_candidates_trained_alone(dataset, as_stack):
    model, result = best_of(kan, 0, 4, dataset, as_stack=as_stack, **FIT)
    alone = [kan(s).fit(dataset, **FIT) for s in restart_seeds(0, 4)]
    finals = [fit["train_loss"][-1] for fit in alone]
    assert result["restarts"]["train_loss"] == finals  # each candidate's numbers are its lone fit's
    assert result["restarts"]["chosen"] == int(np.argmin(finals)) and result["restarts"]["chosen"] != 0
    assert result["train_loss"] == alone[result["restarts"]["chosen"]]["train_loss"]
    assert model.config().seed == restart_seeds(0, 4)[result["restarts"]["chosen"]]
    assert torch.equal(model.last_fit_input, dataset["train_input"])  # so model.refine(G) works next
    again, _ = best_of(kan, 0, 4, dataset, as_stack=as_stack, **FIT)  # deterministic
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_best_of_one_is_the_plain_fit_and_mlps_restart_too(dataset):
    model, result = best_of(kan, 1, 1, dataset, **FIT)
    plain = kan(1)
    assert result["train_loss"] == plain.fit(dataset, **FIT)["train_loss"]
    assert result["restarts"] == {"seeds": [1], "train_loss": [result["train_loss"][-1]], "chosen": 0}
    mlp, fit = best_of(lambda s: MLP(width=[2, 5, 1], seed=s), 0, 2, dataset, as_stack=False, steps=20, progress=False)
    assert fit["train_loss"][-1] == min(fit["restarts"]["train_loss"]) and isinstance(mlp, MLP)


def test_refine_without_inputs_uses_the_last_fits_training_inputs(dataset):
    model = kan(1)
    with pytest.raises(ValueError, match="fit"):
        model.refine(5)
    model.fit(dataset, steps=5, progress=False)
    implicit, explicit = model.refine(10), model.refine(10, dataset["train_input"])
    assert all(torch.equal(a, b) for a, b in zip(implicit.state_dict().values(), explicit.state_dict().values()))
    on_test = model.refine(10, dataset["test_input"])  # pykan 0.2.8's choice: the last forward's input
    assert not torch.equal(implicit.layers[0].coef, on_test.layers[0].coef)
