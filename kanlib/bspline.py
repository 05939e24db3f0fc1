"""B-spline bases on extended knot vectors, evaluated locally.

Knot convention (used everywhere in kanlib)
-------------------------------------------
A spline of order ``k`` (polynomial degree ``k``; ``k = 3`` is cubic) on ``G``
grid intervals lives on an *extended* knot vector of ``K = G + 2k + 1``
increasing knots ``t[0] <= ... <= t[G+2k]``: the ``G + 1`` grid points
``t[k] .. t[G+k]`` plus ``k`` extra knots on each side, spaced like the end
intervals (:func:`extend_grid`). There are ``n = G + k`` basis functions;
``B_i`` is supported on ``[t[i], t[i+k+1])``. This is scipy's convention:
``scipy.interpolate.BSpline(t, c, k)`` with ``len(c) == len(t) - k - 1``.

* Inside the base interval ``[t[k], t[G+k]]`` the basis is a partition of unity.
* On ``[t[0], t[k])`` and ``(t[G+k], t[G+2k])`` only some basis functions are
  present (they taper off), as in pykan.
* Outside ``[t[0], t[G+2k])`` every basis function is zero.

Intervals are half-open, ``t[j] <= x < t[j+1]``. At most ``k + 1`` basis
functions, ``B_{j-k} .. B_j``, are non-zero on interval ``j``; everything here
evaluates only those, so the cost per sample does not depend on ``G``.

Tensor layout: a layer with ``in_dim`` inputs keeps one knot vector per input,
``knots`` of shape ``(in_dim, K)``. Public functions take samples ``x`` of shape
``(batch, in_dim)``; the evaluated basis is *feature-major*, sample axis last
(``(k+1, in_dim, batch)``), because elementwise work on small KANs is bound by
per-operation overhead and long contiguous inner axes keep each operation cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch


def uniform_grid(lower: torch.Tensor, upper: torch.Tensor, grid_size: int) -> torch.Tensor:
    """``grid_size + 1`` equally spaced points from ``lower`` to ``upper``.

    lower, upper: (in_dim,) -> (in_dim, grid_size + 1)
    """
    steps = torch.arange(grid_size + 1, dtype=lower.dtype, device=lower.device)  # (G+1,)
    h = (upper - lower) / grid_size  # (in_dim,)
    return lower[:, None] + h[:, None] * steps[None, :]


def extend_grid(grid: torch.Tensor, k: int) -> torch.Tensor:
    """Add ``k`` knots on each side of each row of ``grid``.

    The extra knots continue the row's mean spacing ``(grid[-1] - grid[0]) / G``
    (pykan's rule; for a uniform grid, the grid's own spacing).

    grid: (in_dim, G + 1) -> (in_dim, G + 2k + 1)
    """
    grid_size = grid.shape[1] - 1
    h = (grid[:, -1:] - grid[:, :1]) / grid_size  # (in_dim, 1)
    steps = torch.arange(1, k + 1, dtype=grid.dtype, device=grid.device)  # (k,)
    left = grid[:, :1] - h * steps.flip(0)[None, :]  # (in_dim, k)
    right = grid[:, -1:] + h * steps[None, :]  # (in_dim, k)
    return torch.cat([left, grid, right], dim=1)


def is_uniform(knots: torch.Tensor) -> bool:
    """True when every row of ``knots`` is equally spaced to rounding: each knot lies within
    16 ulp of the largest knot magnitude of ``t[0] + i h``, ``h = (t[-1] - t[0]) / (K - 1)``.

    The closed-form path computes ``u = x / h - t[0] / h``, whose rounding is ~eps max|t| / h of an
    interval; a knot that far from its uniform position changes nothing beyond that rounding. (A bound
    relative to ``h`` alone would call fine grids far from 0 non-uniform: their spacings differ by
    ~eps max|t|, which at G ~ 1000 exceeds 1000 eps h.)
    """
    K = knots.shape[1]
    h = (knots[:, -1:] - knots[:, :1]) / (K - 1)  # (in_dim, 1)
    if bool((h <= 0).any()):
        return False
    ideal = knots[:, :1] + h * torch.arange(K, dtype=knots.dtype, device=knots.device)  # (in_dim, K)
    tol = 16 * torch.finfo(knots.dtype).eps * knots.abs().amax(dim=1, keepdim=True)  # (in_dim, 1)
    return bool(((knots - ideal).abs() <= tol).all())


@dataclass(frozen=True)
class LocalBasis:
    """The k+1 possibly non-zero basis values at each sample, feature-major.

    index:       (in_dim, batch) long. For x in interval j it is ``j + 1``: the
                 position of ``B_{j-k}``'s coefficient among coefficients padded
                 with ``k + 1`` zeros on each side (:func:`pad_coefficients`).
                 Samples outside the knots get an index whose k+1 padded
                 coefficients are all zero, so no masking is needed.
    values:      (k+1, in_dim, batch): ``values[r] = B_{j-k+r}(x)``.
    derivatives: (k+1, in_dim, batch) d/dx of ``values``, or None.
    """

    index: torch.Tensor
    values: torch.Tensor
    derivatives: torch.Tensor | None


def pad_coefficients(coef: torch.Tensor, k: int) -> torch.Tensor:
    """Pad the last axis of ``coef`` with ``k + 1`` zeros on each side.

    (..., n) -> (..., n + 2k + 2); ``LocalBasis.index`` indexes this padded axis.
    """
    return torch.constant_pad_nd(coef, (k + 1, k + 1))  # F.pad's kernel without its Python wrapper


@cache
def uniform_basis_polynomials(k: int) -> np.ndarray:
    """Power-basis coefficients of the k+1 cardinal B-spline pieces.

    On a uniform grid with spacing h and x in interval j, u = (x - t[j]) / h in
    [0, 1) and ``B_{j-k+r}(x) = sum_p M[r, p] u**p``. Built from the Cox-de Boor
    recurrence with uniform knots, in exact polynomial arithmetic.
    Returns M with shape (k+1, k+1).
    """
    P = np.polynomial.Polynomial
    pieces = [P([1.0])]  # degree 0: B_j = 1 on [t_j, t_j+1)
    u = P([0.0, 1.0])
    for d in range(1, k + 1):
        left = [P([0.0])] + pieces  # B^{d-1}_{i}, i = j-d+r, r = 0..d
        right = pieces + [P([0.0])]  # B^{d-1}_{i+1}
        pieces = [((u + (d - r)) * left[r] + ((r + 1) - u) * right[r]) / d for r in range(d + 1)]
    M = np.zeros((k + 1, k + 1))
    for r, piece in enumerate(pieces):
        M[r, : len(piece.coef)] = piece.coef
    return M


@dataclass(frozen=True)
class UniformGridConstants:
    """What local evaluation on equally spaced knots needs, computed once per grid."""

    shift: torch.Tensor  # (in_dim, 1): -t[0] / h
    inv_h: torch.Tensor  # (in_dim, 1): 1 / h
    n_intervals: int  # K - 1
    k: int
    constant_terms: torch.Tensor  # (k+1, 1): M[:, 0]
    power_terms: torch.Tensor  # (k+1, k): M[:, 1:]
    derivative_constant_terms: torch.Tensor  # (k+1, 1): d/du pieces, power 0
    derivative_power_terms: torch.Tensor  # (k+1, k-1): d/du pieces, powers 1..k-1

    @classmethod
    def of(cls, knots: torch.Tensor, k: int) -> UniformGridConstants:
        n_intervals = knots.shape[1] - 1
        t0 = knots[:, :1]
        inv_h = n_intervals / (knots[:, -1:] - t0)  # (in_dim, 1)
        M = torch.as_tensor(uniform_basis_polynomials(k), dtype=knots.dtype, device=knots.device)  # (k+1, k+1)
        dM = M[:, 1:] * torch.arange(1, k + 1, dtype=knots.dtype, device=knots.device)  # (k+1, k): d/du
        return cls(
            -t0 * inv_h,
            inv_h,
            n_intervals,
            k,
            M[:, :1].contiguous(),
            M[:, 1:].contiguous(),
            dM[:, :1].contiguous(),
            dM[:, 1:].contiguous(),
        )


def _floor(s: torch.Tensor) -> torch.Tensor:
    """torch.floor(s), bit for bit. On the CPU through numpy: torch's floor is a VML kernel that
    splits from 2048 elements over the torch threads, so with 2+ threads every loss evaluation
    opened a parallel region for a few microseconds of work (the other threads then spin, and on a
    busy machine the region waits ~0.1 ms for a descheduled thread)."""
    if s.device.type == "cpu" and s.dtype in (torch.float64, torch.float32) and not s.requires_grad:
        return torch.from_numpy(np.floor(s.numpy()))
    return torch.floor(s)


def local_basis_uniform(x_t: torch.Tensor, grid: UniformGridConstants, derivatives: bool = False) -> LocalBasis:
    """:func:`local_basis` on equally spaced knots for feature-major samples x_t (in_dim, batch).

    u = (x - t[j]) / h in [0, 1), then the k+1 cardinal pieces as one small
    matrix product with the powers of u.
    """
    in_dim, batch = x_t.shape
    k = grid.k
    s = torch.addcmul(grid.shift, x_t, grid.inv_h)  # (in, B): (x - t[0]) / h
    # NaN and far-away inputs land in interval -1 or n_intervals, whose padded coefficients are all zero
    s = s.nan_to_num_(nan=-1.0).clamp_(-1.0, float(grid.n_intervals))
    interval = _floor(s)
    u = s - interval  # (in, B) in [0, 1)
    powers = [u]
    for _ in range(k - 1):
        powers.append(powers[-1] * u)
    stacked = torch.stack(powers).view(k, -1)  # (k, in*B): u, u^2, .., u^k
    values = torch.addmm(grid.constant_terms, grid.power_terms, stacked).view(k + 1, in_dim, batch)
    dvalues = None
    if derivatives:
        if k == 1:
            dvalues = grid.derivative_constant_terms.expand(k + 1, in_dim * batch)
        else:
            dvalues = torch.addmm(grid.derivative_constant_terms, grid.derivative_power_terms, stacked[: k - 1])
        dvalues = dvalues.view(k + 1, in_dim, batch) * grid.inv_h  # chain rule du/dx = 1/h
    return LocalBasis(interval.long() + 1, values, dvalues)


def local_basis(
    x: torch.Tensor, knots: torch.Tensor, k: int, *, uniform: bool | None = None, derivatives: bool = False
) -> LocalBasis:
    """Evaluate the k+1 non-zero B-spline basis functions at each sample.

    x: (batch, in_dim); knots: (in_dim, K) extended knot vectors.
    Returns a feature-major :class:`LocalBasis`. ``uniform`` selects the
    closed-form path for equally spaced knots (detected when None); otherwise
    Cox-de Boor runs on the k+1 active functions only.
    """
    if uniform is None:
        uniform = is_uniform(knots)
    x_t = x.T.contiguous()
    if uniform:
        return local_basis_uniform(x_t, UniformGridConstants.of(knots, k), derivatives)
    return local_basis_general(x_t, knots, k, derivatives)


def local_basis_general(x_t: torch.Tensor, knots: torch.Tensor, k: int, derivatives: bool = False) -> LocalBasis:
    """Cox-de Boor on the k+1 active functions, for any increasing knots; x_t: (in_dim, batch)."""
    in_dim, n_knots = knots.shape
    batch = x_t.shape[1]
    # interval j with t[j] <= x < t[j+1]: -1 left of the knots, K-1 right of them (zero coefficients there)
    x_t = x_t.nan_to_num(nan=float(knots.min()) - 1.0)
    interval = torch.searchsorted(knots.contiguous(), x_t.contiguous(), right=True) - 1  # (in, B)
    # knots t[j-k] .. t[j+k+1] (2k+2 of them); pad k+2 knots each side so the gather stays in range
    h_left = knots[:, 1:2] - knots[:, :1]
    h_right = knots[:, -1:] - knots[:, -2:-1]
    pad = torch.arange(1, k + 3, dtype=knots.dtype, device=knots.device)  # (k+2,)
    padded = torch.cat([knots[:, :1] - h_left * pad.flip(0), knots, knots[:, -1:] + h_right * pad], dim=1)
    offsets = torch.arange(2 * k + 2, device=x_t.device)[:, None, None]  # padded position of t[j-k+m]: j + 2 + m
    gather_at = interval.unsqueeze(0) + 2 + offsets  # (2k+2, in, B)
    T = torch.gather(padded.T.unsqueeze(-1).expand(padded.shape[1], in_dim, batch), 0, gather_at)  # (2k+2, in, B)

    def ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        # 0/0 := 0 for repeated knots
        safe = torch.where(den > 0, den, torch.ones_like(den))
        return torch.where(den > 0, num / safe, torch.zeros_like(num))

    xe = x_t.unsqueeze(0)  # (1, in, B)
    values = torch.ones_like(xe)  # degree 0: B_j = 1
    dvalues = torch.zeros(k + 1, in_dim, batch, dtype=x_t.dtype, device=x_t.device) if derivatives else None
    for d in range(1, k + 1):
        zero = torch.zeros_like(xe)
        left = torch.cat([zero, values], dim=0)  # B^{d-1}_i,   i = j-d+r, r = 0..d
        right = torch.cat([values, zero], dim=0)  # B^{d-1}_{i+1}
        t_i, t_id = T[k - d : k + 1], T[k : k + d + 1]
        t_i1, t_id1 = T[k - d + 1 : k + 2], T[k + 1 : k + d + 2]
        if d == k and derivatives:
            dvalues = k * (ratio(left, t_id - t_i) - ratio(right, t_id1 - t_i1))
        values = ratio(xe - t_i, t_id - t_i) * left + ratio(t_id1 - xe, t_id1 - t_i1) * right
    return LocalBasis(interval + 1, values, dvalues)


def window_index(index: torch.Tensor, n_coef: int, k: int) -> torch.Tensor:
    """Flat positions of the k+1 active coefficients of every (input, sample).

    The coefficients of input i are padded (:func:`pad_coefficients`) and laid
    end to end, input after input: position ``i * (n + 2k + 2) + index + r``.
    index: (in_dim, batch) -> (k+1, in_dim, batch)
    """
    return index.unsqueeze(0) + window_offsets(index.shape[0], n_coef, k, index.device)


_WINDOW_OFFSETS: dict = {}


def window_offsets(in_dim: int, n_coef: int, k: int, device) -> torch.Tensor:
    """(k+1, in_dim, 1) long: i * (n + 2k + 2) + r, cached per shape and device."""
    key = (in_dim, n_coef, k, device)  # (torch.device or str: hashable either way, no str() per call)
    offsets = _WINDOW_OFFSETS.get(key)
    if offsets is None:
        rows = torch.arange(in_dim, device=device) * (n_coef + 2 * k + 2)  # (in,)
        offsets = rows[None, :, None] + torch.arange(k + 1, device=device)[:, None, None]
        _WINDOW_OFFSETS[key] = offsets
    return offsets


def flat_coefficients(coef: torch.Tensor, k: int) -> torch.Tensor:
    """coef (in_dim, out_dim, n) -> padded and laid end to end per output: (out_dim, in_dim * (n+2k+2))"""
    in_dim, out_dim, _ = coef.shape
    return pad_coefficients(coef, k).transpose(0, 1).reshape(out_dim, -1)


def gather_windows(
    coef: torch.Tensor, positions: torch.Tensor, k: int, flat: torch.Tensor | None = None
) -> torch.Tensor:
    """The k+1 active coefficients of every edge and sample.

    coef: (in_dim, out_dim, n); positions: (k+1, in_dim, batch) from :func:`window_index`
    -> (out_dim, k+1, in_dim, batch). ``flat``: :func:`flat_coefficients` of coef, when the caller has it.
    """
    if flat is None:
        flat = flat_coefficients(coef, k)  # (out, in*(n+2k+2))
    out_dim = coef.shape[1]
    if out_dim == 1:  # 1-d index_select is the fastest gather on the CPU
        return flat.view(-1).index_select(0, positions.view(-1)).view(1, *positions.shape)
    return torch.gather(flat, 1, positions.view(1, -1).expand(out_dim, -1)).view(out_dim, *positions.shape)


def evaluate_spline(x: torch.Tensor, knots: torch.Tensor, coef: torch.Tensor, k: int) -> torch.Tensor:
    """Spline values ``sum_i coef[in, out, i] B_i(x[:, in])``.

    x: (batch, in_dim), knots: (in_dim, K), coef: (in_dim, out_dim, n) -> (batch, in_dim, out_dim)
    """
    basis = local_basis(x, knots, k)
    windows = gather_windows(coef, window_index(basis.index, coef.shape[2], k), k)  # (out, k+1, in, B)
    return (windows * basis.values).sum(1).permute(2, 1, 0)


def dense_basis(x: torch.Tensor, knots: torch.Tensor, k: int) -> torch.Tensor:
    """All ``n = K - k - 1`` basis functions at each sample (mostly zeros).

    x: (batch, in_dim), knots: (in_dim, K) -> (batch, in_dim, n). For tests and
    small problems; the model itself uses :func:`local_basis`.
    """
    basis = local_basis(x, knots, k)
    n = knots.shape[1] - k - 1
    in_dim, batch = basis.index.shape
    dense = torch.zeros(in_dim, batch, n + 2 * k + 2, dtype=x.dtype, device=x.device)
    cols = basis.index.unsqueeze(-1) + torch.arange(k + 1, device=x.device)  # (in, B, k+1)
    dense.scatter_(2, cols, basis.values.permute(1, 2, 0))
    return dense[..., k + 1 : k + 1 + n].transpose(0, 1)
