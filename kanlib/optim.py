"""A lean L-BFGS with strong-Wolfe line search.

Same algorithm and defaults as ``torch.optim.LBFGS(line_search_fn="strong_wolfe")``
(the optimizer pykan uses): two-loop recursion over ``history_size`` curvature
pairs, up to ``max_iter`` iterations and ``max_eval`` objective evaluations per
``step``, Nocedal & Wright's line search with cubic interpolation (c1 = 1e-4,
c2 = 0.9). Differences:

* parameters live in one flat vector while a step runs (fewer small tensor
  operations per iteration, which dominate for small KANs);
* ``tolerance_change`` is *relative* to the objective's size, so a step stops
  once the objective has stopped changing whatever its scale (a mean squared
  error of 1e-16 is common in scaling-law fits); pykan's 1e-32 absolute
  tolerance never stops.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch


class _TorchVectors:
    """Vector operations of the optimizer on torch tensors (CUDA: the compact form below)."""

    @staticmethod
    def from_flat(flat: torch.Tensor):
        return flat

    stack = staticmethod(torch.stack)
    triu = staticmethod(torch.triu)

    @staticmethod
    def absmax(v) -> float:
        return float(v.abs().max())

    @staticmethod
    def abssum(v) -> float:
        return float(v.abs().sum())

    @staticmethod
    def solve_triangular(R, b, lower: bool):
        return torch.linalg.solve_triangular(R, b, upper=not lower)

    @staticmethod
    def copy(v):
        return v.clone()


class _NumpyVectors:
    """The same on numpy arrays sharing memory with CPU tensors: for the few hundred
    parameters of a small KAN, numpy's per-operation overhead is several times lower.
    CPU directions always use the two-loop recursion, so no matrix operations are needed here."""

    @staticmethod
    def from_flat(flat: torch.Tensor):
        return flat.numpy()

    @staticmethod
    def absmax(v) -> float:
        return float(np.abs(v).max())

    @staticmethod
    def abssum(v) -> float:
        return float(np.abs(v).sum())

    @staticmethod
    def copy(v):
        return v.copy()


def _cubic_minimizer(x1, f1, g1, x2, f2, g2, lower, upper):
    """Minimizer of the cubic interpolating (f, g) at x1 and x2, clamped to [lower, upper]."""
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 * d1 - g1 * g2
    if d2_square >= 0:
        d2 = math.sqrt(d2_square)
        if x1 <= x2:
            position = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            position = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        if math.isfinite(position):
            return min(max(position, lower), upper)
    return (lower + upper) / 2.0


class LBFGS:
    """L-BFGS over a list of tensors. ``step(closure)`` runs one outer step.

    closure() must zero the gradients, compute the objective, call backward and
    return the objective.
    """

    def __init__(
        self,
        params,
        lr: float = 1.0,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-12,
        tolerance_change: float = 1e-12,
        history_size: int = 10,
        c1: float = 1e-4,
        c2: float = 0.9,
        max_line_search: int = 25,
        stall_rtol: float = 0.0,
        stall_window: int = 10,
    ):
        self.params = [p for p in params]
        # Stalled: over the last ``stall_window`` iterations the objective fell by less than
        # ``stall_rtol`` relative. Then later steps return at once (0 disables the test).
        self.stall_rtol, self.stall_window = stall_rtol, stall_window
        self.recent_losses: list[float] = []
        self.stalled = False
        # Stuck: the last iteration found no decrease (the line search stayed put from a full
        # step, or no descent direction). A later step on the same objective would repeat exactly
        # that iteration, so it returns at once instead (the same parameters, fewer evaluations).
        self.stuck = False
        self._link()
        self.lr, self.max_iter = lr, max_iter
        self.max_eval = max_eval if max_eval is not None else max_iter * 5 // 4
        self.tolerance_grad, self.tolerance_change = tolerance_grad, tolerance_change
        # The line search's zoom ends once its bracket moves the parameters by less than this,
        # relative to max(1, |x|_inf): the same relative tolerance as an iteration's own end test.
        # (Up to kanlib 0.2.0 it was 1e-9. Right after a grid update the first direction is the
        # bare gradient, ~1e-10 when the loss is ~1e-15, so a 1e-9 test ended every zoom at once
        # and the fit stopped for good while its loss was still falling a few % per step.)
        self.bracket_rtol = tolerance_change
        self.history_size, self.c1, self.c2, self.max_line_search = history_size, c1, c2, max_line_search
        self.old_steps: list[torch.Tensor] = []  # s_i
        self.old_grad_diffs: list[torch.Tensor] = []  # y_i
        self.rho: list[float] = []
        self.h_diag = 1.0
        self.n_iter = 0
        self.evaluations = 0
        self._last = None  # (x, loss, grad) of the accepted point of the previous step

    # ---- flat parameter views ----------------------------------------------------------
    def zero_grad(self, set_to_none: bool = False) -> None:
        for p in self.params:
            p.grad = None

    def _link(self) -> None:
        """Make the parameters views into one flat buffer (setting them all is one copy).
        :meth:`release` gives them their own storage back."""
        self._flat = torch.cat([p.detach().reshape(-1) for p in self.params])
        self.vectors = _NumpyVectors if self._flat.device.type == "cpu" else _TorchVectors
        self._flat_vector = self.vectors.from_flat(self._flat)  # shares memory with the parameters
        offset = 0
        for p in self.params:
            p.data = self._flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()

    def objective_changed(self, keep_history: bool = True) -> None:
        """The objective (or the parameters) changed outside the optimizer, e.g. a grid update:
        re-link the parameters, forget the last point and the stall test; keep the curvature
        pairs unless ``keep_history`` is False."""
        self._link()
        self._last = None
        self.recent_losses, self.stalled, self.stuck = [], False, False
        if not keep_history:
            self.old_steps, self.old_grad_diffs, self.rho = [], [], []
            self.h_diag, self.n_iter = 1.0, 0

    def release(self) -> None:
        """Give every parameter its own storage again (call when training ends)."""
        for p in self.params:
            p.data = p.data.clone()

    def _flat_params(self):
        return self.vectors.copy(self._flat_vector)

    def _flat_grad(self):
        grad = torch.cat(
            [p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1) for p in self.params]
        )
        return self.vectors.from_flat(grad)

    def _set_params(self, flat) -> None:
        self._flat_vector[:] = flat

    def _evaluate(self, closure: Callable, flat: torch.Tensor) -> tuple[float, torch.Tensor]:
        self._set_params(flat)
        with torch.enable_grad():
            loss = float(closure())
        self.evaluations += 1
        return loss, self._flat_grad()

    # ---- one outer step --------------------------------------------------------------------
    def step(self, closure: Callable, reuse_last: bool = False) -> float:
        """One outer step. ``reuse_last``: the objective is unchanged since the previous
        step (same data, no grid update), so its final loss and gradient are reused."""
        if reuse_last and self._last is not None:
            x, loss, grad = self._last
            evals = 0
            if self.stalled or self.stuck:
                return loss
        else:
            self.stuck = False
            x = self._flat_params()
            loss, grad = self._evaluate(closure, x)
            evals = 1
        vec = self.vectors
        if vec.absmax(grad) <= self.tolerance_grad:
            self._last = (x, loss, grad)
            return loss
        for _ in range(self.max_iter):
            direction = self._direction(grad)
            step_size = self.lr
            if self.n_iter == 0:
                step_size = min(1.0, 1.0 / vec.abssum(grad)) * self.lr
            self.n_iter += 1
            gtd = float(grad.dot(direction))
            if gtd > -self.tolerance_change * max(abs(loss), 1e-300):  # not a descent direction any more
                self.stuck = True
                break
            previous_loss, previous_grad = loss, grad
            first_trial = step_size
            loss, grad, step_size, ls_evals, x = self._line_search(closure, x, step_size, direction, loss, grad, gtd)
            if step_size == 0.0 and first_trial == self.lr:  # stayed put; a repeat would try the same points
                self.stuck = True
            evals += ls_evals
            self._remember(direction * step_size, grad - previous_grad)
            if self.stall_rtol > 0:
                self.recent_losses.append(loss)
                if len(self.recent_losses) > self.stall_window:
                    old = self.recent_losses.pop(0)
                    if old - loss <= self.stall_rtol * abs(old):
                        self.stalled = True
                        break
            if evals >= self.max_eval:
                break
            if vec.absmax(grad) <= self.tolerance_grad:
                break
            if abs(loss - previous_loss) <= self.tolerance_change * max(abs(previous_loss), 1e-300):
                break
            if vec.absmax(direction) * step_size <= self.tolerance_change * max(vec.absmax(x), 1.0):
                break
        self._set_params(x)
        self._last = (x, loss, grad)
        return loss

    def _direction(self, grad: torch.Tensor) -> torch.Tensor:
        """-H grad, with H the L-BFGS inverse-Hessian approximation in compact form
        (Byrd, Nocedal & Schnabel 1994, eq. 2.6): the same vector as the two-loop
        recursion, from a handful of matrix operations instead of 4m vector ones.

        H = g I + [S  gY] [[R^-T (D + g Y^T Y) R^-1, -R^-T], [-R^-1, 0]] [S^T; g Y^T]
        with S, Y the stored steps and gradient changes, R = triu(S^T Y), D = diag(S^T Y).
        """
        if not self.old_steps:
            return -self.h_diag * grad
        if self.vectors is _NumpyVectors:
            return self._direction_two_loop(grad)
        vec = self.vectors
        gamma = self.h_diag
        S = vec.stack(self.old_steps)  # (m, P)
        Y = vec.stack(self.old_grad_diffs)  # (m, P)
        SY = S @ Y.T  # (m, m), SY[i, j] = s_i . y_j
        R = vec.triu(SY)
        a = (S @ grad)[:, None]  # (m, 1)
        b = (Y @ grad)[:, None] * gamma  # (m, 1)
        z = vec.solve_triangular(R, a, lower=False)  # R^-1 a
        rhs = SY.diagonal()[:, None] * z + gamma * ((Y @ Y.T) @ z) - b
        u = vec.solve_triangular(R.T, rhs, lower=True)  # R^-T (...)
        hg = gamma * grad + (S.T @ u)[:, 0] - gamma * (Y.T @ z)[:, 0]
        return -hg

    def _direction_two_loop(self, grad):
        """-H grad by the two-loop recursion (Nocedal & Wright, Algorithm 7.4): on numpy
        vectors the 4m tiny operations cost less than the compact form's small solves.
        (Dot products here and below are ``a.dot(b)``: the same BLAS call as ``a @ b`` on 1-d
        vectors, numpy or torch, with less per-call overhead.)"""
        q = -grad  # a new array: updated in place below (the same numbers, fewer allocations)
        alphas = []
        for s, y, rho in zip(reversed(self.old_steps), reversed(self.old_grad_diffs), reversed(self.rho)):
            alpha = rho * float(s.dot(q))
            q -= alpha * y
            alphas.append(alpha)
        q *= self.h_diag
        for s, y, rho, alpha in zip(self.old_steps, self.old_grad_diffs, self.rho, reversed(alphas)):
            q += (alpha - rho * float(y.dot(q))) * s
        return q

    def _remember(self, s: torch.Tensor, y: torch.Tensor) -> None:
        ys = float(y.dot(s))
        if ys > 1e-10 * max(float(y.dot(y)), 1e-300) ** 0.5 * max(float(s.dot(s)), 1e-300) ** 0.5 and ys > 0:
            if len(self.old_steps) == self.history_size:
                self.old_steps.pop(0)
                self.old_grad_diffs.pop(0)
                self.rho.pop(0)
            self.old_steps.append(s)
            self.old_grad_diffs.append(y)
            self.rho.append(1.0 / ys)
            self.h_diag = ys / float(y.dot(y))

    # ---- strong-Wolfe line search (Nocedal & Wright, algorithms 3.5 and 3.6) ----------------------
    def _line_search(self, closure, x, t, d, f, g, gtd):
        """Returns (f_new, g_new, t, evaluations, x_new) satisfying the strong Wolfe conditions
        (or the best point found when the search gives up)."""
        c1, c2 = self.c1, self.c2
        vec = self.vectors
        f_new, g_new = self._evaluate(closure, x + t * d)
        evals = 1
        gtd_new = float(g_new.dot(d))
        t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
        done = False
        ls_iter = 0
        bracket = None
        while ls_iter < self.max_line_search:
            if f_new > f + c1 * t * gtd or (ls_iter > 1 and f_new >= f_prev):
                bracket = [(t_prev, f_prev, g_prev, gtd_prev), (t, f_new, g_new, gtd_new)]
                break
            if abs(gtd_new) <= -c2 * gtd:
                bracket = [(t, f_new, g_new, gtd_new)]
                done = True
                break
            if gtd_new >= 0:
                bracket = [(t_prev, f_prev, g_prev, gtd_prev), (t, f_new, g_new, gtd_new)]
                break
            # extrapolate
            min_step = t + 0.01 * (t - t_prev)
            max_step = t * 10
            t_next = _cubic_minimizer(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, min_step, max_step)
            t_prev, f_prev, g_prev, gtd_prev = t, f_new, g_new, gtd_new
            t = t_next
            f_new, g_new = self._evaluate(closure, x + t * d)
            evals += 1
            gtd_new = float(g_new.dot(d))
            ls_iter += 1
        if bracket is None:  # reached max_line_search while extrapolating
            bracket = [(t_prev, f_prev, g_prev, gtd_prev), (t, f_new, g_new, gtd_new)]

        # zoom phase
        insufficient_progress = False
        if not done:  # (only the zoom needs these two norms)
            d_norm, x_scale = vec.absmax(d), max(1.0, vec.absmax(x))
        while not done and ls_iter < self.max_line_search and len(bracket) == 2:
            a, b = bracket
            if abs(b[0] - a[0]) * d_norm < self.bracket_rtol * x_scale:  # the bracket no longer moves x
                break
            t_min, t_max = min(a[0], b[0]), max(a[0], b[0])
            t = _cubic_minimizer(a[0], a[1], a[3], b[0], b[1], b[3], t_min, t_max)
            eps = 0.1 * (t_max - t_min)
            if min(t_max - t, t - t_min) < eps:  # too close to an end: move inside unless that already failed
                if insufficient_progress or t >= t_max or t <= t_min:
                    t = t_max - eps if abs(t - t_max) < abs(t - t_min) else t_min + eps
                    insufficient_progress = False
                else:
                    insufficient_progress = True
            else:
                insufficient_progress = False
            f_new, g_new = self._evaluate(closure, x + t * d)
            evals += 1
            gtd_new = float(g_new.dot(d))
            ls_iter += 1
            low = 0 if a[1] <= b[1] else 1
            high = 1 - low
            if f_new > f + c1 * t * gtd or f_new >= bracket[low][1]:
                bracket[high] = (t, f_new, g_new, gtd_new)
            else:
                if abs(gtd_new) <= -c2 * gtd:
                    bracket[low] = (t, f_new, g_new, gtd_new)
                    done = True
                    break
                if gtd_new * (bracket[high][0] - bracket[low][0]) >= 0:
                    bracket[high] = bracket[low]
                bracket[low] = (t, f_new, g_new, gtd_new)
        best = min(bracket, key=lambda e: e[1])
        t, f_best, g_best, _ = best
        if f_best > f:  # no decrease found: stay put
            return f, g, 0.0, evals, x
        return f_best, g_best, t, evals, x + t * d
