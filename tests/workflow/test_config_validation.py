"""Config checks (schema + kanlib.workflow.sweep.check_config), the job list and paths, in-process.

The Snakefile runs exactly this sequence before any job: coerce_cli_strings, then
snakemake.utils.validate inside schema_errors(), then check_config. The same checks through a
real Snakemake run are in test_workflow.py.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from kanlib.workflow import sweep

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture(autouse=True)
def no_tracking_uri_in_the_environment(monkeypatch):
    """MLFLOW_TRACKING_URI overrides the config's (mlflow.set_tracking_uri in another test sets it)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def check(config: dict) -> dict:
    """What the Snakefile does with the merged config."""
    sweep.coerce_cli_strings(config, SCHEMA)
    with sweep.schema_errors():
        validate(config, str(SCHEMA))
    return sweep.check_config(config)


def with_changes(**changes) -> dict:
    config = default_config()
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            config[outer][inner] = value
        else:
            config[key] = value
    return config


def test_default_and_test_configs_are_valid():
    check(default_config())
    merged = default_config()
    merged.update(yaml.safe_load((REPO / "config" / "test.yaml").read_text()))
    check(merged)


def test_the_schema_says_additionalProperties_false_for_every_object():
    def objects(node):
        if isinstance(node, dict):
            if node.get("type") == "object":
                yield node
            for value in node.values():
                yield from objects(value)
        elif isinstance(node, list):
            for value in node:
                yield from objects(value)

    schema = yaml.safe_load(SCHEMA.read_text())
    found = list(objects(schema))
    # every object refuses unknown keys; the families' own settings are checked by each family (kanlib.families)
    free = [node for node in found if node.get("additionalProperties") is not False]
    assert len(found) >= 3 and free == [schema["properties"]["family_settings"]]


BAD = [
    # (change, the key the message must name, more text it must contain)
    ({"bogus": 1}, "'bogus'", "allowed: batch"),
    ({"mlflow.bogus": 1}, "'bogus' in 'mlflow'", "allowed: experiment"),
    ({"steps": "many"}, "'steps'", "not of type 'integer'"),
    ({"grids": [0, 5]}, "'grids[0]'", "minimum of 1"),
    ({"data_sizes": [0]}, "'data_sizes[0]'", "minimum of 1"),
    ({"steps": 0}, "'steps'", "minimum of 1"),
    ({"spline_order": 0}, "'spline_order'", "minimum of 1"),
    ({"grids": []}, "'grids'", "non-empty"),
    ({"seeds": []}, "'seeds'", "non-empty"),
    ({"functions": []}, "'functions'", "non-empty"),
    ({"optimizer": "SGD"}, "'optimizer'", "['LBFGS', 'Adam']"),
    ({"device": "tpu"}, "'device'", "['auto', 'cpu', 'cuda']"),
    ({"dtype": "float16"}, "'dtype'", "['float64', 'float32']"),
    ({"lr": 0}, "'lr'", "less than or equal to the minimum of 0"),
    ({"batch": 0}, "'batch'", "not allowed"),
    ({"widths": [[2]]}, "'widths[0]'", "too short"),
    ({"grids": [10, 5, 20]}, "'grids'", "strictly increasing"),
    ({"grids": [5, 5]}, "'grids'", "strictly increasing"),
    ({"data_sizes": [100, 100]}, "'data_sizes'", "repeated"),
    ({"functions": ["nope"]}, "'functions[0]'", "known: bessel_j0_20x, exp_composition_4d"),
    ({"functions": ["no_such_module_xyz:f"]}, "'functions[0]'", "cannot import module 'no_such_module_xyz'"),
    ({"functions": ["math:no_such_function"]}, "'functions[0]'", "has no attribute"),
    ({"widths": [[3, 1, 1]]}, "'widths'", "must start with 2 and end with 1"),
    ({"widths": [[2, 1, 2]]}, "'widths'", "must start with 2 and end with 1"),
    ({"functions": [{"name": "xy", "widths": [[1, 1]]}]}, "'functions[0].widths'", "must start with 2"),
    ({"functions": [{"name": "xy", "grids": [5, 20, 10]}]}, "'functions[0].grids'", "strictly increasing"),
    ({"input_range": [1, -1]}, "'input_range'", "lower < upper"),
    # configs that a schema alone lets through and that would fail later inside jobs
    ({"mlflow.tracking_uri": "garbage"}, "'mlflow.tracking_uri'", "not a tracking URI; allowed: sqlite:///"),
    ({"mlflow.tracking_uri": "htp:/not a uri"}, "'mlflow.tracking_uri'", "not a tracking URI"),
    ({"mlflow.tracking_uri": "nowhere://x"}, "'mlflow.tracking_uri'", "unknown scheme 'nowhere'"),
    ({"mlflow.tracking_uri": "sqlite://relative.db"}, "'mlflow.tracking_uri'", "sqlite:///<relative path>"),
    ({"mlflow.tracking_uri": "http://"}, "'mlflow.tracking_uri'", "needs a host"),
    ({"mlflow.tracking_uri": "file:///tmp/mlruns"}, "'mlflow.tracking_uri'", "MLFLOW_ALLOW_FILE_STORE=true"),
    ({"functions": ["os.path:join"]}, "function 'os.path:join' (functions[0])", "fails on a probe input"),
    ({"functions": ["math:sqrt"]}, "function 'math:sqrt' (functions[0])", "fails on a probe input"),
    ({"functions": ["tests.workflow.targets:wrong_shape"]}, "(functions[0])", "returned shape (4, 2)"),
    ({"functions": ["tests.workflow.targets:not_finite"]}, "(functions[0])", "non-finite values"),
    ({"functions": ["tests.workflow.targets:a_list"]}, "(functions[0])", "returned a list"),
]


@pytest.mark.parametrize("change, key, text", BAD, ids=[str(case[0]) for case in BAD])
def test_bad_configs_name_the_key(change, key, text):
    with pytest.raises(sweep.ConfigError) as raised:
        check(with_changes(**change))
    message = str(raised.value)
    assert message.startswith("config error:") and key in message and text in message
    assert "\n" not in message  # one line, not a schema dump


@pytest.mark.parametrize(
    "uri",
    [
        "sqlite:///mlflow.db",
        "sqlite:////abs/path/m.db",
        "http://127.0.0.1:5000",
        "https://mlflow.example.org",
        "postgresql://user@db/mlflow",
        "postgresql+psycopg2://user:pw@db:5432/mlflow",
        "mysql://u@h/db",
    ],
)
def test_tracking_uris_mlflow_opens_are_accepted(uri):
    check(with_changes(**{"mlflow.tracking_uri": uri}))


def test_the_environment_tracking_uri_is_checked_and_named(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "garbage")
    with pytest.raises(sweep.ConfigError, match="the environment variable MLFLOW_TRACKING_URI = 'garbage'"):
        check(default_config())


def test_a_file_store_is_accepted_with_mlflows_opt_in(monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    check(with_changes(**{"mlflow.tracking_uri": "file:///tmp/mlruns"}))


def test_cli_strings_are_coerced_where_the_schema_wants_numbers():
    config = with_changes(
        grids=["3", "6"],
        steps="5",
        lr="0.5",
        update_grid="false",
        widths=[["2", "1", "1"]],
        **{"mlflow.retry_seconds": "1"},
    )
    check(config)
    assert config["grids"] == [3, 6] and config["steps"] == 5 and config["lr"] == 0.5
    assert config["update_grid"] is False and config["widths"] == [[2, 1, 1]]
    assert config["mlflow"]["retry_seconds"] == 1


def test_per_function_widths_and_job_list():
    config = with_changes(
        functions=[
            "exp_sin_pi_x_plus_y2",
            {"name": "bessel_j0_20x", "widths": [[1, 1], [1, 2, 1]]},
            {"name": "xy", "widths": [[2, 2, 1]], "grids": [3, 5]},  # its own grids
        ],
        data_sizes=[10, 20],
        seeds=[0, 1],
        grids=[3, 6, 12],
    )
    check(config)
    jobs = sweep.jobs(config)
    assert len(jobs) == (1 + 2) * 2 * 2 * 3 + 1 * 2 * 2 * 2  # chains (widths x sizes x seeds) x grid levels
    settings = [(j.get("grid"), j.get("prev_grid"), j.get("level")) for j in jobs[:3]]
    assert settings == [(3, None, 0), (6, 3, 1), (12, 6, 2)]
    assert len(sweep.datasets(config)) == 3 * 2 * 2  # widths share datasets
    bessel = [j for j in jobs if j.function == "bessel_j0_20x" and j.get("grid") == 6][0]
    assert sweep.run_dir(config, bessel) == "results/seed/runs/bessel_j0_20x/w1-1_k3/N10_seed0/G6"
    wildcards = {"function": "bessel_j0_20x", "model": "w1-1_k3", "n": "10", "seed": "0", "level": "/G6"}
    assert sweep.job_from_wildcards(config, wildcards) == bessel  # the rule's wildcards back to the job
    assert sweep.data_path(config, "xy", 100, 2) == "results/seed/data/xy/N100_seed2.pt"
    family = sweep.job_family(bessel)
    assert family.previous(config, bessel).get("grid") == 3 and family.previous(config, jobs[0]) is None
    with pytest.raises(ValueError, match="not one of the configured grids"):
        sweep.job_from_wildcards(config, {**wildcards, "level": "/G7"})
    xy = sweep.job_from_wildcards(config, {**wildcards, "function": "xy", "model": "w2-2-1_k3", "level": "/G5"})
    assert (xy.get("prev_grid"), xy.get("level")) == (3, 1) and family.previous(config, xy).get("grid") == 3
    assert sorted({j.get("grid") for j in jobs if j.function == "xy"}) == [3, 5]
    with pytest.raises(ValueError, match="not one of the configured grids"):
        sweep.job_from_wildcards(config, {**wildcards, "function": "xy", "model": "w2-2-1_k3", "level": "/G6"})


def test_default_sweep_has_4_datasets_and_20_levels_in_4_chains():
    config = check(default_config())
    jobs = sweep.jobs(config)
    assert len(sweep.datasets(config)) == 4 and len(jobs) == 20
    assert sorted({j.n_train for j in jobs}) == [100, 300, 1000, 3000]
    assert [j.get("grid") for j in jobs[:5]] == [5, 10, 20, 50, 100]


def test_width_strings_round_trip():
    assert sweep.width_str([2, 1, 1]) == "2-1-1" and sweep.parse_width("100-10-1") == [100, 10, 1]


def test_config_copy_is_not_mutated_by_job_list():
    config = check(default_config())
    before = copy.deepcopy(config)
    for job in sweep.jobs(config):
        sweep.job_family(job).hyperparameters(config)
    assert config == before
