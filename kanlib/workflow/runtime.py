"""What every job process of the workflow shares: its log file, its fast exit, and the run lock
that tells a stale Snakemake lock (left by a killed run) from a live one."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["clear_stale_snakemake_locks", "job_logger", "exit_job"]


# ---- stale Snakemake locks ------------------------------------------------------------------------------

_RUN_LOCK_HANDLE = None


def clear_stale_snakemake_locks(workdir: str | os.PathLike = ".") -> list[str]:
    """Hold a kernel lock for this Snakemake run and remove Snakemake's locks left by a killed one.

    Snakemake marks a working directory as locked with files in ``.snakemake/locks`` that only
    its own clean exit removes; after a SIGKILL (or a lost node) the next run refuses to start
    until ``snakemake --unlock``. Every main Snakemake process of this workflow calls this at
    parse time: it takes an exclusive ``flock`` on ``.snakemake/kanlib-run.lock`` and keeps it
    for its whole life (the kernel releases it when the process dies, however it dies). A
    process that gets the lock knows that no other run of this workflow is alive, so any
    Snakemake lock files are stale: they are removed. A process that cannot get it leaves
    everything alone (Snakemake's own lock check then reports the live run).
    Returns the removed lock files.
    """
    global _RUN_LOCK_HANDLE
    import fcntl

    if _RUN_LOCK_HANDLE is not None:
        return []
    folder = Path(workdir) / ".snakemake"
    folder.mkdir(exist_ok=True)
    handle = open(folder / "kanlib-run.lock", "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return []
    _RUN_LOCK_HANDLE = handle  # held until this process exits
    removed = []
    locks = folder / "locks"
    if locks.is_dir():
        for lock in sorted(locks.glob("*.lock")):
            lock.unlink(missing_ok=True)
            removed.append(str(lock))
    return removed


# ---- job logs -------------------------------------------------------------------------------------------


def job_logger(path, name: str = "kanlib.job"):
    """A logger writing to the job's Snakemake log file (and warnings and errors also to stderr)."""
    import logging
    import sys

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    to_file = logging.FileHandler(path, mode="w")
    to_file.setFormatter(formatter)
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setLevel(logging.WARNING)
    to_stderr.setFormatter(formatter)
    logger.addHandler(to_file)
    logger.addHandler(to_stderr)
    return logger


def exit_job() -> None:
    """End a successful job's process now: flush the logs and standard streams, then ``os._exit(0)``.

    Skips the interpreter's teardown of the torch and mlflow modules, which takes about a second
    per job (a noticeable share of a sweep of short fits). Every output must be written (and
    closed) before the call; the workflow's writers are atomic and fsync their files.
    """
    import logging
    import sys

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)
