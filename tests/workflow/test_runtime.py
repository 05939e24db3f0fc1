"""kanlib.workflow.runtime: stale Snakemake locks after a killed run are cleared only when no process
of that run is alive (real processes holding the run and jobs locks)."""

from __future__ import annotations

import fcntl
import subprocess
import sys


def test_stale_snakemake_locks_are_cleared_only_without_a_live_run(tmp_path):
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("x")
    # another live run holds the run lock: leave its locks alone
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, sys, time; h = open(sys.argv[1], 'a'); fcntl.flock(h, fcntl.LOCK_EX); "
                "print('held', flush=True); time.sleep(60)"
            ),
            str(tmp_path / ".snakemake" / "kanlib-run.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        code = (
            "import sys; from kanlib.workflow.runtime import clear_stale_snakemake_locks as c; "
            "print(len(c(sys.argv[1])[0]))"
        )
        run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
        assert run.stdout.strip() == "0" and (locks / "0.input.lock").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died (as a SIGKILLed Snakemake would): its locks are stale and go
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "1" and not (locks / "0.input.lock").exists()
    with open(tmp_path / ".snakemake" / "kanlib-run.lock") as handle:  # released when that process ended
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_locks_are_kept_while_a_job_of_a_killed_run_still_runs(tmp_path):
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("x")
    # a job process of a killed run: holds the shared jobs lock (kanlib.workflow.runtime.start_job)
    job = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from kanlib.workflow.runtime import start_job; "
                "start_job(sys.argv[1] + '/j.log', sys.argv[1]); print('running', flush=True); time.sleep(60)"
            ),
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    code = (
        "import sys; from kanlib.workflow.runtime import clear_stale_snakemake_locks as c; "
        "removed, message = c(sys.argv[1]); print(len(removed)); print(message)"
    )
    try:
        assert job.stdout.readline().strip() == "running"
        run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
        assert run.stdout.startswith("0\n") and "are still running" in run.stdout
        assert (locks / "0.input.lock").exists()
    finally:
        job.kill()
        job.wait()
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert run.stdout.startswith("1\n") and not (locks / "0.input.lock").exists()
