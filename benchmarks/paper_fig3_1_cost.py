"""Where a paper_fig3_1 run's time goes: its finished train jobs (from their metrics.json).

    python benchmarks/paper_fig3_1_cost.py [results/paper_fig3_1]

Prints the fit seconds per family and function (a job of several seeds counted once: its stack's
wall time, or the sum of its models' when they trained one after another) and the slowest jobs
with their loss evaluations and cost per model-evaluation. Works on a run in progress.
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "results/paper_fig3_1")
    jobs: dict[tuple, list[dict]] = {}
    for path in root.glob("runs/**/metrics.json"):
        metrics = json.loads(path.read_text())
        key = (metrics["function"], metrics["family"], metrics["width"], metrics.get("grid_size"))
        jobs.setdefault(key, []).append(metrics)
    rows = []
    for (function, family, width, grid), models in jobs.items():
        if models[0].get("stack_size", 1) > 1:
            wall = models[0]["stack_wall_time_s"]
        else:
            wall = sum(m["wall_time_s"] for m in models)
        evaluations = sum(m["n_evals"] for m in models)
        rows.append((function, family, width, grid, wall, evaluations, models[0]["n_params"]))
    totals = collections.defaultdict(lambda: [0, 0.0])
    for function, family, _width, _grid, wall, _evaluations, _params in rows:
        totals[(family, function)][0] += 1
        totals[(family, function)][1] += wall
    print(f"finished train jobs: {len(rows)} (paper_fig3_1: 45 KAN levels and 100 MLPs, each for every seed)")
    print(f"{'family':6s} {'function':22s} {'jobs':>5s} {'fit seconds':>12s}")
    for (family, function), (count, wall) in sorted(totals.items()):
        print(f"{family:6s} {function:22s} {count:5d} {wall:12.0f}")
    print("\nslowest jobs (every seed; machine as it was):")
    for function, family, width, grid, wall, evaluations, params in sorted(rows, key=lambda r: -r[4])[:15]:
        level = "" if grid is None else f" G={grid}"
        print(
            f"  {family} {function:22s} [{width.replace('-', ',')}]{level}: {wall:6.0f} s, "
            f"{evaluations:6d} loss evaluations, {params} parameters a model, "
            f"{wall / evaluations * 1e3:.2f} ms per model-evaluation"
        )


if __name__ == "__main__":
    main()
