"""Safe model checkpoints: configuration plus tensors, written atomically.

A checkpoint is a ``torch.save`` archive of plain data only (strings, numbers,
lists, dicts and tensors) and is read with ``torch.load(weights_only=True)``, so
loading never executes code from the file. It records a format name and
version, the model configuration, the tensors, and a SHA-256 digest of the
tensors, so that truncated, corrupt or mismatched files raise
:class:`CheckpointError` (a ``ValueError``) with a clear message instead of
yielding a silently wrong model. Files are written to a temporary name in the
same folder, flushed to disk and renamed, so a crash never leaves a partial
checkpoint under the final name.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import torch

FORMAT = "kanlib.KAN"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """The file is not a usable kanlib checkpoint."""


def tensor_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of the tensors, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a temporary file and a rename (never a partial file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_model(model, path) -> Path:
    """Write ``model`` (a kanlib.KAN) to ``path`` atomically; returns the path."""
    state = {name: tensor.detach().to("cpu").clone() for name, tensor in model.state_dict().items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": model.config(),
               "grid_sizes": [layer.grid_size for layer in model.layers], "state": state,
               "sha256": tensor_digest(state)}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def load_model(path, device=None, dtype=None):
    """Read a checkpoint written by :func:`save_model` and rebuild the model.

    device/dtype: where and in which precision to put the model (default: as saved, on the CPU).
    Raises FileNotFoundError for a missing file and CheckpointError for anything unusable.
    """
    from .model import KAN, resolve_dtype

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, random bytes, pickled code objects ...
        raise CheckpointError(f"{path}: not a readable kanlib checkpoint (truncated, corrupt, or not "
                              f"written by KAN.save): {type(error).__name__}: {error}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a kanlib checkpoint (format {payload.get('format') if isinstance(payload, dict) else type(payload).__name__!r}, "
                              f"expected {FORMAT!r})")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {payload.get('format_version')!r} is not supported "
                              f"(this kanlib reads version {FORMAT_VERSION})")
    state, config = payload.get("state"), payload.get("config")
    if not isinstance(state, dict) or not isinstance(config, dict):
        raise CheckpointError(f"{path}: checkpoint lacks its 'state' or 'config' entry")
    if tensor_digest(state) != payload.get("sha256"):
        raise CheckpointError(f"{path}: checkpoint tensors do not match their SHA-256 digest (file corrupted)")
    saved_dtype = config.pop("dtype", "float64")
    try:
        model = KAN(**config, dtype=resolve_dtype(saved_dtype))
        grid_sizes = payload.get("grid_sizes", [])
        for index, (layer, grid_size) in enumerate(zip(model.layers, grid_sizes)):
            n_knots = state[f"layers.{index}.knots"].shape[1]
            layer.grid_size = int(grid_size)
            layer.knots = torch.empty(layer.in_dim, n_knots, dtype=layer.knots.dtype)
            layer.coef.data = torch.empty(layer.in_dim, layer.out_dim, n_knots - layer.k - 1, dtype=layer.coef.dtype)
        model.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError, ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: checkpoint does not match the model it describes: {error}") from None
    for layer in model.layers:
        layer.refresh_grid()
    if dtype is not None or device is not None:
        from .model import resolve_device
        model = model.to(device=resolve_device(device) if device is not None else None,
                         dtype=resolve_dtype(dtype) if dtype is not None else None)
    return model
