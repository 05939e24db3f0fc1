"""kanlib.workflow.results: the workflow's per-job files and the aggregated tables."""

from __future__ import annotations

import pandas as pd
import torch

from kanlib import create_dataset
from kanlib.functions import get_function
from kanlib.workflow.results import (
    HISTORY_COLUMNS,
    RESULT_COLUMNS,
    history_table,
    load_dataset,
    read_history,
    results_table,
    save_dataset,
    write_history,
    write_table,
)


def metrics(function="xy", width="2-1-1", n=100, grid=3, prev=None, level=0, test=1e-2):
    return {
        "function": function,
        "width": width,
        "k": 3,
        "n_train": n,
        "seed": 0,
        "grid_size": grid,
        "n_params": 10 * grid,
        "steps": 2,
        "optimizer": "LBFGS",
        "train_rmse": test / 2,
        "test_rmse": test,
        "wall_time_s": 0.1,
        "device": "cpu",
        "mlflow_run_id": f"run{n}{grid}",
        "prev_grid_size": prev,
        "grid_level": level,
        "n_evals": 7,
        "reg": 0.0,
        "dtype": "float64",
        "lr": 1.0,
        "data_seed": 0,
        "model_seed": 1,
        "job": f"{function}/w{width}_k3/N{n}_seed0/G{grid}",
    }


def fit_result(steps=2, offset=0.0):
    return {
        "train_loss": [0.5 + offset, 0.25 + offset][:steps],
        "test_loss": [0.6, 0.3][:steps],
        "reg": [0.0, 0.0],
        "n_evals": [3, 4][:steps],
    }


def test_results_table_has_the_contract_columns_in_order():
    table = results_table([metrics(n=200, grid=6, prev=3, level=1), metrics(n=200), metrics(n=100)])
    assert list(table.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    assert list(table[["n_train", "grid_size"]].itertuples(index=False, name=None)) == [(100, 3), (200, 3), (200, 6)]
    assert table["prev_grid_size"].isna().sum() == 2 and table["prev_grid_size"].dropna().tolist() == [3]


def test_history_table_counts_steps_across_grid_levels(tmp_path):
    entries = []
    for grid, prev, level in ((6, 3, 1), (3, None, 0)):  # out of order on purpose
        write_history(tmp_path / f"h{grid}.csv", fit_result())
        entries.append((metrics(grid=grid, prev=prev, level=level), read_history(tmp_path / f"h{grid}.csv")))
    table = history_table(entries)
    assert list(table.columns[: len(HISTORY_COLUMNS)]) == HISTORY_COLUMNS
    assert table["grid_size"].tolist() == [3, 3, 6, 6]
    assert table["step"].tolist() == [0, 1, 0, 1] and table["cumulative_step"].tolist() == [0, 1, 2, 3]


def test_history_round_trip_is_exact(tmp_path):
    result = {"train_loss": [1 / 3, 1e-12], "test_loss": [2 / 3, float("inf")], "reg": [0.0, 0.5], "n_evals": [1, 2]}
    write_history(tmp_path / "h.csv", result)
    back = read_history(tmp_path / "h.csv")
    assert back["train_rmse"] == result["train_loss"] and back["test_rmse"] == result["test_loss"]
    assert back["step"] == [0, 1] and back["n_evals"] == [1, 2]


def test_tables_write_atomically_as_csv_and_parquet(tmp_path):
    table = results_table([metrics(), metrics(grid=6, prev=3, level=1)])
    write_table(table, tmp_path / "r.csv")
    write_table(table, tmp_path / "r.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.parquet"]  # no temporary files left
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "r.parquet"), table)
    assert pd.read_csv(tmp_path / "r.csv")["test_rmse"].tolist() == table["test_rmse"].tolist()


def test_dataset_files_round_trip_without_code(tmp_path):
    target = get_function("exp_sin_pi_x_plus_y2")
    data = create_dataset(target, n_var=2, train_num=10, test_num=5, seed=3)
    save_dataset(tmp_path / "d.pt", data, {"function": target.name, "seed": 3})
    back, info = load_dataset(tmp_path / "d.pt")
    assert info == {"function": target.name, "seed": 3}
    for key, value in data.items():
        assert torch.equal(back[key], value)
