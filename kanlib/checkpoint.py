"""Safe checkpoint files: a model family's configuration plus its tensors, written atomically.

A checkpoint is a ``torch.save`` archive of plain data only (strings, numbers, lists, dicts and
tensors) read with ``torch.load(weights_only=True)``, so loading never executes code from the
file. It records a format name (the model family, e.g. ``kanlib.KAN``) and version, the
family's configuration, the tensors, family-specific entries, and a SHA-256 digest of the
tensors: a truncated, corrupt or mismatched file raises :class:`CheckpointError` (a
``ValueError``) with a clear message instead of yielding a silently wrong model. Files go
through :func:`kanlib.files.atomic_write_bytes`, so a crash never leaves a partial checkpoint.

This module knows the file format, not the models: each model class turns its configuration
and state into a payload (``KAN.save``) and back (``KAN.load``).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch

from .files import atomic_write_bytes

__all__ = ["CheckpointError", "FORMAT_VERSION", "tensor_digest", "write_checkpoint", "read_checkpoint"]

#: Version of the archive layout; version 1 files (kanlib 0.1) have the same layout and load as they are.
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


def write_checkpoint(path, file_format: str, config: dict, state: dict[str, torch.Tensor], **entries) -> Path:
    """Write ``config`` (JSON-like), ``state`` (name -> tensor, copied to the CPU) and ``entries`` to ``path``."""
    state = {name: tensor.detach().to("cpu").clone() for name, tensor in state.items()}
    payload = {
        "format": file_format,
        "format_version": FORMAT_VERSION,
        "config": config,
        **entries,
        "state": state,
        "sha256": tensor_digest(state),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(path, file_format: str, load_with: dict[str, str] | None = None) -> dict:
    """The checked payload of the checkpoint at ``path``: ``config``, ``state`` and the other entries.

    file_format: the format this caller reads; load_with maps other known formats to the call that
    reads them (for the error message when a file of another model family is given).
    Raises FileNotFoundError for a missing file and CheckpointError for anything unusable.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, random bytes, pickled code objects ...
        raise CheckpointError(
            f"{path}: not a readable kanlib checkpoint (truncated, corrupt, or not "
            f"written by kanlib's save): {type(error).__name__}: {error}"
        ) from None
    found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
    if found != file_format:
        other = (load_with or {}).get(found)
        if other:
            raise CheckpointError(f"{path}: is a {found} checkpoint, not a {file_format} one: load it with {other}")
        raise CheckpointError(f"{path}: not a kanlib checkpoint (format {found!r}, expected {file_format!r})")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload.get('format_version')!r} is not "
            f"supported (this kanlib reads version {FORMAT_VERSION})"
        )
    if not isinstance(payload.get("state"), dict) or not isinstance(payload.get("config"), dict):
        raise CheckpointError(f"{path}: checkpoint lacks its 'state' or 'config' entry")
    if tensor_digest(payload["state"]) != payload.get("sha256"):
        raise CheckpointError(f"{path}: checkpoint tensors do not match their SHA-256 digest (file corrupted)")
    return payload
