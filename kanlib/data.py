"""Datasets sampled from target functions, and their validation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .devices import resolve_device, resolve_dtype

DATASET_KEYS = ("train_input", "train_label", "test_input", "test_label")


def _split_seeds(seed: int) -> tuple[int, int]:
    """Independent seeds for the train and the test split, so that the test set
    depends on ``seed`` only (not on ``train_num``)."""
    train_state, test_state = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint64)
    return int(train_state >> np.uint64(1)), int(test_state >> np.uint64(1))


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
) -> dict[str, torch.Tensor]:
    """Sample inputs uniformly in ``ranges`` and label them with ``f`` (pykan's call).

    f maps (n, n_var) to (n,) or (n, n_out). ranges: [lo, hi] for every variable
    or one [lo, hi] per variable. Returns train/test inputs (n, n_var) and
    labels (n, n_out). Deterministic for a seed; the test set depends only on
    ``seed``, ``test_num`` and ``ranges``, not on ``train_num``.
    """
    if not callable(f):
        raise ValueError(f"f must be callable; got {type(f).__name__}")
    for name, value, minimum in (("n_var", n_var, 1), ("train_num", train_num, 1), ("test_num", test_num, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    dtype = resolve_dtype(dtype)
    arr = np.asarray(ranges, dtype=float)
    if arr.shape == (2,):
        arr = np.tile(arr, (n_var, 1))
    if arr.shape != (n_var, 2) or not np.all(np.isfinite(arr)) or not np.all(arr[:, 0] < arr[:, 1]):
        raise ValueError(f"ranges must be [lo, hi] or one [lo, hi] per variable ({n_var}) with lo < hi; got {ranges!r}")
    train_seed, test_seed = _split_seeds(int(seed))
    train_input = _uniform(int(train_num), arr, train_seed, dtype)
    test_input = _uniform(int(test_num), arr, test_seed, dtype)
    train_label = _labels(f, train_input, "train")
    test_label = _labels(f, test_input, "test")
    if normalize_input:
        mean, std = train_input.mean(0, keepdim=True), train_input.std(0, keepdim=True)
        train_input, test_input = (train_input - mean) / std, (test_input - mean) / std
    if normalize_label:
        mean, std = train_label.mean(0, keepdim=True), train_label.std(0, keepdim=True)
        train_label, test_label = (train_label - mean) / std, (test_label - mean) / std
    device = resolve_device(device)
    dataset = dict(train_input=train_input, train_label=train_label, test_input=test_input, test_label=test_label)
    return {key: value.to(device) for key, value in dataset.items()}


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
