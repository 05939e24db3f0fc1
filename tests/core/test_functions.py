"""kanlib.functions: the registry of target functions and module:function resolution."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from kanlib import create_dataset
from kanlib.functions import REGISTRY, TargetFunction, function_slug, get_function, registry_names

EXPECTED = {  # name: (n_var, a point, f at that point)
    "bessel_j0_20x": (1, [0.0], 1.0),
    "exp_sin_pi_x_plus_y2": (2, [0.5, 1.0], math.exp(1.0 + 1.0)),
    "xy": (2, [0.5, -3.0], -1.5),
    "exp_mean_sin_sq_100d": (100, [1.0] * 100, math.exp(1.0)),
    "exp_composition_4d": (4, [0.5, 0.5, 0.0, 0.0], math.exp(0.5 * (1.0 + 0.0))),
}


def test_registry_has_the_seed_and_the_paper_toy_functions():
    assert set(registry_names()) == set(EXPECTED)
    for name, (n_var, _, _) in EXPECTED.items():
        target = REGISTRY[name]
        assert target.name == name and target.n_var == n_var and target.n_out == 1 and target.formula


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_registry_values_and_shapes(name):
    n_var, point, value = EXPECTED[name]
    target = get_function(name)
    y = target(torch.tensor([point], dtype=torch.float64))
    assert y.shape == (1, 1)
    assert float(y) == pytest.approx(value, rel=1e-12)
    x = torch.rand(7, n_var, dtype=torch.float64) * 2 - 1
    assert target(x).shape == (7, 1)
    dataset = create_dataset(target, n_var=n_var, train_num=5, test_num=3)
    assert dataset["train_label"].shape == (5, 1) and torch.isfinite(dataset["train_label"]).all()


def test_bessel_matches_scipy():
    from scipy.special import j0

    x = torch.linspace(-1, 1, 11, dtype=torch.float64)[:, None]
    assert torch.allclose(get_function("bessel_j0_20x")(x)[:, 0], torch.as_tensor(j0(20 * x[:, 0].numpy())))


def test_module_function_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "my_targets.py").write_text(
        "import torch\n"
        "def ridge(x):\n    '''sum of squares'''\n    return (x ** 2).sum(dim=1)\n"
        "ridge.n_var = 3\n"
        "def plain(x):\n    return x[:, 0]\n"
        "not_callable = 3\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    target = get_function("my_targets:ridge")
    assert isinstance(target, TargetFunction)
    assert (target.name, target.n_var, target.formula) == ("my_targets:ridge", 3, "sum of squares")
    assert target(torch.ones(2, 3)).shape == (2, 1)  # (n,) results become (n, 1)
    assert get_function("my_targets:plain").n_var is None  # taken from the width then
    with pytest.raises(ValueError, match="not callable"):
        get_function("my_targets:not_callable")
    with pytest.raises(ValueError, match="has no attribute 'missing'"):
        get_function("my_targets:missing")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nope", "unknown function 'nope'; known: bessel_j0_20x"),
        ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
        ("bad path:f", "not a valid import path"),
        ("", "registry name or 'module:function'"),
    ],
)
def test_unknown_functions_name_the_allowed_values(spec, message):
    with pytest.raises(ValueError, match=message):
        get_function(spec)


def test_slugs_are_path_safe():
    assert function_slug("xy") == "xy"
    assert function_slug("pkg.mod:f") == "pkg.mod--f"
