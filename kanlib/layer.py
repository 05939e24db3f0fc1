"""One KAN layer: a learnable activation on every (input, output) edge.

Each edge computes ``phi(x) = scale_base * silu(x) + scale_sp * spline(x)``
(the KAN paper's residual form) and each output sums its incoming edges::

    y[b, o] = sum_i scale_base[i, o] * silu(x[b, i]) + scale_sp[i, o] * spline_io(x[b, i])

``spline_io`` is a B-spline of order k on the extended knot vector of input i
(conventions in :mod:`kanlib.bspline`) with coefficients ``coef[i, o, :]``.
Forward and backward evaluate only the k+1 non-zero basis functions per
sample and run as one fused autograd function, so their cost per sample does
not depend on the grid size.
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
from .lstsq import fit_spline_coefficients


def layer_forward(x_t, coef, scale_base, scale_sp, basis: LocalBasis, k: int, positions=None, base=None, flat=None):
    """y = silu(x) @ scale_base + sum_i scale_sp * spline(x), feature-major, and what backward needs.

    x_t: (in, B), coef: (in, out, n), scale_*: (in, out) -> y_t: (out, B), saved tensors.
    positions (window_index of the basis) and base (silu(x_t)) may be passed in when cached,
    flat (flat_coefficients of coef) when the caller keeps a padded copy of coef.
    """
    if positions is None:
        positions = window_index(basis.index, coef.shape[2], k)  # (k+1, in, B)
    windows = gather_windows(coef, positions, k, flat)  # (out, k+1, in, B)
    spline = (windows * basis.values).sum(1)  # (out, in, B)
    if base is None:
        base = torch.nn.functional.silu(x_t)  # (in, B)
    y_t = torch.baddbmm((scale_base.T @ base).unsqueeze(1), scale_sp.T.unsqueeze(1), spline).squeeze(1)  # (out, B)
    return y_t, (x_t, base, spline, windows, positions, basis.values, basis.derivatives, scale_base, scale_sp)


def layer_backward(saved, grad_y_t, n_coef: int, k: int, need_input_grad: bool, need_param_grads=(True, True, True)):
    """Gradients of :func:`layer_forward` for the output gradient grad_y_t (out, B).

    Returns grad_x_t (in, B) or None, grad_coef (in, out, n), grad_scale_base and grad_scale_sp (in, out).
    """
    x_t, base, spline, windows, positions, values, derivs, scale_base, scale_sp = saved
    in_dim, out_dim = scale_base.shape
    grad_x_t = grad_coef = grad_scale_base = grad_scale_sp = None
    grad_spline = scale_sp.T.unsqueeze(-1) * grad_y_t.unsqueeze(1)  # (out, in, B)
    if need_param_grads[0]:
        contrib = grad_spline.unsqueeze(1) * values  # (out, k+1, in, B)
        n_padded = n_coef + 2 * k + 2
        grad_flat = torch.zeros(out_dim, in_dim * n_padded, dtype=x_t.dtype, device=x_t.device)
        grad_flat.index_add_(1, positions.view(-1), contrib.reshape(out_dim, -1))
        grad_coef = grad_flat.view(out_dim, in_dim, n_padded)[:, :, k + 1 : k + 1 + n_coef].transpose(0, 1)
    if need_param_grads[1]:
        grad_scale_base = base @ grad_y_t.T  # (in, out)
    if need_param_grads[2]:
        grad_scale_sp = torch.bmm(spline, grad_y_t.unsqueeze(-1)).squeeze(-1).T  # (in, out)
    if need_input_grad:
        dspline = (windows * derivs).sum(1)  # (out, in, B)
        grad_base = scale_base @ grad_y_t  # (in, B)
        grad_x_t = torch.ops.aten.silu_backward(grad_base, x_t) + (grad_spline * dspline).sum(0)  # (in, B)
    return grad_x_t, grad_coef, grad_scale_base, grad_scale_sp


class _KANLayerFunction(torch.autograd.Function):
    """Autograd wrapper around layer_forward / layer_backward (feature-major tensors)."""

    @staticmethod
    def forward(ctx, x_t, coef, scale_base, scale_sp, basis_index, basis_values, basis_derivatives, k):
        basis = LocalBasis(basis_index, basis_values, basis_derivatives)
        y_t, saved = layer_forward(x_t, coef, scale_base, scale_sp, basis, k)
        ctx.k, ctx.n_coef = k, coef.shape[2]
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
    """A KAN layer with ``in_dim * out_dim`` spline activations.

    Parameters: ``coef`` (in_dim, out_dim, G + k), ``scale_base`` and
    ``scale_sp`` (in_dim, out_dim). Buffer: ``knots`` (in_dim, G + 2k + 1).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        grid_size: int,
        k: int,
        *,
        grid_range=(-1.0, 1.0),
        grid_eps: float = 1.0,
        noise_scale: float = 1.0,
        scale_base_mu: float = 0.0,
        scale_base_sigma: float = 1.0,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ):
        super().__init__()
        self.in_dim, self.out_dim, self.grid_size, self.k = in_dim, out_dim, grid_size, k
        self.grid_eps = grid_eps
        factory = dict(dtype=dtype, device=device)
        lower = torch.full((in_dim,), float(grid_range[0]), **factory)
        upper = torch.full((in_dim,), float(grid_range[1]), **factory)
        self.register_buffer("knots", extend_grid(uniform_grid(lower, upper, grid_size), k))
        self.uniform_grid = True
        # Initial splines: least-squares fits to small noise at the grid points (pykan's init).
        noise = torch.rand(grid_size + 1, in_dim, out_dim, generator=generator, dtype=dtype) - 0.5
        noise = (noise * noise_scale / grid_size).to(device)  # (G+1, in, out)
        grid_points = self.knots[:, k : k + grid_size + 1].T  # (G+1, in)
        self.coef = nn.Parameter(fit_spline_coefficients(grid_points, noise, self.knots, k))
        # scale_base = (mu + sigma * (2 z - 1)) / sqrt(in_dim) with z standard normal (torch.randn), exactly
        # as pykan 0.2.1's MultKAN (mean -sigma, spread 2 sigma); later pykan releases draw z uniform on [0, 1).
        scale_base = (
            scale_base_mu / in_dim**0.5
            + scale_base_sigma * (torch.randn(in_dim, out_dim, generator=generator, dtype=dtype) * 2 - 1) / in_dim**0.5
        )
        self.scale_base = nn.Parameter(scale_base.to(device))
        # scale_sp = 1 on every edge, as pykan 0.2.1 (the release that reproduces the paper and the seed).
        # Later pykan releases divide it by sqrt(in_dim) (and draw scale_base with torch.rand); kanlib had
        # taken that 1/sqrt(in_dim) while keeping 0.2.1's randn, an initialisation neither release uses.
        # With 1/sqrt(in_dim), [2,1,1] on exp(sin(pi x) + y^2) at G=3 reached the good basin from fewer
        # model seeds (tests/test_minima.py).
        self.scale_sp = nn.Parameter(torch.ones(in_dim, out_dim, **factory))

    # ---- evaluation -------------------------------------------------------------------
    def basis(self, x_t: torch.Tensor, derivatives: bool = False) -> LocalBasis:
        """Local basis of this layer's knots at feature-major samples x_t (in_dim, batch)."""
        knots = self._buffers["knots"]  # (plain dict look-ups: this runs once per loss evaluation)
        if not self.uniform_grid:
            return local_basis_general(x_t, knots, self.k, derivatives)
        key = (knots.data_ptr(), knots._version, knots.dtype, knots.device)
        if self.__dict__.get("_uniform_key") != key:  # grid moved or changed device: recompute once
            self._uniform_constants = UniformGridConstants.of(knots, self.k)
            # (the keyed tensor is kept alive with the key: no other tensor can take its address)
            self._uniform_key, self._uniform_knots = key, knots
        return local_basis_uniform(x_t, self._uniform_constants, derivatives)

    def forward_t(self, x_t: torch.Tensor) -> torch.Tensor:
        """Feature-major forward with autograd: x_t (in_dim, batch) -> (out_dim, batch)."""
        if not torch.is_grad_enabled():  # (e.g. the test-set evaluation in fit): the same forward, no autograd node
            params = self._parameters
            if cpu_kernels.usable(x_t, [self], self.uniform_grid):
                operands = [(params["coef"][None], params["scale_base"][None], params["scale_sp"][None])]
                return cpu_kernels.forward([self], operands, [self._buffers["knots"][None]], x_t[None])[0]
            basis = self.basis(x_t)
            return layer_forward(x_t, params["coef"], params["scale_base"], params["scale_sp"], basis, self.k)[0]
        needs_x_grad = x_t.requires_grad
        basis = self.basis(x_t.detach(), derivatives=needs_x_grad)
        derivs = basis.derivatives if basis.derivatives is not None else basis.values
        return _KANLayerFunction.apply(
            x_t, self.coef, self.scale_base, self.scale_sp, basis.index, basis.values, derivs, self.k
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in_dim) -> (batch, out_dim)"""
        return self.forward_t(x.T.contiguous()).T

    def forward_and_cache(self, x_t: torch.Tensor, need_input_grad: bool):
        """Feature-major forward without autograd, keeping what :meth:`backward_from_cache` needs.

        When the input needs no gradient (the first layer, fed the training inputs), its
        basis, coefficient positions and SiLU values are kept and reused while the input
        and the grid stay the same: they do not depend on the parameters being optimised.
        """
        params = self._parameters  # (plain dict look-ups instead of nn.Module.__getattr__)
        coef, scale_base, scale_sp = params["coef"], params["scale_base"], params["scale_sp"]
        flat = self._flat_coefficients(coef)
        if need_input_grad:
            basis = self.basis(x_t, derivatives=True)
            return layer_forward(x_t, coef, scale_base, scale_sp, basis, self.k, flat=flat)
        knots = self._buffers["knots"]
        key = (x_t.data_ptr(), x_t._version, x_t.shape, knots.data_ptr(), knots._version, coef.shape)
        if self.__dict__.get("_input_cache_key") != key:
            basis = self.basis(x_t)
            self._input_cache = (
                basis,
                window_index(basis.index, coef.shape[2], self.k),
                torch.nn.functional.silu(x_t),
                (x_t, knots),  # kept alive with their key, so that no other tensor can take their addresses
            )
            self._input_cache_key = key
        basis, positions, base, _ = self._input_cache
        return layer_forward(x_t, coef, scale_base, scale_sp, basis, self.k, positions, base, flat)

    def _flat_coefficients(self, coef: torch.Tensor) -> torch.Tensor:
        """:func:`~kanlib.bspline.flat_coefficients` of coef, written into a zero-padded buffer kept
        between evaluations (one copy instead of allocating, zeroing and filling a new one).
        The gather reads it at once and backward never does, so overwriting it is safe."""
        k = self.k
        in_dim, out_dim, n = coef.shape
        key = (coef.shape, coef.dtype, coef.device, torch.is_inference_mode_enabled())
        if self.__dict__.get("_padded_key") != key:
            self._padded = coef.new_zeros(in_dim, out_dim, n + 2 * k + 2)
            self._padded_key = key
        padded = self._padded
        padded[:, :, k + 1 : k + 1 + n] = coef
        if out_dim == 1:
            return padded.view(1, -1)
        return padded.transpose(0, 1).reshape(out_dim, -1)

    def backward_from_cache(self, saved, grad_y_t: torch.Tensor, need_input_grad: bool):
        """(grad_x_t, grad_coef, grad_scale_base, grad_scale_sp) for the output gradient grad_y_t (out, B)."""
        return layer_backward(saved, grad_y_t, self._parameters["coef"].shape[2], self.k, need_input_grad)

    def spline_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Spline part of each edge, without scales: (batch, in_dim) -> (batch, in_dim, out_dim)"""
        basis = self.basis(x.T.contiguous())
        windows = gather_windows(self.coef, window_index(basis.index, self.coef.shape[2], self.k), self.k)
        return (windows * basis.values).sum(1).permute(2, 1, 0)  # (out, in, B) -> (B, in, out)

    def edge_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Each edge's activation phi(x): (batch, in_dim) -> (batch, in_dim, out_dim), autograd-friendly."""
        base = torch.nn.functional.silu(x)[:, :, None]  # (B, in, 1)
        return self.scale_base * base + self.scale_sp * self.spline_outputs(x)

    # ---- grids --------------------------------------------------------------------------
    def set_grid(self, grid: torch.Tensor, x: torch.Tensor, spline_values: torch.Tensor) -> None:
        """Move to grid points ``grid`` (in_dim, G+1) and refit the splines to ``spline_values``
        (batch, in_dim, out_dim) sampled at ``x`` (batch, in_dim)."""
        knots = extend_grid(grid, self.k)
        coef = fit_spline_coefficients(x, spline_values, knots, self.k)
        self.knots = knots
        self.uniform_grid = is_uniform(knots)
        self.grid_size = grid.shape[1] - 1
        self.coef.data = coef  # same Parameter object: optimizers keep tracking it

    def refresh_grid(self) -> None:
        """Recompute what derives from ``knots`` (after loading a state dict)."""
        self.grid_size = self.knots.shape[1] - 2 * self.k - 1
        self.uniform_grid = is_uniform(self.knots)

    @torch.no_grad()
    def update_grid_from_samples(self, x: torch.Tensor) -> None:
        """Adapt the grid to the samples x (batch, in_dim), keeping the layer's function.

        The new grid mixes a uniform grid over the sample range and the sample
        quantiles: ``grid_eps * uniform + (1 - grid_eps) * quantiles``
        (``grid_eps = 1``: uniform, pykan's convention).
        """
        batch = x.shape[0]
        x_sorted = torch.sort(x, dim=0).values  # (batch, in)
        values = self.spline_outputs(x_sorted)  # (batch, in, out)
        G = self.grid_size
        ids = [int(batch / G * i) for i in range(G)] + [batch - 1]
        adaptive = x_sorted[ids, :].T  # (in, G+1)
        uniform = uniform_grid(adaptive[:, 0], adaptive[:, -1], G)  # (in, G+1)
        grid = self.grid_eps * uniform + (1 - self.grid_eps) * adaptive
        if self.grid_eps == 1.0:
            grid = uniform
        self.set_grid(grid, x_sorted, values)

    @torch.no_grad()
    def initialize_from_parent(self, parent: KANLayer, x: torch.Tensor) -> None:
        """Refine ``parent``'s grid to this layer's grid size and fit its splines.

        The new grid points interpolate the parent's grid points piecewise
        linearly, so a uniform parent gives a uniform grid on the same range and
        G_fine = m * G_coarse gives nested grids (the coarse spline space lies in
        the fine one). The coefficients are a least-squares fit of the parent's
        splines at the samples x (batch, in_dim), the inputs this layer sees.
        """
        pk, G_parent = parent.k, parent.grid_size
        parent_grid = parent.knots[:, pk : pk + G_parent + 1]  # (in, G_parent+1)
        G = self.grid_size
        position = torch.arange(G + 1, dtype=x.dtype, device=x.device) * (G_parent / G)  # (G+1,) in parent intervals
        left = torch.clamp(torch.floor(position).long(), max=G_parent - 1)
        frac = position - left
        grid = parent_grid[:, left] * (1 - frac) + parent_grid[:, left + 1] * frac  # (in, G+1)
        if parent.uniform_grid:
            grid = uniform_grid(parent_grid[:, 0], parent_grid[:, -1], G)
        self.set_grid(grid, x, parent.spline_outputs(x))
        self.scale_base.copy_(parent.scale_base)
        self.scale_sp.copy_(parent.scale_sp)

    @property
    def grid(self) -> torch.Tensor:
        """Grid points without the extension knots: (in_dim, G + 1)."""
        return self.knots[:, self.k : self.k + self.grid_size + 1]
