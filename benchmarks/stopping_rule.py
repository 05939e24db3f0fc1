"""L-BFGS stopping rules on the seed chain, against the fixed 50-step budget (``stall_rtol=0``).

The seed chain: f(x, y) = exp(sin(pi x) + y^2) on [-1, 1]^2, KAN [2, 1, 1], k = 3, grids
5, 10, 20, 50, 100 trained one after another (level 0 fresh, later levels by grid extension
from the same rule's previous level), 50 LBFGS steps a level, grid updates until step 30 —
``workflow/scripts/train.py`` with ``config/config.yaml``'s settings. A draw d uses data seed d
and model seed d + 1 (``model_seed_offset: 1``); draw 0 is the project's own sweep.

For every draw and data size each rule's chain runs once, the rules in rotating order (the
machine's timings drift; interleaving keeps the comparison fair). Printed: per cell (N, G) the
worst ratio over draws of final train RMSE and test RMSE, rule / fixed budget, the median
evaluations and the total fit time; then per rule the worst ratio over the cells below the
interpolation threshold (fixed budget's test/train RMSE < 3 in every draw), total evaluations
and time against the fixed budget and the old default.

    python benchmarks/stopping_rule.py                                  # draws 0-5, N 1000 3000 (~8 min)
    python benchmarks/stopping_rule.py --draws 5 --rules fixed old rtol1e-6 --save out.json
    python benchmarks/stopping_rule.py --load out.json                   # reprint a saved run

Findings (2-core VM, draws 0-5): 4 of the 6 model seeds (2-5) end in a poor minimum (RMSE 0.3-0.7
instead of ~6e-3 at G=5). There the fixed budget itself moves by up to 1.4x (train) and 2x (test)
when only the training rows' order changes ("fixed-permuted"), so a rule stays within 10% of it only
by not firing there. The old default (1e-3 over 10 iterations) is within 1.5% on the converged
draws but up to 1.37x / 40x off on the poor ones; stall_rtol 1e-5, the new default, keeps every
counted cell within 1% at 0.88x the fixed budget's evaluations (the old default: 0.55x).

2026-12-02 (log docs/stopping_rule_2026-12-02.log): with the line search's zoom fixed (the
``*-zoom1e-9`` rules keep the old one, which stopped G=50/100 fits after a grid update) the default
is within 1.003 (train) / 1.006 (test) at 0.91x the fixed budget's evaluations; before the fix the
fixed budget itself stopped early, up to 3.1x above where it gets now at G=100.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from kanlib import KAN, create_dataset, training

GRIDS = [5, 10, 20, 50, 100]
STEPS = 50
STOP_GRID_UPDATE_STEP = 30
MODEL_SEED_OFFSET = 1
REFERENCE = "fixed"  # the budget every rule is compared with
OLD = "old"
TOLERANCE = 1.10  # the requirement: within 10% of the fixed budget's RMSE
THRESHOLD = 3.0  # cells with test/train RMSE >= this (fixed budget) are past the interpolation threshold

# name -> extra fit() options. fit()'s own defaults apply to everything not named here.
# "old": the default before this benchmark; "rtol1e-5": the default it led to (= "default").
RULES = {
    "fixed": dict(stall_rtol=0.0),  # the stall test off: every step runs its 20 iterations
    "old": dict(stall_rtol=1e-3, stall_window=10),
    "rtol1e-4": dict(stall_rtol=1e-4, stall_window=10),
    "rtol1e-4w20": dict(stall_rtol=1e-4, stall_window=20),
    "rtol1e-4w50": dict(stall_rtol=1e-4, stall_window=50),
    "rtol1e-3w50": dict(stall_rtol=1e-3, stall_window=50),
    "rtol1e-5w20": dict(stall_rtol=1e-5, stall_window=20),
    "rtol3e-5": dict(stall_rtol=3e-5, stall_window=10),
    "rtol1e-5": dict(stall_rtol=1e-5, stall_window=10),
    "rtol1e-6": dict(stall_rtol=1e-6, stall_window=10),
    "rtol1e-8": dict(stall_rtol=1e-8, stall_window=10),
    # the noise floor: the fixed budget on the same training set in another row order (the same
    # problem; only floating-point rounding differs)
    "fixed-permuted": dict(stall_rtol=0.0, _permute=True),
    "default": dict(),  # whatever fit() does by default now
    # the line search before its zoom used the optimizer's tolerance: it ended at a bracket moving the
    # parameters by < 1e-9 (relative), which stopped the G=50/100 fits after a grid update (kanlib <= 0.2.0)
    "fixed-zoom1e-9": dict(stall_rtol=0.0, _bracket_rtol=1e-9),
    "default-zoom1e-9": dict(_bracket_rtol=1e-9),
    "old-zoom1e-9": dict(stall_rtol=1e-3, stall_window=10, _bracket_rtol=1e-9),
}


def target(x):
    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


class _Recorder:
    """Wraps kanlib.training.LBFGS to keep the optimizers a fit creates (for their stop reasons)."""

    def __init__(self):
        self.original = training.LBFGS
        self.made = []
        self.bracket_rtol = None  # a rule's LBFGS.bracket_rtol (None: the optimizer's own)

    def __call__(self, *args, **kwargs):
        optimizer = self.original(*args, **kwargs)
        if self.bracket_rtol is not None:
            optimizer.bracket_rtol = self.bracket_rtol
        self.made.append(optimizer)
        return optimizer


def run_chain(dataset: dict, model_seed: int, options: dict, recorder: _Recorder) -> list[dict]:
    options = dict(options)
    recorder.bracket_rtol = options.pop("_bracket_rtol", None)
    if options.pop("_permute", False):
        order = torch.randperm(dataset["train_input"].shape[0], generator=torch.Generator().manual_seed(12345))
        dataset = {
            **dataset,
            "train_input": dataset["train_input"][order],
            "train_label": dataset["train_label"][order],
        }
    rows, model = [], None
    for grid in GRIDS:
        fresh = KAN(width=[2, 1, 1], grid=grid, k=3, seed=model_seed)
        if model is not None:
            fresh.initialize_from_another_model(model, dataset["train_input"])
        model = fresh
        recorder.made.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        fit = model.fit(
            dataset,
            opt="LBFGS",
            steps=STEPS,
            stop_grid_update_step=STOP_GRID_UPDATE_STEP,
            progress=False,
            seed=model_seed,
            **options,
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        stops = {}
        for optimizer in recorder.made:
            for reason, count in getattr(optimizer, "stops", {}).items():
                stops[reason] = stops.get(reason, 0) + count
        rows.append(
            dict(
                grid=grid,
                train=fit["train_loss"][-1],
                test=fit["test_loss"][-1],
                evals=int(sum(fit["n_evals"])),
                wall=wall,
                cpu=cpu,
                stops=stops,
                last_step_with_evals=max([i for i, e in enumerate(fit["n_evals"]) if e] or [0]),
            )
        )
    return rows


def measure(draws, sizes, rules) -> list[dict]:
    recorder = _Recorder()
    training.LBFGS = recorder
    records = []
    try:
        turn = 0
        for draw in draws:
            for n in sizes:
                dataset = create_dataset(target, n_var=2, train_num=n, test_num=1000, seed=draw)
                order = rules[turn % len(rules) :] + rules[: turn % len(rules)]
                turn += 1
                for rule in order:
                    rows = run_chain(dataset, draw + MODEL_SEED_OFFSET, RULES[rule], recorder)
                    for row in rows:
                        records.append(dict(rule=rule, draw=draw, n=n, **row))
                    print(
                        f"draw {draw} N={n:5d} {rule:>10s}: "
                        + "  ".join(f"G{r['grid']}:{r['test']:.2e}/{r['evals']}" for r in rows)
                        + f"  {sum(r['wall'] for r in rows):.2f} s",
                        flush=True,
                    )
    finally:
        training.LBFGS = recorder.original
    return records


def report(records: list[dict], rules=None) -> None:
    rules = rules or list(dict.fromkeys(r["rule"] for r in records))
    draws = sorted({r["draw"] for r in records})
    sizes = sorted({r["n"] for r in records})
    by = {(r["rule"], r["draw"], r["n"], r["grid"]): r for r in records}
    cells = [(n, g) for n in sizes for g in GRIDS]
    # a (draw, cell) counts when the fixed budget's test/train RMSE ratio is below THRESHOLD there
    counts = {
        (d, n, g): by[(REFERENCE, d, n, g)]["test"] / by[(REFERENCE, d, n, g)]["train"] < THRESHOLD
        for d in draws
        for n, g in cells
    }
    print(
        f"\ndraws {draws} (data seed d, model seed d+{MODEL_SEED_OFFSET}); ratios rule / {REFERENCE}, "
        "worst over the draws below the threshold ('-': none); evals = median per fit; time = sum over draws "
        "(wall s)"
    )
    print(
        f"past the interpolation threshold (fixed budget test/train >= {THRESHOLD}), left out of the worst ratios: "
        + (", ".join(f"N{n} G{g} draw {d}" for (d, n, g), ok in counts.items() if not ok) or "none")
    )
    for rule in rules:
        print(f"\n== {rule}  {RULES.get(rule, '')}")
        print(
            f"{'N':>5s} {'G':>4s} {'train':>6s} {'test':>6s} {'evals':>6s} {'fixed':>6s} {'time':>6s} {'fixed':>6s}"
            f"  stop reasons (all draws)"
        )
        for n, g in cells:
            rs = [by[(rule, d, n, g)] for d in draws]
            ref = [by[(REFERENCE, d, n, g)] for d in draws]
            kept = [(a, b) for d, a, b in zip(draws, rs, ref) if counts[(d, n, g)]]
            train = max((a["train"] / b["train"] for a, b in kept), default=float("nan"))
            test = max((a["test"] / b["test"] for a, b in kept), default=float("nan"))
            all_train = max(a["train"] / b["train"] for a, b in zip(rs, ref))
            all_test = max(a["test"] / b["test"] for a, b in zip(rs, ref))
            stops = {}
            for r in rs:
                for k, v in r["stops"].items():
                    stops[k] = stops.get(k, 0) + v
            mark = (
                ""
                if len(kept) == len(draws)
                else (f" [{len(draws) - len(kept)} draw(s) past threshold; all draws: {all_train:.3f} {all_test:.3f}]")
            )
            print(
                f"{n:5d} {g:4d} {train:6.3f} {test:6.3f} {np.median([r['evals'] for r in rs]):6.0f} "
                f"{np.median([r['evals'] for r in ref]):6.0f} {sum(r['wall'] for r in rs):6.2f} "
                f"{sum(r['wall'] for r in ref):6.2f}  " + " ".join(f"{k}:{v}" for k, v in sorted(stops.items())) + mark
            )
    print(
        f"\nsummary: worst ratio over cells below the threshold and all draws (requirement <= {TOLERANCE}); "
        "totals over all chains"
    )
    print(
        f"{'rule':>10s} {'train':>6s} {'test':>6s} {'all:tr':>6s} {'all:te':>6s} {'evals':>7s} "
        f"{'wall s':>7s} {'cpu s':>7s} "
        f"{'/fixed':>6s} {'/old':>6s} {'evals/fixed':>11s}"
    )
    totals = {
        rule: (
            sum(r["evals"] for r in records if r["rule"] == rule),
            sum(r["wall"] for r in records if r["rule"] == rule),
            sum(r["cpu"] for r in records if r["rule"] == rule),
        )
        for rule in rules
    }
    for rule in rules:
        worst_train = max(
            by[(rule, d, n, g)]["train"] / by[(REFERENCE, d, n, g)]["train"]
            for n, g in cells
            for d in draws
            if counts[(d, n, g)]
        )
        worst_test = max(
            by[(rule, d, n, g)]["test"] / by[(REFERENCE, d, n, g)]["test"]
            for n, g in cells
            for d in draws
            if counts[(d, n, g)]
        )
        all_train = max(
            by[(rule, d, n, g)]["train"] / by[(REFERENCE, d, n, g)]["train"] for n, g in cells for d in draws
        )
        all_test = max(by[(rule, d, n, g)]["test"] / by[(REFERENCE, d, n, g)]["test"] for n, g in cells for d in draws)
        evals, wall, cpu = totals[rule]
        ok = "ok" if max(worst_train, worst_test) <= TOLERANCE else "FAILS"
        vs_old = f"{cpu / totals[OLD][2]:6.2f}" if OLD in totals else "     -"
        print(
            f"{rule:>10s} {worst_train:6.3f} {worst_test:6.3f} {all_train:6.3f} {all_test:6.3f} {evals:7d} "
            f"{wall:7.1f} {cpu:7.1f} "
            f"{cpu / totals[REFERENCE][2]:6.2f} {vs_old} {evals / totals[REFERENCE][0]:11.2f}  {ok}"
        )
    print(
        "(train/test: worst over cells below the threshold; all:tr/all:te: worst over every cell and draw; "
        "/fixed and /old: ratios of CPU time, the less noisy clock on a shared machine)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=6, help="draws 0 .. DRAWS-1 (default 6)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000])
    parser.add_argument(
        "--rules", nargs="+", default=["fixed", "old", "rtol1e-5", "default", "fixed-permuted"], choices=sorted(RULES)
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save", help="write the raw results (JSON) here")
    parser.add_argument("--load", nargs="+", help="reprint saved results (merged) instead of running")
    args = parser.parse_args()
    if args.load:
        merged = {}  # a rule in several files: the last file's run counts (times then come from several runs)
        for path in args.load:
            for record in json.load(open(path)):
                merged[(record["rule"], record["draw"], record["n"], record["grid"])] = record
        report(list(merged.values()))
        return
    torch.set_num_threads(args.threads)
    rules = list(dict.fromkeys([REFERENCE] + args.rules))
    records = measure(list(range(args.draws)), args.sizes, rules)
    if args.save:
        with open(args.save, "w") as handle:
            json.dump(records, handle)
    report(records, rules)


if __name__ == "__main__":
    main()
