"""A sweep's configuration, its jobs and their output paths (the workflow's plain-Python side).

The Snakefile calls three things from here before any job runs:
:func:`coerce_cli_strings` (``--config`` values arrive as strings),
:func:`schema_errors` (turns a JSON-schema failure into one line naming the key)
and :func:`check_config` (what JSON schema cannot express). The rule files use
the job list (:func:`chains`, :func:`train_jobs`), the path patterns and
:func:`train_resources`.

Nothing here imports torch at import time; :func:`probe_function` (one call of each target
function, part of :func:`check_config`) imports it when it runs.

Output layout, relative to the working directory (``R = results/<sweep>``)::

    R/data/<function>/N<n>_seed<seed>.pt                      dataset (train + fixed test split)
    R/runs/<function>/w<width>_k<k>/N<n>_seed<seed>/G<grid>/  one grid level: model.pt,
                                                              history.csv, metrics.json, benchmark.tsv
    R/runs/<function>/mlp_w<width>_<activation>/N<n>_seed<seed>/  one MLP fit (same files)
    R/logs/...                                                one log per job
    R/mlflow_parent.json                                      the sweep's MLflow parent run
    R/results.csv, R/results.parquet, R/history.csv           aggregated tables
    R/test_rmse_vs_grid.png (+ .pdf)                          plot

``<function>`` is :func:`kanlib.functions.function_slug` of the configured name
and ``<width>`` the layer sizes joined by ``-`` (``2-1-1``).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from dataclasses import dataclass

from ..functions import function_slug, get_function

__all__ = [
    "ConfigError",
    "coerce_cli_strings",
    "schema_errors",
    "describe_schema_error",
    "check_config",
    "check_tracking_uri",
    "probe_function",
    "function_entries",
    "function_n_var",
    "function_of_slug",
    "width_str",
    "parse_width",
    "Chain",
    "TrainJob",
    "MLPJob",
    "chains",
    "train_jobs",
    "mlp_jobs",
    "mlp_entries",
    "mlp_steps",
    "mlp_hyperparameters",
    "mlp_run_dir",
    "mlp_job_key",
    "MLP_ACTIVATIONS",
    "MLP_RUN_PATTERN",
    "MLP_TRAIN_KEYS",
    "datasets",
    "previous_grid",
    "results_dir",
    "data_path",
    "run_dir",
    "job_key",
    "hyperparameters",
    "train_resources",
    "mlp_resources",
    "DATA_PATTERN",
    "RUN_PATTERN",
    "TRAIN_KEYS",
]

#: Path patterns (``str.format`` fields; the rule files turn them into Snakemake wildcards).
DATA_PATTERN = "{results}/data/{function}/N{n}_seed{seed}.pt"
RUN_PATTERN = "{results}/runs/{function}/w{width}_k{k}/N{n}_seed{seed}/G{grid}"
MLP_RUN_PATTERN = "{results}/runs/{function}/mlp_w{width}_{activation}/N{n}_seed{seed}"

#: The MLP family's activations (kanlib.mlp.ACTIVATIONS; named here so config checks need no torch).
MLP_ACTIVATIONS = ("silu", "tanh", "relu")

#: The training hyperparameters a train job gets (its Snakemake params: changing one reruns the jobs).
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

#: What an MLP job gets of the training settings; its step budget is :func:`mlp_steps` (no grid, no
#: regulariser). Changing one of these (or the budget) retrains the MLPs, not the KANs.
MLP_TRAIN_KEYS = ("optimizer", "lr", "batch", "device", "dtype", "model_seed_offset", "test_num", "input_range")


class ConfigError(ValueError):
    """The configuration cannot describe a sweep; the message names the key and the allowed values."""


# ---- before validation: --config values are strings ------------------------------------------------


def coerce_cli_strings(config: dict, schema: dict | str | os.PathLike) -> dict:
    """Turn strings where the schema wants numbers or booleans into those (in place; returns config).

    Snakemake parses ``--config key=value`` with YAML's base loader, so ``'grids=[3,6]'``
    arrives as ``['3', '6']``. Values that do not parse are left for the schema to reject.
    """
    if not isinstance(schema, dict):
        import yaml

        with open(schema) as stream:
            schema = yaml.safe_load(stream)
    definitions = schema.get("$defs", {})

    def resolve(node):
        while isinstance(node, dict) and "$ref" in node:
            node = definitions[node["$ref"].rsplit("/", 1)[-1]]
        return node

    def coerce(value, node):
        node = resolve(node)
        if not isinstance(node, dict):
            return value
        if isinstance(value, str):
            kind = node.get("type")
            try:
                if kind == "integer":
                    return int(value)
                if kind == "number":
                    return float(value) if not value.lstrip("+-").isdigit() else int(value)
            except ValueError:
                return value
            if kind == "boolean" and value.lower() in ("true", "false"):
                return value.lower() == "true"
            return value
        if isinstance(value, list) and "items" in node:
            return [coerce(item, node["items"]) for item in value]
        if isinstance(value, dict) and "properties" in node:
            for key, item in value.items():
                if key in node["properties"]:
                    value[key] = coerce(item, node["properties"][key])
        return value

    for key, value in list(config.items()):
        if key in schema.get("properties", {}):
            config[key] = coerce(value, schema["properties"][key])
    return config


# ---- schema errors in one line ---------------------------------------------------------------------


def _key_path(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def describe_schema_error(error) -> str:
    """One line for a jsonschema ValidationError: the key, what is wrong, what is allowed."""
    key = _key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        where = f"in '{key}' " if error.absolute_path else ""
        return (
            f"config error: unknown key(s) {', '.join(repr(e) for e in extra)} {where}(allowed: {', '.join(allowed)})"
        )
    if error.validator == "required":
        return f"config error: '{key}': {error.message}"
    if error.validator in ("oneOf", "anyOf") and error.context:
        reasons = "; ".join(sorted({sub.message for sub in error.context}))
        return f"config error: '{key}' = {error.instance!r} is not allowed ({reasons})"
    return f"config error: '{key}' = {error.instance!r}: {error.message}"


@contextlib.contextmanager
def schema_errors():
    """Wrap ``snakemake.utils.validate(...)``: re-raise its failure as a one-line ConfigError naming the key."""
    try:
        yield
    except Exception as error:
        cause = error if hasattr(error, "absolute_path") else (error.__context__ or error.__cause__)
        if cause is not None and hasattr(cause, "absolute_path"):
            raise ConfigError(describe_schema_error(cause)) from None
        raise


# ---- what JSON schema cannot express -----------------------------------------------------------------


def mlp_entries(config: dict) -> list[tuple[str, list[list[int]]]]:
    """(function name, its MLP widths) for every configured function, in config order ([] = no MLP)."""
    default = [list(w) for w in config.get("mlp", {}).get("widths", [])]
    return [
        (entry["name"], [list(w) for w in entry.get("mlp_widths", default)])
        if isinstance(entry, dict)
        else (entry, default)
        for entry in config["functions"]
    ]


def mlp_steps(config: dict) -> int:
    """An MLP fit's L-BFGS step budget: ``mlp.steps``, or by default the KAN chain's total
    (levels x steps), so both families get the same number of steps (the KAN paper: 9 x 200 = 1800)."""
    steps = config.get("mlp", {}).get("steps")
    return int(steps) if steps is not None else len(config["grids"]) * int(config["steps"])


def function_entries(config: dict) -> list[tuple[str, list[list[int]]]]:
    """(function name, its widths) for every configured function, in config order."""
    entries = []
    for entry in config["functions"]:
        if isinstance(entry, dict):
            entries.append((entry["name"], [list(w) for w in entry.get("widths", config["widths"])]))
        else:
            entries.append((entry, [list(w) for w in config["widths"]]))
    return entries


#: Tracking-URI schemes a sweep may use (MLflow's SQL stores and its REST server); ``file:`` and bare
#: paths only with MLflow's own opt-in ``MLFLOW_ALLOW_FILE_STORE=true`` (MLflow 3 refuses them otherwise).
TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql")
_SCHEME = re.compile(r"^([a-z][a-z0-9]*)(\+[a-z0-9_]+)?://(.*)$")


def _file_store_allowed() -> bool:
    return os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("1", "true", "yes")


def check_tracking_uri(uri: str, source: str) -> str:
    """Raise ConfigError unless ``uri`` is a tracking URI MLflow can open; ``source`` names where it
    came from (the config key or the environment variable). Returns the URI."""
    allowed = (
        "sqlite:///<path>, http(s)://<host>[:port], postgresql://..., mysql://..., mssql://..., "
        "or file:///<folder> with MLFLOW_ALLOW_FILE_STORE=true"
    )
    match = _SCHEME.match(uri.strip()) if isinstance(uri, str) else None
    if match is None:
        if isinstance(uri, str) and uri and "://" not in uri and _file_store_allowed():
            return uri  # a folder for the file store, explicitly allowed
        raise ConfigError(f"config error: {source} = {uri!r} is not a tracking URI; allowed: {allowed}")
    scheme, _, rest = match.groups()
    if scheme == "file":
        if not _file_store_allowed():
            raise ConfigError(
                f"config error: {source} = {uri!r}: MLflow 3 keeps its file store in maintenance mode "
                "and refuses it unless MLFLOW_ALLOW_FILE_STORE=true is set; use sqlite:///mlflow.db"
            )
        return uri
    if scheme not in TRACKING_SCHEMES:
        raise ConfigError(f"config error: {source} = {uri!r}: unknown scheme {scheme!r}; allowed: {allowed}")
    if scheme == "sqlite":
        if not uri.startswith("sqlite:///") or not uri[len("sqlite:///") :].strip():
            raise ConfigError(
                f"config error: {source} = {uri!r}: a SQLite URI is sqlite:///<relative path> or "
                "sqlite:////<absolute path>, e.g. sqlite:///mlflow.db"
            )
    elif not rest or rest.startswith("/") or " " in rest:
        example = f"{scheme}://127.0.0.1:5000" if scheme.startswith("http") else f"{scheme}://user@host/db"
        raise ConfigError(f"config error: {source} = {uri!r}: a {scheme} URI needs a host, e.g. {example}")
    return uri


def probe_function(target, n_var: int, key: str) -> None:
    """Call ``target`` once on a tiny input (4 points in [-1, 1]^n_var) before any job: it must return
    finite values of shape (4,) or (4, n_out). Raises ConfigError naming the key and the function."""
    import torch

    x = torch.linspace(-0.9, 0.9, 4 * n_var, dtype=torch.float64).reshape(n_var, 4).T.contiguous()  # (4, n_var)
    described = f"function {target.name!r} ({key})"
    try:
        y = target.fn(x)
    except Exception as error:  # a wrong signature, a bug in the user's function ...
        raise ConfigError(
            f"config error: {described} fails on a probe input of shape (4, {n_var}): "
            f"{type(error).__name__}: {error}; a target maps an (n, {n_var}) torch tensor to (n, 1)"
        ) from None
    if not isinstance(y, torch.Tensor):
        raise ConfigError(
            f"config error: {described} returned a {type(y).__name__} for an (4, {n_var}) tensor; "
            "it must return a torch tensor of shape (n,) or (n, 1)"
        )
    if y.dim() == 1:
        y = y[:, None]
    if tuple(y.shape) != (4, target.n_out):
        raise ConfigError(
            f"config error: {described} returned shape {tuple(y.shape)} for input (4, {n_var}); "
            f"expected (4, {target.n_out})"
        )
    if not bool(torch.isfinite(y).all()):
        raise ConfigError(f"config error: {described} returned non-finite values on points inside [-1, 1]^{n_var}")


def _strictly_increasing(values) -> bool:
    return all(a < b for a, b in zip(values, values[1:]))


def check_config(config: dict, probe_functions: bool = True) -> dict:
    """Raise ConfigError (naming the key and the allowed values) for what the schema cannot check.

    grids strictly increasing; data_sizes and seeds without repeats; input_range lower < upper;
    every function known in the registry or an importable ``module:function``; every width's
    first entry equal to its function's number of inputs and its last to the number of outputs.
    The tracking URI (MLFLOW_TRACKING_URI when set, else ``mlflow.tracking_uri``) must have a
    scheme MLflow can open (:func:`check_tracking_uri`); with ``probe_functions`` each target is
    called once on a tiny input (:func:`probe_function`). Returns config unchanged.
    """
    grids = config["grids"]
    if not _strictly_increasing(grids):
        raise ConfigError(
            f"config error: 'grids' = {grids}: must be strictly increasing (each grid level "
            "extends the previous one), e.g. [5, 10, 20]"
        )
    for key in ("data_sizes", "seeds"):
        if len(set(config[key])) != len(config[key]):
            raise ConfigError(f"config error: '{key}' = {config[key]}: has repeated values; list each once")
    lower, upper = config["input_range"]
    if not lower < upper:
        raise ConfigError(
            f"config error: 'input_range' = {config['input_range']}: must be [lower, upper] with lower < upper"
        )
    environment_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if environment_uri:
        check_tracking_uri(environment_uri, "the environment variable MLFLOW_TRACKING_URI")
    else:
        check_tracking_uri(config["mlflow"]["tracking_uri"], "'mlflow.tracking_uri'")
    slugs: dict[str, str] = {}
    for index, (name, widths) in enumerate(function_entries(config)):
        key = f"functions[{index}]"
        try:
            target = get_function(name)
        except ValueError as error:
            raise ConfigError(f"config error: '{key}': {error}") from None
        slug = function_slug(name)
        if slug in slugs:
            raise ConfigError(f"config error: '{key}' = {name!r}: listed twice (as {slugs[slug]!r})")
        slugs[slug] = name
        width_key = f"{key}.widths" if isinstance(config["functions"][index], dict) else "widths"
        for width in widths:
            n_var = target.n_var if target.n_var is not None else width[0]
            if width[0] != n_var or width[-1] != target.n_out:
                raise ConfigError(
                    f"config error: '{width_key}' has {width} for function {name!r}, which maps {n_var} "
                    f"input(s) to {target.n_out} output(s): the width must start with {n_var} and end with "
                    f"{target.n_out}, e.g. [{n_var}, 1, {target.n_out}]"
                )
        entry = config["functions"][index]
        mlp_key = f"{key}.mlp_widths" if isinstance(entry, dict) and "mlp_widths" in entry else "mlp.widths"
        for width in dict(mlp_entries(config))[name]:
            n_var = target.n_var if target.n_var is not None else width[0]
            if len(width) < 3 or width[0] != n_var or width[-1] != target.n_out:
                raise ConfigError(
                    f"config error: '{mlp_key}' has {width} for function {name!r}, which maps {n_var} "
                    f"input(s) to {target.n_out} output(s): an MLP width must start with {n_var}, end with "
                    f"{target.n_out} and have at least one hidden layer, e.g. [{n_var}, 32, {target.n_out}]"
                )
        if probe_functions:
            probe_function(target, target.n_var if target.n_var is not None else widths[0][0], key)
    mlp = config.get("mlp", {})
    for activation in mlp.get("activations", []):
        if activation not in MLP_ACTIVATIONS:
            raise ConfigError(
                f"config error: 'mlp.activations' has {activation!r}: allowed are {', '.join(MLP_ACTIVATIONS)}"
            )
    if any(widths for _, widths in mlp_entries(config)):
        if not mlp.get("activations"):
            raise ConfigError(
                "config error: 'mlp.activations' is empty: list at least one of " + ", ".join(MLP_ACTIVATIONS)
            )
        if mlp.get("steps") is not None and int(mlp["steps"]) < 1:
            raise ConfigError(
                f"config error: 'mlp.steps' = {mlp['steps']}: must be a positive number of L-BFGS steps, "
                "or null for the KAN chain's total (len(grids) x steps)"
            )
    return config


# ---- jobs ---------------------------------------------------------------------------------------------


def width_str(width) -> str:
    """[2, 1, 1] -> '2-1-1' (paths, tables)."""
    return "-".join(str(int(w)) for w in width)


def parse_width(text: str) -> list[int]:
    """'2-1-1' -> [2, 1, 1]."""
    return [int(part) for part in str(text).split("-")]


class _Named:
    """The path names of a job's function and width (``function`` and ``width`` fields)."""

    @property
    def slug(self) -> str:
        return function_slug(self.function)

    @property
    def width_str(self) -> str:
        return width_str(self.width)


@dataclass(frozen=True)
class Chain(_Named):
    """One sequence of grid levels: a function, width, k, training-set size and seed."""

    function: str  # the configured name (registry name or module:function)
    width: tuple[int, ...]
    k: int
    n_train: int
    seed: int


@dataclass(frozen=True)
class TrainJob:
    """One grid level of one chain; level 0 starts from scratch, level i from level i-1's model."""

    chain: Chain
    grid: int
    prev_grid: int | None
    level: int


@dataclass(frozen=True)
class MLPJob(_Named):
    """One MLP fit: a function, width, activation, training-set size and seed (no chain)."""

    function: str  # the configured name (registry name or module:function)
    width: tuple[int, ...]
    activation: str
    n_train: int
    seed: int


def chains(config: dict) -> list[Chain]:
    """Every chain of the sweep: functions x their widths x data sizes x seeds (config order)."""
    return [
        Chain(name, tuple(width), int(config["spline_order"]), int(n), int(seed))
        for name, widths in function_entries(config)
        for width in widths
        for n in config["data_sizes"]
        for seed in config["seeds"]
    ]


def train_jobs(config: dict) -> list[TrainJob]:
    """Every train job: each chain's grid levels in order."""
    grids = [int(g) for g in config["grids"]]
    return [
        TrainJob(chain, grid, grids[level - 1] if level else None, level)
        for chain in chains(config)
        for level, grid in enumerate(grids)
    ]


def mlp_jobs(config: dict) -> list[MLPJob]:
    """Every MLP fit: functions x their MLP widths x activations x data sizes x seeds (config order)."""
    return [
        MLPJob(name, tuple(width), activation, int(n), int(seed))
        for name, widths in mlp_entries(config)
        for width in widths
        for activation in config.get("mlp", {}).get("activations", [])
        for n in config["data_sizes"]
        for seed in config["seeds"]
    ]


def datasets(config: dict) -> list[tuple[str, int, int]]:
    """(function name, N, seed) of every dataset file (several widths and both families share one)."""
    return list(dict.fromkeys((c.function, c.n_train, c.seed) for c in chains(config)))


def previous_grid(config: dict, grid: int) -> int | None:
    """The grid level before ``grid`` in the chain (None for the first); ValueError if not a level."""
    grids = [int(g) for g in config["grids"]]
    if int(grid) not in grids:
        raise ValueError(f"grid {grid} is not one of the configured grids {grids}")
    index = grids.index(int(grid))
    return grids[index - 1] if index else None


# ---- paths --------------------------------------------------------------------------------------------


def results_dir(config: dict) -> str:
    return f"results/{config['sweep']}"


def data_path(config: dict, function: str, n_train: int, seed: int) -> str:
    return DATA_PATTERN.format(results=results_dir(config), function=function_slug(function), n=n_train, seed=seed)


def run_dir(config: dict, chain: Chain, grid: int) -> str:
    return RUN_PATTERN.format(
        results=results_dir(config),
        function=chain.slug,
        width=chain.width_str,
        k=chain.k,
        n=chain.n_train,
        seed=chain.seed,
        grid=grid,
    )


def mlp_run_dir(config: dict, job: MLPJob) -> str:
    return MLP_RUN_PATTERN.format(
        results=results_dir(config),
        function=job.slug,
        width=job.width_str,
        activation=job.activation,
        n=job.n_train,
        seed=job.seed,
    )


def mlp_job_key(function_slug_: str, width: str, activation: str, n_train, seed) -> str:
    """An MLP job's identity inside a sweep (an MLflow tag): its run folder below ``runs/``."""
    return f"{function_slug_}/mlp_w{width}_{activation}/N{n_train}_seed{seed}"


def job_key(function_slug_: str, width: str, k, n_train, seed, grid) -> str:
    """The job's identity inside a sweep (an MLflow tag): its run folder below ``runs/``."""
    return f"{function_slug_}/w{width}_k{k}/N{n_train}_seed{seed}/G{grid}"


def hyperparameters(config: dict) -> dict:
    """The training settings every train job gets (see TRAIN_KEYS)."""
    return {key: config[key] for key in TRAIN_KEYS}


def mlp_hyperparameters(config: dict) -> dict:
    """The training settings every MLP job gets: MLP_TRAIN_KEYS and the step budget (:func:`mlp_steps`)."""
    return {"steps": mlp_steps(config), **{key: config[key] for key in MLP_TRAIN_KEYS}}


def function_n_var(config: dict, name: str) -> int:
    """Number of inputs of a configured function: its own n_var, else its first width's input size."""
    target = get_function(name)
    if target.n_var is not None:
        return target.n_var
    return dict(function_entries(config))[name][0][0]


def function_of_slug(config: dict, slug: str) -> str:
    """The configured function name whose path slug is ``slug``."""
    for name, _ in function_entries(config):
        if function_slug(name) == slug:
            return name
    raise ValueError(f"no configured function has the path name {slug!r}")


# ---- resources (defaults; a SLURM profile may override them with set-resources) -------------------------


def batch_seeds(config: dict) -> bool:
    """Whether the seeds of one grid level (and of one MLP) train in one job: ``batch_seeds`` on and
    more than one seed."""
    return bool(config.get("batch_seeds", True)) and len(config["seeds"]) > 1


def train_resources(
    n_train: int,
    grid: int,
    width,
    k: int,
    steps: int,
    attempt: int = 1,
    *,
    threads: int = 1,
    grid_update_num: int = 10,
    device: str = "cpu",
    n_models: int = 1,
) -> dict:
    """SLURM-sized resources of one grid level: ``mem_mb``, ``runtime`` (minutes), ``cpus_per_task``.

    Upper bounds with headroom (a job that outgrows them is killed), doubled on each retry.
    Calibrated on kanlib's local-basis implementation (one CPU thread, float64; peak RSS and time
    of fits with N up to 10^6, G up to 1000, widths [2,1,1] and [4,4,2,1]):

    Memory: ~600 MB for Python, torch and mlflow (a tiny job peaks at ~420 MB); per sample the
    k+1 non-zero B-splines of every edge with their derivatives and indices plus the node
    activations and the data (measured 0.5-0.7x of the 8 (8 (k+1) edges + 48 sum(width)) bytes counted);
    a grid update's normal equations and their temporaries, 16 (G+2k+1)^2 numbers per input of
    the widest layer (measured: +110 MB for G=1000 against G=5 with 2 inputs);
    25% headroom, rounded up to 100 MB; plus 1.5 GB of host memory for the CUDA context when the
    device is ``cuda``.

    Runtime: LBFGS takes at most 20 loss evaluations a step; an evaluation costs ~1 ms plus
    ~0.1 us per (sample, edge, basis function) (measured 15-30 ns); each of the grid_update_num
    grid updates (and the grid extension) assembles the normal equations, ~0.1 us per sample and
    basis pair, and solves them, ~(G+k)^3 ns, per input; times 3 for headroom, plus 5 minutes
    (Python, imports, MLflow). GPU fits are faster (docs/benchmarks.md); the CPU bound is kept.

    cpus_per_task: ``threads`` (the train rule's threads; torch uses that many).

    ``n_models`` > 1: a job training that many seeds as one stack (batch_seeds); the per-model
    memory and the runtime bound scale with it (a stack is faster than that, the bound is kept).
    """
    width = list(width)
    edges = sum(a * b for a, b in zip(width, width[1:]))
    inputs = sum(width[:-1])
    per_sample = 8 * (8 * (k + 1) * edges + 48 * sum(width))
    normal_equations = 16 * 8 * max(width[:-1]) * (grid + 2 * k + 1) ** 2
    mem_mb = 100 * math.ceil(1.25 * (600 + n_models * (n_train * per_sample + normal_equations) / 2**20) / 100)
    if str(device).startswith("cuda"):
        mem_mb += 1500
    fit_seconds = steps * 20 * (1e-3 + 1e-7 * n_train * edges * (k + 1))
    grid_seconds = (grid_update_num + 1) * inputs * (1e-7 * n_train * (k + 1) ** 2 + 1e-9 * (grid + k) ** 3)
    runtime = 5 + math.ceil(3 * n_models * (fit_seconds + grid_seconds) / 60)
    return {"mem_mb": mem_mb * attempt, "runtime": runtime * attempt, "cpus_per_task": max(1, int(threads))}


def mlp_resources(
    n_train: int, width, steps: int, attempt: int = 1, *, threads: int = 1, device: str = "cpu", n_models: int = 1
) -> dict:
    """SLURM-sized resources of one MLP fit: ``mem_mb``, ``runtime`` (minutes), ``cpus_per_task``.

    Memory: ~600 MB for Python, torch and mlflow plus, per sample, every layer's pre-activations,
    activations and their gradients (4 numbers per unit, 8 bytes) and the data; 25% headroom.
    Runtime: at most 20 loss evaluations a step, each ~1 ms plus ~2 ns per sample and weight
    (a forward and backward pass is ~3 multiply-adds per weight); times 3, plus 5 minutes.
    Doubled on each retry, like :func:`train_resources`; ``n_models`` as there.
    """
    width = list(width)
    weights = sum((a + 1) * b for a, b in zip(width, width[1:]))
    mem_mb = 100 * math.ceil(1.25 * (600 + n_models * n_train * 8 * 4 * sum(width) / 2**20) / 100)
    if str(device).startswith("cuda"):
        mem_mb += 1500
    fit_seconds = steps * 20 * (1e-3 + 2e-9 * n_train * weights)
    runtime = 5 + math.ceil(3 * n_models * fit_seconds / 60)
    return {"mem_mb": mem_mb * attempt, "runtime": runtime * attempt, "cpus_per_task": max(1, int(threads))}
