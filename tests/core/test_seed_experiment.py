"""The seed notebook's code cell, run unchanged except for its import line."""

import numpy as np

from kanlib.analysis.reference import SEED_TEST_RMSE

# Example_8_scaling.rst's code cell; only `from kan import *` is replaced.
SEED_CELL = """
import numpy as np, torch
from kanlib import KAN, create_dataset

# initialize KAN with G=3
model = KAN(width=[2,1,1], grid=3, k=3)

data_sizes = np.array([100,300,1000,3000])
grids = np.array([5,10,20,50,100])

train_losses = np.zeros((data_sizes.shape[0], grids.shape[0]))
test_losses = np.zeros((data_sizes.shape[0], grids.shape[0]))
steps = 50
k = 3

for j in range(data_sizes.shape[0]):
    data_size = data_sizes[j]
    print(f'data_size={data_size}')
    # create dataset
    f = lambda x: torch.exp(torch.sin(torch.pi*x[:,[0]]) + x[:,[1]]**2)
    dataset = create_dataset(f, n_var=2, train_num=data_size)

    for i in range(grids.shape[0]):
        print(f'grid_size={grids[i]}')
        if i == 0:
            model = KAN(width=[2,1,1], grid=grids[i], k=k)
        if i != 0:
            model = KAN(width=[2,1,1], grid=grids[i], k=k).initialize_from_another_model(model, dataset['train_input'])
        results = model.fit(dataset, opt="LBFGS", steps=steps, stop_grid_update_step = 30)
        train_losses[j][i] = results['train_loss'][-1]
        test_losses[j][i] = results['test_loss'][-1]
"""


def test_seed_cell_reproduces_the_published_scaling_law():
    namespace = {}
    exec(compile(SEED_CELL, "Example_8_scaling.rst", "exec"), namespace)
    test_losses, grids, data_sizes = namespace["test_losses"], namespace["grids"], namespace["data_sizes"]
    print("test RMSE (rows N, columns G):\n", np.array2string(test_losses, precision=2))
    for j, n in enumerate(data_sizes):
        for i, grid in enumerate(grids):
            if n >= 1000 and grid <= 50:
                assert test_losses[j, i] <= 2 * SEED_TEST_RMSE[int(n)][int(grid)], (n, grid)
    assert test_losses[3, 4] < 1e-7  # N=3000, G=100
    slope = np.polyfit(np.log(grids), np.log(test_losses[3]), 1)[0]
    print(f"log-log slope at N=3000: {slope:.2f}")
    assert -4.4 <= slope <= -3.6
