"""The workflow's files: datasets, per-job history and metrics, and the aggregated tables.

Every writer here goes through :mod:`kanlib.files` (atomic, the umask's mode), so a killed job
never leaves a file that a rerun would take as complete. torch and pandas are imported only by
the functions that need them.

Aggregated tables (the contract of :mod:`kanlib.analysis.fits` and the report rules):

results (one row per KAN grid level or MLP fit)
    ``function, width, k, n_train, seed, grid_size, n_params, steps, optimizer, train_rmse,
    test_rmse, wall_time_s, device, mlflow_run_id, family, activation, test_median_rmse``, then extras
    (``prev_grid_size, grid_level, n_evals, reg, dtype, lr, data_seed, model_seed, job``).
    ``test_outside_count, test_outside_mse_share, test_interior_rmse``: the test points outside the
    training points' range at some layer, their share of the test MSE, the RMSE of the others.
    ``family`` is ``kan`` or ``mlp``; an MLP row has an ``activation`` and no ``k``, ``grid_size``
    or ``grid_level`` (empty), a KAN row no ``activation``. ``test_median_rmse`` is the root of
    the median squared test error (the KAN paper's Fig. 2.3 measure beside the RMSE).
history (one row per training step)
    ``function, width, k, n_train, seed, grid_size, step, cumulative_step, train_rmse, test_rmse,
    family, activation``, then ``reg, n_evals``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..files import atomic_path, atomic_write_bytes, atomic_write_text

__all__ = [
    "save_dataset",
    "load_dataset",
    "write_history",
    "read_history",
    "RESULT_COLUMNS",
    "NUMERICS_COLUMNS",
    "RANGE_SPLIT_COLUMNS",
    "VALIDATION_COLUMNS",
    "HISTORY_COLUMNS",
    "results_table",
    "history_table",
    "write_table",
]

RANGE_SPLIT_COLUMNS = ["test_outside_count", "test_outside_mse_share", "test_interior_rmse"]
# the validation split's errors, on which a model is chosen (kanlib.training.validation_errors)
VALIDATION_COLUMNS = ["val_rmse", "val_median_rmse"]
RESULT_COLUMNS = [
    "function",
    "width",
    "k",
    "n_train",
    "seed",
    "grid_size",
    "n_params",
    "steps",
    "optimizer",
    "train_rmse",
    "test_rmse",
    "wall_time_s",
    "device",
    "mlflow_run_id",
    # the model families (KAN against MLP) and the median-based error
    "family",
    "activation",
    "test_median_rmse",
    # did the chain learn its target (kanlib.families.learned_target, judged at the chain's fourth level with G >= 20)
    "relative_train_rmse",
    "judged_relative_train_rmse",
    "learned_target",
    # the test points outside the training points' range at some layer (kanlib.training.range_split_errors)
    *RANGE_SPLIT_COLUMNS,
    *VALIDATION_COLUMNS,
]
# What a job's CPU computed with (metrics.json, the results table, and MLflow tags kanlib.<name>): the
# sweep's cpu_code_path and the process's record (kanlib.reproducibility.describe).
NUMERICS_COLUMNS = [
    "cpu_code_path",
    "mkl_version",
    "mkl_cbwr",
    "blas",
    "blas_core",
    "blas_threads",
    "cpu_capability",
    "cpu_model",
]
RESULT_EXTRA_COLUMNS = [
    "prev_grid_size",
    "grid_level",
    "n_evals",
    "reg",
    "dtype",
    "lr",
    "data_seed",
    "model_seed",
    "job",
    "restarts",
    "restart_chosen",
    "threads",
    "torch_version",
    *NUMERICS_COLUMNS,
]
HISTORY_COLUMNS = [
    "function",
    "width",
    "k",
    "n_train",
    "seed",
    "grid_size",
    "step",
    "cumulative_step",
    "train_rmse",
    "test_rmse",
    "family",
    "activation",
]
HISTORY_STEP_COLUMNS = ["step", "train_rmse", "test_rmse", "reg", "n_evals"]


# ---- datasets -----------------------------------------------------------------------------------------------


def save_dataset(path, dataset: dict, info: dict) -> Path:
    """Write the four tensors of ``dataset`` plus plain ``info`` (strings, numbers, lists) atomically."""
    import torch

    buffer = io.BytesIO()
    torch.save({**{key: value.detach().cpu() for key, value in dataset.items()}, "info": info}, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def load_dataset(path, device="cpu") -> tuple[dict, dict]:
    """(tensors, info) from :func:`save_dataset`'s file; never executes code from the file."""
    import torch

    payload = torch.load(path, map_location="cpu", weights_only=True)
    info = payload.pop("info", {})
    return {key: value.to(device) for key, value in payload.items()}, info


# ---- per-job history --------------------------------------------------------------------------------------


def write_history(path, fit_result: dict) -> Path:
    """history.csv from KAN.fit's result: step, train_rmse, test_rmse, reg, n_evals (one row a step)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HISTORY_STEP_COLUMNS)
    for step, row in enumerate(
        zip(fit_result["train_loss"], fit_result["test_loss"], fit_result["reg"], fit_result["n_evals"])
    ):
        writer.writerow([step, *(repr(float(v)) for v in row[:3]), int(row[3])])
    return atomic_write_text(path, buffer.getvalue())


def read_history(path) -> dict[str, list]:
    """history.csv back as columns (floats; step and n_evals ints)."""
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    columns = {name: [] for name in HISTORY_STEP_COLUMNS}
    for row in rows:
        for name in HISTORY_STEP_COLUMNS:
            columns[name].append(int(row[name]) if name in ("step", "n_evals") else float(row[name]))
    return columns


# ---- aggregated tables -----------------------------------------------------------------------------------


def results_table(metrics: list[dict]):
    """The results DataFrame from the jobs' metrics.json contents (sorted by chain, then grid)."""
    import pandas as pd

    columns = RESULT_COLUMNS + RESULT_EXTRA_COLUMNS
    # metrics.json written before the MLP family existed has no family: a KAN grid level
    defaults = {"family": "kan", "test_median_rmse": float("nan"), "test_interior_rmse": float("nan")}
    frame = pd.DataFrame(
        [{column: m.get(column, defaults.get(column)) for column in columns} for m in metrics], columns=columns
    )
    frame = frame.astype(
        {
            "k": "Int64",  # empty for an MLP
            "n_train": "int64",
            "seed": "int64",
            "grid_size": "Int64",
            "n_params": "int64",
            "steps": "int64",
            "train_rmse": "float64",
            "test_rmse": "float64",
            "wall_time_s": "float64",
            "prev_grid_size": "Int64",
            "grid_level": "Int64",
            "n_evals": "int64",
            "reg": "float64",
            "test_median_rmse": "float64",
            "test_outside_count": "Int64",  # empty in tables of jobs that did not measure it
            "test_outside_mse_share": "float64",
            "test_interior_rmse": "float64",
        }
    )
    if frame["activation"].isna().all():  # a KAN-only sweep: NaN, as the CSV reads back (not None)
        frame["activation"] = float("nan")
    order = ["function", "family", "width", "activation", "k", "n_train", "seed", "grid_size"]
    return frame.sort_values(order, na_position="first").reset_index(drop=True)


def history_table(entries: list[tuple[dict, dict]]):
    """The history DataFrame from (metrics, history columns) pairs, with steps counted across each chain."""
    import pandas as pd

    frames = []
    for metrics, history in entries:
        frame = pd.DataFrame(history)
        for column in ("function", "family", "width", "activation", "k", "n_train", "seed", "grid_size"):
            frame[column] = metrics.get(column, "kan" if column == "family" else None)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=HISTORY_COLUMNS + ["reg", "n_evals"])
    table = pd.concat(frames, ignore_index=True).astype({"k": "Int64", "grid_size": "Int64"})
    chain = ["function", "family", "width", "activation", "k", "n_train", "seed"]
    table = table.sort_values([*chain, "grid_size", "step"], na_position="first")
    table["cumulative_step"] = table.groupby(chain, sort=False, dropna=False).cumcount()
    return table[HISTORY_COLUMNS + ["reg", "n_evals"]].reset_index(drop=True)


def write_table(frame, path) -> Path:
    """CSV or Parquet (by suffix), atomically."""
    path = Path(path)
    if path.suffix == ".parquet":
        with atomic_path(path) as temporary:
            frame.to_parquet(temporary, index=False)
    else:
        atomic_write_text(path, frame.to_csv(index=False, float_format="%.10g", lineterminator="\n"))
    return path
