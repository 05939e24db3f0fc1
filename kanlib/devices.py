"""Where and in which precision tensors live: dtype and device names resolved in one place, and how a
stack of models is split for evaluation on each kind of device."""

from __future__ import annotations

import torch

__all__ = ["DTYPES", "resolve_dtype", "resolve_device", "dtype_name", "ALL", "each_model", "part"]

#: The floating-point types kanlib trains in, by name (configs, checkpoints).
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def resolve_dtype(dtype) -> torch.dtype:
    """torch.float64/float32 or their names -> torch.dtype (ValueError otherwise)."""
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}; got {dtype!r}")
        return DTYPES[dtype]
    if dtype not in (torch.float64, torch.float32):
        raise ValueError(f"dtype must be torch.float64 or torch.float32; got {dtype!r}")
    return dtype


def dtype_name(dtype) -> str:
    """torch.float64 -> 'float64'."""
    return str(resolve_dtype(dtype)).removeprefix("torch.")


def resolve_device(device) -> torch.device:
    """'auto' -> cuda when available else cpu; 'cpu'/'cuda'/'cuda:N'/torch.device accepted."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here; use 'cpu' or 'auto'")
    return torch.device(device)


ALL = slice(None)  # every model of a stack


def each_model(n_models: int, device) -> list[slice]:
    """The parts of a stack of ``n_models`` evaluated as one: on a GPU all models at once; on the CPU each
    model alone, so that its numbers never depend on the models beside it (a BLAS product, a batched
    least-squares solve or a vectorised loop's tail may round a block differently by its position in a
    larger tensor). Code that evaluates a part of a stack takes fresh copies of its tensors."""
    if n_models == 1 or torch.device(device).type != "cpu":
        return [ALL]
    return [slice(s, s + 1) for s in range(n_models)]


def part(tensor: torch.Tensor, models: slice) -> torch.Tensor:
    """``tensor[models]`` as the torch path evaluates it: on the CPU a fresh copy, so that a model's
    tensors have the same alignment whatever stack they are in and wherever an optimizer keeps them
    (MKL may round a small product differently at another address), on a GPU the tensor itself."""
    return tensor[models].clone() if tensor.is_cpu else tensor[models]
