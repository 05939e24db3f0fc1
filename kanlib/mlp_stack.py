"""Many MLPs of one architecture trained as one: :class:`MLPStack` (the baseline family's stack).

S :class:`~kanlib.MLP` of one width and activation become one module whose weights are
(S, out, in) and biases (S, out); :func:`kanlib.stack_training.fit_stack` trains them with S
independent L-BFGS runs, as it trains a :class:`~kanlib.KANStack`. Built from single models
(:meth:`MLPStack.stack`) and split back (:meth:`MLPStack.unstack`), both exactly.

Each model's forward and gradient are bit-for-bit what ``MLP.mse_and_grad_t`` computes for it
alone: every product is the batched one only where that equals the model's own ``addmm`` / ``mm``
(checked once per shape, :mod:`kanlib.layer_stack`), and the backward pass writes out the
products autograd takes for ``nn.Linear`` (input gradient ``g @ W``, weight gradient ``g.T @ x``,
bias gradient ``g.sum(0)``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from .layer_stack import _per_model, elementwise_per_model
from .mlp import MLP
from .stack import ModelStack, _check_same_architecture
from .stack_training import fit_stack, models_input

__all__ = ["MLPStack"]


# ---- one linear layer for S models: y = x @ W.T + b ---------------------------------------------------


def _linear_batched(x, weight, bias):  # (S, N, in), (S, out, in), (S, out) -> (S, N, out)
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def _linear_alone(x, weight, bias):
    return torch.stack([torch.addmm(bias[s], x[s], weight[s].t()) for s in range(x.shape[0])])


def _input_grad_batched(grad, weight):  # (S, N, out), (S, out, in) -> (S, N, in)
    return torch.bmm(grad, weight)


def _input_grad_alone(grad, weight):
    return torch.stack([grad[s].mm(weight[s]) for s in range(grad.shape[0])])


def _weight_grad_batched(grad, x):  # (S, N, out), (S, N, in) -> (S, out, in)
    return torch.bmm(grad.transpose(1, 2), x)


def _weight_grad_alone(grad, x):
    return torch.stack([grad[s].t().mm(x[s]) for s in range(grad.shape[0])])


class _StackedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return _per_model("linear", _linear_batched, _linear_alone, x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = _per_model("linear_input_grad", _input_grad_batched, _input_grad_alone, grad, weight)
        if ctx.needs_input_grad[1]:
            grad_weight = _per_model("linear_weight_grad", _weight_grad_batched, _weight_grad_alone, grad, x)
        if ctx.needs_input_grad[2]:
            grad_bias = grad.sum(1)  # (S, out): each model's sum over its samples
        return grad_x, grad_weight, grad_bias


class _StackedActivation(torch.autograd.Function):
    """The hidden activation, each model's block computed as the MLP alone computes it."""

    @staticmethod
    def forward(ctx, x, name):
        ctx.name = name
        function = {"silu": torch.nn.functional.silu, "tanh": torch.tanh, "relu": torch.relu}[name]
        y = elementwise_per_model(function, x.contiguous())
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        grad = grad.contiguous()
        if ctx.name == "silu":
            return elementwise_per_model(torch.ops.aten.silu_backward, grad, x.contiguous()), None
        if ctx.name == "tanh":
            return elementwise_per_model(torch.ops.aten.tanh_backward, grad, y), None
        return elementwise_per_model(lambda g, r: torch.ops.aten.threshold_backward(g, r, 0), grad, y), None


class _LinearStack(nn.Module):
    """S linear layers: ``weight`` (S, out, in), ``bias`` (S, out) (nn.Linear's order: weight, bias)."""

    def __init__(self, layers: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))

    def forward(self, x):  # (S, N, in) -> (S, N, out)
        return _StackedLinear.apply(x, self.weight, self.bias)


class MLPStack(ModelStack):
    """S MLPs of one architecture as one module; see :class:`~kanlib.KANStack` for the calls."""

    #: No spline grid: fit_stack skips grid updates.
    has_grid = False
    grid_size = None

    def __init__(self, models: Sequence[MLP]):
        super().__init__()
        models = list(models)
        if not models or not all(isinstance(model, MLP) for model in models):
            raise ValueError("MLPStack needs a non-empty list of kanlib.MLP models")
        configs = [model.config() for model in models]
        _check_same_architecture(configs, "MLP")
        self.configs = configs
        self.width = list(configs[0].width)
        self.activation = configs[0].activation
        self.layers = nn.ModuleList(
            _LinearStack([model.layers[l] for model in models]) for l in range(len(self.width) - 1)
        )

    @classmethod
    def stack(cls, models: Sequence[MLP]) -> MLPStack:
        """One stack from S single MLPs (copies of their tensors)."""
        return cls(models)

    def unstack(self) -> list[MLP]:
        """The S single MLPs, exact copies of their slices (``save`` writes the usual checkpoint)."""
        models = []
        for s, config in enumerate(self.configs):
            model = MLP.from_config(dataclasses.replace(config), device=self.device)
            with torch.no_grad():
                for stacked, layer in zip(self.layers, model.layers):
                    layer.weight.copy_(stacked.weight[s])
                    layer.bias.copy_(stacked.bias[s])
            models.append(model)
        return models

    @property
    def dtype(self) -> torch.dtype:
        return self.layers[0].weight.dtype

    @property
    def device(self) -> torch.device:
        return self.layers[0].weight.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (S, N, width[0]) or shared (N, width[0]) -> (S, N, width[-1])"""
        h = models_input(x, self.n_models, self.width[0], "input")
        for layer in self.layers[:-1]:
            h = _StackedActivation.apply(layer(h), self.activation)  # (S, N, h_l)
        return self.layers[-1](h)

    def mse_and_grad_t(self, x_t: torch.Tensor, y_t: torch.Tensor) -> torch.Tensor:
        """Each model's mean squared error on feature-major x_t (S, width[0], N), y_t (S, width[-1], N)
        and its gradient in each parameter's ``.grad`` (S, ...): -> losses (S,)."""
        with torch.enable_grad():
            residual = self.forward(x_t.transpose(1, 2)) - y_t.transpose(1, 2)  # (S, N, out)
            losses = torch.mean(residual * residual, dim=(1, 2))  # (S,)
            params = [p for p in self.parameters() if p.requires_grad]
            grads = torch.autograd.grad(losses.sum(), params)
        for param, grad in zip(params, grads):
            param.grad = grad
        return losses.detach()

    def update_grid_from_samples(self, x: torch.Tensor) -> None:
        """Nothing to adapt: an MLP has no grid."""

    def memory_estimate(self, n_train: int, n_test: int | None = None) -> int:
        """Bytes that training this stack needs at most (:func:`kanlib.stack_training.stack_memory_estimate`)."""
        from .stack_training import stack_memory_estimate

        return stack_memory_estimate(self, n_train, n_test)

    #: Train all models at once: :func:`kanlib.stack_training.fit_stack`.
    fit = fit_stack
