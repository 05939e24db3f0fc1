"""Where a sweep's wall time goes: training, or starting processes.

Runs the seed sweep (config/config.yaml) and the tiny one (config/test.yaml) through real
Snakemake, each in a fresh temporary working directory (a copy of config/, the repository's
Snakefile), and prints from the jobs' own records:

* the sweep's wall time and the sum of its fit times (``wall_time_s`` in each train job's
  metrics.json: the fit alone, grid extension is ``init_time_s``), and their ratio;
* per rule, the median job wall time: for train jobs their ``benchmark.tsv`` (Snakemake's own
  timer around the job's script), for every rule Snakemake's metadata records (start: when it
  marked the job's outputs incomplete; end: the last output's mtime);
* per rule, the median overhead (job wall minus fit; fit is 0 for rules that train nothing) and
  its ratio to the floor;
* the floor: a bare ``python -c "import torch"`` with the same interpreter, timed in the same run
  (median of several, before and after the sweeps), which every torch job pays.

    python benchmarks/workflow_overhead.py                  # seed and tiny sweeps, --cores 2
    python benchmarks/workflow_overhead.py --sweeps tiny --repeat 3
    python benchmarks/workflow_overhead.py --json out.json  # the figures as JSON too
    python benchmarks/workflow_overhead.py -- --scheduler ilp   # extra Snakemake options after --
    python benchmarks/workflow_overhead.py --repos /tmp/base .  # two checkouts, interleaved (before/after)

With ``--repos``, each sweep runs with each checkout's Snakefile and kanlib (PYTHONPATH), one after
the other in every repeat, so that a before/after comparison sees the same machine load.

The machine's load matters: the ratios to the floor measured in the same run are the comparable
figures, not the seconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
SWEEPS = {"seed": [], "tiny": ["--configfile", "config/test.yaml"]}


def time_floor(count: int) -> list[float]:
    """Wall seconds of ``python -c "import torch"`` (this interpreter), ``count`` times."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        times.append(time.perf_counter() - started)
    return times


def environment(repo: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", PYTHONPATH=str(repo))
    return env


def run_sweep(name: str, cores: int, extra: list[str], keep: Path | None, repo: Path = REPO) -> dict:
    """One sweep through Snakemake in a fresh working directory; its records."""
    folder = Path(tempfile.mkdtemp(prefix=f"kanlib-overhead-{name}-"))
    work = folder / "work"
    shutil.copytree(repo / "config", work / "config")
    command = [SNAKEMAKE, "-s", str(repo / "Snakefile"), "--cores", str(cores), *SWEEPS[name], *extra]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=work, env=environment(repo), capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{name} sweep failed ({result.returncode}):\n{(result.stdout + result.stderr)[-5000:]}")
    records = read_records(work)
    records.update(sweep=name, wall_s=wall, command=" ".join(command[1:]), repo=str(repo))
    if keep is not None:
        target = keep / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(work), target)
    shutil.rmtree(folder, ignore_errors=True)
    return records


def read_records(work: Path) -> dict:
    """Per job: rule, wall (Snakemake metadata), benchmark wall and fit (train jobs)."""
    jobs: dict[tuple, dict] = {}
    for path in (work / ".snakemake" / "metadata").iterdir():
        record = json.loads(path.read_text())
        key = (record["rule"], tuple(record.get("log") or ()), tuple(record.get("input") or ()))
        job = jobs.setdefault(key, {"rule": record["rule"], "start": record["starttime"], "end": record["endtime"]})
        job["start"] = min(job["start"], record["starttime"])
        job["end"] = max(job["end"], record["endtime"])
    train = []
    for metrics_file in sorted(work.glob("results/*/runs/*/*/*/G*/metrics.json")):
        metrics = json.loads(metrics_file.read_text())
        with open(metrics_file.with_name("benchmark.tsv")) as handle:
            benchmark = next(csv.DictReader(handle, delimiter="\t"))
        train.append(
            {
                "job": metrics["job"],
                "bench_s": float(benchmark["s"]),
                "fit_s": float(metrics["wall_time_s"]),
                "init_s": float(metrics["init_time_s"]),
            }
        )
    rules = defaultdict(list)
    for job in jobs.values():
        rules[job["rule"]].append(job["end"] - job["start"])
    first = min(job["start"] for job in jobs.values())
    last = max(job["end"] for job in jobs.values())
    return {"rules": dict(rules), "train": train, "jobs_span_s": last - first}


def summarise(records: dict, floor: float) -> dict:
    train = records["train"]
    fit_sum = sum(t["fit_s"] for t in train)
    rows = []
    for rule, walls in sorted(records["rules"].items(), key=lambda item: -sum(item[1])):
        if rule == "train":
            bench = [t["bench_s"] for t in train]
            overhead = [t["bench_s"] - t["fit_s"] for t in train]
            row = {
                "rule": rule,
                "jobs": len(train),
                "median_wall_s": statistics.median(bench),
                "median_meta_wall_s": statistics.median(walls),
                "median_fit_s": statistics.median(t["fit_s"] for t in train),
                "median_overhead_s": statistics.median(overhead),
            }
        else:
            row = {
                "rule": rule,
                "jobs": len(walls),
                "median_wall_s": statistics.median(walls),
                "median_meta_wall_s": statistics.median(walls),
                "median_fit_s": 0.0,
                "median_overhead_s": statistics.median(walls),
            }
        row["overhead_per_floor"] = row["median_overhead_s"] / floor
        row["sum_wall_s"] = sum(walls)
        rows.append(row)
    return {
        "sweep": records["sweep"],
        "repo": records["repo"],
        "wall_s": records["wall_s"],
        "jobs_span_s": records["jobs_span_s"],
        "fit_sum_s": fit_sum,
        "wall_per_fit_sum": records["wall_s"] / fit_sum,
        "rules": rows,
    }


def print_summary(summary: dict, floor: float) -> None:
    print(
        f"\n{summary['sweep']} sweep ({summary['repo']}): wall {summary['wall_s']:.1f} s (first job start to last "
        f"output {summary['jobs_span_s']:.1f} s), sum of fits {summary['fit_sum_s']:.2f} s, "
        f"wall / fits = {summary['wall_per_fit_sum']:.1f}x"
    )
    print(
        f"  {'rule':<15} {'jobs':>4} {'median wall':>12} {'median fit':>11} {'median overhead':>16} "
        f"{'/ floor':>8} {'sum of walls':>13}"
    )
    for row in summary["rules"]:
        print(
            f"  {row['rule']:<15} {row['jobs']:>4} {row['median_wall_s']:>10.2f} s {row['median_fit_s']:>9.2f} s "
            f"{row['median_overhead_s']:>14.2f} s {row['overhead_per_floor']:>7.2f}x {row['sum_wall_s']:>11.1f} s"
        )
    print(f"  (floor: python -c 'import torch' {floor:.2f} s; train wall from benchmark.tsv)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", nargs="+", choices=list(SWEEPS), default=["seed", "tiny"])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each sweep (interleaved)")
    parser.add_argument("--floor-runs", type=int, default=5, help="timings of the floor before and after")
    parser.add_argument("--keep", type=Path, help="keep the working directories here")
    parser.add_argument(
        "--repos", type=Path, nargs="+", default=[REPO], help="checkouts to compare (default: this one)"
    )
    parser.add_argument("--json", type=Path, help="write the figures to this file too")
    parser.add_argument("snakemake_args", nargs="*", help="extra Snakemake options (after --)")
    args = parser.parse_args(argv)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)

    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start")
    floors = time_floor(args.floor_runs)
    results = []
    for repeat in range(args.repeat):
        for name in args.sweeps:
            for index, repo in enumerate(args.repos):
                keep = args.keep / f"{repeat}-{index}" if args.keep is not None else None
                if keep is not None:
                    keep.mkdir(parents=True, exist_ok=True)
                results.append(run_sweep(name, args.cores, args.snakemake_args, keep, repo.resolve()))
                floors += time_floor(2)
    floors += time_floor(args.floor_runs)
    floor = statistics.median(floors)
    print(
        f"floor: python -c 'import torch' median {floor:.2f} s over {len(floors)} runs "
        f"(min {min(floors):.2f}, max {max(floors):.2f}); load average {os.getloadavg()[0]:.2f} at the end"
    )
    summaries = [summarise(records, floor) for records in results]
    for summary in summaries:
        print_summary(summary, floor)
    if args.json is not None:
        args.json.write_text(json.dumps({"floor_s": floor, "floors_s": floors, "sweeps": summaries}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
