"""One MLflow logger per Snakemake run: the jobs hand their runs to it instead of importing mlflow.

Importing mlflow and opening the store cost a job about as much as importing torch, and a sweep
has one job per grid level. So the main Snakemake process starts one logger process per run
(:func:`start_server`, the Snakefile's ``onstart``), which imports mlflow once, keeps one client
per tracking store, and serves the jobs on the same host over a Unix socket. A job sends one
request (:func:`submit`: a JSON line naming an operation and its plain-data arguments) and waits
for the answer, so the order of a train job is what it was: its run is logged before its files move
into place, and FINISHED after that (``finish_child``), before the chain's next level can start.

Every operation also runs in the job's own process (:func:`execute`, importing mlflow there) when
no logger answers: none was started (``KANLIB_RUNLOG=0``, a cluster node, a job started by hand),
or it died before answering (its owner, the main Snakemake, was killed: its jobs live on and log
their runs themselves). A train job's run stays RUNNING until the job's files are in place
(``finish_child``); a run whose job was killed before it learnt the run's id is ended KILLED by the
rerun, which logs the result again (``supersede_runs`` points the earlier run to the new one).

The logger lives as long as the Snakemake processes that use it (``attach``): it checks every half
second whether one of them is alive and exits when none is. It runs in its own session, so a
Ctrl-C in the terminal reaches Snakemake and its jobs, not the logger; its messages go to
``.snakemake/kanlib-runlog.log``.

Requests and answers are JSON (floats, NaN included); paths in requests are absolute.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..files import write_json
from . import tracking

__all__ = ["enabled", "socket_path", "start_server", "submit", "execute", "serve", "OPERATIONS"]

ENV_SWITCH = "KANLIB_RUNLOG"  # "0": no logger; every job logs its runs itself
REPLY_TIMEOUT_S = 900.0  # a logger that answers nothing for this long is taken as hung
LOG_NAME = "kanlib-runlog.log"


def enabled(environ=None) -> bool:
    environ = os.environ if environ is None else environ
    return environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def socket_path(workdir: str | os.PathLike = ".", suffix: str = "sock") -> Path:
    """The logger's socket for the working directory ``workdir``: in a private folder of this user
    under the temporary directory (a socket path may not exceed ~100 bytes), named after the
    working directory's absolute path, so that every job of a run (same working directory) finds it.
    Other per-run servers (:mod:`kanlib.workflow.warm`) use the same folder with their own ``suffix``."""
    key = hashlib.sha256(str(Path(workdir).resolve()).encode()).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / f"kanlib-runlog-{os.getuid()}" / f"{key}.{suffix}"


def _private_folder(path: Path) -> bool:
    """Create the socket's folder (mode 0700); False when it is not this user's alone."""
    folder = path.parent
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.stat()
    return info.st_uid == os.getuid() and not info.st_mode & 0o077


# ---- the protocol: one JSON line each way ------------------------------------------------------------------


def _send(connection: socket.socket, message: dict) -> None:
    connection.sendall(json.dumps(message).encode() + b"\n")


def _receive(connection: socket.socket, timeout: float | None) -> dict:
    connection.settimeout(timeout)
    chunks = []
    while True:
        chunk = connection.recv(1 << 16)
        if not chunk:
            raise EOFError("the run logger closed the connection")
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            return json.loads(b"".join(chunks))


def _connect(path: Path, timeout: float = 2.0) -> socket.socket | None:
    """A connection to the logger at ``path``, or None when none listens there."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(timeout)
    try:
        connection.connect(str(path))
    except OSError:  # no socket file, or a stale one (nobody listens): no logger
        connection.close()
        return None
    return connection


# ---- the client side (jobs) -------------------------------------------------------------------------------


def submit(operation: str, payload: dict, *, workdir: str | os.PathLike = ".") -> dict:
    """Run ``operation`` with ``payload`` in the run's logger, or in this process when none answers.

    Returns the operation's result with ``logged_by`` (the logger's pid, or None for this process).
    Raises TrackingError as :func:`execute` does (the logger sends its message and permanence).
    """
    if operation not in OPERATIONS:
        raise ValueError(f"unknown run-logger operation {operation!r}; known: {sorted(OPERATIONS)}")
    connection = _connect(socket_path(workdir)) if enabled() else None
    if connection is None:
        return {**execute(operation, payload), "logged_by": None}
    with connection:
        try:
            connection.settimeout(REPLY_TIMEOUT_S)  # a busy logger reads the request once it is free
            _send(connection, {"op": operation, "payload": payload})
            reply = _receive(connection, REPLY_TIMEOUT_S)
        except (OSError, EOFError, ValueError):
            # the logger died (its Snakemake was killed) or hung: whatever it did not finish is
            # done here; a run it left RUNNING is ended KILLED by supersede_runs
            reply = None
    if reply is None:
        return {**execute(operation, payload), "logged_by": None}
    if "error" in reply:
        raise tracking.TrackingError(reply["error"], permanent=bool(reply.get("permanent")))
    return {**reply["result"], "logged_by": reply.get("pid")}


# ---- the operations (run by the logger, or by a job when no logger answers) ---------------------------------


class _Clients:
    """One MlflowClient per tracking URI (the logger keeps them; a job makes a fresh one)."""

    def __init__(self):
        self.clients = {}

    def get(self, uri: str, retry_seconds: float, create: bool = False):
        if uri not in self.clients or create:
            self.clients[uri] = tracking.connect(uri, retry_seconds, create=create)
        return self.clients[uri]


def _log_child(payload: dict, clients: _Clients, still_wanted=None) -> dict:
    """A child run of the sweep's parent: params, tags, per-step history, finals, artifacts, ended
    with ``status``; for a FINISHED run also the run's copy of metrics.json (with its id) and the
    tag ``kanlib.superseded_by`` on the job's earlier runs. Payload: see ``train_job._log_run``."""
    uri, retry_seconds = payload["uri"], float(payload["retry_seconds"])
    parent = payload["parent"]
    client = clients.get(uri, retry_seconds)
    tracking.ensure_parent_running(client, parent["run_id"], uri, retry_seconds, parent["file"])
    metrics_artifact = payload.get("metrics_artifact")

    def before_terminate(run_id):  # the run's copy of metrics.json, with its own id
        record = {**metrics_artifact["record"], "mlflow_run_id": run_id, "mlflow_synced": True}
        return [(write_json(metrics_artifact["path"], record), None)]

    run_id = tracking.log_child_run(
        client,
        uri=uri,
        experiment_id=parent["experiment_id"],
        parent_run_id=parent["run_id"],
        run_name=payload["run_name"],
        params=payload["params"],
        tags=payload["tags"],
        history=payload["history"],
        final=payload["final"],
        timestamps_ms=payload["timestamps_ms"],
        start_ms=int(payload["start_ms"]),
        end_ms=int(payload["end_ms"]),
        artifacts=[(Path(path), folder) for path, folder in payload.get("artifacts", [])],
        status=None if payload.get("status") == "RUNNING" else payload.get("status", "FINISHED"),
        retry_seconds=retry_seconds,
        before_terminate=before_terminate if metrics_artifact else None,
        still_wanted=still_wanted,
    )
    result = {"run_id": run_id, "superseded": [], "supersede_error": None}
    if payload.get("supersede_job"):
        try:  # earlier runs of this job (retrained, or killed while logging) point to this one
            result["superseded"] = tracking.supersede_runs(
                client,
                experiment_id=parent["experiment_id"],
                parent_run_id=parent["run_id"],
                job=payload["supersede_job"],
                keep_run_id=run_id,
                uri=uri,
                retry_seconds=retry_seconds,
            )
        except tracking.TrackingError as error:
            result["supersede_error"] = str(error)
    return result


def _create_parent(payload: dict, clients: _Clients, still_wanted=None) -> dict:
    """The store (created if needed), the experiment and the sweep's RUNNING parent run."""
    parent = tracking.create_parent_run(
        payload["uri"],
        payload["experiment"],
        payload["sweep"],
        payload["params"],
        payload["tags"],
        artifacts=[Path(path) for path in payload.get("artifacts", [])],
        retry_seconds=float(payload["retry_seconds"]),
    )
    clients.clients.pop(payload["uri"], None)  # the next contact opens the (now existing) store anew
    return parent


def _finish_parent(payload: dict, clients: _Clients, still_wanted=None) -> dict:
    """Artifacts, metrics and (optionally) the description of the parent run, then its status."""
    uri, retry_seconds = payload["uri"], float(payload["retry_seconds"])
    client = clients.get(uri, retry_seconds)
    if payload.get("note") is not None:  # the run's description in the MLflow UI
        tracking.call_with_retry(
            client.set_tag,
            payload["run_id"],
            "mlflow.note.content",
            payload["note"],
            uri=uri,
            retry_seconds=retry_seconds,
            what="set the parent run's description",
        )
    tracking.finish_parent(
        client,
        payload["run_id"],
        uri=uri,
        retry_seconds=retry_seconds,
        artifacts=[(Path(path), folder) for path, folder in payload.get("artifacts", [])],
        metrics=payload.get("metrics") or {},
        status=payload.get("status", "FINISHED"),
    )
    return {"run_id": payload["run_id"]}


def _finish_child(payload: dict, clients: _Clients, still_wanted=None) -> dict:
    """End a child run FINISHED once its job's outputs are in place (tracking.finish_child)."""
    uri, retry_seconds = payload["uri"], float(payload["retry_seconds"])
    client = clients.get(uri, retry_seconds)
    before = tracking.finish_child(
        client, payload["run_id"], uri=uri, end_ms=int(payload["end_ms"]), retry_seconds=retry_seconds
    )
    return {"run_id": payload["run_id"], "status_before": before}


OPERATIONS = {
    "log_child": _log_child,
    "finish_child": _finish_child,
    "create_parent": _create_parent,
    "finish_parent": _finish_parent,
}


def execute(operation: str, payload: dict, clients: _Clients | None = None, still_wanted=None) -> dict:
    """Run ``operation`` in this process (imports mlflow). Raises TrackingError."""
    return OPERATIONS[operation](payload, clients or _Clients(), still_wanted)


# ---- the logger process -------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _hung_up(connection: socket.socket) -> bool:
    """True when the job at the other end is gone (it has sent its request and only waits)."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _attach(path: Path, pid: int, wait: float = 10.0) -> bool:
    """Tell the logger at ``path`` to stay alive while process ``pid`` lives; False when none answers
    (trying again for ``wait`` seconds: a logger started at the same moment may not listen yet)."""
    deadline = time.monotonic() + wait
    while True:
        connection = _connect(path)
        if connection is not None:
            with connection:
                try:
                    _send(connection, {"op": "attach", "pid": pid})
                    return _receive(connection, 60.0).get("attached") == pid
                except (OSError, EOFError, ValueError):
                    pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def start_server(owner: int | None = None, workdir: str | os.PathLike = ".") -> str:
    """Make sure a logger serves ``workdir`` while process ``owner`` (default: this one) lives:
    attach to a running one, or start one (in the background: it imports mlflow while the first
    jobs run). Returns a line for the log."""
    owner = os.getpid() if owner is None else owner
    if not enabled():
        return f"run logger off ({ENV_SWITCH}=0): every job logs its MLflow runs itself"
    path = socket_path(workdir)
    if not _private_folder(path):
        return f"run logger not started: {path.parent} is not private to this user; jobs log their runs themselves"
    if _attach(path, owner, wait=0):
        return f"run logger at {path} (already running) also serves this run"
    pid, log_file = spawn_server(["kanlib.workflow.runlog", "serve"], path, owner, workdir, LOG_NAME)
    return f"run logger started (pid {pid}, socket {path}, log {log_file})"


def spawn_server(module: list[str], path: Path, owner: int, workdir, log_name: str) -> tuple[int, Path]:
    """Start ``python -m <module...> --owner OWNER --socket PATH`` in the background, in its own session
    (a Ctrl-C in the terminal is for Snakemake and its jobs, not for it), its output appended to
    ``.snakemake/<log_name>``. Returns (pid, log file)."""
    log_file = Path(workdir) / ".snakemake" / log_name
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", *module, "--owner", str(owner), "--socket", str(path)],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process.pid, log_file


def _say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [runlog {os.getpid()}] {message}", flush=True)


def serve(path: Path, owner: int, poll_s: float = 0.5) -> int:
    """The logger: serve requests on ``path`` one at a time until no attached process lives."""
    import fcntl
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not _private_folder(path):
        _say(f"{path.parent} is not private to this user; not serving")
        return 1
    lock = open(path.with_name(path.name + ".lock"), "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # another logger serves this folder (started at the same moment): share it
        lock.close()
        attached = _attach(path, owner)
        _say(f"another logger serves {path}; {'attached' if attached else 'could not attach'} pid {owner}")
        return 0 if attached else 1
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a socket left by a logger that was killed
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))  # bound before mlflow is imported: jobs queue up meanwhile
    os.chmod(path, 0o600)
    listener.listen(64)
    owners = {owner}
    _say(f"serving {path} for pid {owner}")
    started = time.monotonic()
    from mlflow.tracking import MlflowClient  # noqa: F401  (the import this process exists to pay once)

    _say(f"mlflow imported in {time.monotonic() - started:.2f} s")
    clients = _Clients()
    try:
        while True:
            owners = {pid for pid in owners if _alive(pid)}
            if not owners:
                _say("no Snakemake process left to serve; exiting")
                return 0
            readable, _, _ = select.select([listener], [], [], poll_s)
            if not readable:
                continue
            connection, _ = listener.accept()
            with connection:
                _handle(connection, clients, owners)
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        listener.close()


def _handle(connection: socket.socket, clients: _Clients, owners: set[int]) -> None:
    try:
        request = _receive(connection, 30.0)
    except (OSError, EOFError, ValueError) as error:
        _say(f"dropped a request: {error}")
        return
    operation = request.get("op")
    if operation == "attach":
        owners.add(int(request["pid"]))
        reply = {"attached": int(request["pid"])}
    elif operation in OPERATIONS:
        started = time.monotonic()
        try:
            result = execute(operation, request["payload"], clients, lambda: not _hung_up(connection))
            reply = {"result": result, "pid": os.getpid()}
            what = result.get("run_id", "")
        except tracking.TrackingError as error:
            reply = {"error": str(error), "permanent": error.permanent}
            what = f"failed: {error}"
        except Exception as error:  # a bug or a bad request: the job reports it
            reply = {"error": f"run logger: {type(error).__name__}: {error}", "permanent": True}
            what = f"failed: {reply['error']}"
        _say(f"{operation} {what} in {time.monotonic() - started:.3f} s")
    else:
        reply = {"error": f"run logger: unknown operation {operation!r}", "permanent": True}
    try:
        _send(connection, reply)
    except OSError:
        _say(f"the job that asked for {operation} is gone")


def main(argv=None) -> int:
    """``python -m kanlib.workflow.runlog serve --owner PID [--socket PATH]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m kanlib.workflow.runlog")
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("serve", help="serve the jobs of a Snakemake run (started by the Snakefile)")
    server.add_argument("--owner", type=int, required=True, help="serve while this process lives")
    server.add_argument("--socket", type=Path, default=None, help="default: the working directory's")
    args = parser.parse_args(argv)
    return serve(args.socket or socket_path(), args.owner)


if __name__ == "__main__":
    raise SystemExit(main())
