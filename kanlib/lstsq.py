"""Least-squares fits of B-spline coefficients to sampled curves.

Used to initialise splines, to keep a layer's function when its grid moves
(adaptive grid updates) and to initialise a finer model from a coarser one
(grid extension). Knot conventions are those of :mod:`kanlib.bspline`.

Each sample touches only k+1 basis functions, so ``A^T A`` is banded with k
sub-diagonals. The normal equations ``(A^T A + lam I) c = A^T y`` are assembled
in that band from the local basis on the samples' device and solved on the CPU
by LAPACK's banded Cholesky (scipy), O(n k^2) per input, whatever the device:
a grid of thousands of intervals costs about what a grid of ten does. The tiny
ridge ``lam`` (relative to the largest diagonal entry) makes rank-deficient
problems (intervals without samples, more coefficients than samples) well posed:
it selects the near-minimum-norm solution, like LAPACK's ``gelsy``/``gelsd``
that pykan relies on on the CPU. Solves run in float64 whatever the input dtype.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

from .bspline import local_basis

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
    n_padded = n + 2 * k + 2  # coefficient columns with k+1 zero columns each side (kanlib.bspline)
    solve_dtype = torch.float64
    basis = local_basis(x.to(solve_dtype), knots.to(solve_dtype), k)
    values = basis.values  # (k+1, in, B): B_{j-k+r}(x)
    columns = basis.index.unsqueeze(0) + torch.arange(k + 1, device=x.device)[:, None, None]  # (k+1, in, B), padded
    inputs = torch.arange(in_dim, device=x.device)[None, :, None]  # (1, in, 1)

    # A^T A in lower band storage, band[i, d, c] = (A^T A)[c + d, c] (scipy's cholesky_banded, lower=True):
    # each sample adds values[r] * values[s] at row columns[r], column columns[s], for s <= r
    rows, cols = torch.tril_indices(k + 1, k + 1, device=x.device)  # (P,) pairs r >= s
    flat = (inputs * (k + 1) + (rows - cols)[:, None, None]) * n_padded + columns[cols]  # (P, in, B)
    band = torch.zeros(in_dim * (k + 1) * n_padded, dtype=solve_dtype, device=x.device)
    band.index_add_(0, flat.reshape(-1), (values[rows] * values[cols]).reshape(-1))
    band = band.view(in_dim, k + 1, n_padded)[:, :, k + 1 : k + 1 + n]  # (in, k+1, n): real columns
    # entries whose row lies in the right padding (c + d >= n) belong to no coefficient
    offsets = torch.arange(k + 1, device=x.device)[:, None] + torch.arange(n, device=x.device)[None, :]  # (k+1, n)
    band = band * (offsets < n)

    # A^T y: (in_dim, n, out_dim)
    contrib = values.unsqueeze(-1) * y.to(solve_dtype).transpose(0, 1).unsqueeze(0)  # (k+1, in, B, out)
    rhs = torch.zeros(in_dim * n_padded, out_dim, dtype=solve_dtype, device=x.device)
    rhs.index_add_(0, (inputs * n_padded + columns).reshape(-1), contrib.reshape(-1, out_dim))
    rhs = rhs.view(in_dim, n_padded, out_dim)[:, k + 1 : k + 1 + n]  # (in_dim, n, out_dim)

    coef = solve_banded_ridge(band.cpu().numpy(), rhs.cpu().numpy(), ridge)  # (in_dim, n, out_dim)
    return torch.from_numpy(coef).to(device=y.device, dtype=y.dtype).permute(0, 2, 1).contiguous()


def banded_matmul(band: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``M @ c`` for the symmetric M in lower band storage: band (b+1, n), c (n, r) -> (n, r)."""
    n = band.shape[1]
    product = band[0][:, None] * c
    for d in range(1, band.shape[0]):
        product[d:] += band[d, : n - d, None] * c[: n - d]  # below the diagonal: M[c+d, c]
        product[: n - d] += band[d, : n - d, None] * c[d:]  # above it, by symmetry
    return product


def solve_banded_ridge(band: np.ndarray, rhs: np.ndarray, ridge: float, refinements: int = 2) -> np.ndarray:
    """Least squares from banded normal equations ``M c = rhs``, regularised by a tiny ridge.

    Solves ``(M + lam I) c = rhs`` (lam = ridge * max diag) by banded Cholesky, then ``refinements``
    steps of iterated Tikhonov ``c += (M + lam I)^-1 (rhs - M c)``: each step shrinks the ridge's bias
    by lam / (lam + eigenvalue) in every direction the data determine, while directions the data do
    not determine stay at zero (the minimum-norm choice).
    band: (m, b+1, n) symmetric positive semi-definite M in lower band storage; rhs: (m, n, r) -> (m, n, r).
    Falls back to a dense eigendecomposition pseudo-inverse for a matrix whose Cholesky fails.
    """
    coef = np.empty_like(rhs)
    for i, (matrix, right) in enumerate(zip(band, rhs)):
        lam = ridge * max(float(matrix[0].max()), np.finfo(matrix.dtype).tiny)
        regularised = matrix.copy()
        regularised[0] += lam
        try:
            factor = (scipy.linalg.cholesky_banded(regularised, lower=True), True)
        except np.linalg.LinAlgError:
            coef[i] = _pseudo_inverse_solve(regularised, right)
            continue
        coef[i] = scipy.linalg.cho_solve_banded(factor, right)
        for _ in range(refinements):
            coef[i] += scipy.linalg.cho_solve_banded(factor, right - banded_matmul(matrix, coef[i]))
    return coef


def _pseudo_inverse_solve(band: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """The robust fallback: eigendecomposition of the dense matrix, eigenvalues below n eps of the
    largest dropped. band (b+1, n) lower storage, rhs (n, r) -> (n, r)."""
    n = band.shape[1]
    dense = np.zeros((n, n))
    for d in range(band.shape[0]):
        dense[np.arange(d, n), np.arange(n - d)] = band[d, : n - d]
    eigvals, eigvecs = np.linalg.eigh(dense, UPLO="L")
    kept = eigvals > eigvals.max() * n * np.finfo(dense.dtype).eps
    inv = np.zeros_like(eigvals)
    inv[kept] = 1.0 / eigvals[kept]
    return eigvecs @ (inv[:, None] * (eigvecs.T @ rhs))
