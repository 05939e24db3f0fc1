"""Training loop: LBFGS or Adam with adaptive grid updates, pykan's ``fit``.

Readable top to bottom: validate, move the data once, then for each step
(maybe) update the grid, take one optimizer step, evaluate the test set
without autograd and record train/test RMSE.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from .data import validate_dataset
from .optim import LBFGS


class TrainableModel(Protocol):
    """What :func:`fit` needs of a model (``kanlib.KAN`` is one): a torch module mapping
    (batch, width[0]) to (batch, width[-1]) with these members."""

    width: list[int]
    layers: nn.ModuleList
    grid_size: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...
    def parameters(self): ...
    def mse_and_grad_t(self, x_t: torch.Tensor, y_t: torch.Tensor) -> torch.Tensor: ...
    def update_grid_from_samples(self, x: torch.Tensor) -> None: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...


# pykan fit() options that only concern plotting, symbolic regression or devices; accepted and ignored.
_IGNORED_FIT_OPTIONS = {
    "metrics",
    "save_fig",
    "in_vars",
    "out_vars",
    "beta",
    "save_fig_freq",
    "img_folder",
    "device",
    "singularity_avoiding",
    "y_th",
    "reg_metric",
    "small_mag_threshold",
    "small_reg_factor",
    "display_metrics",
}
OPTIMIZERS = ("LBFGS", "Adam")


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss."""


def regularization(
    model: TrainableModel, x: torch.Tensor, lamb_l1: float, lamb_entropy: float, lamb_coef: float, lamb_coefdiff: float
) -> torch.Tensor:
    """pykan's sparsity regulariser on activation scales (L1 + entropy) plus coefficient penalties."""
    reg = x.new_zeros(())
    for layer in model.layers:
        edges = layer.edge_outputs(x)  # (B, in, out)
        scale = edges.std(dim=0) / (x.std(dim=0)[:, None] + 0.1)  # (in, out)
        l1 = scale.sum()
        p_row = scale.T / (scale.T.sum(dim=1, keepdim=True) + 1)
        p_col = scale.T / (scale.T.sum(dim=0, keepdim=True) + 1)
        entropy_row = -torch.mean(torch.sum(p_row * torch.log2(p_row + 1e-4), dim=1))
        entropy_col = -torch.mean(torch.sum(p_col * torch.log2(p_col + 1e-4), dim=0))
        reg = reg + lamb_l1 * l1 + lamb_entropy * (entropy_row + entropy_col)
        coef_l1 = torch.sum(torch.mean(layer.coef.abs(), dim=1))
        coefdiff_l1 = torch.sum(torch.mean(torch.diff(layer.coef).abs(), dim=1))
        reg = reg + lamb_coef * coef_l1 + lamb_coefdiff * coefdiff_l1
        x = layer(x)
    return reg


def median_rmse(model: TrainableModel, x: torch.Tensor, y: torch.Tensor) -> float:
    """Root of the median squared error: sqrt(median_i mean_j (model(x)_ij - y_ij)^2).

    The KAN paper's Fig. 2.3 measures error this way beside the RMSE (the root of the *mean*):
    a few boundary points with large errors dominate the mean, not the median.
    x: (N, width[0]); y: (N, width[-1]). torch.median takes the lower of the two middle values
    for even N (numpy's median averages them).
    """
    with torch.no_grad():
        squared = (model(x) - y).pow(2).mean(dim=1)  # (N,) per-sample squared error
        return float(squared.median().sqrt())


def fit(
    model: TrainableModel,
    dataset: dict[str, torch.Tensor],
    opt: str = "LBFGS",
    steps: int = 100,
    log: int = 1,
    lamb: float = 0.0,
    lamb_l1: float = 1.0,
    lamb_entropy: float = 2.0,
    lamb_coef: float = 0.0,
    lamb_coefdiff: float = 0.0,
    update_grid: bool = True,
    grid_update_num: int = 10,
    loss_fn: Callable | None = None,
    lr: float = 1.0,
    start_grid_update_step: int = -1,
    stop_grid_update_step: int = 50,
    batch: int = -1,
    progress: bool = True,
    max_iter: int = 20,
    history_size: int = 10,
    tolerance_change: float = 1e-12,
    stall_rtol: float = 1e-5,
    stall_window: int = 10,
    seed: int = 0,
    callback: Callable[[int, dict], None] | None = None,
    **pykan_options,
) -> dict:
    """Train ``model`` on ``dataset`` (pykan's ``fit``), returning per-step histories.

    Returns a dict with per-step lists ``train_loss`` and ``test_loss`` (RMSE of
    the step's accepted point), ``reg`` (the regularisation term; computed only
    when ``lamb > 0``, since only then does it enter the objective, else 0.0),
    ``n_evals`` (loss evaluations in the step), and ``wall_time_s``.

    LBFGS: strong-Wolfe line search, ``history_size`` 10, up to ``max_iter`` 20
    iterations per step (pykan's settings). Unlike pykan, a step ends early
    once the objective changes by less than ``tolerance_change`` relative
    (pykan's 1e-32 tolerances never stop), and the optimizer history restarts
    after every grid update (the parameters change meaning there).

    Stall test: a step's iterations end, and the later steps until the next grid
    update are skipped, once the loss fell by less than ``stall_rtol`` (1e-5)
    relative over the last ``stall_window`` (10) iterations; ``stall_rtol=0``
    gives pykan's fixed budget. Chosen by measurement (benchmarks/stopping_rule.py,
    6 data draws and model seeds, N 1000 and 3000, G 5..100): within 1% of the fixed
    budget's train and test RMSE in every cell below the interpolation threshold,
    at 0.91x its loss evaluations (docs/benchmarks.md, 2026-12-02); with the C kernels
    (other rounding, the same function) within 8% (N=3000, G=100; the fixed budget
    itself moves by up to 2.2x when only the rows' order changes); the earlier 1e-3
    stopped fits caught in slow descents early (up to 1.3x train, 43x test RMSE off).
    Grid updates every ``stop_grid_update_step // grid_update_num`` steps
    before ``stop_grid_update_step``. ``progress`` shows a tqdm bar.
    ``callback(step, record)`` is called after each step.
    """
    unknown = set(pykan_options) - _IGNORED_FIT_OPTIONS
    if unknown:
        raise ValueError(f"unknown fit() argument(s) {sorted(unknown)}")
    if opt not in OPTIMIZERS:
        raise ValueError(f"opt must be one of {list(OPTIMIZERS)}; got {opt!r}")
    for name, value, minimum in (
        ("steps", steps, 0),
        ("log", log, 1),
        ("grid_update_num", grid_update_num, 1),
        ("max_iter", max_iter, 1),
        ("history_size", history_size, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if not (isinstance(batch, int) and (batch == -1 or batch >= 1)):
        raise ValueError(f"batch must be -1 (full batch) or a positive integer; got {batch!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0; got {lr!r}")
    if lamb < 0:
        raise ValueError(f"lamb must be >= 0; got {lamb!r}")
    validate_dataset(dataset, model.width[0], model.width[-1])
    has_grid = getattr(model, "has_grid", True)  # an MLP has none: no grid updates
    model_description = f"grid {model.grid_size}" if has_grid else f"{type(model).__name__} {model.width}"
    if lamb > 0 and not has_grid:
        raise ValueError("lamb > 0 (pykan's regulariser on spline activations) needs a model with splines (a KAN)")

    device, dtype = model.device, model.dtype
    train_x = dataset["train_input"].to(device=device, dtype=dtype)
    train_y = dataset["train_label"].to(device=device, dtype=dtype)
    test_x = dataset["test_input"].to(device=device, dtype=dtype)
    test_y = dataset["test_label"].to(device=device, dtype=dtype)
    fast_mse = loss_fn is None and lamb == 0
    loss_fn = loss_fn or (lambda prediction, target: torch.mean((prediction - target) ** 2))
    n_train = train_x.shape[0]
    batch_size = n_train if batch == -1 or batch >= n_train else batch
    generator = torch.Generator().manual_seed(seed)
    grid_update_freq = max(1, stop_grid_update_step // grid_update_num)
    params = [p for p in model.parameters() if p.requires_grad]

    def make_optimizer():
        if opt == "Adam":
            return torch.optim.Adam(params, lr=lr)
        return LBFGS(
            params,
            lr=lr,
            max_iter=max_iter,
            history_size=history_size,
            tolerance_change=tolerance_change,
            stall_rtol=stall_rtol,
            stall_window=stall_window,
        )

    optimizer = make_optimizer()
    zero = torch.zeros((), dtype=dtype, device=device)
    history = {"train_loss": [], "test_loss": [], "reg": [], "n_evals": []}
    test_loss = None
    started = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, ncols=100, desc="fit")

    for step in range(steps):
        if batch_size < n_train:
            ids = torch.randperm(n_train, generator=generator)[:batch_size].to(device)
            x, y = train_x[ids], train_y[ids]
        else:
            x, y = train_x, train_y
        if fast_mse and (step == 0 or batch_size < n_train):
            x_t, y_t = x.T.contiguous(), y.T.contiguous()
        objective_changed = batch_size < n_train
        if (
            update_grid
            and has_grid
            and step % grid_update_freq == 0
            and step < stop_grid_update_step
            and step >= start_grid_update_step
        ):
            model.update_grid_from_samples(x)
            objective_changed = True
            if opt == "LBFGS":
                optimizer.objective_changed(keep_history=False)  # measured: restarting needs fewer evaluations

        evals = 0
        last = {}

        def closure():
            nonlocal evals
            evals += 1
            if fast_mse:  # hand-written gradients, no autograd graph
                train_loss = model.mse_and_grad_t(x_t, y_t)
                last["train_loss"] = train_loss
                return train_loss
            optimizer.zero_grad(set_to_none=False)
            train_loss = loss_fn(model(x), y)
            objective = train_loss
            if lamb > 0:
                reg = regularization(model, x, lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff)
                objective = train_loss + lamb * reg
                last["reg"] = reg.detach()
            objective.backward()
            last["train_loss"] = train_loss.detach()
            return objective

        if opt == "LBFGS":
            objective = optimizer.step(closure, reuse_last=not objective_changed)
            # record the accepted point (the last evaluation may have been a rejected line-search trial)
            if fast_mse:
                last["train_loss"] = torch.tensor(objective, dtype=dtype)
            else:
                with torch.no_grad():
                    last["train_loss"] = loss_fn(model(x), y)
                    if lamb > 0:
                        last["reg"] = regularization(model, x, lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff)
        else:
            closure()
            optimizer.step()

        if not (opt == "LBFGS" and evals == 0 and not objective_changed and test_loss is not None):
            with torch.no_grad():  # (else the parameters did not move: the same test loss as the last step)
                test_loss = loss_fn(model(test_x), test_y)
        reg = last.get("reg", zero)
        train_loss = last["train_loss"]
        if not bool(torch.isfinite(train_loss)):
            raise DivergenceError(
                f"training diverged at step {step}: train loss is {float(train_loss)} "
                f"({model_description}, optimizer {opt}, lr {lr})"
            )
        history["train_loss"].append(train_loss.sqrt())
        history["test_loss"].append(test_loss.sqrt())
        history["reg"].append(reg)
        history["n_evals"].append(evals)
        if bar is not None and (step % log == 0 or step == steps - 1):
            bar.set_description(
                f"train loss: {float(history['train_loss'][-1]):.2e} | "
                f"test loss: {float(history['test_loss'][-1]):.2e} | reg: {float(reg):.2e} "
            )
            bar.update(step + 1 - bar.n)
        if callback is not None:
            callback(step, {key: values[-1] for key, values in history.items()})
    if bar is not None:
        bar.close()
    if opt == "LBFGS":
        optimizer.release()

    result = {
        key: torch.stack(history[key]).tolist() if history[key] else [] for key in ("train_loss", "test_loss", "reg")
    }
    result["n_evals"] = history["n_evals"]
    result["wall_time_s"] = time.perf_counter() - started
    return result
