"""S independent L-BFGS runs over stacked parameters, evaluated together: :class:`BatchedLBFGS`.

Each model (row s of every parameter's leading axis) runs :class:`kanlib.optim.LBFGS`'s algorithm
with its own history, its own strong-Wolfe line search at its own trial steps, its own stopping
and stall tests; a model that has finished its step keeps its parameters while the others go on.
The S runs advance in lockstep per *evaluation*: every model that needs the objective at a new
point puts that point into its row, one batched closure evaluates all rows, and each model's
control flow (a Python generator, :meth:`BatchedLBFGS._model_step`, the same statements as
``LBFGS.step`` and ``LBFGS._line_search``) continues from its own loss and gradient.

Exactness: the vector arithmetic is batched across models but bit-for-bit that of
``LBFGS`` with numpy vectors: elementwise operations are the same IEEE operations, dot products
are ``np.matmul`` of (S, 1, P) by (S, P, 1), which calls the same BLAS ``ddot`` per model as
``a @ b`` does on one model's vector, absolute sums reduce each row by numpy's pairwise sum,
and every scalar decision is the same Python float expression. With a closure that returns
each model's loss and gradient bit-for-bit as the model alone would, every model follows the
trajectory it follows alone (tests/test_stack.py).

The algorithm is written out again here rather than shared with ``kanlib.optim`` (whose
single-model path is tuned on its own); tests/test_stack.py compares the two on every change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .optim import _cubic_minimizer


def _dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products (n, P) . (n, P) -> (n,), each by the BLAS ddot of ``a[i] @ b[i]``."""
    return np.matmul(a[:, None, :], b[:, :, None])[:, 0, 0]


def _absmax(a: np.ndarray) -> np.ndarray:
    """Row-wise max |a|: (n, P) -> (n,)"""
    return np.abs(a).max(axis=1)


@dataclass
class _ModelState:
    """One model's optimizer state between steps (its vectors live in BatchedLBFGS's arrays)."""

    n_iter: int = 0
    h_diag: float = 1.0
    stalled: bool = False
    stuck: bool = False
    recent_losses: list = field(default_factory=list)
    last: tuple | None = None  # (loss, grad row) of the accepted point of the previous step
    evaluations: int = 0


# Commands a model's generator yields to the driver; the driver batches each kind across models.
_EVALUATE, _DIRECTION, _ADVANCE = "evaluate", "direction", "advance"


class BatchedLBFGS:
    """L-BFGS for S models whose parameters carry a leading model axis S.

    ``step(closure)`` runs one outer step of every model; ``closure()`` must evaluate all S
    models at the current parameters, write the gradients (S, ...) to each parameter's
    ``.grad`` and return the losses (S,). Options as :class:`kanlib.optim.LBFGS`'s.
    After a step, ``step_evaluations`` holds each model's number of loss evaluations.
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
        if not self.params or len({p.shape[0] for p in self.params}) != 1:
            raise ValueError("BatchedLBFGS needs parameters that all have the same leading model axis S")
        self.n_models = self.params[0].shape[0]
        self.lr, self.max_iter = lr, max_iter
        self.max_eval = max_eval if max_eval is not None else max_iter * 5 // 4
        self.tolerance_grad, self.tolerance_change = tolerance_grad, tolerance_change
        self.bracket_rtol = tolerance_change  # the zoom's end test, as in kanlib.optim.LBFGS (same reason)
        self.history_size, self.c1, self.c2, self.max_line_search = history_size, c1, c2, max_line_search
        self.stall_rtol, self.stall_window = stall_rtol, stall_window
        self.states = [_ModelState() for _ in range(self.n_models)]
        self.step_evaluations = [0] * self.n_models
        self._link()
        self._reset_history()

    # ---- flat parameter rows ------------------------------------------------------------------
    def _link(self) -> None:
        """Make the parameters views into one (S, P) buffer, each row one model's parameters in
        the order ``LBFGS`` lays out a single model's (so every dot product sums in its order).
        The vector arithmetic runs in numpy on the host: on the CPU ``_rows`` shares the buffer's
        memory, on a GPU it is a host copy written back by :meth:`_push`."""
        S = self.n_models
        self._flat = torch.cat([p.detach().reshape(S, -1) for p in self.params], dim=1)  # (S, P)
        self._on_host = self._flat.device.type == "cpu"
        self._rows = self._flat.numpy() if self._on_host else self._flat.cpu().numpy()  # (S, P)
        offset = 0
        for p in self.params:
            size = p[0].numel()
            p.data = self._flat[:, offset : offset + size].view(p.shape)
            offset += size
        self.n_params = offset
        self._x = self._rows.copy()  # (S, P): each model's current point
        self._d = np.zeros_like(self._rows)  # (S, P): each model's current direction

    def _push(self) -> None:
        """Write the host rows to the parameters (a no-op on the CPU, where they share memory)."""
        if not self._on_host:
            self._flat.copy_(torch.from_numpy(self._rows))

    def _reset_history(self) -> None:
        S, H, P = self.n_models, self.history_size, self._rows.shape[1]
        self._steps = np.zeros((S, H, P))  # s_i, oldest first, left-aligned
        self._grad_diffs = np.zeros((S, H, P))  # y_i
        self._rho = np.zeros((S, H))
        self._count = np.zeros(S, dtype=np.int64)
        for state in self.states:
            state.h_diag, state.n_iter = 1.0, 0

    def objective_changed(self, keep_history: bool = True) -> None:
        """The objective or the parameters changed outside the optimizer (a grid update): as
        ``LBFGS.objective_changed`` for every model."""
        self._link()
        for state in self.states:
            state.last = None
            state.recent_losses, state.stalled, state.stuck = [], False, False
        if not keep_history:
            self._reset_history()

    def release(self) -> None:
        """Give every parameter its own storage again (call when training ends)."""
        for p in self.params:
            p.data = p.data.clone()

    def zero_grad(self, set_to_none: bool = False) -> None:
        for p in self.params:
            p.grad = None

    def _flat_grad(self) -> np.ndarray:
        S = self.n_models
        grads = [
            p.grad.reshape(S, -1) if p.grad is not None else torch.zeros_like(p).reshape(S, -1) for p in self.params
        ]
        return torch.cat(grads, dim=1).cpu().numpy()  # (S, P), a fresh array per evaluation

    # ---- one outer step, all models -------------------------------------------------------------
    def step(self, closure: Callable, reuse_last: bool = False) -> list[float]:
        """One outer step of every model (``LBFGS.step`` each); returns each model's loss."""
        self._x[:] = self._rows
        generators = [self._model_step(s, reuse_last) for s in range(self.n_models)]
        pending: dict[int, tuple] = {}
        losses: list[float] = [0.0] * self.n_models

        def advance(s: int, value) -> None:
            try:
                pending[s] = generators[s].send(value)
            except StopIteration as stop:
                pending.pop(s, None)
                losses[s], self.step_evaluations[s] = stop.value

        for s in range(self.n_models):
            advance(s, None)
        while pending:
            kinds = {command[0] for command in pending.values()}
            if _ADVANCE in kinds:
                self._run_advance(pending, advance)
            elif _DIRECTION in kinds:
                self._run_direction(pending, advance)
            else:
                self._run_evaluate(pending, advance, closure)
        self._rows[:] = self._x
        self._push()
        return losses

    def _run_evaluate(self, pending, advance, closure) -> None:
        """One batched closure call at every waiting model's trial point."""
        waiting = sorted(pending)
        trial = [s for s in waiting if pending[s][1] is not None]
        self._rows[:] = self._x
        if trial:
            ids = np.array(trial)
            steps = np.array([pending[s][1] for s in trial])
            self._rows[ids] = self._x[ids] + steps[:, None] * self._d[ids]  # x + t d
        self._push()
        with torch.enable_grad():
            values = closure()
        values = values.detach().cpu().tolist()
        grad = self._flat_grad()  # (S, P)
        ids = np.array(waiting)
        gtd = dict(zip(waiting, _dots(grad[ids], self._d[ids]).tolist()))
        absmax = dict(zip(waiting, _absmax(grad[ids]).tolist()))
        for s in waiting:
            self.states[s].evaluations += 1
            extra = absmax[s] if pending[s][1] is None else gtd[s]
            advance(s, (values[s], grad[s], extra))

    def _run_direction(self, pending, advance) -> None:
        """New search directions -H g for the models starting an iteration (two-loop recursion)."""
        members = sorted(s for s, command in pending.items() if command[0] == _DIRECTION)
        ids = np.array(members)
        grads = np.stack([pending[s][1] for s in members])  # (n, P)
        directions = self._two_loop(ids, grads)  # (n, P)
        self._d[ids] = directions
        gtd = _dots(grads, directions).tolist()
        abssum = np.abs(grads).sum(axis=1).tolist()
        d_absmax = _absmax(directions).tolist()
        x_absmax = _absmax(self._x[ids]).tolist()
        for i, s in enumerate(members):
            advance(s, (gtd[i], abssum[i], d_absmax[i], x_absmax[i]))

    def _two_loop(self, ids: np.ndarray, grads: np.ndarray) -> np.ndarray:
        """-H g by the two-loop recursion for each model with its own history (LBFGS._direction_two_loop).
        Models with fewer stored pairs skip the positions they do not have."""
        count = self._count[ids]  # (n,)
        depth = int(count.max())
        steps = self._steps[ids, :depth]  # (n, depth, P)
        grad_diffs = self._grad_diffs[ids, :depth]  # (n, depth, P)
        rho = self._rho[ids, :depth]  # (n, depth)
        ragged = bool((count < depth).any())
        q = -grads  # (n, P)
        alphas = np.zeros((len(ids), max(depth, 1)))
        for j in range(depth - 1, -1, -1):  # newest to oldest
            alpha = rho[:, j] * _dots(steps[:, j], q)  # (n,)
            alphas[:, j] = alpha
            updated = q - alpha[:, None] * grad_diffs[:, j]
            q = np.where((j < count)[:, None], updated, q) if ragged else updated
        h_diag = np.array([self.states[s].h_diag for s in ids])
        r = q * h_diag[:, None]
        for j in range(depth):  # oldest to newest
            updated = r + (alphas[:, j] - rho[:, j] * _dots(grad_diffs[:, j], r))[:, None] * steps[:, j]
            r = np.where((j < count)[:, None], updated, r) if ragged else updated
        return r

    def _run_advance(self, pending, advance) -> None:
        """End of an iteration for the models whose line search finished: move, remember the pair."""
        members = sorted(s for s, command in pending.items() if command[0] == _ADVANCE)
        ids = np.array(members)
        steps = np.array([pending[s][1] for s in members])  # (n,)
        moved = np.array([pending[s][2] for s in members])
        moved_ids = ids[moved]
        if len(moved_ids):
            self._x[moved_ids] = self._x[moved_ids] + steps[moved][:, None] * self._d[moved_ids]  # x + t d
        grads = np.stack([pending[s][3] for s in members])  # (n, P)
        previous = np.stack([pending[s][4] for s in members])
        s_vectors = self._d[ids] * steps[:, None]  # direction * step_size
        y_vectors = grads - previous
        ys, yy, ss = (
            _dots(a, b).tolist() for a, b in ((y_vectors, s_vectors), (y_vectors, y_vectors), (s_vectors, s_vectors))
        )
        for i, s in enumerate(members):
            self._remember(s, s_vectors[i], y_vectors[i], ys[i], yy[i], ss[i])
        g_absmax = _absmax(grads).tolist()
        d_absmax = _absmax(self._d[ids]).tolist()
        x_absmax = _absmax(self._x[ids]).tolist()
        for i, s in enumerate(members):
            advance(s, (g_absmax[i], d_absmax[i], x_absmax[i]))

    def _remember(self, s: int, step, grad_diff, ys: float, yy: float, ss: float) -> None:
        """LBFGS._remember for model s, with its dot products already computed."""
        if ys > 1e-10 * max(yy, 1e-300) ** 0.5 * max(ss, 1e-300) ** 0.5 and ys > 0:
            count = int(self._count[s])
            if count == self.history_size:
                self._steps[s, :-1] = self._steps[s, 1:].copy()
                self._grad_diffs[s, :-1] = self._grad_diffs[s, 1:].copy()
                self._rho[s, :-1] = self._rho[s, 1:].copy()
                count -= 1
            self._steps[s, count] = step
            self._grad_diffs[s, count] = grad_diff
            self._rho[s, count] = 1.0 / ys
            self._count[s] = count + 1
            self.states[s].h_diag = ys / yy

    # ---- one model's control flow (LBFGS.step and LBFGS._line_search, statement by statement) ------
    def _model_step(self, s: int, reuse_last: bool):
        state = self.states[s]
        if reuse_last and state.last is not None:
            loss, grad = state.last
            evals = 0
            if state.stalled or state.stuck:
                return loss, evals
            grad_absmax = float(np.abs(grad).max())
        else:
            state.stuck = False
            loss, grad, grad_absmax = yield (_EVALUATE, None)
            evals = 1
        if grad_absmax <= self.tolerance_grad:
            state.last = (loss, grad)
            return loss, evals
        for _ in range(self.max_iter):
            gtd, abssum, d_absmax, x_absmax = yield (_DIRECTION, grad)
            step_size = self.lr
            if state.n_iter == 0:
                step_size = min(1.0, 1.0 / abssum) * self.lr
            state.n_iter += 1
            if gtd > -self.tolerance_change * max(abs(loss), 1e-300):  # not a descent direction any more
                state.stuck = True
                break
            previous_loss, previous_grad = loss, grad
            first_trial = step_size
            loss, grad, step_size, ls_evals, moved = yield from self._line_search(
                step_size, loss, grad, gtd, d_absmax, x_absmax
            )
            if step_size == 0.0 and first_trial == self.lr:  # stayed put; a repeat would try the same points
                state.stuck = True
            evals += ls_evals
            grad_absmax, d_absmax, x_absmax = yield (_ADVANCE, step_size, moved, grad, previous_grad)
            if self.stall_rtol > 0:
                state.recent_losses.append(loss)
                if len(state.recent_losses) > self.stall_window:
                    old = state.recent_losses.pop(0)
                    if old - loss <= self.stall_rtol * abs(old):
                        state.stalled = True
                        break
            if evals >= self.max_eval:
                break
            if grad_absmax <= self.tolerance_grad:
                break
            if abs(loss - previous_loss) <= self.tolerance_change * max(abs(previous_loss), 1e-300):
                break
            if d_absmax * step_size <= self.tolerance_change * max(x_absmax, 1.0):
                break
        state.last = (loss, grad)
        return loss, evals

    def _line_search(self, t, f, g, gtd, d_norm, x_absmax):
        """LBFGS._line_search for one model; yields its evaluations. Returns (f_new, g_new, t,
        evaluations, moved); moved is False when no decrease was found (the model stays put)."""
        c1, c2 = self.c1, self.c2
        f_new, g_new, gtd_new = yield (_EVALUATE, t)
        evals = 1
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
            f_new, g_new, gtd_new = yield (_EVALUATE, t)
            evals += 1
            ls_iter += 1
        if bracket is None:  # reached max_line_search while extrapolating
            bracket = [(t_prev, f_prev, g_prev, gtd_prev), (t, f_new, g_new, gtd_new)]

        # zoom phase
        insufficient_progress = False
        x_scale = max(1.0, x_absmax)
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
            f_new, g_new, gtd_new = yield (_EVALUATE, t)
            evals += 1
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
            return f, g, 0.0, evals, False
        return f_best, g_best, t, evals, True
