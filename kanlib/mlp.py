"""The MLP baseline: a plain multilayer perceptron with KAN's calls (``fit``, ``n_params``, ``save``/``load``).

The KAN paper's Fig. 3.1 compares KANs with MLPs of several depths and widths trained with the
same L-BFGS and step budget; this class is that MLP. It trains through the very same
:func:`kanlib.training.fit` (same optimizer, same stopping rules, same returned histories), with
gradients from autograd. Like :class:`kanlib.KAN` it defaults to float64, never changes torch's
default dtype and draws its initial weights from its own generator.

Conventions: ``width = [d, h1, ..., hL, out]``; every hidden layer is ``Linear`` then the
activation; the output layer is linear. Initial weights and biases are uniform in
``[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` (the bounds of ``torch.nn.Linear``'s default init).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from .checks import check_int, check_width
from .devices import dtype_name, resolve_device, resolve_dtype
from .training import fit

__all__ = ["MLP", "MLPConfig", "ACTIVATIONS", "FORMAT"]

#: The checkpoint format of this model family (kanlib.checkpoint).
FORMAT = "kanlib.MLP"

#: Hidden-layer activations by name.
ACTIVATIONS = {"silu": nn.functional.silu, "tanh": torch.tanh, "relu": torch.relu}
# (gradient of the activation's output, its saved tensor) -> gradient of its input, as autograd computes it
_ACTIVATION_BACKWARD = {
    "silu": torch.ops.aten.silu_backward,  # saved: the input z
    "tanh": torch.ops.aten.tanh_backward,  # saved: the output tanh(z)
    "relu": lambda grad, output: torch.ops.aten.threshold_backward(grad, output, 0),  # saved: the output
}


@dataclass(frozen=True)
class MLPConfig:
    """An MLP's architecture and initialisation, validated here once.

    width: layer sizes (input, hidden..., output), at least two; activation: one of ACTIVATIONS;
    seed: the model's own random generator; dtype: 'float64' or 'float32'.
    """

    width: tuple[int, ...]
    activation: str = "silu"
    seed: int = 0
    dtype: str = "float64"

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}; got {self.activation!r}")
        object.__setattr__(self, "width", check_width(self.width))
        object.__setattr__(self, "seed", check_int("seed", self.seed, 0))
        object.__setattr__(self, "dtype", dtype_name(self.dtype))

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "width": list(self.width)}

    @classmethod
    def from_dict(cls, values: dict) -> MLPConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown MLPConfig key(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    @property
    def n_params(self) -> int:
        """Weights and biases: sum over layers of (fan_in + 1) * fan_out."""
        return sum((a + 1) * b for a, b in zip(self.width, self.width[1:]))


class MLP(nn.Module):
    """Multilayer perceptron ``width = [d, h1, ..., out]`` with KAN's training and file calls."""

    #: An MLP has no spline grid: fit() skips grid updates (and keeps the L-BFGS history).
    has_grid = False
    grid_size = None

    def __init__(
        self, width: Sequence[int] = None, activation: str = "silu", seed: int = 0, device="cpu", dtype=torch.float64
    ):
        super().__init__()
        if width is None:
            raise ValueError("width must be a list of at least 2 layer sizes (input, ..., output), e.g. [2, 16, 1]")
        self._build(
            MLPConfig(width=width, activation=activation, seed=seed, dtype=dtype_name(dtype)), resolve_device(device)
        )

    @classmethod
    def from_config(cls, config: MLPConfig, device="cpu") -> MLP:
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model._build(config, resolve_device(device))
        return model

    def _build(self, config: MLPConfig, device: torch.device) -> None:
        self._config = config
        self.width = list(config.width)
        self.seed = config.seed
        self.activation = config.activation
        self._activation = ACTIVATIONS[config.activation]
        generator = torch.Generator().manual_seed(config.seed)
        dtype = resolve_dtype(config.dtype)
        layers = []
        for fan_in, fan_out in zip(self.width, self.width[1:]):
            layer = nn.Linear(fan_in, fan_out, dtype=dtype)
            bound = 1.0 / fan_in**0.5
            with torch.no_grad():  # (fan_out, fan_in) and (fan_out,), uniform in [-bound, bound)
                layer.weight.copy_((torch.rand(fan_out, fan_in, generator=generator, dtype=dtype) * 2 - 1) * bound)
                layer.bias.copy_((torch.rand(fan_out, generator=generator, dtype=dtype) * 2 - 1) * bound)
            layers.append(layer.to(device))
        self.layers = nn.ModuleList(layers)

    # ---- properties -----------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Number of linear layers (hidden layers + 1)."""
        return len(self.layers)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def dtype(self) -> torch.dtype:
        return self.layers[0].weight.dtype

    @property
    def device(self) -> torch.device:
        return self.layers[0].weight.device

    def config(self) -> MLPConfig:
        return dataclasses.replace(self._config, dtype=dtype_name(self.dtype))

    # ---- evaluation -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, width[0]) -> (batch, width[-1])"""
        if x.dim() != 2 or x.shape[1] != self.width[0]:
            raise ValueError(f"input must have shape (batch, {self.width[0]}); got {tuple(x.shape)}")
        h = x
        for layer in self.layers[:-1]:
            h = self._activation(layer(h))  # (batch, h_l)
        return self.layers[-1](h)

    def mse_and_grad_t(self, x_t: torch.Tensor, y_t: torch.Tensor) -> torch.Tensor:
        """Mean squared error on feature-major x_t (width[0], batch), y_t (width[-1], batch) and its
        gradient written to each parameter's ``.grad`` (fit's hot path).

        Forward and backward by hand, with the very kernels autograd calls for nn.Linear and the
        activation (addmm; mm for the weight and input gradients, sum for the bias, the activation's
        own backward), so the gradients are autograd's bit for bit (tests/test_mlp.py) without
        building a graph: 1.2-2.8x cheaper an evaluation for widths up to 50 (docs/benchmarks.md)."""
        weights = [layer.weight for layer in self.layers]  # (out, in) each
        biases = [layer.bias for layer in self.layers]  # (out,)
        backward = _ACTIVATION_BACKWARD[self.activation]
        inputs, saved = [], []  # each linear layer's input; each activation's saved tensor
        with torch.no_grad():
            h = x_t.T  # (batch, width[0])
            last = len(weights) - 1
            for index, (weight, bias) in enumerate(zip(weights, biases)):
                inputs.append(h)
                z = torch.addmm(bias, h, weight.T)  # (batch, out)
                if index < last:
                    h = self._activation(z)
                    saved.append(z if self.activation == "silu" else h)  # silu's backward takes z, tanh/relu the output
                else:
                    h = z
            residual = h - y_t.T  # (batch, out)
            loss = torch.mean(residual * residual)
            grad = residual * (2.0 / residual.numel())  # d loss / d output
            for index in range(last, -1, -1):
                weight, bias = weights[index], biases[index]
                weight.grad = grad.T @ inputs[index] if weight.requires_grad else None  # (out, in)
                bias.grad = grad.sum(0) if bias.requires_grad else None  # (out,)
                if index > 0:
                    grad = backward(grad @ weight, saved[index - 1])  # (batch, in)
        return loss

    def update_grid_from_samples(self, x: torch.Tensor) -> None:
        """Nothing to adapt: an MLP has no grid (fit() does not call this, see ``has_grid``)."""

    # ---- training and files --------------------------------------------------------------------
    #: Train on a dataset: :func:`kanlib.training.fit`, the same call as KAN's.
    fit = fit

    def save(self, path) -> Path:
        """Write configuration and tensors to ``path`` atomically (see :mod:`kanlib.checkpoint`)."""
        return write_checkpoint(path, FORMAT, self.config().to_dict(), self.state_dict())

    @classmethod
    def load(cls, path, device=None, dtype=None) -> MLP:
        """Read a model written by :meth:`save`; never executes code from the file."""
        payload = read_checkpoint(path, FORMAT, load_with={"kanlib.KAN": "kanlib.KAN.load"})
        try:
            model = cls.from_config(MLPConfig.from_dict(payload["config"]))
            model.load_state_dict(payload["state"], strict=True)
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            raise CheckpointError(f"{path}: checkpoint does not match the model it describes: {error}") from None
        if dtype is not None or device is not None:
            model = model.to(
                device=resolve_device(device) if device is not None else None,
                dtype=resolve_dtype(dtype) if dtype is not None else None,
            )
        return model
