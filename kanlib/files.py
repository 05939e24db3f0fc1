"""The one atomic file writer every part of kanlib uses (checkpoints, datasets, tables, figures, reports).

Convention, stated once: a file is written to a temporary name in its target folder, flushed
and fsynced, renamed over the target (``os.replace``, atomic on POSIX), and then the folder
itself is fsynced so that the rename survives a power cut. A reader (or Snakemake) therefore
sees either the old file or the complete new one, never a partial one, and a killed writer
leaves at most a hidden ``.<name>.<random>.tmp`` file that is removed on the next error path.

Files are created with mode ``0o666`` filtered by the process umask (0644 under the usual
umask 022), like ``open(path, "w")``: ``tempfile.mkstemp`` would give 0600, which hides a
sweep's results from collaborators on a shared cluster filesystem.

This module imports neither torch nor pandas (every layer of kanlib may use it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "write_json", "read_json", "sha256_file"]


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems do not open folders; the rename is still atomic
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    For writers that want a file name (matplotlib's ``savefig``, ``DataFrame.to_parquet``).
    The temporary file already exists, created with the umask's mode, so the writer keeps that
    mode. On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_name(path)
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # mode 0666 & ~umask
    try:
        yield temporary
        with open(temporary, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` atomically (see the module docstring); returns the path."""
    path = Path(path)
    with atomic_path(path) as temporary, open(temporary, "wb") as stream:
        stream.write(payload)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """``payload`` as indented JSON (values JSON cannot hold written with ``str``), atomically."""
    return atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | os.PathLike) -> dict:
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
