"""Training S models at once (S = 1 for one model): pykan's ``fit``, its datasets and its memory check.

Readable top to bottom: validate, estimate the memory, move the data once, then for each step
(maybe) update the grids, take one optimizer step for every model, evaluate the test set without
autograd and record each model's train/test RMSE. Each model has its own L-BFGS history, line
search, stall test and stopping (:class:`kanlib.optim.LBFGS`), so a model follows the trajectory it
follows alone.

Datasets: a list of S dataset dicts of one size (each model its own data, e.g. the seeds' draws), one
dict of (N, d) tensors (shared by all models), or one dict of (S, N, d) tensors.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

import torch

from .data import DATASET_KEYS, validate_dataset
from .devices import each_model, part
from .optim import LBFGS

__all__ = [
    "fit",
    "median_rmse",
    "outside_training_range",
    "range_split_errors",
    "validation_errors",
    "regularization",
    "DivergenceError",
    "StackMemoryError",
    "models_input",
    "stack_datasets",
    "stack_memory_estimate",
    "available_memory",
    "check_stack_memory",
]

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


class StackMemoryError(MemoryError):
    """A stack of S models would not fit in the memory available for training it."""


def regularization(
    model, x: torch.Tensor, lamb_l1: float, lamb_entropy: float, lamb_coef: float, lamb_coefdiff: float
) -> torch.Tensor:
    """pykan's sparsity regulariser on activation scales (L1 + entropy) plus coefficient penalties, per
    model: x (S, B, width[0]) -> (S,); each part of the stack (:func:`kanlib.stack.each_model`) on its own."""
    parts = []
    for models in each_model(model.n_models, x.device):
        terms = (lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff)
        parts.append(_regularization(model, part(x, models), models, *terms))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _regularization(model, x, models, lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff) -> torch.Tensor:
    reg = x.new_zeros(x.shape[0])
    for layer in model.layers:
        edges = layer.edge_outputs(x, models)  # (S', B, in, out)
        scale = edges.std(dim=1) / (x.std(dim=1)[:, :, None] + 0.1)  # (S, in, out)
        l1 = scale.sum(dim=(1, 2))
        scale_t = scale.transpose(1, 2)  # (S, out, in)
        p_row = scale_t / (scale_t.sum(dim=2, keepdim=True) + 1)
        p_col = scale_t / (scale_t.sum(dim=1, keepdim=True) + 1)
        entropy_row = -torch.mean(torch.sum(p_row * torch.log2(p_row + 1e-4), dim=2), dim=1)
        entropy_col = -torch.mean(torch.sum(p_col * torch.log2(p_col + 1e-4), dim=1), dim=1)
        reg = reg + lamb_l1 * l1 + lamb_entropy * (entropy_row + entropy_col)
        coef = layer.params(models)[0]  # (S', in, out, n)
        coef_l1 = torch.mean(coef.abs(), dim=2).sum(dim=(1, 2))  # (S',)
        coefdiff_l1 = torch.mean(torch.diff(coef).abs(), dim=2).sum(dim=(1, 2))
        reg = reg + lamb_coef * coef_l1 + lamb_coefdiff * coefdiff_l1
        x = layer.forward_t(x.transpose(1, 2).contiguous(), models).transpose(1, 2)
    return reg


def median_rmse(model, x: torch.Tensor, y: torch.Tensor) -> float:
    """Root of the median squared error of one model: sqrt(median_i mean_j (model(x)_ij - y_ij)^2).

    The KAN paper's Fig. 2.3 measures error this way beside the RMSE (the root of the *mean*): a few
    boundary points with large errors dominate the mean, not the median. x: (N, width[0]); y: (N,
    width[-1]). torch.median takes the lower of the two middle values for even N (numpy's averages them).
    """
    return float(squared_errors(model, x, y).median().sqrt())


@torch.no_grad()
def squared_errors(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each sample's squared error, averaged over the outputs: (N,) for x (N, width[0]), y (N, width[-1])."""
    return (model(x) - y).pow(2).mean(dim=1)


@torch.no_grad()
def outside_training_range(model, train_input: torch.Tensor, test_input: torch.Tensor) -> torch.Tensor:
    """Which test points leave the range the training points span, at some layer: (N_test,) bool.

    A point is outside at layer l when one of its inputs to layer l lies outside [min, max] of the
    training points' inputs to that layer (``model.layer_inputs``: layer 0's input is the model's
    input). There a spline extrapolates on coefficients no training point constrained. One model;
    train_input (N, width[0]), test_input (N_test, width[0])."""
    outside = torch.zeros(test_input.shape[0], dtype=torch.bool, device=test_input.device)
    for train, test in zip(model.layer_inputs(train_input), model.layer_inputs(test_input)):  # (N, w_l)
        low, high = train.min(0).values, train.max(0).values  # (w_l,)
        outside |= ((test < low) | (test > high)).any(1)
    return outside


@torch.no_grad()
def range_split_errors(model, dataset: dict) -> dict:
    """The test error split by :func:`outside_training_range`: ``test_outside_count`` (points outside
    at some layer), ``test_outside_mse_share`` (their share of the summed squared test error) and
    ``test_interior_rmse`` (the RMSE of the other points; NaN when there are none)."""
    x, y = dataset["test_input"], dataset["test_label"]
    outside = outside_training_range(model, dataset["train_input"], x)  # (N_test,)
    squared = squared_errors(model, x, y)  # (N_test,)
    total = float(squared.sum())
    inside = squared[~outside]
    return {
        "test_outside_count": int(outside.sum()),
        "test_outside_mse_share": float(squared[outside].sum()) / total if total > 0 else 0.0,
        "test_interior_rmse": float(inside.mean().sqrt()) if inside.numel() else float("nan"),
    }


def validation_errors(model, dataset: dict) -> dict:
    """``val_rmse`` and ``val_median_rmse`` (root of the mean and of the median squared error) of one
    model on the dataset's validation split (``create_dataset(val_num=...)``); NaN without one. A
    model is chosen on these (e.g. the best grid size for a data size), never on the test split."""
    if "val_input" not in dataset:
        return {"val_rmse": float("nan"), "val_median_rmse": float("nan")}
    squared = squared_errors(model, dataset["val_input"], dataset["val_label"])  # (N_val,)
    return {"val_rmse": float(squared.mean().sqrt()), "val_median_rmse": float(squared.median().sqrt())}


# ---- datasets ---------------------------------------------------------------------------------------


def models_input(x: torch.Tensor, n_models: int, width: int, name: str) -> torch.Tensor:
    """Inputs for S models: (S, N, width) as given, or (N, width) shared -> (S, N, width)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if x.dim() == 2 and x.shape[1] == width:
        return x.unsqueeze(0).expand(n_models, *x.shape)
    if x.dim() == 3 and x.shape[0] == n_models and x.shape[2] == width:
        return x
    raise ValueError(f"{name} must have shape ({n_models}, N, {width}) or shared (N, {width}); got {tuple(x.shape)}")


def stack_datasets(datasets, n_models: int, in_dim: int, out_dim: int) -> dict[str, torch.Tensor]:
    """One dataset of (S, N, d) tensors from S dataset dicts, one shared dict or one stacked dict.

    Every model's data is checked as one dataset is; ValueError names the model and key.
    """
    if isinstance(datasets, dict):
        stacked = datasets["train_input"].dim() == 3 if isinstance(datasets.get("train_input"), torch.Tensor) else False
        if not stacked:
            validate_dataset(datasets, in_dim, out_dim)
            return {key: datasets[key].unsqueeze(0).expand(n_models, *datasets[key].shape) for key in DATASET_KEYS}
        missing = [key for key in DATASET_KEYS if key not in datasets]
        if missing:
            raise ValueError(f"dataset is missing {missing}; required keys: {list(DATASET_KEYS)}")
        for key in DATASET_KEYS:
            if datasets[key].dim() != 3 or datasets[key].shape[0] != n_models:
                raise ValueError(
                    f"dataset[{key!r}] must have shape ({n_models}, N, d) for a stack of {n_models}; "
                    f"got {tuple(datasets[key].shape)}"
                )
        datasets = [{key: datasets[key][s] for key in DATASET_KEYS} for s in range(n_models)]
    if not isinstance(datasets, Sequence) or len(datasets) != n_models:
        raise ValueError(
            f"datasets must be one dataset dict (shared or stacked) or a list of {n_models} dataset dicts, "
            f"one per model; got {type(datasets).__name__}"
            + (f" of length {len(datasets)}" if isinstance(datasets, Sequence) else "")
        )
    for s, dataset in enumerate(datasets):
        try:
            validate_dataset(dataset, in_dim, out_dim)
        except ValueError as error:
            raise ValueError(f"dataset of model {s}: {error}") from None
    for key in DATASET_KEYS:
        shapes = {tuple(dataset[key].shape) for dataset in datasets}
        if len(shapes) > 1:
            raise ValueError(
                f"the models' datasets must have one size to be stacked; {key!r} has shapes {sorted(shapes)}"
            )
    return {key: torch.stack([dataset[key] for dataset in datasets]) for key in DATASET_KEYS}


# ---- memory ----------------------------------------------------------------------------------------


def stack_memory_estimate(model, n_train: int, n_test: int | None = None) -> int:
    """Upper bound, in bytes, of what training ``model`` (S models) on n_train samples per model needs.

    Counted from the shapes (8-byte floats and indices): for every layer, the tensors one loss
    evaluation keeps for its backward pass plus its largest temporaries; the least-squares fit of a
    grid update; a test-set forward pass; the stacked datasets; the optimizer's history and vectors.
    """
    n_test = n_train if n_test is None else n_test
    S = model.n_models
    width = model.width
    k = getattr(model, "k", 0)
    item = torch.finfo(model.dtype).bits // 8

    def pass_bytes(n: int) -> int:
        total = 0
        for a, b in zip(width, width[1:]):
            rows = S * a * n  # (S*in, N) wide-layer rows
            if model.has_grid:
                # basis values + derivatives, positions and index (8-byte ints), windows and their
                # product, spline, dspline, SiLU, grad_spline, contrib (+ a reshaped copy), powers
                floats = rows * ((k + 1) * (2 + 4 * b) + 6 + 3 * b + k)
                ints = rows * (k + 2) * 8
                total += floats * item + ints
            else:
                total += S * n * (3 * a + 3 * b) * item  # activations, pre-activations, gradients
        return total

    train = pass_bytes(n_train)
    test = pass_bytes(n_test)
    grid_update = 0
    if model.has_grid:
        for a, b in zip(width, width[1:]):
            rows = S * a * n_train
            # local basis, (k+1)^2 outer products and their index pairs, the right-hand sides, sorted x
            grid_update = max(grid_update, rows * ((k + 1) ** 2 * 16 + (k + 1) * (8 + 8 * b) + 8 * b + 32))
    data = S * (n_train + n_test) * (width[0] + width[-1]) * item * 2  # the dataset and its feature-major copy
    optimizer = S * model.n_params * 8 * (2 * 10 + 12)  # history (10 pairs) and a dozen (S, P) work arrays
    return int(max(train + test // 4, grid_update + train // 2, test) + data + optimizer)


def available_memory(device: torch.device) -> int:
    """Bytes free for training on ``device``: the GPU's free memory, or the host's MemAvailable."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def check_stack_memory(model, n_train: int, n_test: int, max_bytes: int | None = None) -> int:
    """Raise :class:`StackMemoryError` when the models' estimate exceeds ``max_bytes`` (default: the
    memory available on their device); return the estimate."""
    estimate = stack_memory_estimate(model, n_train, n_test)
    limit = available_memory(model.device) if max_bytes is None else int(max_bytes)
    if estimate > limit:
        per_model = max(1, estimate // model.n_models)
        fits = limit // per_model
        what = f"grid {model.grid_size}, k {model.k}" if model.has_grid else type(model).__name__
        source = "max_bytes" if max_bytes is not None else f"available on {model.device}"
        raise StackMemoryError(
            f"a stack of S={model.n_models} models {model.width} ({what}) on {n_train} training and {n_test} "
            f"test samples per model needs an estimated {estimate / 2**30:.3g} GiB ({estimate} bytes), more than "
            f"the {limit / 2**30:.3g} GiB {source}; about S={fits} such models fit: train the models in "
            f"smaller stacks"
        )
    return estimate


# ---- training ----------------------------------------------------------------------------------------


def _mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean((prediction - target) ** 2)


def _check_options(opt, steps, log, grid_update_num, max_iter, history_size, batch, lr, lamb, unknown) -> None:
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


def fit(
    model,
    dataset,
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
    callback: Callable | None = None,
    max_bytes: int | None = None,
    **pykan_options,
) -> list[dict]:
    """Train the S models of ``model`` on ``dataset`` (pykan's ``fit``); returns one dict per model with
    per-step lists ``train_loss`` and ``test_loss`` (RMSE of the step's accepted point), ``reg`` (the
    regularisation term; computed only when ``lamb > 0``, since only then does it enter the objective,
    else 0.0), ``n_evals`` (loss evaluations in the step), and ``wall_time_s`` (the whole stack's).

    LBFGS: strong-Wolfe line search, ``history_size`` 10, up to ``max_iter`` 20 iterations per step
    (pykan's settings), per model. Unlike pykan, a step ends early once the objective changes by less
    than ``tolerance_change`` relative (pykan's 1e-32 tolerances never stop), and the optimizer history
    restarts after every grid update (the parameters change meaning there).

    Stall test: a step's iterations end, and the later steps until the next grid update are skipped,
    once the loss fell by less than ``stall_rtol`` (1e-5) relative over the last ``stall_window`` (10)
    iterations; ``stall_rtol=0`` gives pykan's fixed budget. Chosen by measurement
    (benchmarks/stopping_rule.py, 6 data draws and model seeds, N 1000 and 3000, G 5..100): within 8%
    of the fixed budget's train and test RMSE in every cell below the interpolation threshold, at
    0.91x its loss evaluations (docs/benchmarks.md); the fixed budget itself moves by up to 2.2x when
    only the rows' order changes. Grid updates every ``stop_grid_update_step // grid_update_num`` steps
    before ``stop_grid_update_step``. ``progress`` shows a tqdm bar. ``batch`` draws the same sample
    indices for every model (as S lone fits with the same ``seed`` would). ``max_bytes``: the memory
    the models may use (default: what their device has free); :class:`StackMemoryError` before
    training when the estimate exceeds it. ``callback(step, record)`` is called after each step (a
    stack's gets one record per model).
    """
    unknown = set(pykan_options) - _IGNORED_FIT_OPTIONS
    _check_options(opt, steps, log, grid_update_num, max_iter, history_size, batch, lr, lamb, unknown)
    if lamb > 0 and not model.has_grid:
        raise ValueError("lamb > 0 (pykan's regulariser on spline activations) needs a model with splines (a KAN)")
    S = model.n_models
    data = stack_datasets(dataset, S, model.width[0], model.width[-1])
    device, dtype = model.device, model.dtype
    train_x, train_y, test_x, test_y = (data[key].to(device=device, dtype=dtype) for key in DATASET_KEYS)
    # refine(new_grid)'s samples: (S, N, d), or one model's (N, d)
    model.last_fit_input = train_x if model.stacked or S > 1 else train_x[0]
    n_train, n_test = train_x.shape[1], test_x.shape[1]
    check_stack_memory(model, n_train, n_test, max_bytes)
    fast_mse = loss_fn is None and lamb == 0
    batch_size = n_train if batch == -1 or batch >= n_train else batch
    generator = torch.Generator().manual_seed(seed)
    grid_update_freq = max(1, stop_grid_update_step // grid_update_num)
    params = [p for p in model.parameters() if p.requires_grad]

    def losses_of(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(S,) losses, model by model (a reduction over a larger tensor may sum in another order)."""
        return torch.stack([(loss_fn or _mse)(prediction[s], target[s]) for s in range(S)])

    def outputs(x: torch.Tensor) -> torch.Tensor:  # (S, N, d) -> (S, N, out)
        return model.forward_t(x.transpose(1, 2).contiguous()).transpose(1, 2)

    def regularizer(x: torch.Tensor) -> torch.Tensor:
        return regularization(model, x, lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff)

    if opt == "Adam":
        optimizer = torch.optim.Adam(params, lr=lr)
    else:
        optimizer = LBFGS(
            params,
            lr=lr,
            max_iter=max_iter,
            history_size=history_size,
            tolerance_change=tolerance_change,
            stall_rtol=stall_rtol,
            stall_window=stall_window,
        )
    histories = [{"train_loss": [], "test_loss": [], "reg": [], "n_evals": []} for _ in range(S)]
    test_losses = None
    started = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, ncols=100, desc="fit" if S == 1 else f"fit {S} models")

    for step in range(steps):
        if batch_size < n_train:
            ids = torch.randperm(n_train, generator=generator)[:batch_size].to(device)
            x, y = train_x[:, ids], train_y[:, ids]  # (S, batch, d)
        else:
            x, y = train_x, train_y
        if fast_mse and (step == 0 or batch_size < n_train):
            x_t, y_t = x.transpose(1, 2).contiguous(), y.transpose(1, 2).contiguous()  # (S, d, N)
        objective_changed = batch_size < n_train
        if (
            update_grid
            and model.has_grid
            and step % grid_update_freq == 0
            and step < stop_grid_update_step
            and step >= start_grid_update_step
        ):
            model.update_grids(x)
            objective_changed = True
            if opt == "LBFGS":
                optimizer.objective_changed(keep_history=False)  # measured: restarting needs fewer evaluations

        last = {}

        def closure():
            if fast_mse:  # hand-written gradients, no autograd graph
                return model.mse_and_grad_t(x_t, y_t)
            for p in params:
                p.grad = None
            losses = losses_of(outputs(x), y)  # (S,)
            objective = losses
            if lamb > 0:
                last["reg"] = regularizer(x)
                objective = losses + lamb * last["reg"]
            objective.sum().backward()  # each model's gradient is its own objective's
            last["train_loss"] = losses.detach()
            return objective.detach()

        if opt == "LBFGS":
            train_losses = torch.tensor(optimizer.step(closure, reuse_last=not objective_changed), dtype=dtype)
            evals = list(optimizer.step_evaluations)
            if not fast_mse:  # the accepted point's (the last evaluation may have been a rejected trial)
                with torch.no_grad():
                    train_losses = losses_of(outputs(x), y).cpu()
                    if lamb > 0:
                        last["reg"] = regularizer(x)
        else:
            objective = closure()
            train_losses = last.get("train_loss", objective).cpu()
            optimizer.step()
            evals = [1] * S

        if not (opt == "LBFGS" and sum(evals) == 0 and not objective_changed and test_losses is not None):
            with torch.no_grad():  # (else no model moved: the same test losses as the last step)
                test_losses = losses_of(outputs(test_x), test_y).cpu()
        finite = torch.isfinite(train_losses)
        if not bool(finite.all()):
            bad = [s for s in range(S) if not bool(finite[s])]
            raise DivergenceError(
                f"training diverged at step {step}: train loss of model(s) {bad} (seeds "
                f"{[model.configs[s].seed for s in bad]}) is {[float(train_losses[s]) for s in bad]} "
                f"({f'grid {model.grid_size}' if model.has_grid else type(model).__name__ + str(model.width)}, "
                f"optimizer {opt}, lr {lr})"
            )
        train_rmse, test_rmse = train_losses.sqrt().tolist(), test_losses.sqrt().tolist()
        regs = last["reg"].detach().cpu().tolist() if "reg" in last else [0.0] * S
        for s, history in enumerate(histories):
            history["train_loss"].append(train_rmse[s])
            history["test_loss"].append(test_rmse[s])
            history["reg"].append(regs[s])
            history["n_evals"].append(evals[s])
        if bar is not None and (step % log == 0 or step == steps - 1):
            bar.set_description(
                f"train loss: {train_rmse[0]:.2e} | test loss: {test_rmse[0]:.2e} | reg: {regs[0]:.2e} "
                if S == 1
                else f"{S} models, train loss: {min(train_rmse):.2e}..{max(train_rmse):.2e}"
            )
            bar.update(step + 1 - bar.n)
        if callback is not None:
            records = [{key: values[-1] for key, values in history.items()} for history in histories]
            callback(step, records if model.stacked else records[0])
    if bar is not None:
        bar.close()
    if opt == "LBFGS":
        optimizer.release()
    wall_time = time.perf_counter() - started
    return [{**history, "wall_time_s": wall_time} for history in histories]
