"""Model families of a sweep, each described once: what the workflow, the report and MLflow ask of it.

A family (KAN, MLP) is one :class:`Family` in :data:`REGISTRY`: its name (the results' ``family``
column, the MLflow tag ``kanlib.family``), its label and colour in the report, its model class and
checkpoint format, its jobs in a sweep (from the sweep's config, :meth:`Family.jobs`), the path of a
job's run folder below ``runs/<function>/`` (:meth:`Family.model_segment`, :meth:`Family.level_segment`),
the training settings whose change retrains its jobs (:meth:`Family.hyperparameters`), how a job's model
is built and what ``fit`` gets (:meth:`Family.build`, :meth:`Family.fit_options`), its identity in the
results table and MLflow (:meth:`Family.record`, :meth:`Family.run_name`), its resource estimate
(:meth:`Family.resources`) and its reference scaling rate (:meth:`Family.theory_alpha`). The workflow,
the report and MLflow ask this module; nothing else branches on the family.

Importing this module loads no torch (the analysis layer uses it); the model classes are imported by
the methods that build models.

A new family: a module with its model class (a :class:`kanlib.stack.ModelStack`, as kanlib/mlp.py has)
and a :class:`Family` subclass, plus its entry in :data:`REGISTRY`; a family of a user's own is named
in the sweep's config instead (``families: [package.module:attribute]``), as a target function is.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
from dataclasses import dataclass, field

from .functions import import_module_here

__all__ = [
    "Job",
    "Family",
    "KANFamily",
    "MLPFamily",
    "REGISTRY",
    "get_family",
    "sweep_families",
    "chained_families",
    "describe",
    "IDENTITY_COLUMNS",
    "learned_target",
]

#: The results' columns that say which model of its family a row is (each family fills its own, None else).
IDENTITY_COLUMNS = ("k", "grid_size", "prev_grid_size", "grid_level", "activation")


def learned_target(family: str, relative_train_rmse: float) -> bool:
    """Whether a chain of ``family`` whose relative train RMSE (train RMSE / standard deviation of the
    training labels) at its judged level is this learnt its target (:attr:`Family.not_learned_relative_rmse`,
    :attr:`Family.judged_level`, :attr:`Family.judged_grid`); False for NaN."""
    return bool(relative_train_rmse <= get_family(family).not_learned_relative_rmse)


def restarts_setting(restarts) -> dict:
    """``{"restarts": R}`` among a family's training settings (changing it retrains), left out for
    R = 1, the plain fit, so that the jobs of a sweep run before the key existed stay as they are."""
    restarts = int(restarts if restarts is not None else 1)
    return {"restarts": restarts} if restarts != 1 else {}


def width_str(width) -> str:
    """[2, 1, 1] -> '2-1-1' (paths, tables)."""
    return "-".join(str(int(w)) for w in width)


def parse_width(text: str) -> list[int]:
    """'2-1-1' -> [2, 1, 1]."""
    return [int(part) for part in str(text).split("-")]


@dataclass(frozen=True)
class Job:
    """One model to train in a sweep: one grid level of a KAN chain, one MLP fit. ``settings`` holds
    the family's own (name, value) pairs (a KAN's k, grid, prev_grid and level; an MLP's activation)."""

    family: str
    function: str  # the configured name (registry name or module:function)
    width: tuple[int, ...]
    n_train: int
    seed: int  # the data seed (the model seed is seed + model_seed_offset)
    settings: tuple = field(default=())

    def get(self, name: str, default=None):
        return dict(self.settings).get(name, default)

    @property
    def width_str(self) -> str:
        return width_str(self.width)


class Family:
    """What every model family defines; see the module's docstring. Subclasses set the class attributes
    and the methods that raise NotImplementedError."""

    name: str  # results' 'family' column, MLflow tag kanlib.family
    label: str  # tables, figures and the summary
    color: str  # figures
    model_class: str  # 'module:Class' of its ModelStack (its single-model class)
    stack_class: str  # 'module:Class' of its stack class
    #: regular expressions of its model and level segments (Snakemake wildcard constraints)
    model_pattern: str
    level_pattern = ""
    #: whether its jobs form chains (a job starts from the previous job's model, an input of its rule)
    chained = False
    #: whether several of its models train faster as one stack on the CPU than one after another
    stacks_on_cpu = True
    #: The rule for "this chain did not learn its target" (:func:`learned_target`): its relative train
    #: RMSE at its judged level, the first that is at least its ``judged_level``-th and has a grid
    #: size of at least ``judged_grid`` (its last, when it has none), is above this. A family without
    #: chains is judged after its fit (level 1, no grid).
    not_learned_relative_rmse = 0.5
    judged_level = 1
    judged_grid: int | None = None

    def jobs(self, config: dict) -> list[Job]:
        raise NotImplementedError

    def model_segment(self, job: Job) -> str:
        """The run folder's part that names the model, below runs/<function>/ (e.g. 'w2-1-1_k3')."""
        raise NotImplementedError

    def level_segment(self, job: Job) -> str:
        """The run folder's part after N<n>_seed<seed> ('/G5' for a grid level of a chain, else '')."""
        return ""

    def job_from_path(self, config: dict, function: str, model: str, level: str, n_train: int, seed: int) -> Job:
        """The job whose run folder has these parts (the inverse of the two segments)."""
        raise NotImplementedError

    def previous(self, config: dict, job: Job) -> Job | None:
        """The job whose model this one starts from (a chain's previous level), or None."""
        return None

    def hyperparameters(self, config: dict) -> dict:
        """The training settings its jobs get; changing one retrains them (Snakemake's params)."""
        raise NotImplementedError

    def record(self, config: dict, job: Job) -> dict:
        """Its identity columns (:data:`IDENTITY_COLUMNS`) of one job's row in the results."""
        return dict.fromkeys(IDENTITY_COLUMNS)

    def run_name(self, job: Job) -> str:
        raise NotImplementedError

    def n_params(self, job: Job) -> int:
        """Trainable scalars of the job's model (without building it)."""
        raise NotImplementedError

    def resources(self, config: dict, job: Job, attempt: int, n_models: int) -> dict:
        """SLURM-sized ``mem_mb``, ``runtime`` (minutes) and ``cpus_per_task`` of the job (``n_models``
        models trained as one stack), doubled on each retry."""
        raise NotImplementedError

    def build(self, job: Job, hp: dict, model_seed: int):
        """The job's untrained model (imports torch)."""
        raise NotImplementedError

    def initialize(self, model, previous_checkpoint: str, train_input) -> None:
        """Initialise ``model`` from the previous job's checkpoint (chained families)."""
        raise NotImplementedError

    def fit_options(self, hp: dict) -> dict:
        """What ``fit`` gets besides the optimizer settings every family shares."""
        return {}

    def provenance(self, model) -> dict:
        """Which code evaluated the model (metrics.json entries and MLflow tags ``kanlib.<name>``)."""
        return {}

    def check_config(self, config: dict, function_inputs: dict) -> None:
        """Raise ValueError (naming the key and the allowed values) for a config its jobs cannot run;
        ``function_inputs`` maps each configured function to (number of inputs or None, outputs)."""

    def theory_alpha(self, k: int, n_var: int) -> float:
        """The reference exponent of test RMSE in the parameter count (the report's reference line)."""
        raise NotImplementedError

    #: how :meth:`theory_alpha` reads in a figure's legend
    theory_label = ""

    def point_label(self, row: dict) -> str:
        """A results row's model in a figure or table, e.g. ``KAN [2,5,1] G=10``."""
        return f"{self.label} [{','.join(str(row['width']).split('-'))}]"

    def load_class(self, stacked: bool = False):
        module, _, name = (self.stack_class if stacked else self.model_class).partition(":")
        return getattr(importlib.import_module(module), name)


def _function_entries(config: dict, key: str, default) -> list[tuple[str, list[list[int]]]]:
    """(function name, its widths under ``key``) for every configured function, in config order."""
    return [
        (entry["name"], [list(w) for w in entry.get(key, default)])
        if isinstance(entry, dict)
        else (entry, [list(w) for w in default])
        for entry in config["functions"]
    ]


def function_grids(config: dict, function: str) -> list[int]:
    """The grid sizes of ``function``'s KAN chains: its entry's own ``grids``, else the sweep's."""
    for entry in config["functions"]:
        if isinstance(entry, dict) and entry["name"] == function and "grids" in entry:
            return [int(g) for g in entry["grids"]]
    return [int(g) for g in config["grids"]]


def _check_widths(config, function_inputs, key: str, default_key: str, default, minimum_depth: int, rule) -> None:
    """Every width of ``key`` (a function's own, else ``default`` from ``default_key``) must map the
    function's inputs to its outputs; ``rule(inputs, outputs)`` says what the width must be."""
    for index, (name, widths) in enumerate(_function_entries(config, key, default)):
        entry = config["functions"][index]
        where = f"functions[{index}].{key}" if isinstance(entry, dict) and key in entry else default_key
        n_var, n_out = function_inputs[name]
        for width in widths:
            inputs = n_var if n_var is not None else width[0]
            if len(width) < minimum_depth or width[0] != inputs or width[-1] != n_out:
                raise ValueError(
                    f"config error: '{where}' has {width} for function {name!r}, which maps {inputs} input(s) "
                    f"to {n_out} output(s): {rule(inputs, n_out)}"
                )


class KANFamily(Family):
    """KANs: for every function, width, data size and seed one chain of grid levels (config ``grids``),
    each level initialised from the previous one by grid extension."""

    name, label, color = "kan", "KAN", "tab:blue"
    model_class, stack_class = "kanlib.model:KAN", "kanlib.model:KANStack"
    model_pattern, level_pattern = r"w\d+(-\d+)+_k\d+", r"/G\d+"
    chained = True
    # Judged at the fourth level with G >= 20 (the fourth level of every preset but the data axis's),
    # not the first: a first grid too coarse for the target leaves every seed far from it (J0(20x) at
    # G = 3: 0.9-0.95; the 100-input function: 0.4-0.47 for 4 of 5 seeds, ~1e-9 at G = 20), while a
    # chain in a poor minimum is still at 0.12-0.36 at the fourth level and one that learnt is at
    # 1e-5 or below (benchmarks/restarts.py, docs/benchmarks.md). The grid bound for chains with finer
    # steps (3, 4, 6, 9, ...): their fourth level, G = 9, is still too coarse for J0(20x) (0.74-0.90;
    # 0.003-0.011 at G = 28, config/data_scaling.yaml).
    not_learned_relative_rmse = 0.1
    judged_level = 4
    judged_grid = 20
    #: the sweep's keys a KAN job gets (changing one retrains it)
    TRAIN_KEYS = (
        "steps",
        "optimizer",
        "lr",
        "update_grid",
        "grid_update_num",
        "stop_grid_update_step",
        "grid_eps",
        "lamb",
        "batch",
        "device",
        "dtype",
        "model_seed_offset",
        "test_num",
        "input_range",
    )

    def entries(self, config: dict):
        return _function_entries(config, "widths", config["widths"])

    def jobs(self, config: dict) -> list[Job]:
        k = int(config["spline_order"])
        return [
            Job("kan", name, tuple(width), int(n), int(seed), self._settings(k, grids, level))
            for name, widths in self.entries(config)
            for grids in [function_grids(config, name)]
            for width in widths
            for n in config["data_sizes"]
            for seed in config["seeds"]
            for level in range(len(grids))
        ]

    @staticmethod
    def _settings(k: int, grids: list[int], level: int) -> tuple:
        return (("k", k), ("grid", grids[level]), ("prev_grid", grids[level - 1] if level else None), ("level", level))

    def model_segment(self, job: Job) -> str:
        return f"w{job.width_str}_k{job.get('k')}"

    def level_segment(self, job: Job) -> str:
        return f"/G{job.get('grid')}"

    def job_from_path(self, config, function, model, level, n_train, seed) -> Job:
        width, k = model.removeprefix("w").rsplit("_k", 1)
        grids = function_grids(config, function)
        grid = int(level.removeprefix("/G"))
        if grid not in grids:
            raise ValueError(f"grid {grid} is not one of the configured grids {grids} of {function}")
        settings = self._settings(int(k), grids, grids.index(grid))
        return Job("kan", function, tuple(parse_width(width)), int(n_train), int(seed), settings)

    def previous(self, config, job) -> Job | None:
        level = job.get("level")
        if not level:
            return None
        settings = self._settings(job.get("k"), function_grids(config, job.function), level - 1)
        return Job("kan", job.function, job.width, job.n_train, job.seed, settings)

    def hyperparameters(self, config) -> dict:
        # spline_ends is left out at pykan's convention, as restarts at 1, so that the jobs of a sweep
        # run before the key existed stay as they are
        spline_ends = config.get("spline_ends", "pykan")
        return {
            **{key: config[key] for key in self.TRAIN_KEYS},
            **restarts_setting(config.get("restarts")),
            **({"spline_ends": spline_ends} if spline_ends != "pykan" else {}),
        }

    def record(self, config, job) -> dict:
        return {
            **super().record(config, job),
            "k": job.get("k"),
            "grid_size": job.get("grid"),
            "prev_grid_size": job.get("prev_grid"),
            "grid_level": job.get("level"),
        }

    def run_name(self, job) -> str:
        return f"{job.function} w{job.width_str} k{job.get('k')} N{job.n_train} seed{job.seed} G{job.get('grid')}"

    def n_params(self, job) -> int:
        """Per edge G + k spline coefficients plus two scales."""
        grid, k = job.get("grid"), job.get("k")
        return sum(a * b * (grid + k + 2) for a, b in zip(job.width, job.width[1:]))

    def resources(self, config, job, attempt, n_models) -> dict:
        """Upper bounds with headroom (a job that outgrows them is killed), calibrated on kanlib's
        local-basis implementation (one CPU thread, float64; peak RSS and time of fits with N up to 10^6,
        G up to 1000, widths [2,1,1] and [4,4,2,1]).

        Memory: ~600 MB for Python, torch and mlflow (a tiny job peaks at ~420 MB); per sample the k+1
        non-zero B-splines of every edge with their derivatives and indices plus the node activations and
        the data (measured 0.5-0.7x of the 8 (8 (k+1) edges + 48 sum(width)) bytes counted); a grid
        update's banded normal equations and their temporaries, 16 (k+1) (G+2k+1) numbers per input of
        the widest layer; 25% headroom, rounded up to 100 MB; plus 1.5 GB of host memory for the CUDA
        context on a GPU.

        Runtime: LBFGS takes at most 20 loss evaluations a step; an evaluation costs ~1 ms plus ~0.1 us
        per (sample, edge, basis function) (measured 15-30 ns); each of the grid_update_num grid updates
        (and the grid extension) assembles the banded normal equations, ~0.1 us per sample and basis
        pair, and solves them, ~10 ns per coefficient and band entry plus ~0.1 ms, per input; times 3
        for headroom, plus 5 minutes (Python, imports, MLflow). ``n_models``: the per-model memory and
        the runtime scale with it.
        """
        width, k, grid = list(job.width), job.get("k"), job.get("grid")
        edges = sum(a * b for a, b in zip(width, width[1:]))
        inputs = sum(width[:-1])
        per_sample = 8 * (8 * (k + 1) * edges + 48 * sum(width))
        normal_equations = 16 * 8 * max(width[:-1]) * (k + 1) * (grid + 2 * k + 1)
        memory = n_models * (job.n_train * per_sample + normal_equations) / 2**20
        fit_seconds = int(config["steps"]) * 20 * (1e-3 + 1e-7 * job.n_train * edges * (k + 1))
        updates = int(config["grid_update_num"]) + 1
        grid_seconds = updates * inputs * (1e-7 * job.n_train * (k + 1) ** 2 + 1e-8 * (grid + k) * (k + 1) ** 2 + 1e-4)
        return _resources(config, memory, n_models * (fit_seconds + grid_seconds), attempt)

    def build(self, job, hp, model_seed):
        KAN = self.load_class()
        return KAN(
            width=list(job.width),
            grid=job.get("grid"),
            k=job.get("k"),
            seed=model_seed,
            grid_eps=hp["grid_eps"],
            device=hp["device"],
            dtype=hp["dtype"],
            # 'input_range': the first layer's grid starts on the inputs' domain and stays there
            **({"spline_ends": "input_range", "grid_range": hp["input_range"]} if "spline_ends" in hp else {}),
        )

    def initialize(self, model, previous_checkpoint, train_input) -> None:
        coarse = self.load_class().load(previous_checkpoint, device=model.device, dtype=model.dtype)
        model.initialize_from_another_model(coarse, train_input)

    def fit_options(self, hp) -> dict:
        return {
            "update_grid": hp["update_grid"],
            "grid_update_num": hp["grid_update_num"],
            "stop_grid_update_step": hp["stop_grid_update_step"],
            "lamb": hp["lamb"],
        }

    def provenance(self, model) -> dict:
        """Which code evaluated the loss on the CPU: "c" (kanlib.cpu_kernels) or "torch (<why>)"."""
        if model.device.type != "cpu":
            return {"cpu_kernel": None}
        from .cpu_kernels import kernel_for

        return {"cpu_kernel": kernel_for(model.layers, model.dtype, all(layer.all_uniform for layer in model.layers))}

    def check_config(self, config, function_inputs) -> None:
        def rule(n, m):
            return f"the width must start with {n} and end with {m}, e.g. [{n}, 1, {m}]"

        _check_widths(config, function_inputs, "widths", "widths", config["widths"], 2, rule)

    def theory_alpha(self, k, n_var) -> float:
        return float(k + 1)

    theory_label = "k+1"

    def point_label(self, row) -> str:
        return f"{super().point_label(row)} G={int(row['grid_size'])}"


class MLPFamily(Family):
    """The MLP baseline: for every function, MLP width (config ``mlp.widths`` or a function's own
    ``mlp_widths``), activation, data size and seed one fit of ``mlp.steps`` L-BFGS steps."""

    name, label, color = "mlp", "MLP", "tab:orange"
    model_class, stack_class = "kanlib.mlp:MLP", "kanlib.mlp:MLPStack"
    # An MLP is judged after its fit: the presets' MLPs end at 1e-4..3e-3 of the labels' spread, the
    # smallest ([2,5,1] on the seed's function) at 0.07-0.16 for lack of width, not a poor minimum;
    # one that learnt only the mean would be near 1 (the rule: above 0.5).
    ACTIVATIONS = ("silu", "tanh", "relu")  # kanlib.mlp.ACTIVATIONS, named here so config checks need no torch
    model_pattern = r"mlp_w\d+(-\d+)+_(" + "|".join(ACTIVATIONS) + ")"
    # measured (docs/benchmarks.md): 3 MLPs as one stack cost 1.15-1.8x the three fits one after
    # another on a CPU thread; the stack pays on a GPU
    stacks_on_cpu = False
    #: what an MLP job gets of the sweep's training settings; its step budget is :meth:`steps`
    TRAIN_KEYS = ("optimizer", "lr", "batch", "device", "dtype", "model_seed_offset", "test_num", "input_range")

    def entries(self, config: dict):
        return _function_entries(config, "mlp_widths", config.get("mlp", {}).get("widths", []))

    @staticmethod
    def steps(config: dict) -> int:
        """An MLP fit's L-BFGS step budget: ``mlp.steps``, or by default the KAN chain's total (levels x
        steps), so both families get the same number of steps (the KAN paper: 9 x 200 = 1800)."""
        steps = config.get("mlp", {}).get("steps")
        return int(steps) if steps is not None else len(config["grids"]) * int(config["steps"])

    def jobs(self, config: dict) -> list[Job]:
        return [
            Job("mlp", name, tuple(width), int(n), int(seed), (("activation", activation),))
            for name, widths in self.entries(config)
            for width in widths
            for activation in config.get("mlp", {}).get("activations", [])
            for n in config["data_sizes"]
            for seed in config["seeds"]
        ]

    def model_segment(self, job: Job) -> str:
        return f"mlp_w{job.width_str}_{job.get('activation')}"

    def job_from_path(self, config, function, model, level, n_train, seed) -> Job:
        width, activation = model.removeprefix("mlp_w").rsplit("_", 1)
        return Job("mlp", function, tuple(parse_width(width)), int(n_train), int(seed), (("activation", activation),))

    def hyperparameters(self, config) -> dict:
        return {
            "steps": self.steps(config),
            **{key: config[key] for key in self.TRAIN_KEYS},
            **restarts_setting(config.get("mlp", {}).get("restarts")),  # no poor minima measured: default 1
        }

    def record(self, config, job) -> dict:
        return {**super().record(config, job), "activation": job.get("activation")}

    def run_name(self, job) -> str:
        return f"{job.function} MLP w{job.width_str} {job.get('activation')} N{job.n_train} seed{job.seed}"

    def n_params(self, job) -> int:
        """Weights and biases: sum over layers of (fan_in + 1) * fan_out."""
        return sum((a + 1) * b for a, b in zip(job.width, job.width[1:]))

    def resources(self, config, job, attempt, n_models) -> dict:
        """Memory: ~600 MB for Python, torch and mlflow plus, per sample, every layer's pre-activations,
        activations and their gradients (4 numbers per unit, 8 bytes) and the data; 25% headroom.
        Runtime: at most 20 loss evaluations a step, each ~1 ms plus ~2 ns per sample and weight (a
        forward and backward pass is ~3 multiply-adds per weight); times 3, plus 5 minutes."""
        width = list(job.width)
        weights = sum((a + 1) * b for a, b in zip(width, width[1:]))
        memory = n_models * job.n_train * 8 * 4 * sum(width) / 2**20
        fit_seconds = self.steps(config) * 20 * (1e-3 + 2e-9 * job.n_train * weights)
        return _resources(config, memory, n_models * fit_seconds, attempt)

    def build(self, job, hp, model_seed):
        width, activation, device, dtype = list(job.width), job.get("activation"), hp["device"], hp["dtype"]
        return self.load_class()(width=width, activation=activation, seed=model_seed, device=device, dtype=dtype)

    def fit_options(self, hp) -> dict:
        return {"update_grid": False}

    def check_config(self, config, function_inputs) -> None:
        def rule(n, m):
            return f"an MLP width must start with {n}, end with {m} and have at least one hidden layer, e.g. " + (
                f"[{n}, 32, {m}]"
            )

        default = config.get("mlp", {}).get("widths", [])
        _check_widths(config, function_inputs, "mlp_widths", "mlp.widths", default, 3, rule)
        mlp = config.get("mlp", {})
        for activation in mlp.get("activations", []):
            if activation not in self.ACTIVATIONS:
                raise ValueError(
                    f"config error: 'mlp.activations' has {activation!r}: allowed are {', '.join(self.ACTIVATIONS)}"
                )
        if any(widths for _, widths in self.entries(config)):
            if not mlp.get("activations"):
                raise ValueError(
                    "config error: 'mlp.activations' is empty: list at least one of " + ", ".join(self.ACTIVATIONS)
                )
            if mlp.get("steps") is not None and int(mlp["steps"]) < 1:
                raise ValueError(
                    f"config error: 'mlp.steps' = {mlp['steps']}: must be a positive number of L-BFGS steps, "
                    "or null for the KAN chain's total (len(grids) x steps)"
                )

    def theory_alpha(self, k, n_var) -> float:
        return float(k + 1) / n_var  # the Sharma-Kaplan rate for a d-dimensional input

    theory_label = "(k+1)/d"

    def point_label(self, row) -> str:
        return f"{super().point_label(row)} {row['activation']}"


def _resources(config: dict, memory_mb: float, seconds: float, attempt: int) -> dict:
    mem_mb = 100 * math.ceil(1.25 * (600 + memory_mb) / 100)
    if str(config["device"]).startswith("cuda"):
        mem_mb += 1500  # host memory of the CUDA context
    runtime = 5 + math.ceil(3 * seconds / 60)
    return {"mem_mb": mem_mb * attempt, "runtime": runtime * attempt, "cpus_per_task": max(1, int(config["threads"]))}


#: The families every sweep has, in report order; a sweep trains a family's jobs where its config lists some.
REGISTRY: dict[str, Family] = {family.name: family for family in (KANFamily(), MLPFamily())}


def get_family(name: str) -> Family:
    """A registered family by name, or a user's own named ``package.module:attribute`` (an instance or
    subclass of :class:`Family`); ValueError naming the allowed ones otherwise."""
    if name in REGISTRY:
        return REGISTRY[name]
    if ":" in name:
        module, _, attribute = name.partition(":")
        try:
            family = getattr(import_module_here(module), attribute)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"family {name!r} cannot be imported: {error}") from None
        family = family() if isinstance(family, type) else family
        if not isinstance(family, Family):
            raise ValueError(f"family {name!r} is a {type(family).__name__}, not a kanlib.families.Family")
        REGISTRY.setdefault(family.name, family)
        return REGISTRY[family.name]
    raise ValueError(f"unknown model family {name!r}; known: {sorted(REGISTRY)} or 'package.module:attribute'")


class _Unregistered(Family):
    """What the analysis knows of a family it finds in a results table but not in this process's registry
    (a user's own family, registered in the sweep's processes): its name, no chains, no reference rate."""

    color, chained = "tab:gray", False

    def __init__(self, name: str):
        self.name = self.label = str(name)

    def theory_alpha(self, k, n_var) -> float:
        return float("nan")


#: The environment variable with a sweep's own families (the config's ``families``, space-separated), set by
#: the Snakefile for every job's process.
ENVIRONMENT = "KANLIB_FAMILIES"


def describe(name: str) -> Family:
    """The registered family named ``name`` (a family of the sweep's own, named in $KANLIB_FAMILIES, is
    registered first), or what a results table alone says of it (the analysis layer's view)."""
    if name not in REGISTRY:
        for spec in os.environ.get(ENVIRONMENT, "").split():
            with contextlib.suppress(ValueError):
                get_family(spec)
    return REGISTRY.get(name) or _Unregistered(name)


def chained_families() -> list[str]:
    """The names of the families whose jobs form chains of grid levels (the fits over the grid)."""
    return [name for name, family in REGISTRY.items() if family.chained]


def sweep_families(config: dict) -> list[Family]:
    """The registered families and those the config's ``families`` names, in that order."""
    for name in config.get("families", []):
        get_family(name)
    return list(REGISTRY.values())
