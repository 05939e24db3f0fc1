"""One KAN layer for S models of one shape: a learnable activation on every (input, output) edge.

Each edge computes ``phi(x) = scale_base * silu(x) + scale_sp * spline(x)`` (the KAN paper's residual
form) and each output sums its incoming edges; for model s::

    y[s, o, b] = sum_i scale_base[s, i, o] * silu(x[s, i, b]) + scale_sp[s, i, o] * spline_sio(x[s, i, b])

``spline_sio`` is a B-spline of order k on the extended knot vector of model s's input i (conventions
in :mod:`kanlib.bspline`) with coefficients ``coef[s, i, o, :]``. One model is S = 1.

Shapes (feature-major between layers): x_t (S, in, B); coef (S, in, out, n); scale_base and scale_sp
(S, in, out); knots (S, in, K). The S models' inputs are evaluated as the S*in rows of one wide layer:
the local basis, the coefficient windows, the spline values and the coefficient gradients only ever
look at one (input, sample) pair; the sums over each model's own inputs are batched products. Forward
and backward evaluate only the k+1 non-zero basis functions per sample and run as one fused autograd
function, so their cost per sample does not depend on the grid size. On the CPU in float64 with
uniform grids the no-grad forward runs the C kernels of :mod:`kanlib.cpu_kernels`.
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
    uniform_grid,
    window_index,
)
from .devices import ALL, each_model, part
from .lstsq import fit_spline_coefficients


def layer_forward(x_t, coef, scale_base, scale_sp, basis: LocalBasis, k: int, positions=None, base=None, flat=None):
    """y = silu(x) @ scale_base + sum_i scale_sp * spline(x) for every model, and what backward needs.

    x_t: (S, in, B); coef: (S, in, out, n); scale_*: (S, in, out); basis: of the S*in rows of x_t
    -> y_t (S, out, B), saved tensors. positions (window_index of the basis) and base (silu(x_t))
    may be passed in when cached, flat (flat_coefficients of the wide coef) when the caller keeps it.
    """
    S, in_dim, out_dim, n = coef.shape
    batch = x_t.shape[2]
    if positions is None:
        positions = window_index(basis.index, n, k)  # (k+1, S*in, B)
    windows = gather_windows(coef.reshape(S * in_dim, out_dim, n), positions, k, flat)  # (out, k+1, S*in, B)
    spline = (windows * basis.values).sum(1)  # (out, S*in, B)
    if base is None:
        base = torch.nn.functional.silu(x_t)  # (S, in, B)
    base_term = torch.bmm(scale_base.transpose(1, 2), base)  # (S, out, B)
    rows = base_term.transpose(0, 1).reshape(out_dim * S, 1, batch)  # (out*S, 1, B)
    sp_rows = scale_sp.permute(2, 0, 1).reshape(out_dim * S, 1, in_dim)  # (out*S, 1, in)
    y = torch.baddbmm(rows, sp_rows, spline.view(out_dim * S, in_dim, batch))  # (out*S, 1, B)
    y_t = y.view(out_dim, S, batch).transpose(0, 1).contiguous()  # (S, out, B)
    return y_t, (x_t, base, spline, windows, positions, basis.values, basis.derivatives, scale_base, scale_sp)


def layer_backward(saved, grad_y_t, n_coef: int, k: int, need_input_grad: bool, need_param_grads=(True, True, True)):
    """Gradients of :func:`layer_forward` for the output gradient grad_y_t (S, out, B).

    Returns grad_x_t (S, in, B) or None, grad_coef (S, in, out, n), grad_scale_base and grad_scale_sp
    (S, in, out).
    """
    x_t, base, spline, windows, positions, values, derivs, scale_base, scale_sp = saved
    S, in_dim, out_dim = scale_base.shape
    batch = x_t.shape[2]
    grad_x_t = grad_coef = grad_scale_base = grad_scale_sp = None
    grad_y_rows = grad_y_t.transpose(0, 1).contiguous()  # (out, S, B)
    sp_columns = scale_sp.permute(2, 0, 1).unsqueeze(-1)  # (out, S, in, 1)
    grad_spline = (sp_columns * grad_y_rows.unsqueeze(2)).view(out_dim, S * in_dim, batch)  # (out, S*in, B)
    if need_param_grads[0]:
        contrib = grad_spline.unsqueeze(1) * values  # (out, k+1, S*in, B)
        n_padded = n_coef + 2 * k + 2
        grad_flat = torch.zeros(out_dim, S * in_dim * n_padded, dtype=x_t.dtype, device=x_t.device)
        grad_flat.index_add_(1, positions.view(-1), contrib.reshape(out_dim, -1))
        grad_coef = grad_flat.view(out_dim, S * in_dim, n_padded)[:, :, k + 1 : k + 1 + n_coef]  # (out, S*in, n)
        grad_coef = grad_coef.transpose(0, 1).reshape(S, in_dim, out_dim, n_coef)
    if need_param_grads[1]:
        grad_scale_base = torch.bmm(base, grad_y_t.transpose(1, 2))  # (S, in, out)
    if need_param_grads[2]:
        grad_y_columns = grad_y_rows.view(out_dim * S, batch, 1)  # (out*S, B, 1)
        grad_sp = torch.bmm(spline.view(out_dim * S, in_dim, batch), grad_y_columns)  # (out*S, in, 1)
        grad_scale_sp = grad_sp.view(out_dim, S, in_dim).permute(1, 2, 0)  # (S, in, out)
    if need_input_grad:
        dspline = (windows * derivs).sum(1)  # (out, S*in, B)
        grad_base = torch.bmm(scale_base, grad_y_t)  # (S, in, B)
        through_splines = (grad_spline * dspline).sum(0).view(S, in_dim, batch)  # (S, in, B)
        grad_x_t = torch.ops.aten.silu_backward(grad_base, x_t) + through_splines
    return grad_x_t, grad_coef, grad_scale_base, grad_scale_sp


class _KANLayerFunction(torch.autograd.Function):
    """Autograd wrapper around layer_forward / layer_backward (feature-major tensors)."""

    @staticmethod
    def forward(ctx, x_t, coef, scale_base, scale_sp, basis_index, basis_values, basis_derivatives, k):
        basis = LocalBasis(basis_index, basis_values, basis_derivatives)
        y_t, saved = layer_forward(x_t, coef, scale_base, scale_sp, basis, k)
        ctx.k, ctx.n_coef = k, coef.shape[3]
        ctx.save_for_backward(*saved)
        return y_t

    @staticmethod
    def backward(ctx, grad_y_t):
        grads = layer_backward(
            ctx.saved_tensors,
            grad_y_t.contiguous(),
            ctx.n_coef,
            ctx.k,
            ctx.needs_input_grad[0],
            ctx.needs_input_grad[1:4],
        )
        return (*grads, None, None, None, None)


class KANLayer(nn.Module):
    """A KAN layer of S models with ``in_dim * out_dim`` spline activations each.

    Parameters: ``coef`` (S, in_dim, out_dim, G + k), ``scale_base`` and ``scale_sp`` (S, in_dim,
    out_dim). Buffer: ``knots`` (S, in_dim, G + 2k + 1). ``generators``: one per model, each drawing
    that model's initial values as pykan does.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        grid_size: int,
        k: int,
        *,
        generators: list[torch.Generator],
        grid_range=(-1.0, 1.0),
        grid_eps: float = 1.0,
        noise_scale: float = 1.0,
        scale_base_mu: float = 0.0,
        scale_base_sigma: float = 1.0,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ):
        super().__init__()
        self.in_dim, self.out_dim, self.k, self.grid_eps = in_dim, out_dim, k, grid_eps
        factory = dict(dtype=dtype, device=device)
        lower = torch.full((in_dim,), float(grid_range[0]), **factory)
        upper = torch.full((in_dim,), float(grid_range[1]), **factory)
        knots = extend_grid(uniform_grid(lower, upper, grid_size), k)  # (in, K)
        grid_points = knots[:, k : k + grid_size + 1].T  # (G+1, in)
        coef, scale_base = [], []
        for generator in generators:  # model by model, in the order pykan draws them
            # initial splines: least-squares fits to small noise at the grid points (pykan's init)
            noise = torch.rand(grid_size + 1, in_dim, out_dim, generator=generator, dtype=dtype) - 0.5
            noise = (noise * noise_scale / grid_size).to(device)  # (G+1, in, out)
            coef.append(fit_spline_coefficients(grid_points, noise, knots, k))
            # scale_base = (mu + sigma * (2 z - 1)) / sqrt(in_dim) with z standard normal, exactly as pykan
            # 0.2.1's MultKAN (mean -sigma, spread 2 sigma); later pykan releases draw z uniform on [0, 1)
            z = torch.randn(in_dim, out_dim, generator=generator, dtype=dtype)
            scale_base.append(scale_base_mu / in_dim**0.5 + scale_base_sigma * (z * 2 - 1) / in_dim**0.5)
        S = len(generators)
        self.register_buffer("knots", knots.expand(S, -1, -1).contiguous())
        self.coef = nn.Parameter(torch.stack(coef))
        self.scale_base = nn.Parameter(torch.stack(scale_base).to(device))
        # scale_sp = 1 on every edge, as pykan 0.2.1 (the release that reproduces the paper and the seed).
        # Later releases divide it by sqrt(in_dim); with that, [2,1,1] on exp(sin(pi x) + y^2) at G=3
        # reached the good basin from fewer model seeds (tests/core/test_minima.py).
        self.scale_sp = nn.Parameter(torch.ones(S, in_dim, out_dim, **factory))
        self.refresh_grid()

    def refresh_grid(self) -> None:
        """Recompute what derives from ``knots``: the grid size and which models have uniform grids."""
        knots = self._buffers["knots"]
        self.grid_size = knots.shape[2] - 2 * self.k - 1
        self.uniform = [is_uniform(model_knots) for model_knots in knots]
        self.all_uniform = all(self.uniform)

    @property
    def n_models(self) -> int:
        return self._buffers["knots"].shape[0]

    @property
    def grid(self) -> torch.Tensor:
        """Grid points without the extension knots: (S, in_dim, G + 1)."""
        return self.knots[..., self.k : self.k + self.grid_size + 1]

    def params(self, models: slice | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(coef, scale_base, scale_sp): the parameters themselves (``models`` None: what the C kernels
        read), or those of ``models`` as the torch path evaluates them (:func:`kanlib.stack.part`)."""
        params = self._parameters
        coef, scale_base, scale_sp = params["coef"], params["scale_base"], params["scale_sp"]
        if models is None:
            return coef, scale_base, scale_sp
        return part(coef, models), part(scale_base, models), part(scale_sp, models)

    # ---- evaluation -------------------------------------------------------------------
    def basis(self, x_t: torch.Tensor, models: slice = ALL, derivatives: bool = False) -> LocalBasis:
        """Local basis of ``models``' knots at their feature-major samples x_t (S', in, B), over S'*in rows.
        Uniform grids take the closed form (its constants kept while the grid stays), others Cox-de Boor."""
        knots = self._buffers["knots"][models]
        rows = x_t.reshape(-1, x_t.shape[2])  # (S'*in, B)
        if not all(self.uniform[models]):
            return local_basis_general(rows, knots.reshape(-1, knots.shape[2]), self.k, derivatives)
        cache = self.__dict__.setdefault("_grid_constants", {})
        key = (knots.data_ptr(), knots._version, knots.shape, knots.device)
        if cache.get(models.start, (None,))[0] != key:  # the grid moved or changed device: recompute once
            # (the keyed tensor is kept alive with the key: no other tensor can take its address)
            cache[models.start] = (key, UniformGridConstants.of(knots.reshape(-1, knots.shape[2]), self.k), knots)
        return local_basis_uniform(rows, cache[models.start][1], derivatives)

    def forward_t(self, x_t: torch.Tensor, models: slice = ALL) -> torch.Tensor:
        """Feature-major forward of ``models`` with autograd: x_t (S', in, B) -> (S', out, B)."""
        if not torch.is_grad_enabled() and cpu_kernels.usable(x_t, [self], all(self.uniform[models])):
            params = [tuple(param[models] for param in self.params())]
            return cpu_kernels.forward([self], params, [self.knots[models]], x_t)
        coef, scale_base, scale_sp = self.params(models)
        needs_x_grad = x_t.requires_grad and torch.is_grad_enabled()
        basis = self.basis(x_t.detach(), models, derivatives=needs_x_grad)
        derivs = basis.derivatives if basis.derivatives is not None else basis.values
        return _KANLayerFunction.apply(x_t, coef, scale_base, scale_sp, basis.index, basis.values, derivs, self.k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (S, B, in) -> (S, B, out); one model's (B, in) -> (B, out)."""
        if x.dim() == 2 and self.n_models == 1:
            return self.forward_t(x.T.contiguous()[None])[0].T
        return self.forward_t(x.transpose(1, 2).contiguous()).transpose(1, 2)

    def forward_and_cache(self, x_t: torch.Tensor, models: slice, need_input_grad: bool, input_key=None):
        """Feature-major forward of ``models`` without autograd, keeping what :meth:`backward_from_cache`
        needs. ``input_key`` (the first layer, fed the training inputs): its basis, coefficient positions
        and SiLU values are kept and reused while the input and the grid stay the same (they do not
        depend on the parameters being optimised)."""
        coef, scale_base, scale_sp = self.params(models)
        flat = self._flat_coefficients(coef)
        if input_key is None:
            basis = self.basis(x_t, models, derivatives=need_input_grad)
            return layer_forward(x_t, coef, scale_base, scale_sp, basis, self.k, flat=flat)
        knots = self._buffers["knots"]
        key = (*input_key, knots.data_ptr(), knots._version, coef.shape)
        cache = self.__dict__.setdefault("_input_cache", {})
        if cache.get(models.start, (None,))[0] != key:
            basis = self.basis(x_t, models)
            positions = window_index(basis.index, coef.shape[3], self.k)
            # (the keyed tensors kept alive with their key, so that no other tensor can take their addresses)
            cache[models.start] = (key, basis, positions, torch.nn.functional.silu(x_t), knots, input_key)
        _, basis, positions, base, _, _ = cache[models.start]
        return layer_forward(x_t, coef, scale_base, scale_sp, basis, self.k, positions, base, flat)

    def _flat_coefficients(self, coef: torch.Tensor) -> torch.Tensor:
        """:func:`~kanlib.bspline.flat_coefficients` of the wide coef, written into a zero-padded buffer
        kept between evaluations (one copy instead of allocating, zeroing and filling a new one). The
        gather reads it at once and backward never does, so overwriting it is safe."""
        k = self.k
        S, in_dim, out_dim, n = coef.shape
        key = (coef.shape, coef.dtype, coef.device, torch.is_inference_mode_enabled())
        if self.__dict__.get("_padded_key") != key:
            self._padded = coef.new_zeros(S * in_dim, out_dim, n + 2 * k + 2)
            self._padded_key = key
        padded = self._padded
        padded[:, :, k + 1 : k + 1 + n] = coef.reshape(S * in_dim, out_dim, n)
        if out_dim == 1:
            return padded.view(1, -1)
        return padded.transpose(0, 1).reshape(out_dim, -1)

    def backward_from_cache(self, saved, grad_y_t: torch.Tensor, need_input_grad: bool):
        """(grad_x_t, grad_coef, grad_scale_base, grad_scale_sp) for the output gradient grad_y_t (S', out, B)."""
        return layer_backward(saved, grad_y_t, self._parameters["coef"].shape[3], self.k, need_input_grad)

    def spline_outputs(self, x: torch.Tensor, models: slice = ALL) -> torch.Tensor:
        """Spline part of each edge of ``models``, without scales: (S', B, in) -> (S', B, in, out)"""
        S, batch, in_dim = x.shape
        coef = self.coef[models]
        n = coef.shape[3]
        basis = self.basis(x.transpose(1, 2).contiguous(), models)
        positions = window_index(basis.index, n, self.k)  # (k+1, S'*in, B)
        windows = gather_windows(coef.reshape(S * in_dim, self.out_dim, n), positions, self.k)
        spline = (windows * basis.values).sum(1)  # (out, S*in, B)
        return spline.view(self.out_dim, S, in_dim, batch).permute(1, 3, 2, 0)

    def edge_outputs(self, x: torch.Tensor, models: slice = ALL) -> torch.Tensor:
        """Each edge's activation phi(x) of ``models``: (S', B, in) -> (S', B, in, out), autograd-friendly."""
        _, scale_base, scale_sp = self.params(models)
        base = torch.nn.functional.silu(x)[..., None]  # (S', B, in, 1)
        return scale_base[:, None] * base + scale_sp[:, None] * self.spline_outputs(x, models)

    # ---- grids: model by model on the CPU (each model's least squares as it runs alone) --------
    def _refit(self, models: slice, grid: torch.Tensor, x: torch.Tensor, values: torch.Tensor):
        """Knots on grid points ``grid`` (S', in, G+1) and the coefficients whose splines fit ``values``
        (S', B, in, out) sampled at ``x`` (S', B, in), for ``models``."""
        S, batch, in_dim = x.shape
        knots = extend_grid(grid.reshape(S * in_dim, -1), self.k)  # (S'*in, K)
        rows_x = x.transpose(0, 1).reshape(batch, S * in_dim)  # (B, S'*in)
        rows_values = values.transpose(0, 1).reshape(batch, S * in_dim, self.out_dim)
        coef = fit_spline_coefficients(rows_x, rows_values, knots, self.k)  # (S'*in, out, n)
        return knots.view(S, in_dim, -1), coef.view(S, in_dim, self.out_dim, -1)

    def _regrid(self, change) -> None:
        """Set every model's knots and coefficients to ``change(models)``'s (knots, coef): model by model
        on the CPU, all at once on a GPU. A grid update or extension is rare next to the loss
        evaluations between two of them."""
        parts = [change(models) for models in each_model(self.n_models, self.coef.device)]
        self.knots = torch.cat([knots for knots, _ in parts])
        # (the same Parameter object: optimizers keep tracking it)
        self.coef.data = torch.cat([coef for _, coef in parts]).to(self.coef.dtype)
        self.refresh_grid()

    @torch.no_grad()
    def update_grid_from_samples(self, x: torch.Tensor) -> None:
        """Adapt every model's grid to its samples x (S, B, in), keeping the layer's function.

        The new grid mixes a uniform grid over the sample range and the sample quantiles:
        ``grid_eps * uniform + (1 - grid_eps) * quantiles`` (``grid_eps = 1``: uniform, pykan's convention).
        """

        def change(models):
            x_sorted = torch.sort(x[models], dim=1).values  # (S', B, in)
            values = self.spline_outputs(x_sorted, models)  # (S', B, in, out)
            batch, G = x_sorted.shape[1], self.grid_size
            ids = [int(batch / G * i) for i in range(G)] + [batch - 1]
            adaptive = x_sorted[:, ids, :].transpose(1, 2)  # (S', in, G+1)
            grid = uniform_grid(adaptive[..., 0].reshape(-1), adaptive[..., -1].reshape(-1), G).view_as(adaptive)
            if self.grid_eps != 1.0:
                grid = self.grid_eps * grid + (1 - self.grid_eps) * adaptive
            return self._refit(models, grid, x_sorted, values)

        self._regrid(change)

    @torch.no_grad()
    def initialize_from_parent(self, parent: KANLayer, x: torch.Tensor) -> None:
        """Refine each ``parent`` model's grid to this layer's grid size and fit its splines (grid extension).

        The new grid points interpolate the parent's grid points piecewise linearly, so a uniform
        parent gives a uniform grid on the same range and G_fine = m * G_coarse gives nested grids (the
        coarse spline space lies in the fine one). The coefficients are a least-squares fit of the
        parent's splines at the samples x (S, B, in), the inputs this layer sees.
        """
        G_parent, G = parent.grid_size, self.grid_size
        position = torch.arange(G + 1, dtype=x.dtype, device=x.device) * (G_parent / G)  # (G+1,) in parent intervals
        left = torch.clamp(torch.floor(position).long(), max=G_parent - 1)
        frac = position - left

        def change(models):
            parent_grid = parent.grid[models]  # (S', in, G_parent+1)
            grid = parent_grid[..., left] * (1 - frac) + parent_grid[..., left + 1] * frac  # (S', in, G+1)
            ends = parent_grid[..., 0].reshape(-1), parent_grid[..., -1].reshape(-1)
            uniform = torch.tensor(parent.uniform[models], device=x.device)[:, None, None]
            grid = torch.where(uniform, uniform_grid(*ends, G).view_as(grid), grid)
            return self._refit(models, grid, x[models], parent.spline_outputs(x[models], models))

        self._regrid(change)
        self.scale_base.copy_(parent.scale_base)
        self.scale_sp.copy_(parent.scale_sp)
