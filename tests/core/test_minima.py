"""Initialisation as pykan 0.2.1's, and how often training from it reaches the good basin.

[2,1,1] on f(x, y) = exp(sin(pi x) + y^2) has two basins after 50 L-BFGS steps: train RMSE ~1e-2
at G=3 (~6e-3 at G=5), or a poor minimum at 0.5-0.7. Which one a fit ends in depends on the model
seed's initial parameters: started from pykan 0.2.1's own initial parameters (copied in), kanlib's
training ends in the same basin as pykan 0.2.1's for every G in (3, 5) and model seed 0-5.
"""

import torch

from kanlib import KAN, create_dataset
from kanlib.functions import get_function


def test_initial_scales_are_pykan_0_2_1s():
    """pykan 0.2.1 (MultKAN, KANLayer): scale_sp = 1 on every edge (not 1/sqrt(in_dim), as in later
    releases), scale_base = (mu + sigma * (2 randn - 1)) / sqrt(in_dim)."""
    model = KAN(width=[3, 2, 1], grid=5, k=3, seed=0)
    for layer in model.layers:
        assert torch.equal(layer.scale_sp.detach(), torch.ones(1, layer.in_dim, layer.out_dim, dtype=torch.float64))
    z = KAN(width=[4, 2000], grid=3, k=3, seed=0).layers[0].scale_base.detach() * 4**0.5  # mu=0, sigma=1
    assert abs(float(z.mean()) + 1.0) < 0.05 and abs(float(z.std()) - 2.0) < 0.05  # 2 z - 1, z ~ N(0, 1)


def test_most_model_seeds_reach_the_good_basin_at_grid_3():
    """Fraction of model seeds 0-19 whose G=3 fit (50 L-BFGS steps, grid updates until step 30,
    N=1000) ends with train RMSE < 0.05 on this dataset.

    pykan 0.2.1 (float64, its own seeds, the same tensors): seeds 0-5 reach 3/6 (1.4e-2, 9.4e-2,
    1.4e-2, 1.4e-2, 0.66, 0.66); its initial parameters for seeds 0-199, trained by kanlib (which
    ends in pykan's basin from the same start), reach 109/200 = 55% (G=5: 57%). kanlib with
    scale_sp = 1/sqrt(in_dim): 5/20 here, 82/200 = 41% (G=5: 38%); with pykan 0.2.1's scale_sp = 1:
    13/20 here, 126/200 = 63% (G=5: 50%). These are fixed seeds, not a statistical bound: a change
    that reshuffles which seeds land where can move the count by a few.
    """
    dataset = create_dataset(get_function("exp_sin_pi_x_plus_y2"), n_var=2, train_num=1000, test_num=1000, seed=0)
    finals = []
    for seed in range(20):
        model = KAN(width=[2, 1, 1], grid=3, k=3, seed=seed)
        results = model.fit(dataset, steps=50, stop_grid_update_step=30, progress=False)
        finals.append(results["train_loss"][-1])
    print("final train RMSE by seed:", " ".join(f"{value:.2e}" for value in finals))
    good = sum(value < 0.05 for value in finals)
    assert good >= 10, f"{good}/20 model seeds reach train RMSE < 0.05 at G=3 (pykan 0.2.1: ~57%)"
    assert min(finals) < 0.02  # the good basin itself is as deep as pykan's (1.35e-2)
