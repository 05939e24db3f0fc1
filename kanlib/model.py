"""The KAN model: a stack of :class:`~kanlib.layer.KANLayer`.

Calls mirror pykan's (``KAN(width, grid, k, seed)``, ``fit``,
``initialize_from_another_model``, ``refine``) so pykan code ports by
changing its import line. Differences: float64 by default without touching
torch's global default dtype, a local random generator (no global seeding),
no symbolic branch, no multiplication nodes, no checkpoints unless asked.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .layer import KANLayer

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def resolve_dtype(dtype) -> torch.dtype:
    """torch.float64/float32 or their names -> torch.dtype (ValueError otherwise)."""
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}; got {dtype!r}")
        return _DTYPES[dtype]
    if dtype not in (torch.float64, torch.float32):
        raise ValueError(f"dtype must be torch.float64 or torch.float32; got {dtype!r}")
    return dtype


def resolve_device(device) -> torch.device:
    """'auto' -> cuda when available else cpu; 'cpu'/'cuda'/'cuda:N'/torch.device accepted."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here; use 'cpu' or 'auto'")
    return torch.device(device)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (
            hasattr(value, "__index__") and not isinstance(value, float)):
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}")
    return value


def validate_width(width) -> list[int]:
    if not isinstance(width, (list, tuple)) or len(width) < 2:
        raise ValueError("width must be a list of at least 2 layer sizes (input, ..., output), "
                         f"e.g. [2, 1, 1]; got {width!r}")
    sizes = []
    for i, w in enumerate(width):
        if isinstance(w, (list, tuple)):
            raise ValueError(f"width[{i}] = {w!r}: multiplication nodes are not supported; "
                             "use plain positive integers")
        sizes.append(_check_int(f"width[{i}]", w, 1))
    return sizes


class KAN(nn.Module):
    """Kolmogorov-Arnold Network.

    Parameters
    ----------
    width : list of int, layer sizes, e.g. [2, 1, 1] (at least input and output).
    grid : number of grid intervals G (>= 1).
    k : spline order (>= 1; 3 = cubic).
    seed : seed of this model's own random generator.
    grid_eps : 1.0 = uniform grid updates, 0.0 = sample quantiles, in between mixes.
    grid_range : initial grid range [lower, upper].
    noise_scale, scale_base_mu, scale_base_sigma : initialisation, as pykan.
    device : 'cpu', 'cuda', 'cuda:N' or 'auto'. dtype : torch.float64 (default) or torch.float32.
    """

    def __init__(self, width: Sequence[int] = None, grid: int = 3, k: int = 3, seed: int = 1, grid_eps: float = 1.0,
                 grid_range: Sequence[float] = (-1.0, 1.0), noise_scale: float = 1.0, scale_base_mu: float = 0.0,
                 scale_base_sigma: float = 1.0, device="cpu", dtype=torch.float64, **pykan_options):
        super().__init__()
        base_fun = pykan_options.pop("base_fun", "silu")
        if base_fun != "silu":
            raise ValueError(f"base_fun must be 'silu' (the only residual function kanlib implements); got {base_fun!r}")
        for flag in ("affine_trainable", "sparse_init"):
            if pykan_options.pop(flag, False):
                raise ValueError(f"{flag}=True is not supported by kanlib; allowed: False")
        sp_trainable = bool(pykan_options.pop("sp_trainable", True))
        sb_trainable = bool(pykan_options.pop("sb_trainable", True))
        unsupported = {key for key in pykan_options if key not in _IGNORED_PYKAN_OPTIONS}
        if unsupported:
            raise ValueError(f"unknown KAN argument(s) {sorted(unsupported)}; supported: width, grid, k, seed, "
                             "grid_eps, grid_range, noise_scale, scale_base_mu, scale_base_sigma, device, dtype")
        self.width = validate_width(width)
        self.grid_size = _check_int("grid", grid, 1)
        self.k = _check_int("k", k, 1)
        self.seed = _check_int("seed", seed, 0)
        if not (isinstance(grid_eps, (int, float)) and 0.0 <= grid_eps <= 1.0):
            raise ValueError(f"grid_eps must be a number in [0, 1]; got {grid_eps!r}")
        if (len(grid_range) != 2 or not all(math.isfinite(float(v)) for v in grid_range)
                or float(grid_range[0]) >= float(grid_range[1])):
            raise ValueError(f"grid_range must be [lower, upper] with finite lower < upper; got {grid_range!r}")
        self.grid_eps = float(grid_eps)
        self.grid_range = [float(grid_range[0]), float(grid_range[1])]
        self.init_options = dict(noise_scale=float(noise_scale), scale_base_mu=float(scale_base_mu),
                                 scale_base_sigma=float(scale_base_sigma))
        self.trainable = dict(sp_trainable=sp_trainable, sb_trainable=sb_trainable)
        dtype = resolve_dtype(dtype)
        device = resolve_device(device)
        generator = torch.Generator().manual_seed(self.seed)
        self.layers = nn.ModuleList(
            KANLayer(self.width[l], self.width[l + 1], self.grid_size, self.k, grid_range=self.grid_range,
                     grid_eps=self.grid_eps, generator=generator, dtype=dtype, device=device, **self.init_options)
            for l in range(len(self.width) - 1))
        for layer in self.layers:
            layer.scale_sp.requires_grad_(sp_trainable)
            layer.scale_base.requires_grad_(sb_trainable)

    # ---- properties -----------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def grid(self) -> int:
        """pykan's name for the grid size."""
        return self.grid_size

    @property
    def n_params(self) -> int:
        """Number of trainable scalars (spline coefficients and both scales)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def dtype(self) -> torch.dtype:
        return self.layers[0].coef.dtype

    @property
    def device(self) -> torch.device:
        return self.layers[0].coef.device

    def config(self) -> dict:
        """Everything needed to rebuild this architecture (JSON-serialisable)."""
        return dict(width=list(self.width), grid=self.grid_size, k=self.k, seed=self.seed, grid_eps=self.grid_eps,
                    grid_range=list(self.grid_range), dtype=str(self.dtype).removeprefix("torch."),
                    **self.init_options, **self.trainable)

    # ---- evaluation -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, width[0]) -> (batch, width[-1])"""
        if x.dim() != 2 or x.shape[1] != self.width[0]:
            raise ValueError(f"input must have shape (batch, {self.width[0]}); got {tuple(x.shape)}")
        h = x.T.contiguous()  # feature-major (width[l], batch) between layers
        for layer in self.layers:
            h = layer.forward_t(h)
        return h.T

    @torch.no_grad()
    def mse_and_grad(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean squared error on (x, y) and its gradient, written to each parameter's ``.grad``.

        The same numbers as ``torch.mean((model(x) - y) ** 2).backward()``, without
        building an autograd graph (the hot path of LBFGS training).
        x: (batch, width[0]), y: (batch, width[-1]).
        """
        return self.mse_and_grad_t(x.T.contiguous(), y.T.contiguous())

    @torch.inference_mode()
    def mse_and_grad_t(self, x_t: torch.Tensor, y_t: torch.Tensor) -> torch.Tensor:
        """:meth:`mse_and_grad` for feature-major x_t (width[0], batch) and y_t (width[-1], batch)."""
        saved = []
        h = x_t
        y = y_t
        for layer in self.layers:
            h, cache = layer.forward_and_cache(h, need_input_grad=len(saved) > 0)
            saved.append(cache)
        residual = h - y  # (out, B)
        loss = torch.mean(residual * residual)
        grad = residual * (2.0 / residual.numel())
        for index in range(self.depth - 1, -1, -1):
            layer = self.layers[index]
            grad, grad_coef, grad_scale_base, grad_scale_sp = layer.backward_from_cache(
                saved[index], grad, need_input_grad=index > 0)
            for param, value in ((layer.coef, grad_coef), (layer.scale_base, grad_scale_base),
                                 (layer.scale_sp, grad_scale_sp)):
                param.grad = value if param.requires_grad else None
        return loss

    @torch.no_grad()
    def layer_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The input of every layer for network input x: list of (batch, width[l])."""
        inputs = [x]
        for layer in self.layers[:-1]:
            inputs.append(layer(inputs[-1]))
        return inputs

    # ---- grids -------------------------------------------------------------------------------
    @torch.no_grad()
    def update_grid_from_samples(self, x: torch.Tensor) -> None:
        """Adapt every layer's grid to the activations that x produces (pykan's name)."""
        for layer in self.layers:
            layer.update_grid_from_samples(x)
            x = layer(x)

    update_grid = update_grid_from_samples

    @torch.no_grad()
    def initialize_from_another_model(self, another_model: "KAN", x: torch.Tensor) -> "KAN":
        """Initialise this (usually finer) model from ``another_model`` by grid extension.

        Each layer's grid refines the other model's grid and its splines are
        least-squares fits of the other model's splines at the activations x
        produces there (x: training inputs). Returns self, as pykan does.
        """
        if not isinstance(another_model, KAN):
            raise ValueError(f"another_model must be a kanlib.KAN; got {type(another_model).__name__}")
        if another_model.width != self.width:
            raise ValueError(f"width mismatch: this model has {self.width}, another_model has {another_model.width}")
        x = x.to(device=self.device, dtype=self.dtype)
        parent_inputs = another_model.layer_inputs(x.to(device=another_model.device, dtype=another_model.dtype))
        for layer, parent, layer_x in zip(self.layers, another_model.layers, parent_inputs):
            layer_x = layer_x.to(device=self.device, dtype=self.dtype)
            layer.initialize_from_parent(_on(parent, self.device, self.dtype), layer_x)
        return self

    def refine(self, new_grid: int, x: torch.Tensor) -> "KAN":
        """A new model with grid size ``new_grid`` initialised from this one on samples x."""
        config = self.config()
        config.update(grid=_check_int("new_grid", new_grid, 1), dtype=self.dtype, device=self.device)
        return KAN(**config).initialize_from_another_model(self, x)

    # ---- training and files --------------------------------------------------------------------
    def fit(self, dataset: dict, **options) -> dict:
        """Train on ``dataset``; see :func:`kanlib.training.fit` for the options."""
        from .training import fit
        return fit(self, dataset, **options)

    def save(self, path) -> Path:
        """Write configuration and tensors to ``path`` atomically; see :mod:`kanlib.checkpoint`."""
        from .checkpoint import save_model
        return save_model(self, path)

    @classmethod
    def load(cls, path, device=None, dtype=None) -> "KAN":
        """Read a model written by :meth:`save`; never executes code from the file."""
        from .checkpoint import load_model
        return load_model(path, device=device, dtype=dtype)


# Options pykan accepts that have no effect here (kept so pykan code runs unchanged).
_IGNORED_PYKAN_OPTIONS = {"symbolic_enabled", "auto_save", "save_act", "save_plot_data", "first_init",
                          "ckpt_path", "state_id", "round", "mult_arity"}


def _on(layer: KANLayer, device, dtype) -> KANLayer:
    if layer.coef.device == device and layer.coef.dtype == dtype:
        return layer
    import copy
    return copy.deepcopy(layer).to(device=device, dtype=dtype)
