"""What every model family shares: S >= 1 models of one architecture as one module.

A family (:class:`~kanlib.KAN`, :class:`~kanlib.MLP`) keeps its S models' tensors with a leading model
axis S; one model is S = 1, and the family's own class (``KAN(width, grid, k, seed)``) is that model
with pykan's calls: inputs (N, d), outputs (N, out), ``fit`` returning one dict, ``save``/``load`` of
one file. Its stack class (:class:`~kanlib.KANStack`, :class:`~kanlib.MLPStack`) is the same code with
the model axis visible: inputs (S, N, d) or shared (N, d), outputs (S, N, out), ``fit`` returning one
dict per model. A stack is built from single models (:meth:`ModelStack.stack`) and split back into
them (:meth:`ModelStack.unstack`), both exactly, so checkpoints stay one file per model::

    stack = KANStack.stack([KAN(width=[2, 1, 1], grid=5, k=3, seed=s) for s in range(8)])
    results = stack.fit(datasets, steps=50)      # one dict per model, as KAN.fit returns
    for seed, model in enumerate(stack.unstack()):
        model.save(f"seed{seed}.pt")

A family class defines ``FORMAT`` (its checkpoint format), ``Config`` (its config dataclass, with
``seed``, ``to_dict`` and ``from_dict``), ``_build(configs, device)``, ``forward_t`` and
``mse_and_grad_t``; training (:func:`kanlib.training.fit`) needs nothing else.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from . import training
from .checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from .devices import resolve_device, resolve_dtype
from .training import fit, models_input, stack_memory_estimate

__all__ = ["ModelStack", "FORMATS"]

#: Every family's checkpoint format and the call that reads it (for the message when a file of another
#: family is given to a family's load).
FORMATS: dict[str, str] = {}


class ModelStack(nn.Module):
    """S models of one family and architecture (see the module's docstring)."""

    FORMAT: str
    Config: type
    #: False: one model's calls; True: a stack's (the model axis visible in inputs, outputs and results)
    stacked = False
    #: what unstack returns (the family's single-model class)
    single: type | None = None
    #: grid updates and grid extension apply (fit reads this)
    has_grid = False
    configs: list

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.stacked and "FORMAT" in cls.__dict__:
            FORMATS[cls.FORMAT] = f"kanlib.{cls.__name__}.load"

    # ---- building, stacking, splitting --------------------------------------------------------
    @classmethod
    def from_configs(cls, configs: Sequence, device="cpu") -> ModelStack:
        """Freshly initialised models, one per config (one architecture, any seeds), on ``device``."""
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model._build(list(configs), resolve_device(device))
        return model

    @classmethod
    def from_config(cls, config, device="cpu") -> ModelStack:
        """A freshly initialised model of ``config`` on ``device``."""
        return cls.from_configs([config], device)

    def _build(self, configs: list, device: torch.device) -> None:
        raise NotImplementedError

    @classmethod
    def stack(cls, models: Sequence[ModelStack]) -> ModelStack:
        """One stack from S single models (copies of their tensors; the models are left as they are)."""
        models = list(models)
        family = cls.single or cls
        if not models or not all(isinstance(model, family) and model.n_models == 1 for model in models):
            raise ValueError(f"{cls.__name__} needs a non-empty list of kanlib.{family.__name__} models")
        configs = [model.config() for model in models]
        first = dataclasses.asdict(configs[0])
        for index, config in enumerate(configs[1:], start=1):
            for name, value in dataclasses.asdict(config).items():
                if name != "seed" and value != first[name]:
                    raise ValueError(
                        f"a stack needs {family.__name__}s of one architecture: model {index} has {name}={value!r}, "
                        f"model 0 has {name}={first[name]!r} (only the seed may differ)"
                    )
        devices = {str(model.device) for model in models}
        if len(devices) > 1:
            raise ValueError(f"a stack's models must be on one device; got {sorted(devices)}")
        stack = cls.from_configs(configs, models[0].device)
        states = [model.state_dict() for model in models]
        stack._set_state({name: torch.cat([state[name] for state in states]) for name in states[0]})
        for name, param in stack.named_parameters():  # trainable as in model 0
            param.requires_grad_(dict(models[0].named_parameters())[name].requires_grad)
        return stack

    def unstack(self) -> list[ModelStack]:
        """The S single models, each an exact copy of its slice (``save`` writes the usual checkpoint)."""
        family = self.single or type(self)
        state = self.state_dict()
        trainable = {name: param.requires_grad for name, param in self.named_parameters()}
        models = []
        fitted = getattr(self, "last_fit_input", None)  # each model keeps its own training inputs
        for s, config in enumerate(self.configs):
            model = family.from_config(config, self.device)
            model._set_state({name: tensor[s : s + 1].clone() for name, tensor in state.items()})
            for name, param in model.named_parameters():
                param.requires_grad_(trainable[name])
            if fitted is not None:
                model.last_fit_input = fitted[s] if fitted.dim() == 3 else fitted
            models.append(model)
        return models

    def _set_state(self, state: dict[str, torch.Tensor]) -> None:
        """Make every parameter and buffer the tensor of ``state`` of its name (exactly; the shapes are those
        of the model's configs). Parameters stay the same objects."""
        expected = self.state_dict()
        if set(state) != set(expected):
            raise ValueError(f"state has tensors {sorted(state)}; the model has {sorted(expected)}")
        for name, tensor in state.items():
            if tensor.shape != expected[name].shape:
                raise ValueError(f"{name} has shape {tuple(tensor.shape)}; the model has {tuple(expected[name].shape)}")
            module_name, _, attribute = name.rpartition(".")
            module = self.get_submodule(module_name)
            tensor = tensor.to(device=expected[name].device, dtype=expected[name].dtype)
            if attribute in module._parameters:
                module._parameters[attribute].data = tensor
            else:
                module._buffers[attribute] = tensor
        self._state_changed()

    def _state_changed(self) -> None:
        """Recompute what derives from the tensors (a KAN's grid sizes) after :meth:`_set_state`."""

    # ---- properties ----------------------------------------------------------------------------
    @property
    def n_models(self) -> int:
        return len(self.configs)

    @property
    def seeds(self) -> list[int]:
        return [config.seed for config in self.configs]

    @property
    def seed(self) -> int:
        return self.configs[0].seed

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def n_params(self) -> int:
        """Trainable scalars of one model."""
        return sum(p[0].numel() for p in self.parameters() if p.requires_grad)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def config(self):
        """This model's config (model 0's for a stack), with its dtype as the parameters have it now."""
        return dataclasses.replace(self.configs[0], dtype=str(self.dtype).replace("torch.", ""))

    # ---- evaluation -------------------------------------------------------------------------------
    def models_input(self, x: torch.Tensor, name: str = "input") -> torch.Tensor:
        """Inputs for the S models: (S, N, width[0]) as given, or (N, width[0]) shared -> (S, N, width[0])."""
        if not self.stacked and (not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.width[0]):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must have shape (batch, {self.width[0]}); got {shape}")
        return models_input(x, self.n_models, self.width[0], name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, width[0]) -> (N, width[-1]) for one model; (S, N, width[0]) or shared (N, width[0])
        -> (S, N, width[-1]) for a stack."""
        x_t = self.models_input(x).transpose(1, 2).contiguous()  # (S, d, N)
        y = self.forward_t(x_t).transpose(1, 2)  # (S, N, out)
        return y if self.stacked else y[0]

    @torch.no_grad()
    def mse_and_grad(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each model's mean squared error on (x, y) and its gradient, written to each parameter's
        ``.grad``: the numbers of ``torch.mean((model(x) - y) ** 2).backward()`` per model, without an
        autograd graph (:meth:`mse_and_grad_t`, the hot path of L-BFGS training)."""
        x_t = self.models_input(x).transpose(1, 2).contiguous()
        y_t = models_input(y, self.n_models, self.width[-1], "y").transpose(1, 2).contiguous()
        losses = self.mse_and_grad_t(x_t, y_t)
        return losses if self.stacked else losses[0]

    def forward_t(self, x_t: torch.Tensor) -> torch.Tensor:
        """Feature-major forward: x_t (S, width[0], N) -> (S, width[-1], N)."""
        raise NotImplementedError

    def mse_and_grad_t(self, x_t: torch.Tensor, y_t: torch.Tensor) -> torch.Tensor:
        """Losses (S,) on feature-major x_t (S, width[0], N), y_t (S, width[-1], N); gradients in ``.grad``."""
        raise NotImplementedError

    def update_grids(self, x: torch.Tensor) -> None:
        """Adapt the models' grids to their samples x (S, N, width[0]) (fit's grid update; a family
        without grids has nothing to adapt)."""

    # ---- training and files ------------------------------------------------------------------------
    def fit(self, dataset, **options):
        """Train on ``dataset``: :func:`kanlib.training.fit` (its options, defined there once). One model:
        one dataset dict, returns one result dict; a stack: S dataset dicts (or one shared or stacked
        dict), returns one result dict per model."""
        results = fit(self, dataset, **options)
        return results if self.stacked else results[0]

    fit.__signature__ = inspect.signature(training.fit)  # (help() and editors show fit's options)

    def memory_estimate(self, n_train: int, n_test: int | None = None) -> int:
        """Bytes that training these models needs at most (:func:`kanlib.training.stack_memory_estimate`)."""
        return stack_memory_estimate(self, n_train, n_test)

    def save(self, path) -> Path:
        """Write one model's configuration and tensors to ``path`` atomically (:mod:`kanlib.checkpoint`);
        a stack saves its models one by one (``unstack``)."""
        if self.n_models != 1:
            raise ValueError(f"save writes one model; this stack has {self.n_models}: save each of unstack()")
        state = {name: tensor[0] for name, tensor in self.state_dict().items()}
        return write_checkpoint(path, self.FORMAT, self.config().to_dict(), state)

    @classmethod
    def load(cls, path, device=None, dtype=None) -> ModelStack:
        """Read a model written by :meth:`save`; never executes code from the file.

        device/dtype: where and in which precision to put the model (default: as saved, on the CPU).
        Raises FileNotFoundError for a missing file and CheckpointError for anything unusable.
        """
        payload = read_checkpoint(path, cls.FORMAT, load_with=FORMATS)
        try:
            model = cls.from_config(cls.Config.from_dict(payload["config"]))
            model._set_state({name: tensor[None] for name, tensor in payload["state"].items()})
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            raise CheckpointError(f"{path}: checkpoint does not match the model it describes: {error}") from None
        if dtype is not None or device is not None:
            model = model.to(
                device=resolve_device(device) if device is not None else None,
                dtype=resolve_dtype(dtype) if dtype is not None else None,
            )
        return model
