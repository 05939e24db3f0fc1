"""kanlib: Kolmogorov-Arnold Networks for scaling-law experiments.

pykan-compatible entry points: :class:`KAN`, :func:`create_dataset`,
``KAN.fit``, ``KAN.initialize_from_another_model``, ``KAN.refine``,
``KAN.save`` / ``KAN.load``.

Submodules are imported lazily (PEP 562), so ``import kanlib.sweep`` (the
Snakefile's config checks) does not pay for importing torch.
"""
from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "KAN": "kanlib.model",
    "KANLayer": "kanlib.layer",
    "create_dataset": "kanlib.data",
    "validate_dataset": "kanlib.data",
    "DivergenceError": "kanlib.training",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kanlib' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
