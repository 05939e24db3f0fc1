"""kanlib: Kolmogorov-Arnold Networks for scaling-law experiments.

pykan-compatible entry points: :class:`KAN`, :func:`create_dataset`,
``KAN.fit``, ``KAN.initialize_from_another_model``, ``KAN.refine``,
``KAN.save`` / ``KAN.load``; the MLP baseline :class:`MLP` with the same calls; S models
of one architecture trained as one: :class:`KANStack` and :class:`MLPStack` (``stack``, ``fit``,
``unstack``; one model is the stack of one, :mod:`kanlib.stack`).

Three layers (docs/architecture.md): the model core (the modules of this package),
:mod:`kanlib.analysis` (power-law fits, figures, the report; no torch) and
:mod:`kanlib.workflow` (the Snakemake workflow's glue: config, jobs, MLflow). A
lower layer never imports a higher one.

The names below are imported lazily (PEP 562), so ``import kanlib.workflow.sweep``
(the Snakefile's config checks) does not pay for importing torch.
"""

from importlib import import_module

__version__ = "0.2.0"

_EXPORTS = {
    "KAN": "kanlib.model",
    "KANConfig": "kanlib.model",
    "KANLayer": "kanlib.layer",
    "MLP": "kanlib.mlp",
    "MLPConfig": "kanlib.mlp",
    "KANStack": "kanlib.model",
    "MLPStack": "kanlib.mlp",
    "StackMemoryError": "kanlib.training",
    "create_dataset": "kanlib.data",
    "validate_dataset": "kanlib.data",
    "fit": "kanlib.training",
    "best_of": "kanlib.restarts",
    "restart_seeds": "kanlib.restarts",
    "median_rmse": "kanlib.training",
    "outside_training_range": "kanlib.training",
    "range_split_errors": "kanlib.training",
    "validation_errors": "kanlib.training",
    "DivergenceError": "kanlib.training",
    "CheckpointError": "kanlib.checkpoint",
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
