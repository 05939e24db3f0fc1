"""A sweep's configuration, its jobs and their output paths (the workflow's plain-Python side).

The Snakefile calls three things from here before any job runs:
:func:`coerce_cli_strings` (``--config`` values arrive as strings),
:func:`schema_errors` (turns a JSON-schema failure into one line naming the key)
and :func:`check_config` (what JSON schema cannot express). The rule files use
the job list (:func:`jobs`, each family's from kanlib.families), the path
patterns and :func:`job_from_wildcards` (a rule's wildcards back to its job).

Nothing here imports torch at import time; :func:`probe_function` (one call of each target
function, part of :func:`check_config`) imports it when it runs.

Output layout, relative to the working directory (``R = results/<sweep>``)::

    R/data/<function>/N<n>_seed<seed>.pt                      dataset (train + fixed test split)
    R/runs/<function>/w<width>_k<k>/N<n>_seed<seed>/G<grid>/  one grid level of a KAN chain: model.pt,
                                                              history.csv, metrics.json, benchmark.tsv
    R/runs/<function>/mlp_w<width>_<activation>/N<n>_seed<seed>/  one MLP fit (same files)
                                                              (each family's run folder: kanlib.families)
    R/logs/...                                                one log per job
    R/mlflow_parent.json                                      the sweep's MLflow parent run
    R/results.csv, R/results.parquet, R/history.csv           aggregated tables
    R/test_rmse_vs_grid.png (+ .pdf)                          plot

``<function>`` is :func:`kanlib.functions.function_slug` of the configured name
and ``<width>`` the layer sizes joined by ``-`` (``2-1-1``).
"""

from __future__ import annotations

import contextlib
import os
import re

from ..analysis.catalog import DATA_AXIS_MIN_SIZES
from ..families import REGISTRY, Job, get_family, parse_width, sweep_families, width_str
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
    "jobs",
    "job_from_wildcards",
    "job_family",
    "job_key",
    "run_dir",
    "datasets",
    "chain_configurations",
    "compared_functions",
    "batch_seeds",
    "results_dir",
    "data_path",
    "model_wildcard",
    "level_wildcard",
    "DATA_PATTERN",
    "RUN_PATTERN",
]

#: Path patterns (``str.format`` fields; the rule files turn them into Snakemake wildcards). A run
#: folder's ``{model}`` names the model (its family's :meth:`~kanlib.families.Family.model_segment`,
#: e.g. ``w2-1-1_k3`` or ``mlp_w2-32-1_silu``) and ``{level}`` the grid level of a chain (``/G5``, or
#: empty for a family without chains).
DATA_PATTERN = "{results}/data/{function}/N{n}_seed{seed}.pt"
RUN_PATTERN = "{results}/runs/{function}/{model}/N{n}_seed{seed}{level}"


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

    grids (the sweep's and each function's own) strictly increasing; data_sizes and seeds without
    repeats; input_range lower < upper; every function known in the registry or an importable
    ``module:function``; every width's
    first entry equal to its function's number of inputs and its last to the number of outputs.
    The tracking URI (MLFLOW_TRACKING_URI when set, else ``mlflow.tracking_uri``) must have a
    scheme MLflow can open (:func:`check_tracking_uri`); with ``probe_functions`` each target is
    called once on a tiny input (:func:`probe_function`). Returns config unchanged.
    """
    own_grids = [
        (f"functions[{index}].grids", entry["grids"])
        for index, entry in enumerate(config["functions"])
        if isinstance(entry, dict) and "grids" in entry
    ]
    for key, grids in [("grids", config["grids"]), *own_grids]:
        if not _strictly_increasing(grids):
            raise ConfigError(
                f"config error: '{key}' = {grids}: must be strictly increasing (each grid level "
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
    try:
        families = sweep_families(config)
    except ValueError as error:
        raise ConfigError(f"config error: 'families': {error}") from None
    slugs: dict[str, str] = {}
    function_inputs = {}
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
        function_inputs[name] = (target.n_var, target.n_out)
        if probe_functions:
            probe_function(target, target.n_var if target.n_var is not None else widths[0][0], key)
    for family in families:  # each family's own keys (widths matching the functions, its settings)
        try:
            family.check_config(config, function_inputs)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    return config


# ---- jobs ---------------------------------------------------------------------------------------------


def jobs(config: dict) -> list[Job]:
    """Every training job of the sweep, family by family (kanlib.families), each in config order."""
    return [job for family in sweep_families(config) for job in family.jobs(config)]


def job_family(job: Job):
    return get_family(job.family)


def model_wildcard() -> str:
    """The Snakemake wildcard constraint of a run folder's ``{model}``: any family's model segment."""
    return "|".join(f"(?:{family.model_pattern})" for family in REGISTRY.values())


def level_wildcard() -> str:
    """The Snakemake wildcard constraint of a run folder's ``{level}`` (empty for a family without chains)."""
    return "|".join(dict.fromkeys(f"(?:{family.level_pattern})" for family in REGISTRY.values()))


class NotChained:
    """The train rule's ``prev_grid`` param for a job whose family has no chains: not a builtin value, so
    Snakemake leaves it out of the params it records for the job (importable, so the job's script can
    unpickle it)."""

    def __repr__(self) -> str:
        return "NOT_CHAINED"


NOT_CHAINED = NotChained()


def job_from_wildcards(config: dict, wildcards) -> Job:
    """The job of a train rule's wildcards (``function``, ``model``, ``n``, ``seed``, ``level``)."""
    sweep_families(config)  # (a family of the user's own, named in the config, is registered first)
    model = wildcards["model"]
    for family in REGISTRY.values():
        if re.fullmatch(family.model_pattern, model):
            function = function_of_slug(config, wildcards["function"])
            seed = wildcards.get("seed", 0)
            return family.job_from_path(config, function, model, wildcards.get("level", ""), wildcards["n"], seed)
    raise ValueError(f"no model family has a run folder named {model!r}")


def chain_configurations(config: dict) -> list[tuple[str, str, int]]:
    """(function slug, width, k) of every chain configuration (the report's figures over the grid)."""
    return list(
        dict.fromkeys(
            (function_slug(job.function), job.width_str, job.get("k"))
            for job in jobs(config)
            if get_family(job.family).chained
        )
    )


def compared_functions(config: dict) -> list[str]:
    """The slugs of the functions trained by more than one family (the report's family comparison)."""
    families: dict[str, set] = {}
    for job in jobs(config):
        families.setdefault(function_slug(job.function), set()).add(job.family)
    return [slug for slug, names in families.items() if len(names) > 1]


def frontier_functions(config: dict) -> list[str]:
    """The slugs of the functions with a data axis (the report's frontier): every one, when the sweep
    has at least 3 training-set sizes (a law over N needs 3)."""
    if len(config["data_sizes"]) < DATA_AXIS_MIN_SIZES:
        return []
    return list(dict.fromkeys(function_slug(job.function) for job in jobs(config)))


def datasets(config: dict) -> list[tuple[str, int, int]]:
    """(function name, N, seed) of every dataset file (several widths and every family share one)."""
    return list(dict.fromkeys((job.function, job.n_train, job.seed) for job in jobs(config)))


# ---- paths --------------------------------------------------------------------------------------------


def results_dir(config: dict) -> str:
    return f"results/{config['sweep']}"


def data_path(config: dict, function: str, n_train: int, seed: int) -> str:
    return DATA_PATTERN.format(results=results_dir(config), function=function_slug(function), n=n_train, seed=seed)


def job_key(job: Job) -> str:
    """The job's identity inside a sweep (the MLflow tag kanlib.job): its run folder below ``runs/``."""
    family = get_family(job.family)
    model, level = family.model_segment(job), family.level_segment(job)
    return f"{function_slug(job.function)}/{model}/N{job.n_train}_seed{job.seed}{level}"


def run_dir(config: dict, job: Job) -> str:
    return f"{results_dir(config)}/runs/{job_key(job)}"


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


def batch_seeds(config: dict) -> bool:
    """Whether the seeds of one job (a grid level, an MLP) train in one job: ``batch_seeds`` on and
    more than one seed."""
    return bool(config.get("batch_seeds", True)) and len(config["seeds"]) > 1
