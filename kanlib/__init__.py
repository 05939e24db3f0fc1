"""kanlib: Kolmogorov-Arnold Networks for scaling-law experiments.

pykan-compatible entry points: :class:`KAN`, :func:`create_dataset`,
``KAN.fit``, ``KAN.initialize_from_another_model``, ``KAN.refine``,
``KAN.save`` / ``KAN.load``.
"""
from .data import create_dataset, validate_dataset
from .layer import KANLayer
from .model import KAN
from .training import DivergenceError

__version__ = "0.1.0"
__all__ = ["KAN", "KANLayer", "create_dataset", "validate_dataset", "DivergenceError", "__version__"]
