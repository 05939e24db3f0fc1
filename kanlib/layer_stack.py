"""S KAN layers of one shape as one module: every tensor has a leading model axis S.

A stack of S layers with ``in_dim`` inputs is evaluated as *one wide layer* with ``S * in_dim``
inputs: the local basis, the coefficient windows, the spline values and the coefficient
gradients only ever look at one (input, sample) pair, so the fused path of :mod:`kanlib.layer`
runs unchanged on the ``S * in_dim`` rows. Only the sum over each model's own inputs (and the
gradients of the scales) is a batched matrix product over the models.

Every element is computed by the same floating-point operations, in the same order, as
:func:`kanlib.layer.layer_forward` / :func:`kanlib.layer.layer_backward` compute it for the
model alone (tests/test_stack.py checks bit-for-bit equality), so a model trained in a stack
follows its lone trajectory exactly.

Shapes: ``x_t`` (S, in, B) feature-major per model; ``coef`` (S, in, out, n);
``scale_base``, ``scale_sp`` (S, in, out); ``knots`` (S, in, K).
"""

from __future__ import annotations

import torch
from torch import nn

from . import cpu_kernels
from .bspline import (
    LocalBasis,
    UniformGridConstants,
    extend_grid,
    gather_windows,
    is_uniform,
    local_basis_general,
    local_basis_uniform,
    window_index,
)
from .layer import KANLayer
from .lstsq import fit_spline_coefficients

# Matrix products: a batched product over the S models is used only where it gives each model
# bit-for-bit what the single layer computes (BLAS picks kernels by shape: a batch of S small
# products may sum in another order than the one product of the model alone, e.g. gemv for an
# output of width 1). The first call for each shape, layout and thread count compares the two on
# random operands of that layout (several draws: a different summation order shows on any data)
# and remembers the answer; where they differ, the product runs model by model.
_BATCHED_IS_EXACT: dict = {}
_PROBE_DRAWS = 8


def _like(tensor: torch.Tensor, generator: torch.Generator, scale: float) -> torch.Tensor:
    """Random values in a tensor of ``tensor``'s shape, strides, dtype and device."""
    out = torch.empty_strided(tensor.shape, tensor.stride(), dtype=tensor.dtype, device=tensor.device)
    values = torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype) * scale
    return out.copy_(values.to(tensor.device))


def _batched_is_exact(name: str, batched, alone, operands: tuple) -> bool:
    key = (name, torch.get_num_threads(), operands[0].dtype, operands[0].is_cuda)
    key += tuple(t.shape for t in operands) + tuple(t.stride() for t in operands)
    exact = _BATCHED_IS_EXACT.get(key)
    if exact is None:
        generator = torch.Generator().manual_seed(0)
        exact = True
        for draw in range(_PROBE_DRAWS):
            probe = tuple(_like(t, generator, 10.0 ** (draw % 4 - 2)) for t in operands)
            exact = exact and torch.equal(batched(*probe), alone(*probe))
        _BATCHED_IS_EXACT[key] = exact
    return exact


def _per_model(name: str, batched, alone, *operands: torch.Tensor) -> torch.Tensor:
    """batched(*operands) where it equals alone(*operands) bit for bit for this layout, else alone(*operands).
    ``batched`` may be a tuple of candidate formulations: the first exact one is used."""
    candidates = batched if isinstance(batched, tuple) else (batched,)
    for index, candidate in enumerate(candidates):
        if _batched_is_exact(f"{name}#{index}", candidate, alone, operands):
            return candidate(*operands)
    return alone(*operands)


# SiLU and its derivative (exp inside) round differently in torch's vectorised loop and in its
# scalar tail (the last n mod 16 elements of an n-element call with AVX-512, n mod 8 with AVX2),
# so one call over S models' blocks would give some elements of each block other values than the
# model alone gets (random probes can miss the few elements concerned). One call serves all
# blocks, then the end of each block, from its last multiple of 64 elements on, is computed again
# as rows of an (S, m) view: torch runs each row as one m-element call, so those elements fall
# in the vector part or the tail exactly as in the model's own call (64 is a multiple of every
# vector step). Elements before are vectorised in both. With several threads on a large tensor
# torch may split a block between threads (more tails): then the blocks run model by model.
_VECTOR_BLOCK = 64
_GRAIN_SIZE = 32768


def elementwise_per_model(function, *operands: torch.Tensor) -> torch.Tensor:
    """function(*operands) for operands (S, ...) contiguous, each model's block bit-for-bit as
    function(*(operand[s] ...)) computes it alone."""
    first = operands[0]
    S, n = first.shape[0], first[0].numel()
    start = (n // _VECTOR_BLOCK) * _VECTOR_BLOCK
    split = first.numel() >= _GRAIN_SIZE and torch.get_num_threads() > 1
    if split or start == 0 or not all(operand.is_contiguous() for operand in operands):
        return torch.stack([function(*parts) for parts in zip(*(operand.unbind(0) for operand in operands))])
    out = function(*operands)
    if start < n:
        ends = [operand.view(S, n)[:, start:] for operand in operands]  # (S, n - start), row stride n
        out.view(S, n)[:, start:] = function(*ends)
    return out


def stacked_silu(x_t: torch.Tensor) -> torch.Tensor:
    """silu(x_t) for x_t (S, in, B), each model's block as KANLayer computes it alone."""
    return elementwise_per_model(torch.nn.functional.silu, x_t)


def stacked_silu_backward(grad: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
    """silu's backward for grad, x_t (S, in, B), each model's block as KANLayer computes it alone."""
    return elementwise_per_model(torch.ops.aten.silu_backward, grad.contiguous(), x_t)


def _base_term_batched(scale_base, base):  # (S, in, out), (S, in, B) -> (S, out, B)
    return torch.bmm(scale_base.transpose(1, 2), base)


# The *_alone forms run each model's product on fresh copies of its blocks (64-byte aligned, as a lone
# model's own tensors are): a BLAS product may round differently for a block at another alignment
# (measured with MKL on an AMD EPYC: bmm and a lone model's product differed for blocks at odd offsets).


def _base_term_alone(scale_base, base):
    return torch.stack([scale_base[s].clone().T @ base[s].clone() for s in range(base.shape[0])])


def _output_batched(base_term, scale_sp, spline):  # (S, out, B), (S, in, out), (out, S*in, B) -> (S, out, B)
    S, out_dim, batch = base_term.shape
    in_dim = scale_sp.shape[1]
    rows = base_term.transpose(0, 1).reshape(out_dim * S, 1, batch)  # (out*S, 1, B)
    sp_rows = scale_sp.permute(2, 0, 1).reshape(out_dim * S, 1, in_dim)  # (out*S, 1, in)
    y = torch.baddbmm(rows, sp_rows, spline.view(out_dim * S, in_dim, batch))  # (out*S, 1, B)
    return y.view(out_dim, S, batch).transpose(0, 1).contiguous()


def _output_fused(base_term, scale_sp, spline):  # in_dim == 1: y = base_term + scale_sp * spline
    S, out_dim, batch = base_term.shape
    if scale_sp.shape[1] != 1:
        return _output_batched(base_term, scale_sp, spline)
    sp = scale_sp.permute(0, 2, 1)  # (S, out, 1)
    return torch.addcmul(base_term, sp, spline.view(out_dim, S, batch).transpose(0, 1))


def _output_separate(base_term, scale_sp, spline):  # in_dim == 1, multiply then add
    S, out_dim, batch = base_term.shape
    if scale_sp.shape[1] != 1:
        return _output_batched(base_term, scale_sp, spline)
    sp = scale_sp.permute(0, 2, 1)  # (S, out, 1)
    return base_term + sp * spline.view(out_dim, S, batch).transpose(0, 1)


def _output_alone(base_term, scale_sp, spline):
    S, in_dim = base_term.shape[0], scale_sp.shape[1]
    return torch.stack(
        [
            torch.baddbmm(
                base_term[s].clone().unsqueeze(1),  # (out, 1, B)
                scale_sp[s].clone().T.unsqueeze(1),  # (out, 1, in)
                spline[:, s * in_dim : (s + 1) * in_dim].contiguous(),  # (out, in, B)
            ).squeeze(1)
            for s in range(S)
        ]
    )


def _grad_scale_base_batched(base, grad_y_t):  # (S, in, B), (S, out, B) -> (S, in, out)
    return torch.bmm(base, grad_y_t.transpose(1, 2))


def _grad_scale_base_alone(base, grad_y_t):
    return torch.stack([b.clone() @ g.clone().T for b, g in zip(base.unbind(0), grad_y_t.unbind(0))])


def _grad_scale_sp_batched(spline, grad_y_t):  # (out, S*in, B), (S, out, B) -> (S, in, out)
    S, out_dim, batch = grad_y_t.shape
    in_dim = spline.shape[1] // S
    grad_y_rows = grad_y_t.transpose(0, 1).reshape(out_dim * S, batch, 1)  # (out*S, B, 1)
    grad_sp = torch.bmm(spline.view(out_dim * S, in_dim, batch), grad_y_rows)  # (out*S, in, 1)
    return grad_sp.view(out_dim, S, in_dim).permute(1, 2, 0)


def _grad_scale_sp_alone(spline, grad_y_t):
    S, out_dim, batch = grad_y_t.shape
    in_dim = spline.shape[1] // S
    if out_dim == 1:  # the same products as below, with fewer small operations around them
        rows = spline.view(S, 1, in_dim, batch).unbind(0)  # S x (1, in, B)
        grads = grad_y_t.view(S, 1, batch, 1).unbind(0)  # S x (1, B, 1)
        return torch.stack([torch.bmm(a.clone(), g.clone()) for a, g in zip(rows, grads)]).view(S, in_dim, 1)
    return torch.stack(
        [
            torch.bmm(spline[:, s * in_dim : (s + 1) * in_dim].clone(), grad_y_t[s].clone().unsqueeze(-1)).squeeze(-1).T
            for s in range(S)
        ]
    )


def _grad_base_batched(scale_base, grad_y_t):  # (S, in, out), (S, out, B) -> (S, in, B)
    return torch.bmm(scale_base, grad_y_t)


def _grad_base_alone(scale_base, grad_y_t):
    return torch.stack([scale_base[s].clone() @ grad_y_t[s].clone() for s in range(grad_y_t.shape[0])])


def stacked_layer_forward(x_t, coef, scale_base, scale_sp, basis: LocalBasis, k: int, positions=None, base=None):
    """y = silu(x) @ scale_base + sum_i scale_sp * spline(x) for every model, and what backward needs.

    x_t: (S, in, B); coef: (S, in, out, n); scale_*: (S, in, out); basis: of the S*in rows of x_t
    -> y_t (S, out, B), saved tensors. positions and base (silu(x_t)) may be passed in when cached.
    """
    S, in_dim, out_dim, n = coef.shape
    wide_coef = coef.reshape(S * in_dim, out_dim, n)  # the wide layer's coefficients
    if positions is None:
        positions = window_index(basis.index, n, k)  # (k+1, S*in, B)
    windows = gather_windows(wide_coef, positions, k)  # (out, k+1, S*in, B)
    spline = (windows * basis.values).sum(1)  # (out, S*in, B)
    if base is None:
        base = stacked_silu(x_t)  # (S, in, B)
    base_term = _per_model("base_term", _base_term_batched, _base_term_alone, scale_base, base)  # (S, out, B)
    y_t = _per_model(  # (S, out, B)
        "output", (_output_batched, _output_fused, _output_separate), _output_alone, base_term, scale_sp, spline
    )
    return y_t, (x_t, base, spline, windows, positions, basis.values, basis.derivatives, scale_base, scale_sp)


def stacked_layer_backward(
    saved, grad_y_t, n_coef: int, k: int, need_input_grad: bool, need_param_grads=(True, True, True)
):
    """Gradients of :func:`stacked_layer_forward` for the output gradient grad_y_t (S, out, B).

    Returns grad_x_t (S, in, B) or None, grad_coef (S, in, out, n), grad_scale_base and
    grad_scale_sp (S, in, out).
    """
    x_t, base, spline, windows, positions, values, derivs, scale_base, scale_sp = saved
    S, in_dim, out_dim = scale_base.shape
    batch = x_t.shape[2]
    grad_x_t = grad_coef = grad_scale_base = grad_scale_sp = None
    grad_y_rows = grad_y_t.transpose(0, 1).contiguous()  # (out, S, B)
    sp_columns = scale_sp.permute(2, 0, 1).contiguous().unsqueeze(-1)  # (out, S, in, 1)
    grad_spline = (sp_columns * grad_y_rows.unsqueeze(2)).view(out_dim, S * in_dim, batch)  # (out, S*in, B)
    if need_param_grads[0]:
        contrib = grad_spline.unsqueeze(1) * values  # (out, k+1, S*in, B)
        n_padded = n_coef + 2 * k + 2
        grad_flat = torch.zeros(out_dim, S * in_dim * n_padded, dtype=x_t.dtype, device=x_t.device)
        grad_flat.index_add_(1, positions.view(-1), contrib.reshape(out_dim, -1))
        grad_coef = grad_flat.view(out_dim, S * in_dim, n_padded)[:, :, k + 1 : k + 1 + n_coef]  # (out, S*in, n)
        grad_coef = grad_coef.transpose(0, 1).view(S, in_dim, out_dim, n_coef)
    if need_param_grads[1]:
        grad_scale_base = _per_model(  # (S, in, out): base @ grad_y.T
            "grad_scale_base", _grad_scale_base_batched, _grad_scale_base_alone, base, grad_y_t
        )
    if need_param_grads[2]:
        grad_scale_sp = _per_model(  # (S, in, out): spline @ grad_y
            "grad_scale_sp", _grad_scale_sp_batched, _grad_scale_sp_alone, spline, grad_y_t
        )
    if need_input_grad:
        dspline = (windows * derivs).sum(1)  # (out, S*in, B)
        grad_base = _per_model("grad_base", _grad_base_batched, _grad_base_alone, scale_base, grad_y_t)  # (S, in, B)
        through_splines = (grad_spline * dspline).sum(0).view(S, in_dim, batch)  # (S, in, B)
        through_base = stacked_silu_backward(grad_base, x_t)  # (S, in, B)
        grad_x_t = through_base + through_splines
    return grad_x_t, grad_coef, grad_scale_base, grad_scale_sp


class _StackedKANLayerFunction(torch.autograd.Function):
    """Autograd wrapper around stacked_layer_forward / stacked_layer_backward."""

    @staticmethod
    def forward(ctx, x_t, coef, scale_base, scale_sp, basis_index, basis_values, basis_derivatives, k):
        basis = LocalBasis(basis_index, basis_values, basis_derivatives)
        y_t, saved = stacked_layer_forward(x_t, coef, scale_base, scale_sp, basis, k)
        ctx.k, ctx.n_coef = k, coef.shape[3]
        ctx.save_for_backward(*saved)
        return y_t

    @staticmethod
    def backward(ctx, grad_y_t):
        grads = stacked_layer_backward(
            ctx.saved_tensors,
            grad_y_t.contiguous(),
            ctx.n_coef,
            ctx.k,
            ctx.needs_input_grad[0],
            ctx.needs_input_grad[1:4],
        )
        return (*grads, None, None, None, None)


def models_uniform(knots: torch.Tensor) -> list[bool]:
    """Per model, whether all its knot rows are equally spaced (as KANLayer decides for one model).

    knots: (S, in, K) -> S booleans
    """
    return [is_uniform(model_knots) for model_knots in knots]


def stacked_local_basis(
    x_t: torch.Tensor,
    knots: torch.Tensor,
    k: int,
    uniform: list[bool],
    derivatives: bool,
    constants: UniformGridConstants | None = None,
):
    """The local basis of every model's rows, each by the path its model alone would take.

    x_t: (S, in, B), knots: (S, in, K) -> LocalBasis over the S*in rows (index (S*in, B),
    values (k+1, S*in, B)). Models with uniform knots use the closed form, the others
    Cox-de Boor; a mixed stack evaluates both and picks each model's rows.
    """
    S, in_dim, batch = x_t.shape
    rows_x = x_t.reshape(S * in_dim, batch)  # (S*in, B)
    rows_knots = knots.reshape(S * in_dim, -1)  # (S*in, K)
    if constants is None:
        constants = UniformGridConstants.of(rows_knots, k)
    if all(uniform):
        return local_basis_uniform(rows_x, constants, derivatives)
    general = local_basis_general(rows_x, rows_knots, k, derivatives)
    if not any(uniform):
        return general
    closed = local_basis_uniform(rows_x, constants, derivatives)
    row_is_uniform = torch.tensor(uniform, device=x_t.device).repeat_interleave(in_dim)  # (S*in,)

    def pick(a, b):
        return None if a is None else torch.where(row_is_uniform[:, None], a, b)

    def pick_rows(a, b):  # (k+1, S*in, B)
        return None if a is None else torch.where(row_is_uniform[None, :, None], a, b)

    return LocalBasis(
        pick(closed.index, general.index),
        pick_rows(closed.values, general.values),
        pick_rows(closed.derivatives, general.derivatives),
    )


class KANLayerStack(nn.Module):
    """S :class:`~kanlib.layer.KANLayer` of one shape (in_dim, out_dim, grid size, k).

    Parameters: ``coef`` (S, in, out, G + k), ``scale_base`` and ``scale_sp`` (S, in, out).
    Buffer: ``knots`` (S, in, G + 2k + 1). Built from single layers by :meth:`stack`, split by
    :meth:`copy_model_into`.
    """

    def __init__(self, layers: list[KANLayer]):
        super().__init__()
        first = layers[0]
        for index, layer in enumerate(layers):
            shape = (layer.in_dim, layer.out_dim, layer.grid_size, layer.k, layer.grid_eps)
            expected = (first.in_dim, first.out_dim, first.grid_size, first.k, first.grid_eps)
            if shape != expected:
                raise ValueError(
                    f"layer of model {index} has (in, out, grid, k, grid_eps) = {shape}; model 0 has {expected}: "
                    "a stack needs one shape"
                )
        self.n_models = len(layers)
        self.in_dim, self.out_dim, self.grid_size, self.k = first.in_dim, first.out_dim, first.grid_size, first.k
        self.grid_eps = first.grid_eps
        self.register_buffer("knots", torch.stack([layer.knots.detach() for layer in layers]))  # (S, in, K)
        self.coef = nn.Parameter(torch.stack([layer.coef.detach() for layer in layers]))  # (S, in, out, n)
        self.scale_base = nn.Parameter(torch.stack([layer.scale_base.detach() for layer in layers]))  # (S, in, out)
        self.scale_sp = nn.Parameter(torch.stack([layer.scale_sp.detach() for layer in layers]))  # (S, in, out)
        self.coef.requires_grad_(first.coef.requires_grad)
        self.scale_base.requires_grad_(first.scale_base.requires_grad)
        self.scale_sp.requires_grad_(first.scale_sp.requires_grad)
        self.refresh_grid()

    @classmethod
    def stack(cls, layers: list[KANLayer]) -> KANLayerStack:
        return cls(list(layers))

    def copy_model_into(self, s: int, layer: KANLayer) -> None:
        """Copy model s's tensors (grid, coefficients, scales) into the single ``layer`` exactly."""
        layer.knots = self.knots[s].detach().clone()
        layer.coef.data = self.coef[s].detach().clone()
        layer.scale_base.data = self.scale_base[s].detach().clone()
        layer.scale_sp.data = self.scale_sp[s].detach().clone()
        layer.refresh_grid()

    def refresh_grid(self) -> None:
        """Recompute what derives from ``knots``: grid size and which models have uniform grids."""
        self.grid_size = self.knots.shape[2] - 2 * self.k - 1
        self.uniform = models_uniform(self.knots)

    # ---- evaluation -------------------------------------------------------------------------
    def basis(self, x_t: torch.Tensor, derivatives: bool = False) -> LocalBasis:
        """Local basis of every model's knots at its samples x_t (S, in, B), over S*in rows."""
        key = (self.knots.data_ptr(), self.knots._version, self.knots.dtype, self.knots.device)
        if getattr(self, "_constants_key", None) != key:  # grid moved or changed device: recompute once
            self._constants = UniformGridConstants.of(self.knots.reshape(-1, self.knots.shape[2]), self.k)
            self._constants_key, self._constants_knots = key, self.knots  # (keyed tensor kept alive with its key)
        return stacked_local_basis(x_t, self.knots, self.k, self.uniform, derivatives, self._constants)

    def forward_t(self, x_t: torch.Tensor) -> torch.Tensor:
        """Feature-major forward with autograd: x_t (S, in, B) -> (S, out, B)."""
        if not torch.is_grad_enabled() and cpu_kernels.usable(x_t, [self], all(self.uniform)):
            operands = [(self.coef, self.scale_base, self.scale_sp)]
            return cpu_kernels.forward([self], operands, [self.knots], x_t)  # (as KANLayer.forward_t, model by model)
        needs_x_grad = x_t.requires_grad and torch.is_grad_enabled()
        basis = self.basis(x_t.detach(), derivatives=needs_x_grad)
        derivs = basis.derivatives if basis.derivatives is not None else basis.values
        return _StackedKANLayerFunction.apply(
            x_t, self.coef, self.scale_base, self.scale_sp, basis.index, basis.values, derivs, self.k
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (S, B, in) -> (S, B, out)"""
        return self.forward_t(x.transpose(1, 2).contiguous()).transpose(1, 2)

    def forward_and_cache(self, x_t: torch.Tensor, need_input_grad: bool):
        """Feature-major forward without autograd and what :meth:`backward_from_cache` needs; the
        first layer's basis, positions and SiLU values are kept while its input and grid stay."""
        if need_input_grad:
            basis = self.basis(x_t, derivatives=True)
            return stacked_layer_forward(x_t, self.coef, self.scale_base, self.scale_sp, basis, self.k)
        key = (x_t.data_ptr(), x_t._version, x_t.shape, self.knots.data_ptr(), self.knots._version, self.coef.shape)
        if getattr(self, "_input_cache_key", None) != key:
            basis = self.basis(x_t)
            positions = window_index(basis.index, self.coef.shape[3], self.k)  # (k+1, S*in, B)
            self._input_cache = (basis, positions, stacked_silu(x_t), (x_t, self.knots))  # (keyed tensors kept alive)
            self._input_cache_key = key
        basis, positions, base, _ = self._input_cache
        return stacked_layer_forward(x_t, self.coef, self.scale_base, self.scale_sp, basis, self.k, positions, base)

    def backward_from_cache(self, saved, grad_y_t: torch.Tensor, need_input_grad: bool):
        """(grad_x_t, grad_coef, grad_scale_base, grad_scale_sp) for the output gradient grad_y_t (S, out, B)."""
        return stacked_layer_backward(saved, grad_y_t, self.coef.shape[3], self.k, need_input_grad)

    def spline_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Spline part of each edge, without scales: (S, B, in) -> (S, B, in, out)"""
        S, batch, in_dim = x.shape
        basis = self.basis(x.transpose(1, 2).contiguous())
        wide_coef = self.coef.reshape(S * in_dim, self.out_dim, -1)  # (S*in, out, n)
        windows = gather_windows(wide_coef, window_index(basis.index, wide_coef.shape[2], self.k), self.k)
        spline = (windows * basis.values).sum(1)  # (out, S*in, B)
        return spline.view(self.out_dim, S, in_dim, batch).permute(1, 3, 2, 0)  # (S, B, in, out)

    # ---- grids ----------------------------------------------------------------------------------
    def set_grid(self, grid: torch.Tensor, x: torch.Tensor, spline_values: torch.Tensor) -> None:
        """Move model s to grid points grid[s] (in, G+1) and refit its splines to spline_values[s]
        (B, in, out) sampled at x[s] (B, in), as KANLayer.set_grid does for one model.

        The least-squares fits run model by model: a batched Cholesky solve and its refinement
        products may round differently from the model's own (measured at G = 20), and a grid
        update is rare next to the loss evaluations between two of them."""
        knots = torch.stack([extend_grid(model_grid, self.k) for model_grid in grid])  # (S, in, K)
        coef = torch.stack(
            [fit_spline_coefficients(x[s], spline_values[s], knots[s], self.k) for s in range(self.n_models)]
        )  # (S, in, out, n)
        self.knots = knots
        self.coef.data = coef.to(self.coef.dtype)  # same Parameter object: optimizers keep tracking it
        self.refresh_grid()

    def _scratch_layer(self) -> KANLayer:
        """A lone KANLayer of this stack's shape, to run a model's grid update through the lone code."""
        scratch = self.__dict__.get("_scratch")
        if scratch is None:
            scratch = KANLayer(
                self.in_dim, self.out_dim, self.grid_size, self.k, grid_eps=self.grid_eps,
                generator=torch.Generator().manual_seed(0), dtype=self.coef.dtype, device=self.coef.device,
            )  # fmt: skip
            self.__dict__["_scratch"] = scratch  # (not a submodule: its tensors are no parameters of the stack)
        return scratch

    def _per_model_grids(self, change) -> None:
        """Run ``change(s, layer)`` on a lone layer holding model s's tensors, for every model, and take
        back each model's grid and coefficients (and scales). A grid update or extension is rare next to
        the loss evaluations between two of them, so it runs model by model through KANLayer's own code:
        each model gets exactly what it gets alone, whatever a batched product's rounding would do."""
        scratch = self._scratch_layer()
        knots, coef, scale_base, scale_sp = [], [], [], []
        for s in range(self.n_models):
            self.copy_model_into(s, scratch)
            change(s, scratch)
            knots.append(scratch.knots)
            coef.append(scratch.coef.detach())
            scale_base.append(scratch.scale_base.detach())
            scale_sp.append(scratch.scale_sp.detach())
        self.knots = torch.stack(knots)  # (S, in, K)
        self.coef.data = torch.stack(coef).to(self.coef.dtype)  # same Parameter objects: optimizers keep them
        self.scale_base.data.copy_(torch.stack(scale_base))
        self.scale_sp.data.copy_(torch.stack(scale_sp))
        self.refresh_grid()

    @torch.no_grad()
    def update_grid_from_samples(self, x: torch.Tensor) -> None:
        """Adapt every model's grid to its samples x (S, B, in), keeping its function
        (KANLayer.update_grid_from_samples per model)."""
        self._per_model_grids(lambda s, layer: layer.update_grid_from_samples(x[s].clone()))

    @torch.no_grad()
    def initialize_from_parent(self, parent: KANLayerStack, x: torch.Tensor) -> None:
        """Grid extension per model (KANLayer.initialize_from_parent): refine each parent model's
        grid to this grid size and fit its splines at that model's samples x (S, B, in)."""
        parent_scratch = parent._scratch_layer()

        def extend(s: int, layer: KANLayer) -> None:
            parent.copy_model_into(s, parent_scratch)
            layer.initialize_from_parent(parent_scratch, x[s].clone())

        self._per_model_grids(extend)
