"""Least-squares fits of B-spline coefficients to sampled curves.

Used to initialise splines, to keep a layer's function when its grid moves
(adaptive grid updates) and to initialise a finer model from a coarser one
(grid extension). Knot conventions are those of :mod:`kanlib.bspline`.

The normal equations ``(A^T A + lam I) c = A^T y`` are assembled from the local
basis (each sample touches only (k+1)^2 entries of ``A^T A``) and solved by
Cholesky. The tiny ridge ``lam`` (relative to the largest diagonal entry) makes
rank-deficient problems (intervals without samples, more coefficients than
samples) well posed: it selects the near-minimum-norm solution, like LAPACK's
``gelsy``/``gelsd`` that pykan relies on on the CPU, but the same code runs on
CUDA, where ``torch.linalg.lstsq`` only offers ``gels`` and fails on such
matrices. Solves run in float64 whatever the input dtype.
"""

from __future__ import annotations

import torch

from .bspline import local_basis, window_index

DEFAULT_RIDGE = 1e-12


def fit_spline_coefficients(
    x: torch.Tensor, y: torch.Tensor, knots: torch.Tensor, k: int, ridge: float = DEFAULT_RIDGE
) -> torch.Tensor:
    """Coefficients whose splines best fit ``y`` at ``x`` in the least-squares sense.

    x: (batch, in_dim) sample positions, one column per knot vector
    y: (batch, in_dim, out_dim) values of the curves on each input
    knots: (in_dim, K) extended knot vectors
    returns coef: (in_dim, out_dim, n) with n = K - k - 1, dtype of ``y``
    """
    batch, in_dim = x.shape
    out_dim = y.shape[2]
    n = knots.shape[1] - k - 1
    n_padded = n + 2 * k + 2
    solve_dtype = torch.float64
    basis = local_basis(x.to(solve_dtype), knots.to(solve_dtype), k)
    values = basis.values  # (k+1, in, B)
    positions = window_index(basis.index, n, k)  # (k+1, in, B): i * n_padded + column
    columns = basis.index.unsqueeze(0) + torch.arange(k + 1, device=x.device)[:, None, None]  # (k+1, in, B)

    # A^T A, block diagonal over inputs: (in_dim, n_padded, n_padded)
    outer = values.unsqueeze(1) * values.unsqueeze(0)  # (k+1, k+1, in, B)
    pairs = positions.unsqueeze(1) * n_padded + columns.unsqueeze(0)  # (k+1, k+1, in, B)
    gram = torch.zeros(in_dim * n_padded * n_padded, dtype=solve_dtype, device=x.device)
    gram.index_add_(0, pairs.reshape(-1), outer.reshape(-1))
    gram = gram.view(in_dim, n_padded, n_padded)[:, k + 1 : k + 1 + n, k + 1 : k + 1 + n]  # (in_dim, n, n)

    # A^T y: (in_dim, n, out_dim)
    contrib = values.unsqueeze(-1) * y.to(solve_dtype).transpose(0, 1).unsqueeze(0)  # (k+1, in, B, out)
    rhs = torch.zeros(in_dim * n_padded, out_dim, dtype=solve_dtype, device=x.device)
    rhs.index_add_(0, positions.reshape(-1), contrib.reshape(-1, out_dim))
    rhs = rhs.view(in_dim, n_padded, out_dim)[:, k + 1 : k + 1 + n]  # (in_dim, n, out_dim)

    coef = solve_ridge(gram, rhs, ridge)  # (in_dim, n, out_dim)
    return coef.permute(0, 2, 1).to(y.dtype).contiguous()


def solve_ridge(gram: torch.Tensor, rhs: torch.Tensor, ridge: float, refinements: int = 2) -> torch.Tensor:
    """Least squares from the normal equations ``gram c = rhs``, regularised by a tiny ridge.

    Solves ``(gram + lam I) c = rhs`` (lam = ridge * max diag) by Cholesky, then
    ``refinements`` steps of iterated Tikhonov ``c += (gram + lam I)^-1 (rhs - gram c)``:
    each step shrinks the ridge's bias by lam / (lam + eigenvalue) in every
    direction the data determine, while directions the data do not determine
    stay at zero (the minimum-norm choice).
    gram: (m, n, n) symmetric positive semi-definite, rhs: (m, n, r) -> (m, n, r).
    Falls back to an eigendecomposition pseudo-inverse if Cholesky fails.
    """
    n = gram.shape[-1]
    diag_max = gram.diagonal(dim1=-2, dim2=-1).amax(dim=-1).clamp_min(torch.finfo(gram.dtype).tiny)  # (m,)
    eye = torch.eye(n, dtype=gram.dtype, device=gram.device)
    regularised = gram + (ridge * diag_max)[:, None, None] * eye
    chol, info = torch.linalg.cholesky_ex(regularised)
    if bool((info == 0).all()):
        coef = torch.cholesky_solve(rhs, chol)
        for _ in range(refinements):
            coef = coef + torch.cholesky_solve(rhs - gram @ coef, chol)
        return coef
    eigvals, eigvecs = torch.linalg.eigh(regularised)  # robust fallback
    cutoff = eigvals.amax(dim=-1, keepdim=True) * (n * torch.finfo(gram.dtype).eps)
    inv = torch.where(eigvals > cutoff, 1.0 / eigvals, torch.zeros_like(eigvals))
    return eigvecs @ (inv.unsqueeze(-1) * (eigvecs.transpose(-1, -2) @ rhs))
