"""The KAN model: a stack of :class:`~kanlib.layer.KANLayer`.

Calls mirror pykan's (``KAN(width, grid, k, seed)``, ``fit``,
``initialize_from_another_model``, ``refine``) so pykan code ports by
changing its import line. Differences: float64 by default without touching
torch's global default dtype, a local random generator (no global seeding),
no symbolic branch, no multiplication nodes, no checkpoints unless asked.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import cpu_kernels
from .checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from .checks import check_int, check_width
from .devices import dtype_name, resolve_device, resolve_dtype
from .layer import KANLayer
from .training import fit

#: The checkpoint format of this model family (kanlib.checkpoint).
FORMAT = "kanlib.KAN"

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


@dataclass(frozen=True)
class KANConfig:
    """Everything that defines a KAN's architecture and initialisation; validated here, once.

    width: layer sizes (input, ..., output); grid: grid intervals G; k: spline order (3 = cubic);
    seed: the model's own random generator; grid_eps: 1.0 uniform grid updates, 0.0 sample
    quantiles; grid_range: the initial grid [lower, upper]; noise_scale, scale_base_mu,
    scale_base_sigma: initialisation as pykan's; sp_trainable / sb_trainable: whether the spline
    and base scales are trained; dtype: 'float64' or 'float32'.
    """

    width: tuple[int, ...]
    grid: int = 3
    k: int = 3
    seed: int = 1
    grid_eps: float = 1.0
    grid_range: tuple[float, float] = (-1.0, 1.0)
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
        for name in ("noise_scale", "scale_base_mu", "scale_base_sigma"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number; got {value!r}")
            normalised[name] = float(value)
        for name in ("sp_trainable", "sb_trainable"):
            normalised[name] = bool(getattr(self, name))
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict:
        """JSON-serialisable form (lists for tuples): what checkpoints and metrics.json record."""
        values = dataclasses.asdict(self)
        values.update(width=list(self.width), grid_range=list(self.grid_range))
        return values

    @classmethod
    def from_dict(cls, values: dict) -> KANConfig:
        """The inverse of :meth:`to_dict`; unknown keys raise ValueError naming them."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown KANConfig key(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


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

    The architecture is a :class:`KANConfig` (``KAN.from_config``, ``model.config()``).
    """

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
                "grid_eps, grid_range, noise_scale, scale_base_mu, scale_base_sigma, device, dtype"
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
            noise_scale=noise_scale,
            scale_base_mu=scale_base_mu,
            scale_base_sigma=scale_base_sigma,
            sp_trainable=sp_trainable,
            sb_trainable=sb_trainable,
            dtype=dtype_name(dtype),
        )
        self._build(config, resolve_device(device))

    @classmethod
    def from_config(cls, config: KANConfig, device="cpu") -> KAN:
        """A freshly initialised KAN of ``config`` on ``device``."""
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model._build(config, resolve_device(device))
        return model

    def _build(self, config: KANConfig, device: torch.device) -> None:
        self._config = config
        self.width = list(config.width)
        self.grid_size, self.k, self.seed = config.grid, config.k, config.seed
        self.grid_eps, self.grid_range = config.grid_eps, list(config.grid_range)
        generator = torch.Generator().manual_seed(config.seed)
        self.layers = nn.ModuleList(
            KANLayer(
                self.width[l],
                self.width[l + 1],
                config.grid,
                config.k,
                grid_range=config.grid_range,
                grid_eps=config.grid_eps,
                noise_scale=config.noise_scale,
                scale_base_mu=config.scale_base_mu,
                scale_base_sigma=config.scale_base_sigma,
                generator=generator,
                dtype=resolve_dtype(config.dtype),
                device=device,
            )
            for l in range(len(self.width) - 1)
        )
        for layer in self.layers:
            layer.scale_sp.requires_grad_(config.sp_trainable)
            layer.scale_base.requires_grad_(config.sb_trainable)

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

    def config(self) -> KANConfig:
        """This model's :class:`KANConfig` (its dtype as the parameters have it now)."""
        return dataclasses.replace(self._config, dtype=dtype_name(self.dtype))

    # ---- evaluation -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, width[0]) -> (batch, width[-1])"""
        if x.dim() != 2 or x.shape[1] != self.width[0]:
            raise ValueError(f"input must have shape (batch, {self.width[0]}); got {tuple(x.shape)}")
        h = x.T.contiguous()  # feature-major (width[l], batch) between layers
        for layer in self.layers:
            h = layer.forward_t(h)
        return h.T

    @staticmethod
    def _kernel_operands(layers):
        """Per layer (coef, scale_base, scale_sp) and knots with a leading model axis of 1 (kanlib.cpu_kernels)."""
        params = [
            (p["coef"][None], p["scale_base"][None], p["scale_sp"][None]) for p in (lay._parameters for lay in layers)
        ]
        return params, [layer._buffers["knots"][None] for layer in layers]

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
        """:meth:`mse_and_grad` for feature-major x_t (width[0], batch) and y_t (width[-1], batch).

        On the CPU in float64 with uniform grids through the fused C kernels (:mod:`kanlib.cpu_kernels`),
        else through the torch path below."""
        layers = list(self._modules["layers"])
        if cpu_kernels.usable(x_t, layers, all(layer.uniform_grid for layer in layers)):
            operands = self._kernel_operands(layers)
            losses, grads = cpu_kernels.mse_and_grads(layers, *operands, x_t[None], y_t[None], one_model=True)
            for layer_params, layer_grads in zip((layer._parameters for layer in layers), grads):
                for name, value in zip(("coef", "scale_base", "scale_sp"), layer_grads):
                    param = layer_params[name]
                    if param.grad is not value:  # (the same kept tensor as last time: nothing to set)
                        param.grad = value if param.requires_grad else None
            return losses[0]
        saved = []
        h = x_t
        y = y_t
        for layer in layers:
            h, cache = layer.forward_and_cache(h, need_input_grad=len(saved) > 0)
            saved.append(cache)
        residual = h - y  # (out, B)
        loss = torch.mean(residual * residual)
        grad = residual * (2.0 / residual.numel())
        for index in range(len(saved) - 1, -1, -1):
            layer = layers[index]
            grad, *param_grads = layer.backward_from_cache(saved[index], grad, need_input_grad=index > 0)
            params = layer._parameters  # (plain dict look-ups: this runs once per loss evaluation)
            for name, value in zip(("coef", "scale_base", "scale_sp"), param_grads):
                param = params[name]
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
    def initialize_from_another_model(self, another_model: KAN, x: torch.Tensor) -> KAN:
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

    def refine(self, new_grid: int, x: torch.Tensor) -> KAN:
        """A new model with grid size ``new_grid`` initialised from this one on samples x."""
        config = dataclasses.replace(self.config(), grid=check_int("new_grid", new_grid, 1))
        return KAN.from_config(config, device=self.device).initialize_from_another_model(self, x)

    # ---- training and files --------------------------------------------------------------------
    #: Train on a dataset: :func:`kanlib.training.fit` (the signature and options are defined there, once).
    fit = fit

    def save(self, path) -> Path:
        """Write configuration and tensors to ``path`` atomically (see :mod:`kanlib.checkpoint`)."""
        return write_checkpoint(
            path,
            FORMAT,
            self.config().to_dict(),
            self.state_dict(),
            grid_sizes=[layer.grid_size for layer in self.layers],
        )

    @classmethod
    def load(cls, path, device=None, dtype=None) -> KAN:
        """Read a model written by :meth:`save`; never executes code from the file.

        device/dtype: where and in which precision to put the model (default: as saved, on the CPU).
        Raises FileNotFoundError for a missing file and CheckpointError for anything unusable.
        """
        payload = read_checkpoint(path, FORMAT, load_with=_OTHER_FORMATS)
        state = payload["state"]
        try:
            model = cls.from_config(KANConfig.from_dict(payload["config"]))
            # the saved grids may differ from a fresh model's (grid updates): size the tensors as saved
            for index, (layer, grid_size) in enumerate(zip(model.layers, payload.get("grid_sizes", []))):
                n_knots = state[f"layers.{index}.knots"].shape[1]
                layer.grid_size = int(grid_size)
                layer.knots = torch.empty(layer.in_dim, n_knots, dtype=layer.knots.dtype)
                layer.coef.data = torch.empty(
                    layer.in_dim, layer.out_dim, n_knots - layer.k - 1, dtype=layer.coef.dtype
                )
            model.load_state_dict(state, strict=True)
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            raise CheckpointError(f"{path}: checkpoint does not match the model it describes: {error}") from None
        for layer in model.layers:
            layer.refresh_grid()
        if dtype is not None or device is not None:
            model = model.to(
                device=resolve_device(device) if device is not None else None,
                dtype=resolve_dtype(dtype) if dtype is not None else None,
            )
        return model


# Other model families' checkpoint formats, for the message when one is given to KAN.load.
_OTHER_FORMATS = {"kanlib.MLP": "kanlib.MLP.load"}


def _on(layer: KANLayer, device, dtype) -> KANLayer:
    if layer.coef.device == device and layer.coef.dtype == dtype:
        return layer
    return copy.deepcopy(layer).to(device=device, dtype=dtype)
