"""The seed sweep with several seeds through Snakemake, batch_seeds on against off, in one run.

    python benchmarks/batched_seeds_workflow.py [--seeds 8] [--cores 2] [--order on,off]

Each mode runs the default sweep (config/config.yaml: 4 N x 5 grid levels) with ``seeds: [0..S-1]``
in its own fresh working directory (own results/ and mlflow.db), and prints side by side: wall
time, train jobs, fit seconds (each stack's wall time counted once), and the worst relative
difference between the two modes' train and test RMSEs per (N, seed, G) (batching must not change
results). Run it on an otherwise idle machine; the figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_mode(work: Path, seeds: int, cores: int, batch: bool) -> dict:
    shutil.copytree(REPO / "config", work / "config")
    extra = {"sweep": "bench", "seeds": list(range(seeds)), "batch_seeds": batch}
    (work / "config" / "extra.yaml").write_text(json.dumps(extra))
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    snakemake = str(Path(sys.executable).parent / "snakemake")
    command = [snakemake, "-s", str(REPO / "Snakefile"), "--cores", str(cores), "--configfile", "config/extra.yaml"]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"snakemake failed (batch_seeds={batch}):\n{result.stderr[-3000:]}")
    runs = sorted((work / "results" / "bench" / "runs").glob("*/*/*/*/metrics.json"))
    metrics = [json.loads(path.read_text()) for path in runs]
    stacks = {}  # one entry per job: a stack's wall time counted once
    for m in metrics:
        stacks[(m["n_train"], m["grid_size"]) if m.get("stack_size", 1) > 1 else m["job"]] = m.get(
            "stack_wall_time_s", m["wall_time_s"]
        )
    with open(work / "results" / "bench" / "results.csv") as handle:
        rows = {(r["n_train"], r["seed"], r["grid_size"]): r for r in csv.DictReader(handle)}
    return {"wall_s": wall, "jobs": len(stacks), "fit_s": sum(stacks.values()), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--order", default="on,off", help="which mode runs first")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="kanlib-batch-") as tmp:
        for mode in args.order.split(","):
            results[mode] = run_mode(Path(tmp) / mode, args.seeds, args.cores, batch=(mode == "on"))
            print(f"batch_seeds {mode}: {results[mode]['wall_s']:.1f} s wall", flush=True)
    on, off = results["on"], results["off"]
    worst = {"train_rmse": 0.0, "test_rmse": 0.0}
    for key, row in off["rows"].items():
        for column in worst:
            a, b = float(on["rows"][key][column]), float(row[column])
            worst[column] = max(worst[column], abs(a - b) / max(abs(b), 1e-300))
    print(f"\nseed sweep (4 N x 5 G) with {args.seeds} seeds, --cores {args.cores}")
    print(f"{'':22s} {'batch_seeds on':>15s} {'batch_seeds off':>16s} {'ratio off/on':>13s}")
    for label, key, fmt in (
        ("wall time (s)", "wall_s", ".1f"),
        ("train jobs", "jobs", "d"),
        ("fit time (s)", "fit_s", ".1f"),
    ):
        ratio = off[key] / on[key] if on[key] else float("nan")
        print(f"{label:22s} {on[key]:>15{fmt}} {off[key]:>16{fmt}} {ratio:>13.2f}")
    print(
        f"worst relative difference on/off over {len(off['rows'])} levels: train RMSE {worst['train_rmse']:.1e}, "
        f"test RMSE {worst['test_rmse']:.1e}"
    )


if __name__ == "__main__":
    main()
