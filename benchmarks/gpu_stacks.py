"""The measurements of benchmarks/gpu_check.sh (issue 27): KAN stacks and the Fig. 3.1 MLP shapes on a
device and on the same machine's CPU, side by side, and the issue's goals read off them.

    python benchmarks/gpu_stacks.py evals --device cuda --stacks 1 4 16 64 --sizes 1000 10000
    python benchmarks/gpu_stacks.py fit   --device cuda --stack 16 --n 1000
    python benchmarks/gpu_stacks.py mlp   --device cuda [--deadline UNIX_SECONDS]
    python benchmarks/gpu_stacks.py goals

evals: time of one L-BFGS evaluation (one call of the stack's ``mse_and_grad_t``: every model's loss and
gradient), KAN [2,1,1], G = 20, k = 3, float64, after warm-up, median of several calls with
``torch.cuda.synchronize`` around each; on the device and on the CPU (torch threads = all cores; a KAN
runs the C kernels there, which loop over the models on one thread).

fit: one full fit of the seed chain's first level (config/config.yaml: [2,1,1], G = grids[0], k = 3,
``steps`` L-BFGS steps, grid updates until ``stop_grid_update_step``; data seed s, model seed s +
model_seed_offset) for S = 1 and S = --stack models, on the device and on the CPU; then, on a GPU, where an
evaluation's time goes inside the fit (the loss and gradients on the GPU against the L-BFGS bookkeeping in
numpy on the host and the copies, kanlib.optim) and how many host synchronisations an evaluation makes
(``torch.cuda.set_sync_debug_mode``).

mlp: the three Fig. 3.1 MLP shapes never run ([2,100,100,100,100,1] on exp(sin(pi x)+y^2), [4,100,100,100,1]
and [4,100,100,100,100,1] on the 4-d composition), each its config seeds as one MLPStack, with the budget
and data of config/paper_fig3_1.yaml (merged over config/config.yaml, as the workflow does): data seed s,
model seed s + model_seed_offset, ``mlp.steps`` or len(grids) x steps L-BFGS steps (1800), N = data_sizes
and test_num points. The shapes run as parallel processes on the one device (--jobs), each stopping at
--deadline with what it reached (marked unfinished); the models' train/test RMSE go to the log and to
mlp_fig3_1.csv in --results.

Each command prints markdown tables and writes its numbers to --results (JSON) for ``goals``. With
``--device cpu`` (gpu_check.sh's dry run) the "device" side is the CPU's torch path (the code a GPU runs)
and the CPU side the C kernels.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
import yaml

from kanlib import KAN, MLP, KANStack, MLPStack, cpu_kernels, create_dataset
from kanlib.functions import get_function
from kanlib.training import median_rmse

REPO = Path(__file__).resolve().parents[1]
#: (function, MLP width) of Fig. 3.1 that no run had finished (docs/paper.md)
MISSING_SHAPES = [
    ("exp_sin_pi_x_plus_y2", [2, 100, 100, 100, 100, 1]),
    ("exp_composition_4d", [4, 100, 100, 100, 1]),
    ("exp_composition_4d", [4, 100, 100, 100, 100, 1]),
]
GOAL_STACK = 16  # the stack of 16 seeds
GOAL_STACK_RATIO = 1.5  # ... in at most 1.5x the time of one
GOAL_MLP_SECONDS = 120.0  # each missing shape (3 seeds) in at most 2 minutes


# ---- helpers -----------------------------------------------------------------------------------------


def merged_config(*names: str) -> dict:
    """config/<names> merged in order, nested dicts key by key (as Snakemake merges --configfile)."""

    def merge(base: dict, over: dict) -> dict:
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    config: dict = {}
    for name in names:
        config = merge(config, yaml.safe_load((REPO / "config" / name).read_text()))
    return config


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def path_of(device: torch.device):
    """The evaluation path measured as "the device": on a GPU the GPU; on the CPU (the dry run) the torch
    path, which is the code a GPU runs (the C kernels are the CPU side)."""
    return cpu_kernels.disabled() if device.type == "cpu" else contextlib.nullcontext()


def device_label(device: torch.device) -> str:
    return "cpu-torch" if device.type == "cpu" else device.type


def gpu_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "none (dry run on the CPU)"


def kan_datasets(target, n_models: int, n: int, n_test: int) -> list[dict]:
    return [create_dataset(target, n_var=2, train_num=n, test_num=n_test, seed=s) for s in range(n_models)]


def feature_major(data: list[dict], device) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.stack([d["train_input"] for d in data]).transpose(1, 2).contiguous().to(device)
    y = torch.stack([d["train_label"] for d in data]).transpose(1, 2).contiguous().to(device)
    return x, y


def batched_evaluations(results: list[dict]) -> int:
    """Closure calls of a stack's fit: per step, the busiest model's evaluations (they run in lockstep)."""
    return sum(max(r["n_evals"][step] for r in results) for step in range(len(results[0]["n_evals"])))


def write_json(results_dir: Path, name: str, payload: dict) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{name}.json").write_text(json.dumps(payload, indent=1))


def read_json(results_dir: Path, name: str) -> dict | None:
    path = results_dir / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


class TimedEvaluations:
    """Wraps a model's ``mse_and_grad_t``: counts the calls and their time, synchronised on a GPU (the
    optimizer reads every loss back right after the call, so the extra synchronisation costs nothing)."""

    def __init__(self, model, device: torch.device):
        self.calls, self.seconds, self.device = 0, 0.0, device
        self.inner = model.mse_and_grad_t
        model.mse_and_grad_t = self

    def __call__(self, x_t, y_t):
        synchronize(self.device)
        started = time.perf_counter()
        losses = self.inner(x_t, y_t)
        synchronize(self.device)
        self.seconds += time.perf_counter() - started
        self.calls += 1
        return losses


# ---- evals ---------------------------------------------------------------------------------------------


def time_one_evaluation(stack, x_t, y_t, device: torch.device, min_seconds: float = 0.2) -> float:
    """Median seconds of one mse_and_grad_t call, after 3 warm-up calls; at least 5 calls, more up to
    min_seconds (at most 50)."""
    for _ in range(3):
        stack.mse_and_grad_t(x_t, y_t)
    synchronize(device)
    times: list[float] = []
    while len(times) < 5 or (sum(times) < min_seconds and len(times) < 50):
        synchronize(device)
        started = time.perf_counter()
        stack.mse_and_grad_t(x_t, y_t)
        synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def command_evals(args) -> None:
    device = torch.device(args.device)
    target = get_function("exp_sin_pi_x_plus_y2")
    grid, most = args.grid, max(args.stacks)
    print(
        f"time per L-BFGS evaluation: one mse_and_grad_t call of a KANStack [2,1,1], G = {grid}, k = 3, float64, "
        f"median after 3 warm-ups (torch.cuda.synchronize around each on a GPU); {device_label(device)}: "
        f"{gpu_name(device)}; cpu: {torch.get_num_threads()} torch threads, KAN kernels {cpu_kernels.status()} "
        "(C: one thread, model after model)"
    )
    label = device_label(device)
    print(f"| S | N | {label} ms/eval | {label} ms/model | cpu ms/eval | cpu ms/model | cpu / {label} |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    models = [KAN(width=[2, 1, 1], grid=grid, k=3, seed=s + 1) for s in range(most)]
    for n in args.sizes:
        data = kan_datasets(target, most, n, 1)
        for S in args.stacks:
            cpu_stack = KANStack.stack(models[:S])
            x_cpu, y_cpu = feature_major(data[:S], "cpu")
            on_device = copy.deepcopy(cpu_stack).to(device)
            x_dev, y_dev = x_cpu.to(device), y_cpu.to(device)
            with path_of(device):
                device_s = time_one_evaluation(on_device, x_dev, y_dev, device)
            cpu_s = time_one_evaluation(cpu_stack, x_cpu, y_cpu, torch.device("cpu"))
            rows.append({"S": S, "N": n, "device_ms": device_s * 1e3, "cpu_ms": cpu_s * 1e3})
            print(
                f"| {S} | {n} | {device_s * 1e3:.3f} | {device_s * 1e3 / S:.4f} | {cpu_s * 1e3:.3f} | "
                f"{cpu_s * 1e3 / S:.4f} | {cpu_s / device_s:.2f}x |",
                flush=True,
            )
    print()
    print(f"a stack of S against one model (ms per evaluation, S = {most} / S = 1):")
    for n in args.sizes:
        by_s = {row["S"]: row for row in rows if row["N"] == n}
        if 1 in by_s and most in by_s:
            print(
                f"  N = {n}: {label} {by_s[most]['device_ms'] / by_s[1]['device_ms']:.2f}x, "
                f"cpu {by_s[most]['cpu_ms'] / by_s[1]['cpu_ms']:.2f}x"
            )
    write_json(args.results, "evals", {"device": label, "gpu": gpu_name(device), "grid": grid, "rows": rows})


# ---- fit -----------------------------------------------------------------------------------------------


def command_fit(args) -> None:
    device = torch.device(args.device)
    config = merged_config("config.yaml")
    function = config["functions"][0]
    target = get_function(function if isinstance(function, str) else function["name"])
    width, grid, k = list(config["widths"][0]), int(config["grids"][0]), int(config["spline_order"])
    offset = int(config["model_seed_offset"])
    steps = args.steps or int(config["steps"])
    n, n_test = args.n, args.n_test or int(config["test_num"])
    options = dict(
        steps=steps,
        stop_grid_update_step=int(config["stop_grid_update_step"]),
        grid_update_num=int(config["grid_update_num"]),
        progress=False,
    )
    data = kan_datasets(target, args.stack, n, n_test)
    label = device_label(device)

    def stack_of(S: int, on):
        return KANStack.stack([KAN(width=width, grid=grid, k=k, seed=s + offset, device=on) for s in range(S)])

    def one_fit(S: int, on: torch.device, timed: bool = False):
        stack = stack_of(S, on)
        timer = TimedEvaluations(stack, on) if timed else None
        synchronize(on)
        started = time.perf_counter()
        results = stack.fit(data[:S], **options)
        synchronize(on)
        return time.perf_counter() - started, results, timer

    print(
        f"one full fit: the seed chain's first level (config/config.yaml): KAN {width}, G = {grid}, k = {k}, "
        f"{steps} L-BFGS steps, grid updates until step {options['stop_grid_update_step']}, N = {n} "
        f"(test {n_test}), data seed s, model seed s + {offset}; {label}: {gpu_name(device)}; "
        f"cpu: KAN kernels {cpu_kernels.status()} (C: one thread, model after model)"
    )
    sides = ((device, label, lambda: path_of(device)), (torch.device("cpu"), "cpu", contextlib.nullcontext))
    for on, _, path in sides:  # warm-up of both sizes: kernels, allocator, cuBLAS handles, the C build
        for S in sorted({1, args.stack}):
            with path():
                stack_of(S, on).fit(data[:S], **{**options, "steps": 2})
    print("| device | S | wall s | evaluations | ms/evaluation | S models / 1 | median test RMSE | worst test RMSE |")
    print("|---|---|---|---|---|---|---|---|")
    rows, finals = [], {}
    for on, name, path in sides:
        alone = None
        for S in sorted({1, args.stack}):
            with path():
                wall, results, _ = one_fit(S, on)
            evals = batched_evaluations(results)
            test = [r["test_loss"][-1] for r in results]
            alone = wall if S == 1 else alone
            finals[(name, S)] = test
            rows.append({"device": name, "S": S, "wall_s": wall, "evaluations": evals, "test_rmse": test})
            print(
                f"| {name} | {S} | {wall:.2f} | {evals} | {wall / evals * 1e3:.3f} | {wall / alone:.2f}x | "
                f"{statistics.median(test):.3e} | {max(test):.3e} |",
                flush=True,
            )
    ratios = [a / b for a, b in zip(finals[(label, args.stack)], finals[("cpu", args.stack)])]
    print(
        f"\nfinal test RMSE, {label} against cpu, model by model (S = {args.stack}): ratios "
        f"{min(ratios):.3f} .. {max(ratios):.3f} (rounding moves an L-BFGS path; same accuracy class within 2x)"
    )
    with path_of(device):
        wall, results, timer = one_fit(args.stack, device, timed=True)
    loss_ms, all_ms = timer.seconds / timer.calls * 1e3, wall / timer.calls * 1e3
    breakdown = {"loss_and_grad_ms": loss_ms, "per_evaluation_ms": all_ms, "evaluations": timer.calls}
    print(
        f"where an evaluation's time goes in the fit ({label}, S = {args.stack}, {timer.calls} evaluations, "
        f"{wall:.2f} s): {all_ms:.3f} ms an evaluation, of which the models' loss and gradients "
        f"{loss_ms:.3f} ms ({loss_ms / all_ms:.0%}) and the rest {all_ms - loss_ms:.3f} ms (L-BFGS in numpy on "
        f"the host, the parameter and gradient copies, the test set, the fit loop)"
    )
    syncs = None
    if device.type == "cuda":
        stack = stack_of(args.stack, device)
        inner, counted = stack.mse_and_grad_t, {"calls": 0}

        def counting(x_t, y_t):
            counted["calls"] += 1
            return inner(x_t, y_t)

        stack.mse_and_grad_t = counting
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                stack.fit(data, **{**options, "steps": min(steps, 5)})
            finally:
                torch.cuda.set_sync_debug_mode("default")
        n_syncs = sum("synchroniz" in str(w.message) for w in caught)
        syncs = {"synchronisations": n_syncs, "evaluations": counted["calls"]}
        print(
            f"host synchronisations (torch.cuda.set_sync_debug_mode, {min(steps, 5)} steps, S = {args.stack}): "
            f"{n_syncs} in {counted['calls']} evaluations = {n_syncs / max(1, counted['calls']):.1f} per evaluation "
            f"(kanlib.optim.LBFGS reads every loss and gradient on the host)"
        )
    else:
        print("host synchronisations: not applicable on the CPU")
    write_json(
        args.results,
        "fit",
        {"device": label, "gpu": gpu_name(device), "stack": args.stack, "n": n, "steps": steps, "rows": rows,
         "breakdown": breakdown, "syncs": syncs},
    )  # fmt: skip


# ---- mlp -----------------------------------------------------------------------------------------------


class _OutOfTime(Exception):
    pass


def mlp_settings(args) -> dict:
    """The Fig. 3.1 preset's MLP settings (config/paper_fig3_1.yaml over config/config.yaml), with the
    command line's overrides (the dry run's)."""
    config = merged_config("config.yaml", "paper_fig3_1.yaml")
    mlp = config.get("mlp", {})
    # kanlib.families: an MLP fit's budget is mlp.steps, or the KAN chain's total (levels x steps)
    steps = int(mlp["steps"]) if mlp.get("steps") is not None else len(config["grids"]) * int(config["steps"])
    widths = {entry["name"]: entry.get("mlp_widths", []) for entry in config["functions"] if isinstance(entry, dict)}
    for function, width in MISSING_SHAPES:
        assert width in widths.get(function, []), f"{function} {width} is not a shape of config/paper_fig3_1.yaml"
    return {
        "seeds": [int(s) for s in (args.seeds or config["seeds"])],
        "model_seed_offset": int(config["model_seed_offset"]),
        "n_train": int(args.n_train or config["data_sizes"][0]),
        "n_test": int(args.n_test or config["test_num"]),
        "steps": int(args.steps or steps),
        "activation": mlp.get("activations", ["silu"])[0],
        "dtype": config["dtype"],
        "input_range": [float(v) for v in config["input_range"]],
        "fit": {
            "opt": config["optimizer"],
            "lr": float(config["lr"]),
            "batch": int(config["batch"]),
            "update_grid": False,
            "lamb": 0.0,
            "progress": False,
        },
    }


def run_shape(index: int, args) -> dict:
    """One missing shape, its seeds as one MLPStack, until done or --deadline; returns its record."""
    device = torch.device(args.device)
    settings = mlp_settings(args)
    function, width = MISSING_SHAPES[index]
    target = get_function(function)
    seeds, offset = settings["seeds"], settings["model_seed_offset"]
    lower, upper = settings["input_range"]
    data = [
        create_dataset(
            target,
            n_var=width[0],
            ranges=(lower, upper),
            train_num=settings["n_train"],
            test_num=settings["n_test"],
            seed=s,
        )
        for s in seeds
    ]
    stack = MLPStack.stack(
        [
            MLP(width=width, activation=settings["activation"], seed=s + offset, device=device, dtype=settings["dtype"])
            for s in seeds
        ]
    )
    timer = TimedEvaluations(stack, device)
    progress = {"steps": 0, "records": None, "n_evals": [0] * len(seeds)}

    def callback(step, records):
        progress["steps"], progress["records"] = step + 1, records
        progress["n_evals"] = [total + record["n_evals"] for total, record in zip(progress["n_evals"], records)]
        if args.deadline and time.time() > args.deadline:
            raise _OutOfTime

    synchronize(device)
    started = time.perf_counter()
    try:
        results = stack.fit(data, steps=settings["steps"], callback=callback, **settings["fit"])
        finished = True
        train = [r["train_loss"][-1] for r in results]
        test = [r["test_loss"][-1] for r in results]
    except _OutOfTime:
        finished = False
        train = [r["train_loss"] for r in progress["records"]]
        test = [r["test_loss"] for r in progress["records"]]
    synchronize(device)
    wall = time.perf_counter() - started
    medians = []
    for s, model in enumerate(stack.unstack()):
        x, y = data[s]["test_input"].to(device, model.dtype), data[s]["test_label"].to(device, model.dtype)
        medians.append(median_rmse(model, x, y))
    return {
        "function": function,
        "width": width,
        "activation": settings["activation"],
        "n_train": settings["n_train"],
        "n_test": settings["n_test"],
        "seeds": seeds,
        "model_seeds": [s + offset for s in seeds],
        "n_params": stack.n_params,
        "steps": settings["steps"],
        "steps_done": progress["steps"],
        "finished": finished,
        "train_rmse": train,
        "test_rmse": test,
        "test_median_rmse": medians,
        "n_evals": progress["n_evals"],
        "evaluations": timer.calls,
        "loss_and_grad_s": timer.seconds,
        "wall_s": wall,
        "device": str(stack.device),
        "gpu": gpu_name(device),
    }


def command_mlp(args) -> None:
    if args.shape is not None:  # one shape, in a process of its own
        record = run_shape(args.shape, args)
        write_json(args.results, f"mlp_{args.shape}", record)
        return
    settings = mlp_settings(args)
    device = torch.device(args.device)
    budget = f"until {time.strftime('%H:%M:%S', time.localtime(args.deadline))}" if args.deadline else "no time limit"
    print(
        f"the Fig. 3.1 MLP shapes never run: {len(MISSING_SHAPES)} shapes x seeds {settings['seeds']} (one MLPStack "
        f"each), {settings['activation']}, {settings['dtype']}, {settings['steps']} L-BFGS steps, N = "
        f"{settings['n_train']}, {settings['n_test']} test points, data seed s, model seed s + "
        f"{settings['model_seed_offset']}; {device_label(device)}: {gpu_name(device)}; {args.jobs} shape(s) at a "
        f"time as separate processes on the one device, {args.threads_per_job} CPU thread(s) each; {budget}",
        flush=True,
    )
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(args.threads_per_job)
    args.results.mkdir(parents=True, exist_ok=True)
    common = ["--device", args.device, "--results", str(args.results), "--deadline", str(args.deadline or 0)]
    for name in ("steps", "n_train", "n_test"):
        if getattr(args, name):
            common += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    if args.seeds:
        common += ["--seeds", *map(str, args.seeds)]
    running: list[tuple[int, subprocess.Popen]] = []
    failures = []
    pending = list(range(len(MISSING_SHAPES)))
    while pending or running:
        while pending and len(running) < args.jobs:
            index = pending.pop(0)
            command = [sys.executable, __file__, "mlp", "--shape", str(index), *common]
            output = args.results / f"mlp_{index}.log"  # (a file: a full pipe would stall the process)
            with open(output, "w") as handle:
                running.append((index, subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)))
        index, process = running.pop(0)
        process.wait()
        if process.returncode != 0:
            failures.append(index)
            output = (args.results / f"mlp_{index}.log").read_text()
            print(f"!! shape {MISSING_SHAPES[index]} failed ({process.returncode}):\n{output[-3000:]}", flush=True)
    records = [read_json(args.results, f"mlp_{i}") for i in range(len(MISSING_SHAPES))]
    records = [r for r in records if r is not None]
    print("| function | width | seed | params | steps | train RMSE | test RMSE | median test RMSE | evals | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for r in records:
        for i, seed in enumerate(r["seeds"]):
            steps = f"{r['steps_done']}/{r['steps']}" + ("" if r["finished"] else " (stopped)")
            evals = r["n_evals"][i]
            print(
                f"| {r['function']} | {r['width']} | {seed} | {r['n_params']} | {steps} | {r['train_rmse'][i]:.3e} | "
                f"{r['test_rmse'][i]:.3e} | {r['test_median_rmse'][i]:.3e} | {evals} | {r['wall_s']:.1f} |"
            )
            rows.append(
                {
                    "function": r["function"],
                    "width": "-".join(map(str, r["width"])),
                    "activation": r["activation"],
                    "n_train": r["n_train"],
                    "seed": seed,
                    "model_seed": r["model_seeds"][i],
                    "n_params": r["n_params"],
                    "steps": r["steps"],
                    "steps_done": r["steps_done"],
                    "finished": r["finished"],
                    "train_rmse": r["train_rmse"][i],
                    "test_rmse": r["test_rmse"][i],
                    "test_median_rmse": r["test_median_rmse"][i],
                    "n_evals": r["n_evals"][i],
                    "wall_time_s": r["wall_s"],
                    "device": r["device"],
                }
            )
    print()
    for r in records:
        per_eval = r["wall_s"] / max(1, r["evaluations"]) * 1e3
        loss = r["loss_and_grad_s"] / max(1, r["evaluations"]) * 1e3
        line = (
            f"{r['function']} {r['width']}: {r['wall_s']:.1f} s for {r['steps_done']} steps, {r['evaluations']} "
            f"evaluations, {per_eval:.2f} ms an evaluation (the models' loss and gradients {loss:.2f} ms, "
            f"the rest {per_eval - loss:.2f} ms)"
        )
        if not r["finished"] and r["steps_done"]:
            projected = r["wall_s"] * r["steps"] / r["steps_done"]
            line += f"; stopped at the deadline: all {r['steps']} steps would take ~{projected:.0f} s"
        print(line)
    if rows:
        with open(args.results / "mlp_fig3_1.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"\nrows for docs/paper.md: {args.results / 'mlp_fig3_1.csv'}")
    write_json(args.results, "mlp", {"device": device_label(device), "gpu": gpu_name(device), "shapes": records})
    if failures:
        sys.exit(1)


# ---- goals ---------------------------------------------------------------------------------------------


def command_goals(args) -> None:
    evals, fit, mlp = (read_json(args.results, name) for name in ("evals", "fit", "mlp"))
    parts = [part for part in (fit, evals, mlp) if part]
    device = parts[0]["device"] if parts else "?"
    gpu = parts[0]["gpu"] if parts else "?"
    dry = " -- a dry run: the goals are a GPU's, these numbers only show the checks work" if device != "cuda" else ""
    print(f"goals of issue 27 on {gpu}{dry}")

    def verdict(ok: bool | None) -> str:
        return "[not measured]" if ok is None else "[PASS]" if ok else "[FAIL]"

    def fit_row(name, S):
        return next((r for r in (fit or {}).get("rows", []) if r["device"] == name and r["S"] == S), None)

    def eval_row(S, n):
        return next((r for r in (evals or {}).get("rows", []) if r["S"] == S and r["N"] == n), None)

    S = fit["stack"] if fit else GOAL_STACK
    n = fit["n"] if fit else 1000
    note = "" if S == GOAL_STACK else f" (measured at S = {S}, the dry run's largest)"
    one, many, cpu_many = fit_row(device, 1), fit_row(device, S), fit_row("cpu", S)
    e_one, e_many = eval_row(1, n), eval_row(S, n)

    ok = many["wall_s"] / one["wall_s"] <= GOAL_STACK_RATIO if one and many else None
    line = (
        f"{verdict(ok)} 1. a stack of {GOAL_STACK} KAN seeds at N = 1000 in at most {GOAL_STACK_RATIO}x the time of one"
    )
    if one and many:
        line += f"{note}: full fit {many['wall_s']:.2f} s against {one['wall_s']:.2f} s"
        line += f" = {many['wall_s'] / one['wall_s']:.2f}x"
    if e_one and e_many:
        line += f"; one evaluation {e_many['device_ms']:.3f} ms against {e_one['device_ms']:.3f} ms"
        line += f" = {e_many['device_ms'] / e_one['device_ms']:.2f}x"
    print(line)

    ok = cpu_many["wall_s"] > many["wall_s"] if cpu_many and many else None
    line = f"{verdict(ok)} 2. the GPU faster than the CPU for a stack of {GOAL_STACK} at N = 1000"
    if cpu_many and many:
        line += f"{note}: full fit cpu {cpu_many['wall_s']:.2f} s, {device} {many['wall_s']:.2f} s"
        line += f" = {cpu_many['wall_s'] / many['wall_s']:.2f}x"
    if e_many:
        line += f"; one evaluation cpu {e_many['cpu_ms']:.3f} ms, {device} {e_many['device_ms']:.3f} ms"
        line += f" = {e_many['cpu_ms'] / e_many['device_ms']:.2f}x"
    print(line)

    shapes = (mlp or {}).get("shapes", [])
    ok = None
    if len(shapes) == len(MISSING_SHAPES):
        ok = all(r["finished"] and r["wall_s"] <= GOAL_MLP_SECONDS for r in shapes)
    print(
        f"{verdict(ok)} 3. each of the {len(MISSING_SHAPES)} missing Fig. 3.1 MLP shapes (3 seeds) in at most "
        f"{GOAL_MLP_SECONDS:.0f} s"
    )
    for r in shapes:
        state = "finished" if r["finished"] else f"stopped at step {r['steps_done']} of {r['steps']}"
        line = f"     {r['function']} {r['width']}: {r['wall_s']:.1f} s, {state}"
        if not r["finished"] and r["steps_done"]:
            line += f", all steps ~{r['wall_s'] * r['steps'] / r['steps_done']:.0f} s"
        print(line)

    if fit and fit.get("breakdown"):
        b, syncs = fit["breakdown"], fit.get("syncs")
        line = (
            f"known cost on the device: every L-BFGS evaluation brings the losses and gradients to the host "
            f"(kanlib.optim.LBFGS keeps its vectors in numpy): {b['per_evaluation_ms']:.3f} ms an evaluation in "
            f"the S = {S} fit, of which {b['loss_and_grad_ms']:.3f} ms the models' loss and gradients"
        )
        if syncs:
            line += f"; {syncs['synchronisations'] / max(1, syncs['evaluations']):.1f} host synchronisations each"
        print(line)


# ---- command line --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", default="cuda", help="cuda (default) or cpu (the dry run)")
    common.add_argument(
        "--results", type=Path, default=Path("gpu_check_results"), help="folder for the JSON/CSV numbers"
    )
    common.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all cores)")
    evals = commands.add_parser("evals", parents=[common], help="time per L-BFGS evaluation, device and CPU")
    evals.add_argument("--stacks", type=int, nargs="+", default=[1, 4, 16, 64])
    evals.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    evals.add_argument("--grid", type=int, default=20)
    fit = commands.add_parser("fit", parents=[common], help="one full fit at S = 1 and S = --stack, device and CPU")
    fit.add_argument("--stack", type=int, default=GOAL_STACK)
    fit.add_argument("--n", type=int, default=1000)
    fit.add_argument("--n-test", type=int, default=None, help="default: config/config.yaml's test_num")
    fit.add_argument("--steps", type=int, default=None, help="default: config/config.yaml's steps")
    mlp = commands.add_parser("mlp", parents=[common], help="the missing Fig. 3.1 MLP shapes")
    mlp.add_argument("--steps", type=int, default=None, help="default: the preset's (1800)")
    mlp.add_argument("--n-train", type=int, default=None, help="default: the preset's (1000)")
    mlp.add_argument("--n-test", type=int, default=None, help="default: the preset's (1000)")
    mlp.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the preset's (0 1 2)")
    mlp.add_argument("--deadline", type=float, default=0.0, help="Unix time at which unfinished shapes stop (0: none)")
    mlp.add_argument("--jobs", type=int, default=len(MISSING_SHAPES), help="shapes at a time (default: all)")
    mlp.add_argument("--threads-per-job", type=int, default=max(1, (os.cpu_count() or 1) // 4))
    mlp.add_argument("--shape", type=int, default=None, help=argparse.SUPPRESS)
    goals = commands.add_parser("goals", parents=[common], help="the issue's goals, read off the other commands' JSON")
    del goals
    args = parser.parse_args()
    torch.set_num_threads(args.threads_per_job if args.command == "mlp" else args.threads)
    {"evals": command_evals, "fit": command_fit, "mlp": command_mlp, "goals": command_goals}[args.command](args)


if __name__ == "__main__":
    main()
