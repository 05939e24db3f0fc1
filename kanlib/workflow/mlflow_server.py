"""Start, check and stop the one ``mlflow server`` that a cluster sweep logs to.

    python -m kanlib.workflow.mlflow_server start [--dir DIR] [--port 5000] [--host 127.0.0.1] ...
    python -m kanlib.workflow.mlflow_server status [--dir DIR]
    python -m kanlib.workflow.mlflow_server stop [--dir DIR]

SQLite on a shared filesystem is not safe for many writers, so the jobs of a cluster sweep talk
to one server (the single writer) over HTTP: ``export MLFLOW_TRACKING_URI=<the URI start prints>``
before ``snakemake --profile profiles/slurm``. The server is sized for a login node: one worker
process, MLflow's background job runner (huey) off (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``),
telemetry off: ~520 MB in two processes (MLflow's launcher and one uvicorn worker).

Defaults: the store is ``sqlite:///DIR/mlflow.db`` and the artifacts go to ``DIR/artifacts`` (the
server proxies artifact uploads, so jobs need no access to DIR). DIR (``--dir``, else
``$KANLIB_MLFLOW_DIR``, else ``/var/tmp/kanlib-mlflow-$USER``) should be on the server host's
local disk; ``--backend-store-uri postgresql://...`` uses PostgreSQL instead. A relative store or
artifact path (``sqlite:///mlflow.db``, ``./artifacts``) means the caller's working directory, as it
does for ``mlflow ui``: it is made absolute before the server starts in DIR.

The server binds 127.0.0.1 by default: only jobs on the same host reach it. Binding another
interface (``--host 0.0.0.0`` or the host's cluster-network address) is an explicit choice and
needs ``--allowed-hosts`` (the host names the jobs use in the URI, comma-separated; a bare name
also allows ``name:port``; MLflow rejects other Host headers). MLflow's server has no
authentication: anyone who can reach the port can read and log.

``start`` writes ``DIR/server.pid`` and ``DIR/server.json`` (URI, pid, store), logs to
``DIR/server.log``, returns once the server answers an API call at the URI it prints, and does
nothing when the server of DIR is already running. ``stop`` ends exactly that process group.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "ServerInfo",
    "ServerError",
    "default_dir",
    "absolute_location",
    "start",
    "stop",
    "status",
    "free_port",
    "main",
]

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class ServerError(RuntimeError):
    """The server could not be started, or refuses the URI it was started for."""


@dataclass
class ServerInfo:
    uri: str
    pid: int
    host: str
    port: int
    backend_store_uri: str
    artifacts_destination: str
    log: str
    dir: str


def default_dir() -> Path:
    """``$KANLIB_MLFLOW_DIR``, else ``/var/tmp/kanlib-mlflow-<user>`` (local disk, kept across reboots)."""
    if os.environ.get("KANLIB_MLFLOW_DIR"):
        return Path(os.environ["KANLIB_MLFLOW_DIR"])
    return Path("/var/tmp") / f"kanlib-mlflow-{getpass.getuser()}"


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def absolute_location(location: str, base: str | os.PathLike | None = None) -> str:
    """A store URI or artifact location with a relative local path made absolute against ``base``
    (default: the current working directory).

    The server runs in its own folder, so ``sqlite:///mlflow.db`` handed to it as it is would open
    (and create) an empty store there instead of the caller's. ``sqlite:///rel/path.db`` becomes
    ``sqlite:////base/rel/path.db`` (a query such as ``?timeout=20`` is kept), a plain relative path
    (a file store or artifact folder) becomes absolute; absolute paths, in-memory SQLite and other
    schemes (``postgresql://``, ``http://``, ``s3://``) are returned unchanged.
    """
    base = Path(base) if base is not None else Path.cwd()
    if location.startswith("sqlite:///"):
        path, question, query = location[len("sqlite:///") :].partition("?")
        if not path or path.startswith("/") or path == ":memory:" or path.startswith("file:"):
            return location
        return f"sqlite:///{(base / path).resolve()}{question}{query}"
    if _SCHEME.match(location):
        return location
    return str((base / location).resolve())


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    """``pid`` runs and is an mlflow server (its command line names mlflow and server)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            return False
        return any(b"mlflow" in w for w in words) and b"server" in words
    return True  # no /proc (macOS): trust the pid file


def _read_info(folder: Path) -> ServerInfo | None:
    try:
        return ServerInfo(**json.loads((folder / "server.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None


def status(folder: str | os.PathLike | None = None) -> ServerInfo | None:
    """The running server of ``folder`` (default :func:`default_dir`), or None."""
    folder = Path(folder) if folder else default_dir()
    info = _read_info(folder)
    try:
        pid = int((folder / "server.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if info is None or info.pid != pid or not _pid_alive(pid):
        return None
    return info


def _get(url: str, host_header: str | None = None, timeout: float = 5.0) -> int:
    request = urllib.request.Request(url, headers={"Host": host_header} if host_header else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _answers(uri: str) -> int | None:
    """HTTP status of an API call at ``uri`` (None when nothing answers)."""
    try:
        if _get(f"{uri}/health") != 200:
            return None
        return _get(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1")
    except (urllib.error.URLError, OSError):
        return None


def start(
    folder: str | os.PathLike | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 5000,
    backend_store_uri: str | None = None,
    artifacts_destination: str | None = None,
    allowed_hosts: str | None = None,
    uri_host: str | None = None,
    workers: int = 1,
    timeout: float = 120.0,
    extra_args=(),
) -> ServerInfo:
    """Start ``mlflow server`` in the background (a new session) and wait until it answers.

    port 0 picks a free port. uri_host: the host name in the printed URI (default: ``host``, or
    this machine's name when binding 0.0.0.0/::). A relative path in ``backend_store_uri`` or
    ``artifacts_destination`` means the caller's working directory (:func:`absolute_location`).
    Returns the running server of ``folder`` unchanged when there is one.
    """
    folder = Path(folder) if folder else default_dir()
    running = status(folder)
    if running is not None:
        return running
    # before anything else changes directory: the server itself runs in ``folder``
    backend_store_uri = backend_store_uri and absolute_location(backend_store_uri)
    artifacts_destination = artifacts_destination and absolute_location(artifacts_destination)
    if host not in LOOPBACK and not allowed_hosts:
        raise ServerError(
            f"binding {host} exposes the server beyond this host: pass --allowed-hosts with the "
            f"host names the jobs use in the URI (e.g. --allowed-hosts {socket.gethostname()}), or "
            "bind 127.0.0.1 (the default)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()
    port = free_port("127.0.0.1" if host in ("0.0.0.0", "::") else host) if port == 0 else port
    store = backend_store_uri or f"sqlite:///{folder / 'mlflow.db'}"
    artifacts = artifacts_destination or str(folder / "artifacts")
    name = uri_host or (socket.gethostname() if host in ("0.0.0.0", "::") else host)
    uri = f"http://{'[' + name + ']' if ':' in name else name}:{port}"
    if _answers(uri) is not None:
        raise ServerError(f"something already answers at {uri} (not the server of {folder}); choose another --port")

    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--backend-store-uri",
        store,
        "--artifacts-destination",
        artifacts,
    ]
    if allowed_hosts:
        command += ["--allowed-hosts", _expand_allowed_hosts(allowed_hosts, port)]
    command += list(extra_args)
    env = dict(
        os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true"
    )
    env.pop("MLFLOW_TRACKING_URI", None)
    log_path = folder / "server.log"
    with open(log_path, "ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=folder,
            start_new_session=True,
        )
    info = ServerInfo(
        uri=uri,
        pid=process.pid,
        host=host,
        port=port,
        backend_store_uri=store,
        artifacts_destination=artifacts,
        log=str(log_path),
        dir=str(folder),
    )
    (folder / "server.pid").write_text(f"{process.pid}\n")
    (folder / "server.json").write_text(json.dumps(asdict(info), indent=1) + "\n")

    deadline = time.monotonic() + timeout
    while True:
        answer = _answers(uri)
        if answer == 200:
            return info
        if answer == 403:
            stop(folder)
            raise ServerError(f"the server at {uri} rejects the Host {name!r}: add it to --allowed-hosts")
        if process.poll() is not None:
            raise ServerError(
                f"mlflow server exited with status {process.returncode} before answering at {uri}; "
                f"its log {log_path} ends with:\n{_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            stop(folder)
            raise ServerError(
                f"mlflow server did not answer at {uri} within {timeout:g} s; log: {log_path}\n{_tail(log_path)}"
            )
        time.sleep(0.25)


def _expand_allowed_hosts(allowed_hosts: str, port: int) -> str:
    """MLflow compares the whole Host header (``name:port``): a bare name also allows ``name:port``;
    loopback names stay allowed (the UI through an SSH tunnel)."""
    entries = [entry.strip() for entry in allowed_hosts.split(",") if entry.strip()]
    for entry in list(entries):
        if "*" not in entry and not entry.rsplit("]", 1)[-1].count(":"):
            entries.append(f"{entry}:{port}")
    entries += ["localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*"]
    return ",".join(dict.fromkeys(entries))


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop(folder: str | os.PathLike | None = None, timeout: float = 20.0) -> bool:
    """Stop the server of ``folder`` (SIGTERM to its process group, SIGKILL after ``timeout``).

    Returns False when none was running. Only the process recorded in server.pid (and its group)
    is signalled, and only if it still is an mlflow server.
    """
    folder = Path(folder) if folder else default_dir()
    info = status(folder)
    stopped = False
    if info is not None:
        _signal_group(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(info.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        _signal_group(info.pid, signal.SIGKILL)  # stragglers of the group (uvicorn workers)
        stopped = True
    (folder / "server.pid").unlink(missing_ok=True)
    return stopped


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # start() made the server a session (and group) leader
    except (ProcessLookupError, PermissionError):
        pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kanlib.workflow.mlflow_server",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="action", required=True)
    for action in ("start", "status", "stop"):
        p = sub.add_parser(action)
        p.add_argument(
            "--dir",
            default=None,
            help="state folder: pid file, log, default store and artifacts "
            "(default: $KANLIB_MLFLOW_DIR or /var/tmp/kanlib-mlflow-$USER)",
        )
        if action == "start":
            p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
            p.add_argument("--port", type=int, default=5000, help="port (default 5000; 0: a free one)")
            p.add_argument(
                "--allowed-hosts",
                default=None,
                help="required when --host is not loopback: the Host names the jobs use",
            )
            p.add_argument("--uri-host", default=None, help="host name in the printed URI")
            p.add_argument(
                "--backend-store-uri",
                default=None,
                help="default sqlite:///DIR/mlflow.db; e.g. postgresql://user@dbhost/mlflow; a relative "
                "path (sqlite:///mlflow.db) is in the current directory",
            )
            p.add_argument(
                "--artifacts-destination",
                default=None,
                help="default DIR/artifacts; a relative path is in the current directory",
            )
            p.add_argument("--workers", type=int, default=1)
            p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the server")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            info = start(
                args.dir,
                host=args.host,
                port=args.port,
                backend_store_uri=args.backend_store_uri,
                artifacts_destination=args.artifacts_destination,
                allowed_hosts=args.allowed_hosts,
                uri_host=args.uri_host,
                workers=args.workers,
                timeout=args.timeout,
            )
            print(
                f"mlflow server (pid {info.pid}) answers at {info.uri}; store {info.backend_store_uri}; log {info.log}",
                file=sys.stderr,
            )
            print(f"export MLFLOW_TRACKING_URI={info.uri}")
        elif args.action == "status":
            info = status(args.dir)
            if info is None:
                print(f"no mlflow server running for {Path(args.dir) if args.dir else default_dir()}", file=sys.stderr)
                return 1
            answer = _answers(info.uri)
            print(
                f"mlflow server pid {info.pid} at {info.uri} ({'answers' if answer == 200 else 'NOT answering'}); "
                f"store {info.backend_store_uri}"
            )
            return 0 if answer == 200 else 1
        else:
            print("stopped" if stop(args.dir) else "no mlflow server was running", file=sys.stderr)
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
