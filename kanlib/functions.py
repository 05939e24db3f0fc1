"""Target functions for the sweeps: a registry of named functions plus ``module:function`` imports.

A config names its targets either by a registry name (``exp_sin_pi_x_plus_y2``)
or by an import path ``package.module:function`` for a user's own function.
Every target is a :class:`TargetFunction`: a name, the number of input
variables ``n_var``, a formula string for humans, and a callable mapping an
``(n, n_var)`` tensor to an ``(n, 1)`` tensor.

This module does not import torch at import time (the Snakefile validates
configs with it, and should stay quick); the registry's callables import torch
when they are called.

A user function given as ``module:function`` may be a plain callable or a
:class:`TargetFunction`. A plain callable may carry ``n_var`` (and ``n_out``,
``formula``) attributes; without ``n_var`` the input size is taken from the
configured width.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["TargetFunction", "REGISTRY", "get_function", "function_slug", "is_import_path", "registry_names"]


@dataclass(frozen=True)
class TargetFunction:
    """A named target f: (n, n_var) -> (n, n_out)."""

    name: str
    n_var: int | None
    formula: str
    fn: Callable
    n_out: int = 1

    def __call__(self, x):
        y = self.fn(x)
        return y[:, None] if y.dim() == 1 else y


# ---- the registry: the seed's target and the KAN paper's toy functions (arXiv 2404.19756, Fig. 3.1) ----


def _bessel_j0_20x(x):
    import torch

    return torch.special.bessel_j0(20.0 * x[:, [0]])


def _exp_sin_pi_x_plus_y2(x):
    import torch

    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


def _xy(x):
    return x[:, [0]] * x[:, [1]]


def _exp_mean_sin_sq_100d(x):
    import torch

    return torch.exp(torch.mean(torch.sin(torch.pi * x / 2) ** 2, dim=1, keepdim=True))


def _exp_composition_4d(x):
    import torch

    inner_a = torch.sin(torch.pi * (x[:, [0]] ** 2 + x[:, [1]] ** 2))
    inner_b = torch.sin(torch.pi * (x[:, [2]] ** 2 + x[:, [3]] ** 2))
    return torch.exp(0.5 * (inner_a + inner_b))


REGISTRY: dict[str, TargetFunction] = {
    f.name: f
    for f in (
        TargetFunction("bessel_j0_20x", 1, "J0(20 x)", _bessel_j0_20x),
        TargetFunction("exp_sin_pi_x_plus_y2", 2, "exp(sin(pi x) + y^2)", _exp_sin_pi_x_plus_y2),
        TargetFunction("xy", 2, "x y", _xy),
        TargetFunction("exp_mean_sin_sq_100d", 100, "exp(mean_i sin^2(pi x_i / 2)), i = 1..100", _exp_mean_sin_sq_100d),
        TargetFunction(
            "exp_composition_4d", 4, "exp(0.5 (sin(pi (x1^2 + x2^2)) + sin(pi (x3^2 + x4^2))))", _exp_composition_4d
        ),
    )
}

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")


def registry_names() -> list[str]:
    return sorted(REGISTRY)


def is_import_path(spec: str) -> bool:
    """True for ``package.module:function`` strings."""
    return isinstance(spec, str) and ":" in spec


def function_slug(spec: str) -> str:
    """A name safe for file paths and Snakemake wildcards: ``pkg.mod:f`` -> ``pkg.mod--f``."""
    return spec.replace(":", "--")


def import_module_here(name: str):
    """``importlib.import_module(name)``, the working directory searched too (like ``python -m``): a
    user's own module (a target function, a model family) beside the sweep's config is found."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    return importlib.import_module(name)


def get_function(spec: str) -> TargetFunction:
    """The target named ``spec`` (registry name or ``module:function``).

    Raises ValueError with the allowed values when ``spec`` is unknown or cannot be imported.
    Modules are searched on ``sys.path`` plus the current working directory.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"a function must be a registry name or 'module:function'; got {spec!r}")
    if spec in REGISTRY:
        return REGISTRY[spec]
    if not is_import_path(spec):
        raise ValueError(
            f"unknown function {spec!r}; known: {', '.join(registry_names())}, "
            "or 'package.module:function' for your own"
        )
    if not _IMPORT_PATH.match(spec):
        raise ValueError(f"function {spec!r} is not a valid import path; expected 'package.module:function'")
    module_name, attribute = spec.split(":")
    try:
        module = import_module_here(module_name)
    except Exception as error:  # ImportError, or the module itself raising
        raise ValueError(
            f"function {spec!r}: cannot import module {module_name!r} ({type(error).__name__}: {error})"
        ) from None
    target = getattr(module, attribute, None)
    if target is None:
        raise ValueError(f"function {spec!r}: module {module_name!r} has no attribute {attribute!r}")
    if isinstance(target, TargetFunction):
        return target
    if not callable(target):
        raise ValueError(f"function {spec!r} is not callable (a {type(target).__name__})")
    n_var = getattr(target, "n_var", None)
    if n_var is not None and (isinstance(n_var, bool) or not isinstance(n_var, int) or n_var < 1):
        raise ValueError(f"function {spec!r}: attribute n_var must be a positive integer; got {n_var!r}")
    n_out = getattr(target, "n_out", 1)
    formula = getattr(target, "formula", None) or (target.__doc__ or "").strip().split("\n")[0] or spec
    return TargetFunction(spec, n_var, formula, target, n_out)
