"""Datasets sampled from target functions, and their validation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .devices import resolve_device, resolve_dtype

DATASET_KEYS = ("train_input", "train_label", "test_input", "test_label")


def _split_seeds(seed: int) -> tuple[int, int, int]:
    """Independent seeds for the train, the test and the validation split, so that the test and the
    validation set depend on ``seed`` only (not on ``train_num``). The first two are those of the
    train and test split before the validation split existed (SeedSequence words are a stream)."""
    states = np.random.SeedSequence(seed).generate_state(3, dtype=np.uint64)
    train_seed, test_seed, val_seed = (int(state >> np.uint64(1)) for state in states)
    return train_seed, test_seed, val_seed


def _uniform(n: int, ranges: np.ndarray, seed: int, dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    lower = torch.as_tensor(ranges[:, 0], dtype=dtype)
    width = torch.as_tensor(ranges[:, 1] - ranges[:, 0], dtype=dtype)
    return lower + width * torch.rand(n, len(ranges), generator=generator, dtype=dtype)  # (n, n_var)


def _labels(f: Callable, x: torch.Tensor, split: str) -> torch.Tensor:
    y = f(x)
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(np.asarray(y), dtype=x.dtype)
    y = y.to(x.dtype)
    if y.dim() == 1:
        y = y[:, None]
    if y.dim() != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"target function must return shape (n,) or (n, n_out) for input (n, n_var); "
            f"got {tuple(y.shape)} for input {tuple(x.shape)}"
        )
    if not torch.isfinite(y).all():
        raise ValueError(f"target function returned non-finite values on the {split} inputs")
    return y


def create_dataset(
    f: Callable,
    n_var: int = 2,
    ranges=(-1, 1),
    train_num: int = 1000,
    test_num: int = 1000,
    normalize_input: bool = False,
    normalize_label: bool = False,
    device="cpu",
    seed: int = 0,
    dtype=torch.float64,
    val_num: int = 0,
) -> dict[str, torch.Tensor]:
    """Sample inputs uniformly in ``ranges`` and label them with ``f`` (pykan's call).

    f maps (n, n_var) to (n,) or (n, n_out). ranges: [lo, hi] for every variable
    or one [lo, hi] per variable. Returns train/test inputs (n, n_var) and
    labels (n, n_out). Deterministic for a seed; the test set depends only on
    ``seed``, ``test_num`` and ``ranges``, not on ``train_num``.

    ``val_num`` > 0 (not in pykan) adds ``val_input``/``val_label``: a validation set drawn like the
    training set from its own stream (it depends only on ``seed``, ``val_num`` and ``ranges``), for
    choosing a model (e.g. its grid size) without looking at the test set. The train and test
    points are the same with and without it.
    """
    if not callable(f):
        raise ValueError(f"f must be callable; got {type(f).__name__}")
    checked = (("n_var", n_var, 1), ("train_num", train_num, 1), ("test_num", test_num, 1), ("val_num", val_num, 0))
    for name, value, minimum in checked:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    dtype = resolve_dtype(dtype)
    arr = np.asarray(ranges, dtype=float)
    if arr.shape == (2,):
        arr = np.tile(arr, (n_var, 1))
    if arr.shape != (n_var, 2) or not np.all(np.isfinite(arr)) or not np.all(arr[:, 0] < arr[:, 1]):
        raise ValueError(f"ranges must be [lo, hi] or one [lo, hi] per variable ({n_var}) with lo < hi; got {ranges!r}")
    sizes = {"train": int(train_num), "test": int(test_num), "val": int(val_num)}
    inputs = {
        split: _uniform(sizes[split], arr, split_seed, dtype)  # (n, n_var)
        for split, split_seed in zip(("train", "test", "val"), _split_seeds(int(seed)))
        if sizes[split] > 0
    }
    labels = {split: _labels(f, x, split) for split, x in inputs.items()}  # (n, n_out)
    # normalised with the training split's statistics, as pykan does
    if normalize_input:
        mean, std = inputs["train"].mean(0, keepdim=True), inputs["train"].std(0, keepdim=True)
        inputs = {split: (x - mean) / std for split, x in inputs.items()}
    if normalize_label:
        mean, std = labels["train"].mean(0, keepdim=True), labels["train"].std(0, keepdim=True)
        labels = {split: (y - mean) / std for split, y in labels.items()}
    device = resolve_device(device)
    dataset = {}
    for split in inputs:
        dataset[f"{split}_input"], dataset[f"{split}_label"] = inputs[split].to(device), labels[split].to(device)
    return dataset


def validate_dataset(dataset, in_dim: int, out_dim: int) -> None:
    """Raise ValueError naming the key when ``dataset`` cannot train a (in_dim -> out_dim) model."""
    if not isinstance(dataset, dict):
        raise ValueError(f"dataset must be a dict with keys {list(DATASET_KEYS)}; got {type(dataset).__name__}")
    missing = [key for key in DATASET_KEYS if key not in dataset]
    if missing:
        raise ValueError(f"dataset is missing {missing}; required keys: {list(DATASET_KEYS)}")
    for split in ("train", "test"):
        x, y = dataset[f"{split}_input"], dataset[f"{split}_label"]
        for key, tensor, width in ((f"{split}_input", x, in_dim), (f"{split}_label", y, out_dim)):
            if not isinstance(tensor, torch.Tensor):
                raise ValueError(f"dataset[{key!r}] must be a torch.Tensor; got {type(tensor).__name__}")
            if tensor.dim() != 2 or tensor.shape[1] != width or tensor.shape[0] < 1:
                raise ValueError(
                    f"dataset[{key!r}] must have shape (n, {width}) with n >= 1; got {tuple(tensor.shape)}"
                )
            if not tensor.is_floating_point():
                raise ValueError(f"dataset[{key!r}] must be a floating-point tensor; got {tensor.dtype}")
            if not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).any(dim=1).sum())
                raise ValueError(f"dataset[{key!r}] has non-finite values (NaN or inf) in {bad} row(s)")
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"dataset[{split + '_input'!r}] has {x.shape[0]} rows but "
                f"dataset[{split + '_label'!r}] has {y.shape[0]}"
            )


def rmse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Root mean squared error over all entries (a 0-dim tensor)."""
    return torch.sqrt(torch.mean((prediction - target) ** 2))


__all__ = ["create_dataset", "validate_dataset", "rmse", "DATASET_KEYS"]
