"""A warm process per Snakemake run that starts the torch jobs by forking, torch already imported.

Importing torch costs a job about 1.2-2 s, and a sweep has one job per grid level (and per
dataset): for the seed sweep that is most of its wall time. So the main Snakemake process starts
one *warm* process per run (:func:`start_server`, the Snakefile's ``onstart``) that imports torch
and kanlib once and serves the jobs of that run on the same host over a Unix socket. A job's
script (``workflow/scripts/train.py``, ``train_seeds.py``, ``dataset.py``) still starts as
Snakemake starts it, holds the jobs lock and opens nothing heavy; it sends its job (rule,
wildcards, inputs, outputs, params, threads, config; plain data), its working directory, its
environment and its standard streams (file descriptors) to the warm process, which forks a child
that runs the job exactly as the script would (:func:`execute`), with the job's own streams, and
answers the child's exit status when it ends. The script exits with that status.

Kills and failures keep their meaning: the job's process waits for the child, so Snakemake (and
a rerun's stale-lock check) sees the job alive while it trains; when the job's process dies
(Snakemake killed it, Ctrl-C, a kill -9), the warm process kills the child at once (it watches
the job's connection), so nothing runs on without its job. The job runs in its own process when
no warm process answers: none was started (``KANLIB_WARM=0``), it is a SLURM job (its resources
are the allocation's, not the submit host's), or the warm process died.

Snakemake's ``benchmark`` of a job started this way measures the waiting script: its wall time
is the job's, its CPU time and memory are not the child's.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
import time
import traceback
from pathlib import Path

from . import runlog

__all__ = ["enabled", "socket_path", "start_server", "rule_job", "run", "execute", "serve"]

ENV_SWITCH = "KANLIB_WARM"  # "0": every job imports torch itself
LOG_NAME = "kanlib-warm.log"
POLL_S = 0.05  # how often the warm process looks at its children and their jobs


def enabled(environ=None) -> bool:
    environ = os.environ if environ is None else environ
    return environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def socket_path(workdir: str | os.PathLike = ".") -> Path:
    """The warm process's socket for ``workdir`` (beside the run logger's, in this user's private folder)."""
    return runlog.socket_path(workdir, suffix="warm.sock")


# ---- the job: plain data from Snakemake's object ------------------------------------------------------------


def _plain(named) -> dict:
    """A Snakemake Namedlist (input, output, params) as {name: value} (a list for a named list of
    files), positional entries not covered by a name as '_<index>'."""
    plain, covered = {}, set()
    for name, (start, end) in getattr(named, "_names", {}).items():
        value = getattr(named, name)
        plain[name] = [str(v) if isinstance(v, str) else v for v in value] if isinstance(value, list) else value
        covered.update(range(start, start + 1 if end is None else end))
    for index, value in enumerate(named):
        if index not in covered:
            plain[f"_{index}"] = str(value) if isinstance(value, str) else value
    return plain


def rule_job(snakemake) -> dict:
    """What a job script knows, as plain (JSON) data: rule, wildcards, input, output, params, log, threads, config."""
    return {
        "rule": snakemake.rule,
        "wildcards": dict(snakemake.wildcards.items()),
        "input": _plain(snakemake.input),
        "output": _plain(snakemake.output),
        "params": _plain(snakemake.params),
        "log": str(snakemake.log[0]),
        "threads": int(snakemake.threads),
        "config": snakemake.config,
    }


# ---- running a job (in the forked child, or in the job's own process) ---------------------------------------


def execute(job: dict) -> int:
    """Run ``job`` here; returns the exit status (0, or 1 after writing the failure to stderr)."""
    import torch

    from .. import reproducibility
    from .runtime import job_logger

    log = job_logger(job["log"])
    torch.set_num_threads(job["threads"])
    rule = job["rule"]
    try:
        # a process whose MKL or OpenBLAS started under another setting computes other bits: refuse it
        reproducibility.check(job["config"].get("cpu_code_path", reproducibility.DEFAULT))
    except RuntimeError as error:
        print(str(error), file=sys.stderr)
        return 1
    try:
        if rule == "dataset":
            _dataset(job, log)
        elif rule in ("train", "train_seeds"):
            _train(job, log)
        else:
            raise ValueError(f"no job kind for rule {rule!r}")
    except Exception as error:
        from .train_job import TrainJobError

        if isinstance(error, TrainJobError):  # explained by its message (diverged, store unreachable)
            print(str(error), file=sys.stderr)
        else:
            traceback.print_exc()
        return 1
    return 0


def _dataset(job: dict, log) -> None:
    from ..functions import get_function
    from .jobs import make_dataset
    from .sweep import function_n_var

    target = get_function(job["params"]["function"])
    output = job["output"]["_0"]
    info = make_dataset(
        target,
        n_var=function_n_var(job["config"], target.name),
        n_train=int(job["wildcards"]["n"]),
        test_num=int(job["params"]["test_num"]),
        seed=int(job["wildcards"]["seed"]),
        input_range=job["params"]["input_range"],
        path=output,
    )
    log.info(
        "wrote %s: f = %s, %d train / %d test points, seed %d",
        output,
        info["formula"],
        info["train_num"],
        info["test_num"],
        info["seed"],
    )


def _train(job: dict, log) -> None:
    from ..functions import get_function
    from .sweep import job_from_wildcards
    from .train_job import JobIdentity, TrackingSettings, TrainOutputs, run_train_jobs

    wildcards, config, params = job["wildcards"], job["config"], job["params"]
    inputs, outputs = job["input"], job["output"]
    target = get_function(params["function"])
    batched = "seeds" in params  # (rule train_seeds: the seeds of one model in one job, lists of files)
    seeds = params["seeds"] if batched else [int(wildcards["seed"])]
    as_list = (lambda value: list(value)) if batched else (lambda value: [value])
    data_files = as_list(inputs["data"])
    inits = as_list(inputs["init"]) if "init" in inputs else [None] * len(seeds)
    identities = [
        JobIdentity.create(
            config,
            job_from_wildcards(config, {**wildcards, "seed": int(seed)}),
            target,
            threads=job["threads"],
            data_file=data_file,
            init_checkpoint=init,
        )
        for seed, data_file, init in zip(seeds, data_files, inits)
    ]
    files = [
        TrainOutputs(model=m, history=h, metrics=j)
        for m, h, j in zip(as_list(outputs["model"]), as_list(outputs["history"]), as_list(outputs["metrics"]))
    ]
    settings = TrackingSettings.from_config(config)
    run_train_jobs(identities, parent_file=inputs["parent"], outputs=files, settings=settings, log=log)


def run(job: dict, workdir: str | os.PathLike = ".") -> int | None:
    """Run ``job`` in a child of the run's warm process and wait for it: its exit status, or None
    when no warm process takes it (the caller then runs it itself)."""
    if not enabled() or os.environ.get("SLURM_JOB_ID"):
        return None
    connection = runlog._connect(socket_path(workdir))
    if connection is None:
        return None
    with connection:
        # (repr for what JSON has no form of, e.g. the prev_grid param of a family without chains: unused)
        request = json.dumps({"job": job, "cwd": os.getcwd(), "env": dict(os.environ)}, default=repr).encode() + b"\n"
        try:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            socket.send_fds(connection, [request[:1]], [0, 1, 2])  # the streams go with the first byte
            connection.sendall(request[1:])
            connection.settimeout(None)  # a job takes as long as it takes
            chunks = []
            while not (chunks and chunks[-1].endswith(b"\n")):
                chunk = connection.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError:
            return None if not chunks else 1
    if not chunks:  # the warm process is gone: did it start the job? its child died with it
        print("the warm process ended before answering; the job's outcome is unknown", file=sys.stderr)
        return 1
    reply = json.loads(b"".join(chunks))
    if "error" in reply:  # it could not start the job (e.g. a fork failed): run it here
        print(f"warm process: {reply['error']}; running the job in its own process", file=sys.stderr)
        return None
    return int(reply["exit"])


# ---- the warm process ---------------------------------------------------------------------------------------


def start_server(owner: int | None = None, workdir: str | os.PathLike = ".") -> str:
    """Start the warm process of ``workdir`` for the life of process ``owner`` (default: this one),
    unless one serves it already (then it also serves ``owner``). Returns a line for the log."""
    owner = os.getpid() if owner is None else owner
    if not enabled():
        return f"warm process off ({ENV_SWITCH}=0): every job imports torch itself"
    path = socket_path(workdir)
    if not runlog._private_folder(path):
        return f"warm process not started: {path.parent} is not private to this user"
    if runlog._attach(path, owner, wait=0):
        return f"warm process at {path} (already running) also serves this run"
    pid, log_file = runlog.spawn_server(["kanlib.workflow.warm"], path, owner, workdir, LOG_NAME)
    return f"warm process started (pid {pid}, socket {path}, log {log_file})"


def _say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [warm {os.getpid()}] {message}", flush=True)


def _read_request(connection: socket.socket) -> tuple[dict, list[int]]:
    connection.settimeout(30.0)
    first, fds, _flags, _address = socket.recv_fds(connection, 65536, 3)
    chunks = [first]
    while not chunks[-1].endswith(b"\n"):
        chunk = connection.recv(1 << 20)
        if not chunk:
            raise EOFError("the job hung up before its request was complete")
        chunks.append(chunk)
    return json.loads(b"".join(chunks)), fds


def _child(request: dict, fds: list[int]) -> None:
    """In the forked child: become the job (streams, directory, environment) and run it; never returns."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
        for fd in fds:
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        code = execute(request["job"])
    except BaseException:  # noqa: BLE001  (whatever happens, the child must end here)
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        import logging

        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def serve(path: Path, owner: int) -> int:
    """The warm process: import torch and kanlib, then fork one child per job request until no
    attached process lives and no child runs."""
    import fcntl

    from .runlog import _alive, _attach, _private_folder, _send

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not _private_folder(path):
        _say(f"{path.parent} is not private to this user; not serving")
        return 1
    lock = open(path.with_name(path.name + ".lock"), "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        return 0 if _attach(path, owner) else 1
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))  # bound first: jobs queue up while torch is imported
    os.chmod(path, 0o600)
    listener.listen(64)
    started = time.monotonic()
    import torch  # noqa: F401  (the imports this process exists to pay once)

    import kanlib.mlp  # noqa: F401
    import kanlib.model  # noqa: F401
    import kanlib.workflow.jobs  # noqa: F401
    import kanlib.workflow.train_job  # noqa: F401

    _say(f"serving {path} for pid {owner}; torch and kanlib imported in {time.monotonic() - started:.2f} s")
    owners, running = {owner}, {}  # running: connection -> child pid
    try:
        while True:
            owners = {pid for pid in owners if _alive(pid)}
            if not owners and not running:
                _say("no Snakemake process left to serve and no job running; exiting")
                return 0
            readable, _, _ = select.select([listener, *running], [], [], POLL_S)
            for connection in list(running):  # children that ended: tell their jobs
                pid = running[connection]
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    code = os.waitstatus_to_exitcode(status)
                    with contextlib.suppress(OSError):
                        _send(connection, {"exit": code if code >= 0 else 128 - code})
                    connection.close()
                    del running[connection]
            for connection in readable:
                if connection is listener:
                    continue
                try:
                    hung_up = connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
                except BlockingIOError:
                    hung_up = False
                except OSError:
                    hung_up = True
                if connection in running and hung_up:
                    pid = running.pop(connection)  # the job is gone (killed): its child goes too
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    connection.close()
                    _say(f"job of child {pid} hung up; child killed")
            if listener in readable:
                connection, _ = listener.accept()
                try:
                    request, fds = _read_request(connection)
                except (OSError, EOFError, ValueError) as error:
                    _say(f"dropped a request: {error}")
                    connection.close()
                    continue
                if request.get("op") == "attach":
                    owners.add(int(request["pid"]))
                    _send(connection, {"attached": int(request["pid"])})
                    connection.close()
                    continue
                try:
                    pid = os.fork()
                except OSError as error:
                    _send(connection, {"error": f"fork failed: {error}"})
                    connection.close()
                    continue
                if pid == 0:
                    listener.close()
                    lock.close()
                    connection.close()
                    for other in running:
                        other.close()
                    _child(request, fds)
                for fd in fds:
                    os.close(fd)
                running[connection] = pid
                _say(f"{request['job']['rule']} {request['job']['wildcards']} -> child {pid}")
    finally:
        for pid in running.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        listener.close()


def main(argv=None) -> int:
    """``python -m kanlib.workflow.warm --owner PID [--socket PATH]`` (started by the Snakefile)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m kanlib.workflow.warm")
    parser.add_argument("--owner", type=int, required=True, help="serve while this process lives")
    parser.add_argument("--socket", type=Path, default=None, help="default: the working directory's")
    args = parser.parse_args(argv)
    return serve(args.socket or socket_path(), args.owner)


if __name__ == "__main__":
    raise SystemExit(main())
