"""What every job process of the workflow shares: its log file, its fast exit, and the locks that
tell a stale Snakemake lock (left by a killed run) from a live one."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["clear_stale_snakemake_locks", "start_job", "job_logger", "exit_job"]


# ---- stale Snakemake locks ------------------------------------------------------------------------------

_RUN_LOCK_HANDLE = None
_JOB_LOCK_HANDLE = None
RUN_LOCK = "kanlib-run.lock"  # held (exclusive) by every live main Snakemake process of the workflow
JOBS_LOCK = "kanlib-jobs.lock"  # held (shared) by every live job process


def clear_stale_snakemake_locks(workdir: str | os.PathLike = ".") -> tuple[list[str], str | None]:
    """Hold a kernel lock for this Snakemake run and remove Snakemake's locks left by a killed one,
    but only when their owner is provably gone.

    Snakemake marks a working directory as locked with files in ``.snakemake/locks`` that only
    its own clean exit removes; after a SIGKILL (or a lost node) the next run refuses to start
    until ``snakemake --unlock``. Every main Snakemake process of this workflow calls this at
    parse time: it takes an exclusive ``flock`` on ``.snakemake/kanlib-run.lock`` and keeps it
    for its whole life (the kernel releases it when the process dies, however it dies). Every job
    process holds a shared ``flock`` on ``.snakemake/kanlib-jobs.lock`` (:func:`start_job`).

    The locks are stale, and removed, when no other main process is alive (the run lock is free)
    *and* no job of a killed run is still running (the jobs lock is free): after only the main
    Snakemake was killed (OOM killer, a closed terminal) its jobs live on, and removing the locks
    would start the same jobs again beside them. Otherwise nothing is touched and Snakemake's own
    lock check refuses to start. Returns (removed lock files, a message for the user or None).
    """
    global _RUN_LOCK_HANDLE
    import fcntl

    if _RUN_LOCK_HANDLE is not None:
        return [], None
    folder = Path(workdir) / ".snakemake"
    folder.mkdir(exist_ok=True)
    handle = open(folder / RUN_LOCK, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return [], None
    _RUN_LOCK_HANDLE = handle  # held until this process exits
    locks = sorted((folder / "locks").glob("*.lock")) if (folder / "locks").is_dir() else []
    if not locks:
        return [], None
    with open(folder / JOBS_LOCK, "a") as jobs:
        try:
            fcntl.flock(jobs, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return [], (
                f"Jobs started by an earlier Snakemake run that was killed are still running (they hold "
                f"{folder / JOBS_LOCK}; `fuser -v {folder / JOBS_LOCK}` lists them). Snakemake's lock is kept so "
                "that this run does not start the same jobs beside them: wait until they end (or kill them), then "
                "run the same command again; their finished grid levels are kept."
            )
        fcntl.flock(jobs, fcntl.LOCK_UN)
    for lock in locks:
        lock.unlink(missing_ok=True)
    return [str(lock) for lock in locks], None


def hold_jobs_lock(workdir: str | os.PathLike = ".") -> None:
    """Hold the shared jobs lock for the life of this process, so that a rerun can tell that this
    job still runs (:func:`clear_stale_snakemake_locks`). A job started through the warm process
    (:mod:`kanlib.workflow.warm`) holds it in the script's process, which lives as long as the job."""
    global _JOB_LOCK_HANDLE
    import fcntl

    if _JOB_LOCK_HANDLE is None:
        folder = Path(workdir) / ".snakemake"
        folder.mkdir(exist_ok=True)
        handle = open(folder / JOBS_LOCK, "a")
        fcntl.flock(handle, fcntl.LOCK_SH)  # waits only while a starting run checks for survivors
        _JOB_LOCK_HANDLE = handle  # released by the kernel when the job's process ends


def start_job(log_path, workdir: str | os.PathLike = "."):
    """What every job script that runs its own work does first: :func:`hold_jobs_lock`, then open
    the job's log. Returns the logger of :func:`job_logger`."""
    hold_jobs_lock(workdir)
    return job_logger(log_path)


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


def exit_job(code: int = 0) -> None:
    """End the job's process now with exit status ``code``: flush the logs and standard streams, then ``os._exit``.

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
    os._exit(code)
