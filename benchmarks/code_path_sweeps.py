"""A preset's sweep under each CPU code path (config cpu_code_path), alternating: wall time, and how
far the numbers move against the first variant, beside the sweep's own seed spread.

Variants: ``avx2`` and ``native`` (the config key), and either with ``@avx2cpu``: an AVX2-only
processor emulated on an AVX-512 one (``kanlib.reproducibility.EMULATED_AVX2_CPU``). Each run is
a fresh copy of this checkout's workflow in a temporary folder (a fresh MLflow store, no warm start).

    python benchmarks/code_path_sweeps.py --configfile config/config.yaml --reps 2 \\
        --variants native native@avx2cpu avx2 avx2@avx2cpu
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kanlib.reproducibility import CODE_PATHS, DEFAULT, EMULATED_AVX2_CPU

REPO = Path(__file__).resolve().parents[1]

KEY = ["function", "family", "width", "k", "n_train", "seed", "grid_size"]


def run(configfile: str, variant: str, cores: int) -> tuple[float, pd.DataFrame]:
    code_path, _, cpu = variant.partition("@")
    env = {name: value for name, value in os.environ.items() if name not in (*CODE_PATHS[DEFAULT], *EMULATED_AVX2_CPU)}
    env.update(EMULATED_AVX2_CPU if cpu == "avx2cpu" else {})
    with tempfile.TemporaryDirectory() as work:
        files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
        for name in files.stdout.split():
            if name.startswith(("Snakefile", "workflow/", "config/", "profiles/")):
                (Path(work) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(work) / name).write_bytes((REPO / name).read_bytes())
        command = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", configfile]
        start = time.perf_counter()
        done = subprocess.run(
            [*command, "--config", f"cpu_code_path={code_path}"], cwd=work, env=env, capture_output=True, text=True
        )
        wall = time.perf_counter() - start
        if done.returncode:
            sys.exit(f"{variant}: snakemake failed\n{done.stderr[-3000:]}")
        table = pd.concat(pd.read_csv(path) for path in Path(work, "results").glob("*/results.csv"))
    return wall, table.set_index(KEY).sort_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", default="config/config.yaml")
    parser.add_argument("--variants", nargs="+", default=["native", "native@avx2cpu", "avx2", "avx2@avx2cpu"])
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    walls, tables = {v: [] for v in args.variants}, {}
    for rep in range(args.reps):
        order = args.variants[rep % len(args.variants) :] + args.variants[: rep % len(args.variants)]
        for variant in order:
            wall, tables[variant] = run(args.configfile, variant, args.cores)
            walls[variant].append(wall)
            print(f"rep {rep} {variant}: {wall:.1f} s", flush=True)
    first = tables[args.variants[0]]
    # the seed spread: per point, the largest / smallest test RMSE over the seeds
    points = [k for k in KEY if k != "seed"]
    spread = (
        first.groupby(points)["test_rmse"].agg(lambda x: x.max() / x.min())
        if first.index.get_level_values("seed").nunique() > 1
        else None
    )
    print(f"\n{args.configfile}, {args.cores} cores, {args.reps} repetitions")
    print(
        "| variant | wall s (median) | test RMSE / first variant's: median, max | points differing "
        "| train and test RMSE bit-identical to the same code path on this CPU |"
    )
    print("|---|---|---|---|---|")
    for variant in args.variants:
        ratio = (tables[variant]["test_rmse"] / first["test_rmse"]).dropna()
        moved = np.maximum(ratio, 1 / ratio)
        base = tables.get(variant.partition("@")[0]) if "@" in variant else None
        same = (
            ""
            if base is None
            else str(
                bool((tables[variant][["train_rmse", "test_rmse"]] == base[["train_rmse", "test_rmse"]]).all().all())
            )
        )
        print(
            f"| {variant} | {np.median(walls[variant]):.1f} | {moved.median():.4g}, {moved.max():.4g} "
            f"| {(ratio != 1).sum()} of {len(ratio)} | {same} |"
        )
    if spread is not None:
        print(
            f"\nseed spread (largest / smallest test RMSE over seeds): "
            f"median {spread.median():.4g}, max {spread.max():.4g}"
        )


if __name__ == "__main__":
    main()
