"""The KAN model: layers of :class:`~kanlib.layer.KANLayer`, for one model or a stack of S.

Calls mirror pykan's (``KAN(width, grid, k, seed)``, ``fit``, ``initialize_from_another_model``,
``refine``) so pykan code ports by changing its import line. Differences: float64 by default without
touching torch's global default dtype, a local random generator (no global seeding), no symbolic
branch, no multiplication nodes, no checkpoints unless asked. :class:`KANStack` is the same model with
the model axis visible (:mod:`kanlib.stack`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from . import cpu_kernels
from .checks import ConfigDict, check_int, check_width
from .devices import dtype_name, each_model, part, resolve_device, resolve_dtype
from .layer import KANLayer
from .stack import ModelStack
from .training import models_input

# Options pykan accepts that have no effect here (kept so pykan code runs unchanged).
_IGNORED_PYKAN_OPTIONS = {
    "symbolic_enabled",
    "auto_save",
    "save_act",
    "save_plot_data",
    "first_init",
    "ckpt_path",
    "state_id",
    "round",
    "mult_arity",
}


#: How grid updates set each layer's grid range (the splines' ends; beyond a grid's k extension
#: intervals a B-spline is zero, so only the residual SiLU branch extrapolates there).
SPLINE_ENDS = {
    # pykan's convention: every layer's grid spans the range its training samples reach
    "pykan": "every layer's grid follows its samples' range",
    # the first layer's grid stays on grid_range (set it to the inputs' known domain), so test inputs
    # in the gaps the sampled points leave at the domain's edges stay on the grid; hidden layers as pykan
    "input_range": "the first layer's grid stays on grid_range; hidden layers' grids follow their samples",
}


@dataclass(frozen=True)
class KANConfig(ConfigDict):
    """Everything that defines a KAN's architecture and initialisation; validated here, once.

    width: layer sizes (input, ..., output); grid: grid intervals G; k: spline order (3 = cubic);
    seed: the model's own random generator; grid_eps: 1.0 uniform grid updates, 0.0 sample
    quantiles; grid_range: the initial grid [lower, upper]; spline_ends: how the grids' ranges
    follow the data (:data:`SPLINE_ENDS`); noise_scale, scale_base_mu, scale_base_sigma:
    initialisation as pykan's; sp_trainable / sb_trainable: whether the spline and base scales are
    trained; dtype: 'float64' or 'float32'.
    """

    width: tuple[int, ...]
    grid: int = 3
    k: int = 3
    seed: int = 1
    grid_eps: float = 1.0
    grid_range: tuple[float, float] = (-1.0, 1.0)
    spline_ends: str = "pykan"
    noise_scale: float = 1.0
    scale_base_mu: float = 0.0
    scale_base_sigma: float = 1.0
    sp_trainable: bool = True
    sb_trainable: bool = True
    dtype: str = "float64"

    def __post_init__(self):
        normalised = {
            "width": check_width(self.width),
            "grid": check_int("grid", self.grid, 1),
            "k": check_int("k", self.k, 1),
            "seed": check_int("seed", self.seed, 0),
            "dtype": dtype_name(self.dtype),
        }
        if not (
            isinstance(self.grid_eps, (int, float))
            and not isinstance(self.grid_eps, bool)
            and 0.0 <= self.grid_eps <= 1.0
        ):
            raise ValueError(f"grid_eps must be a number in [0, 1]; got {self.grid_eps!r}")
        normalised["grid_eps"] = float(self.grid_eps)
        grid_range = self.grid_range
        if (
            not isinstance(grid_range, (list, tuple))
            or len(grid_range) != 2
            or not all(isinstance(v, (int, float)) and math.isfinite(float(v)) for v in grid_range)
            or float(grid_range[0]) >= float(grid_range[1])
        ):
            raise ValueError(f"grid_range must be [lower, upper] with finite lower < upper; got {grid_range!r}")
        normalised["grid_range"] = (float(grid_range[0]), float(grid_range[1]))
        if self.spline_ends not in SPLINE_ENDS:
            raise ValueError(f"spline_ends must be one of {sorted(SPLINE_ENDS)}; got {self.spline_ends!r}")
        for name in ("noise_scale", "scale_base_mu", "scale_base_sigma"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number; got {value!r}")
            normalised[name] = float(value)
        for name in ("sp_trainable", "sb_trainable"):
            normalised[name] = bool(getattr(self, name))
        for name, value in normalised.items():
            object.__setattr__(self, name, value)


class KAN(ModelStack):
    """Kolmogorov-Arnold Network.

    Parameters
    ----------
    width : list of int, layer sizes, e.g. [2, 1, 1] (at least input and output).
    grid : number of grid intervals G (>= 1).
    k : spline order (>= 1; 3 = cubic).
    seed : seed of this model's own random generator.
    grid_eps : 1.0 = uniform grid updates, 0.0 = sample quantiles, in between mixes.
    grid_range : initial grid range [lower, upper].
    spline_ends : 'pykan' (grid updates fit every layer's grid to its samples' range) or 'input_range'
        (the first layer's grid stays on grid_range, the inputs' known domain); :data:`SPLINE_ENDS`.
    noise_scale, scale_base_mu, scale_base_sigma : initialisation, as pykan.
    device : 'cpu', 'cuda', 'cuda:N' or 'auto'. dtype : torch.float64 (default) or torch.float32.

    The architecture is a :class:`KANConfig` (``KAN.from_config``, ``model.config()``). Every tensor
    carries a leading model axis of length 1 (``layers[l].coef`` is (1, in, out, G + k)).
    """

    FORMAT = "kanlib.KAN"
    Config = KANConfig
    has_grid = True

    def __init__(
        self,
        width: Sequence[int] = None,
        grid: int = 3,
        k: int = 3,
        seed: int = 1,
        grid_eps: float = 1.0,
        grid_range: Sequence[float] = (-1.0, 1.0),
        noise_scale: float = 1.0,
        scale_base_mu: float = 0.0,
        scale_base_sigma: float = 1.0,
        device="cpu",
        dtype=torch.float64,
        spline_ends: str = "pykan",
        **pykan_options,
    ):
        super().__init__()
        base_fun = pykan_options.pop("base_fun", "silu")
        if base_fun != "silu":
            raise ValueError(
                f"base_fun must be 'silu' (the only residual function kanlib implements); got {base_fun!r}"
            )
        for flag in ("affine_trainable", "sparse_init"):
            if pykan_options.pop(flag, False):
                raise ValueError(f"{flag}=True is not supported by kanlib; allowed: False")
        sp_trainable = bool(pykan_options.pop("sp_trainable", True))
        sb_trainable = bool(pykan_options.pop("sb_trainable", True))
        unsupported = {key for key in pykan_options if key not in _IGNORED_PYKAN_OPTIONS}
        if unsupported:
            raise ValueError(
                f"unknown KAN argument(s) {sorted(unsupported)}; supported: width, grid, k, seed, "
                "grid_eps, grid_range, noise_scale, scale_base_mu, scale_base_sigma, device, dtype, spline_ends"
            )
        if width is None:
            raise ValueError("width must be a list of at least 2 layer sizes (input, ..., output), e.g. [2, 1, 1]")
        config = KANConfig(
            width=width,
            grid=grid,
            k=k,
            seed=seed,
            grid_eps=grid_eps,
            grid_range=tuple(grid_range) if isinstance(grid_range, (list, tuple)) else grid_range,
            spline_ends=spline_ends,
            noise_scale=noise_scale,
            scale_base_mu=scale_base_mu,
            scale_base_sigma=scale_base_sigma,
            sp_trainable=sp_trainable,
            sb_trainable=sb_trainable,
            dtype=dtype_name(dtype),
        )
        self._build([config], resolve_device(device))

    def _build(self, configs: list[KANConfig], device: torch.device) -> None:
        config = configs[0]
        self.configs = configs
        self.width, self.k = list(config.width), config.k
        self.grid_eps, self.grid_range, self.spline_ends = config.grid_eps, list(config.grid_range), config.spline_ends
        generators = [torch.Generator().manual_seed(c.seed) for c in configs]  # each model draws its own values
        self.layers = nn.ModuleList(
            KANLayer(
                self.width[l],
                self.width[l + 1],
                config.grid,
                config.k,
                generators=generators,
                grid_range=config.grid_range,
                grid_eps=config.grid_eps,
                noise_scale=config.noise_scale,
                scale_base_mu=config.scale_base_mu,
                scale_base_sigma=config.scale_base_sigma,
                dtype=resolve_dtype(config.dtype),
                device=device,
            )
            for l in range(len(self.width) - 1)
        )
        for layer in self.layers:
            layer.scale_sp.requires_grad_(config.sp_trainable)
            layer.scale_base.requires_grad_(config.sb_trainable)

    def _state_changed(self) -> None:
        for layer in self.layers:
            layer.refresh_grid()

    @property
    def grid_size(self) -> int:
        return self.layers[0].grid_size

    grid = grid_size  # pykan's name

    # ---- evaluation -------------------------------------------------------------------------
    def _kernels_usable(self, x_t: torch.Tensor) -> bool:
        layers = self._modules["layers"]._modules.values()
        return cpu_kernels.usable(x_t, layers, all(layer.all_uniform for layer in layers))

    def forward_t(self, x_t: torch.Tensor) -> torch.Tensor:
        """Feature-major forward: x_t (S, width[0], N) -> (S, width[-1], N), with autograd when enabled."""
        if not torch.is_grad_enabled() and self._kernels_usable(x_t):
            layers = list(self.layers)
            return cpu_kernels.forward(layers, [layer.params() for layer in layers], [lay.knots for lay in layers], x_t)
        outputs = []
        for models in each_model(self.n_models, x_t.device):
            h = part(x_t, models)
            for layer in self.layers:
                h = layer.forward_t(h, models)
            outputs.append(h)
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    def mse_and_grad_t(self, x_t: torch.Tensor, y_t: torch.Tensor) -> torch.Tensor:
        """Each model's mean squared error on feature-major x_t (S, width[0], N), y_t (S, width[-1], N)
        and its gradient written to each parameter's ``.grad`` (S, ...): -> losses (S,).

        On the CPU in float64 with uniform grids through the fused C kernels (:mod:`kanlib.cpu_kernels`,
        model by model), else through the hand-written backward of :mod:`kanlib.layer`."""
        layers = list(self._modules["layers"])
        if self._kernels_usable(x_t):
            params = [layer.params() for layer in layers]
            knots = [layer._buffers["knots"] for layer in layers]
            losses, grads = cpu_kernels.mse_and_grads(layers, params, knots, x_t, y_t)
        else:
            losses, grads = self._mse_and_grads_torch(layers, x_t, y_t)
        for layer_params, layer_grads in zip((layer._parameters for layer in layers), grads):
            for name, value in zip(("coef", "scale_base", "scale_sp"), layer_grads):
                param = layer_params[name]
                if param.grad is not value:  # (the same kept tensor as last time: nothing to set)
                    param.grad = value if param.requires_grad else None
        return losses

    @torch.inference_mode()
    def _mse_and_grads_torch(self, layers, x_t: torch.Tensor, y_t: torch.Tensor):
        """(losses (S,), per layer (grad_coef, grad_scale_base, grad_scale_sp)) through the torch path."""
        parts = each_model(self.n_models, x_t.device)
        input_key = (x_t.data_ptr(), None if x_t.is_inference() else x_t._version, x_t.shape)
        losses, grads = [], []
        for models in parts:
            saved, h = [], part(x_t, models)
            for layer in layers:
                h, cache = layer.forward_and_cache(h, models, len(saved) > 0, None if saved else input_key)
                saved.append(cache)
            residual = h - part(y_t, models)  # (S', out, N)
            losses.append(torch.mean(residual * residual, dim=(1, 2)))
            grad = residual * (2.0 / (residual.shape[1] * residual.shape[2]))
            part_grads = [None] * len(layers)
            for index in range(len(layers) - 1, -1, -1):
                grad, *part_grads[index] = layers[index].backward_from_cache(saved[index], grad, index > 0)
            grads.append(part_grads)
        if len(parts) == 1:
            return losses[0], grads[0]
        return torch.cat(losses), [[torch.cat(g) for g in zip(*per_layer)] for per_layer in zip(*grads)]

    @torch.no_grad()
    def layer_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The input of every layer: list of (N, width[l]) for one model, (S, N, width[l]) for a stack."""
        inputs = [self.models_input(x)]
        for layer in self.layers[:-1]:
            inputs.append(layer(inputs[-1]))
        return inputs if self.stacked else [h[0] for h in inputs]

    # ---- grids -------------------------------------------------------------------------------
    @torch.no_grad()
    def update_grid_from_samples(self, x: torch.Tensor) -> None:
        """Adapt every layer's grid to the activations that x (one model's (N, d); a stack's (S, N, d) or
        shared (N, d)) produces (pykan's name); x is cast to the model's dtype and device first."""
        self.update_grids(self.models_input(x).to(device=self.device, dtype=self.dtype))

    update_grid = update_grid_from_samples

    @torch.no_grad()
    def update_grids(self, x: torch.Tensor) -> None:
        """:meth:`update_grid_from_samples` for x (S, N, width[0]); with spline_ends 'input_range' the
        first layer's grid stays where it is (on grid_range)."""
        for index, layer in enumerate(self.layers):
            if index > 0 or self.spline_ends == "pykan":
                layer.update_grid_from_samples(x)
            x = layer(x)  # (S, N, width[index + 1])

    @torch.no_grad()
    def initialize_from_another_model(self, another_model: KAN, x: torch.Tensor) -> KAN:
        """Initialise this (usually finer) model from ``another_model`` by grid extension, model by model.

        Each layer's grid refines the other model's grid and its splines are least-squares fits of the
        other model's splines at the activations x produces there (x: training inputs; a stack's
        (S, N, d) or shared (N, d)). Returns self, as pykan does.
        """
        if not isinstance(another_model, KAN):
            raise ValueError(f"another_model must be a kanlib.KAN; got {type(another_model).__name__}")
        if another_model.width != self.width or another_model.n_models != self.n_models:
            raise ValueError(
                f"model mismatch: this one has {self.n_models} model(s) of width {self.width}, "
                f"another_model has {another_model.n_models} of width {another_model.width}"
            )
        x = models_input(x, self.n_models, self.width[0], "x")
        parent_inputs = [x.to(device=another_model.device, dtype=another_model.dtype)]
        for parent in another_model.layers[:-1]:
            parent_inputs.append(parent(parent_inputs[-1]))
        for layer, parent, layer_x in zip(self.layers, another_model.layers, parent_inputs):
            if parent.coef.device != self.device or parent.coef.dtype != self.dtype:
                parent = copy.deepcopy(parent).to(device=self.device, dtype=self.dtype)
            layer.initialize_from_parent(parent, layer_x.to(device=self.device, dtype=self.dtype))
        return self

    def refine(self, new_grid: int, x: torch.Tensor | None = None) -> KAN:
        """A new model (stack) with grid size ``new_grid`` initialised from this one on samples x
        (pykan's grid extension). Without x: the training inputs of this model's last ``fit``
        (pykan 0.2.8 takes the input of the last forward pass, after ``fit`` the *test* inputs)."""
        new_grid = check_int("new_grid", new_grid, 1)
        if x is None:
            x = getattr(self, "last_fit_input", None)
            if x is None:
                raise ValueError(
                    "refine(new_grid) without x extends the grid on the training inputs of this model's last "
                    "fit, and this model has not been fitted: call fit first, or pass x (samples (N, d))"
                )
        configs = [dataclasses.replace(config, grid=new_grid) for config in self.configs]
        return type(self).from_configs(configs, self.device).initialize_from_another_model(self, x)


class KANStack(KAN):
    """S KANs of one architecture as one module (:mod:`kanlib.stack`): built with :meth:`stack` from
    single :class:`KAN` models, split with :meth:`unstack`; :meth:`fit` trains all S at once, each model
    with its own L-BFGS. Inputs are (S, N, width[0]) (each model its own samples) or (N, width[0]) (shared)."""

    stacked = True
    single = KAN
