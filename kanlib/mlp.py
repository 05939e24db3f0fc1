"""The MLP baseline: a plain multilayer perceptron with KAN's calls (``fit``, ``n_params``, ``save``/``load``).

The KAN paper's Fig. 3.1 compares KANs with MLPs of several depths and widths trained with the
same L-BFGS and step budget; this class is that MLP, for one model or a stack of S (:class:`MLPStack`,
:mod:`kanlib.stack`). It trains through the very same :func:`kanlib.training.fit` (same optimizer,
same stopping rules, same returned histories). Like :class:`kanlib.KAN` it defaults to float64, never
changes torch's default dtype and draws its initial weights from its own generator.

Conventions: ``width = [d, h1, ..., hL, out]``; every hidden layer is ``Linear`` then the
activation; the output layer is linear. Initial weights and biases are uniform in
``[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` (the bounds of ``torch.nn.Linear``'s default init).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .checks import ConfigDict, check_int, check_width
from .devices import dtype_name, each_model, part, resolve_device, resolve_dtype
from .stack import ModelStack

__all__ = ["MLP", "MLPStack", "MLPConfig", "ACTIVATIONS"]

#: Hidden-layer activations by name.
ACTIVATIONS = {"silu": nn.functional.silu, "tanh": torch.tanh, "relu": torch.relu}
# (gradient of the activation's output, its saved tensor) -> gradient of its input, as autograd computes it
_ACTIVATION_BACKWARD = {
    "silu": torch.ops.aten.silu_backward,  # saved: the input z
    "tanh": torch.ops.aten.tanh_backward,  # saved: the output tanh(z)
    "relu": lambda grad, output: torch.ops.aten.threshold_backward(grad, output, 0),  # saved: the output
}


@dataclass(frozen=True)
class MLPConfig(ConfigDict):
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

    @property
    def n_params(self) -> int:
        """Weights and biases: sum over layers of (fan_in + 1) * fan_out."""
        return sum((a + 1) * b for a, b in zip(self.width, self.width[1:]))


class _Linear(nn.Module):
    """S linear layers y = x @ W.T + b: ``weight`` (S, out, in), ``bias`` (S, out) (nn.Linear's names)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)


class MLP(ModelStack):
    """Multilayer perceptron ``width = [d, h1, ..., out]`` with KAN's training and file calls. Every
    tensor carries a leading model axis of length 1 (``layers[l].weight`` is (1, out, in))."""

    FORMAT = "kanlib.MLP"
    Config = MLPConfig
    grid_size = None

    def __init__(
        self, width: Sequence[int] = None, activation: str = "silu", seed: int = 0, device="cpu", dtype=torch.float64
    ):
        super().__init__()
        if width is None:
            raise ValueError("width must be a list of at least 2 layer sizes (input, ..., output), e.g. [2, 16, 1]")
        config = MLPConfig(width=width, activation=activation, seed=seed, dtype=dtype_name(dtype))
        self._build([config], resolve_device(device))

    def _build(self, configs: list[MLPConfig], device: torch.device) -> None:
        self.configs = configs
        self.width = list(configs[0].width)
        self.activation = configs[0].activation
        self._activation = ACTIVATIONS[self.activation]
        generators = [torch.Generator().manual_seed(config.seed) for config in configs]
        dtype = resolve_dtype(configs[0].dtype)
        layers = []
        for fan_in, fan_out in zip(self.width, self.width[1:]):
            bound = 1.0 / fan_in**0.5
            weights, biases = [], []
            for generator in generators:  # (out, in) and (out,), uniform in [-bound, bound)
                weights.append((torch.rand(fan_out, fan_in, generator=generator, dtype=dtype) * 2 - 1) * bound)
                biases.append((torch.rand(fan_out, generator=generator, dtype=dtype) * 2 - 1) * bound)
            layers.append(_Linear(torch.stack(weights).to(device), torch.stack(biases).to(device)))
        self.layers = nn.ModuleList(layers)

    # ---- evaluation -------------------------------------------------------------------------
    def _parts(self, x_t: torch.Tensor):
        """(models, inputs (S', N, in), weights [(S', out, in)], biases [(S', out)]) per part of the stack."""
        for models in each_model(self.n_models, x_t.device):
            weights = [part(layer.weight, models) for layer in self.layers]
            biases = [part(layer.bias, models) for layer in self.layers]
            yield models, part(x_t, models).transpose(1, 2), weights, biases

    def forward_t(self, x_t: torch.Tensor) -> torch.Tensor:
        """Feature-major forward with autograd: x_t (S, width[0], N) -> (S, width[-1], N)."""
        outputs = []
        for _, h, weights, biases in self._parts(x_t):
            for index, (weight, bias) in enumerate(zip(weights, biases)):
                h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))  # (S', N, out)
                if index < len(weights) - 1:
                    h = self._activation(h)
            outputs.append(h.transpose(1, 2).contiguous())  # (S', out, N), as every family returns it
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    @torch.no_grad()
    def layer_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The input of every linear layer (the hidden ones after the activation): list of (N, width[l])
        for one model, (S, N, width[l]) for a stack."""
        inputs = [self.models_input(x)]  # (S, N, width[0])
        for layer in self.layers[:-1]:
            h = torch.baddbmm(layer.bias.unsqueeze(1), inputs[-1], layer.weight.transpose(1, 2))  # (S, N, out)
            inputs.append(self._activation(h))
        return inputs if self.stacked else [h[0] for h in inputs]

    def mse_and_grad_t(self, x_t: torch.Tensor, y_t: torch.Tensor) -> torch.Tensor:
        """Each model's mean squared error on feature-major x_t (S, width[0], N), y_t (S, width[-1], N) and
        its gradient written to each parameter's ``.grad`` (S, ...) (fit's hot path): -> losses (S,).

        Forward and backward by hand, with the kernels autograd calls for a linear layer and the
        activation (the input gradient g @ W, the weight gradient g.T @ x, the bias gradient g.sum, the
        activation's own backward), so the gradients are autograd's without building a graph: 1.2-2.8x
        cheaper an evaluation for widths up to 50 (docs/benchmarks.md)."""
        backward = _ACTIVATION_BACKWARD[self.activation]
        last = len(self.layers) - 1
        losses, grads = [], [[] for _ in self.layers]
        with torch.no_grad():
            for models, h, weights, biases in self._parts(x_t):
                inputs, saved = [], []  # each linear layer's input; each activation's saved tensor
                for index, (weight, bias) in enumerate(zip(weights, biases)):
                    inputs.append(h)
                    z = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))  # (S', N, out)
                    if index < last:
                        h = self._activation(z)
                        saved.append(z if self.activation == "silu" else h)  # silu's backward takes z, the others y
                    else:
                        h = z
                residual = h - part(y_t, models).transpose(1, 2)  # (S', N, out)
                losses.append(torch.mean(residual * residual, dim=(1, 2)))
                grad = residual * (2.0 / (residual.shape[1] * residual.shape[2]))  # d loss / d output
                for index in range(last, -1, -1):
                    weight_grad = torch.bmm(grad.transpose(1, 2), inputs[index])  # (S', out, in)
                    grads[index].append((weight_grad, grad.sum(1)))  # and the bias's (S', out)
                    if index > 0:
                        grad = backward(torch.bmm(grad, weights[index]), saved[index - 1])  # (S', N, in)
        for layer, layer_grads in zip(self.layers, grads):
            for param, values in zip((layer.weight, layer.bias), zip(*layer_grads)):
                param.grad = (values[0] if len(values) == 1 else torch.cat(values)) if param.requires_grad else None
        return losses[0] if len(losses) == 1 else torch.cat(losses)


class MLPStack(MLP):
    """S MLPs of one architecture as one module; see :class:`~kanlib.KANStack` for the calls."""

    stacked = True
    single = MLP
