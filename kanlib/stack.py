"""Many KANs of one architecture trained as one: :class:`KANStack`.

S models with the same width, grid size and spline order (typically the seeds of one scaling-law
point) become one module whose tensors carry a leading model axis S. One batched forward and
backward (:mod:`kanlib.layer_stack`) evaluates all S models, each on its own dataset of the same
size (inputs (S, N, d)) or on a shared one ((N, d)); :func:`kanlib.stack_training.fit_stack`
trains them with S independent L-BFGS runs (:mod:`kanlib.batched_optim`).

A stack is built from single models (:meth:`KANStack.stack`) and split back into them
(:meth:`KANStack.unstack`), both exactly, so checkpoints stay one file per model
(``model.save``) and everything downstream is unchanged::

    stack = KANStack.stack([KAN(width=[2, 1, 1], grid=5, k=3, seed=s) for s in range(8)])
    results = stack.fit(datasets, steps=50)      # one dict per model, as KAN.fit returns
    for seed, model in enumerate(stack.unstack()):
        model.save(f"seed{seed}.pt")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from . import cpu_kernels
from .layer_stack import KANLayerStack
from .model import KAN
from .stack_training import fit_stack, models_input

__all__ = ["KANStack"]


def _check_same_architecture(configs: Sequence, what: str) -> None:
    """All configs equal apart from the seed; else ValueError naming the first differing field."""
    first = dataclasses.asdict(configs[0])
    for index, config in enumerate(configs[1:], start=1):
        values = dataclasses.asdict(config)
        for name, value in values.items():
            if name != "seed" and value != first[name]:
                raise ValueError(
                    f"a stack needs {what}s of one architecture: model {index} has {name}={value!r}, "
                    f"model 0 has {name}={first[name]!r} (only the seed may differ)"
                )


class ModelStack(nn.Module):
    """What every stack of S same-shaped models has: ``configs`` (one per model, with its seed) and
    parameters whose leading dimension is the model."""

    configs: list

    @property
    def n_models(self) -> int:
        return len(self.configs)

    @property
    def seeds(self) -> list[int]:
        return [config.seed for config in self.configs]

    @property
    def n_params(self) -> int:
        """Trainable scalars of one model (as its family's n_params)."""
        return sum(p[0].numel() for p in self.parameters() if p.requires_grad)


class KANStack(ModelStack):
    """S KANs of one architecture as one module (parameters with a leading model axis).

    Build with :meth:`stack` (from single :class:`~kanlib.KAN` models) and split with
    :meth:`unstack`; :meth:`fit` trains all S at once (:func:`kanlib.stack_training.fit_stack`).
    Inputs are (S, N, width[0]) (each model its own samples) or (N, width[0]) (shared).
    """

    #: Grid updates and grid extension apply (fit_stack reads this, as fit reads KAN's).
    has_grid = True

    def __init__(self, models: Sequence[KAN]):
        super().__init__()
        models = list(models)
        if not models or not all(isinstance(model, KAN) for model in models):
            raise ValueError("KANStack needs a non-empty list of kanlib.KAN models")
        configs = [model.config() for model in models]
        _check_same_architecture(configs, "KAN")
        devices = {str(model.device) for model in models}
        if len(devices) > 1:
            raise ValueError(f"a stack's models must be on one device; got {sorted(devices)}")
        grid_sizes = [[layer.grid_size for layer in model.layers] for model in models]
        if any(sizes != grid_sizes[0] for sizes in grid_sizes):
            raise ValueError(f"a stack's models must have the same grid sizes; got {grid_sizes}")
        self.configs = configs
        self.width = list(configs[0].width)
        self.k = configs[0].k
        self.layers = nn.ModuleList(
            KANLayerStack.stack([model.layers[l] for model in models]) for l in range(len(self.width) - 1)
        )

    @classmethod
    def stack(cls, models: Sequence[KAN]) -> KANStack:
        """One stack from S single models (copies of their tensors; the models are left as they are)."""
        return cls(models)

    def unstack(self) -> list[KAN]:
        """The S single models, each an exact copy of its slice (``save`` writes the usual checkpoint)."""
        models = []
        for s, config in enumerate(self.configs):
            model = KAN.from_config(dataclasses.replace(config, grid=self.grid_size), device=self.device)
            for layer_stack, layer in zip(self.layers, model.layers):
                layer_stack.copy_model_into(s, layer)
            models.append(model)
        return models

    # ---- properties -----------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def grid_size(self) -> int:
        return self.layers[0].grid_size

    grid = grid_size

    @property
    def dtype(self) -> torch.dtype:
        return self.layers[0].coef.dtype

    @property
    def device(self) -> torch.device:
        return self.layers[0].coef.device

    # ---- evaluation ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (S, N, width[0]) or shared (N, width[0]) -> (S, N, width[-1])"""
        h = models_input(x, self.n_models, self.width[0], "input").transpose(1, 2).contiguous()  # (S, d, N)
        for layer in self.layers:
            h = layer.forward_t(h)  # (S, width[l+1], N)
        return h.transpose(1, 2)

    @torch.inference_mode()
    def mse_and_grad_t(self, x_t: torch.Tensor, y_t: torch.Tensor) -> torch.Tensor:
        """Each model's mean squared error on feature-major x_t (S, width[0], N), y_t (S, width[-1], N)
        and its gradient written to each parameter's ``.grad`` (S, ...): -> losses (S,).

        Model s's loss and gradient are bit-for-bit those of KAN.mse_and_grad_t for it alone (on the
        CPU in float64 with uniform grids both run the C kernels of :mod:`kanlib.cpu_kernels`)."""
        layers = list(self.layers)
        if cpu_kernels.usable(x_t, layers, all(all(layer.uniform) for layer in layers)):
            losses, grads = cpu_kernels.mse_and_grads(
                layers,
                [(layer.coef, layer.scale_base, layer.scale_sp) for layer in layers],
                [layer.knots for layer in layers],
                x_t,
                y_t,
            )
            for layer, layer_grads in zip(layers, grads):
                for param, value in zip((layer.coef, layer.scale_base, layer.scale_sp), layer_grads):
                    if param.grad is not value:  # (the same kept tensor as last time: nothing to set)
                        param.grad = value if param.requires_grad else None
            return losses
        saved = []
        h = x_t
        for layer in self.layers:
            h, cache = layer.forward_and_cache(h, need_input_grad=len(saved) > 0)
            saved.append(cache)
        residual = h - y_t  # (S, out, N)
        losses = torch.mean(residual * residual, dim=(1, 2))  # (S,)
        grad = residual * (2.0 / (residual.shape[1] * residual.shape[2]))
        for index in range(self.depth - 1, -1, -1):
            layer = self.layers[index]
            grad, grad_coef, grad_scale_base, grad_scale_sp = layer.backward_from_cache(
                saved[index], grad, need_input_grad=index > 0
            )
            for param, value in (
                (layer.coef, grad_coef),
                (layer.scale_base, grad_scale_base),
                (layer.scale_sp, grad_scale_sp),
            ):
                param.grad = value if param.requires_grad else None
        return losses

    @torch.no_grad()
    def layer_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The input of every layer, per model: list of (S, N, width[l])."""
        inputs = [models_input(x, self.n_models, self.width[0], "input")]
        for layer in self.layers[:-1]:
            inputs.append(layer(inputs[-1]))
        return inputs

    # ---- grids -----------------------------------------------------------------------------------
    @torch.no_grad()
    def update_grid_from_samples(self, x: torch.Tensor) -> None:
        """Adapt every model's grids to the activations its samples x (S, N, d) or (N, d) produce."""
        x = models_input(x, self.n_models, self.width[0], "input")
        for layer in self.layers:
            layer.update_grid_from_samples(x)
            x = layer(x)

    update_grid = update_grid_from_samples

    @torch.no_grad()
    def initialize_from_another_model(self, another: KANStack, x: torch.Tensor) -> KANStack:
        """Grid extension per model: model s of this (finer) stack from model s of ``another``,
        on model s's samples x[s] (x: (S, N, d), or (N, d) shared). Returns self."""
        if not isinstance(another, KANStack):
            raise ValueError(f"another must be a kanlib.KANStack; got {type(another).__name__}")
        if another.width != self.width or another.n_models != self.n_models:
            raise ValueError(
                f"stack mismatch: this stack has {self.n_models} models of width {self.width}, "
                f"another has {another.n_models} of width {another.width}"
            )
        x = models_input(x, self.n_models, self.width[0], "x").to(device=self.device, dtype=self.dtype)
        for layer, parent, layer_x in zip(self.layers, another.layers, another.layer_inputs(x)):
            layer.initialize_from_parent(parent, layer_x)
        return self

    def refine(self, new_grid: int, x: torch.Tensor) -> KANStack:
        """A new stack with grid size ``new_grid``, each model initialised from this stack's (KAN.refine)."""
        fresh = [
            KAN.from_config(dataclasses.replace(config, grid=new_grid), device=self.device) for config in self.configs
        ]
        return KANStack.stack(fresh).initialize_from_another_model(self, x)

    # ---- memory and training --------------------------------------------------------------------
    def memory_estimate(self, n_train: int, n_test: int | None = None) -> int:
        """Bytes that training this stack on n_train samples per model (and evaluating n_test) needs
        at most: the tensors of one loss evaluation, of a grid update's least-squares fit and of the
        optimizer's history, for all S models (an upper bound from the shapes, not a measurement)."""
        from .stack_training import stack_memory_estimate

        return stack_memory_estimate(self, n_train, n_test)

    #: Train all models at once: :func:`kanlib.stack_training.fit_stack` (fit's options, one result per model).
    fit = fit_stack
