"""L-BFGS with strong-Wolfe line search for S independent models at once: :class:`LBFGS`.

The algorithm and defaults are those of ``torch.optim.LBFGS(line_search_fn="strong_wolfe")`` (the
optimizer pykan uses): the two-loop recursion over ``history_size`` curvature pairs (Nocedal &
Wright, Algorithm 7.4), up to ``max_iter`` iterations and ``max_eval`` objective evaluations per
``step``, Nocedal & Wright's line search with cubic interpolation (Algorithms 3.5 and 3.6, c1 = 1e-4,
c2 = 0.9). Differences: ``tolerance_change`` is *relative* to the objective's size (a mean squared
error of 1e-16 is common in scaling-law fits; pykan's absolute 1e-32 never stops), and an optional
stall test ends a step once the objective stopped falling (``stall_rtol``).

Every parameter carries a leading model axis S (S = 1 for one model). Each model runs the algorithm
on its own: its own history, its own line search at its own trial steps, its own stopping and stall
tests; a model that has finished its step keeps its parameters while the others go on. The models
advance in lockstep per *evaluation*: every model that needs the objective at a new point writes
that point into its row of the parameters, one closure call evaluates all rows, and each model's
control flow (a generator, :meth:`LBFGS._model_step`) continues from its own loss and gradient.

Vectors live in numpy arrays of shape (S, P) on the host (on the CPU sharing memory with the
parameters): for the few hundred parameters of a small KAN, numpy's per-operation overhead is several
times lower than torch's. The vector arithmetic is batched across the models that need it; every
row's numbers are those of the same model alone (elementwise IEEE operations, and dot products by
``np.vecdot``, the BLAS ddot of each row), so a model follows the same trajectory whatever stack it
trains in. Scalar decisions are Python floats.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["LBFGS"]


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


@dataclass
class _ModelState:
    """One model's optimizer state between steps (its vectors live in LBFGS's arrays)."""

    n_iter: int = 0
    h_diag: float = 1.0
    # Stalled: over the last ``stall_window`` iterations the objective fell by less than ``stall_rtol``
    # relative; later steps return at once until the objective changes.
    stalled: bool = False
    # Stuck: the last iteration found no decrease (the line search stayed put from a full step, or no
    # descent direction). A later step on the same objective would repeat exactly that iteration.
    stuck: bool = False
    recent_losses: list = field(default_factory=list)
    last: tuple | None = None  # (loss, grad row) of the accepted point of the previous step
    evaluations: int = 0


# Commands a model's generator yields to the driver; the driver batches each kind across models.
_EVALUATE, _DIRECTION, _ADVANCE = 0, 1, 2


class _One:
    """Vector operations for one model's rows: 1-d arrays, per-model numbers as Python floats (numpy's
    cheapest form for one small model). :class:`_Many` does the same for several models' (n, P) rows;
    both give each model the same numbers (dot products by BLAS ddot, sums by numpy's pairwise sum)."""

    @staticmethod
    def dot(a, b):
        return float(a.dot(b))

    @staticmethod
    def dots(a, b):
        return [float(a.dot(b))]

    @staticmethod
    def absmax(a):
        return [float(np.abs(a).max())]

    @staticmethod
    def abssum(a):
        return [float(np.abs(a).sum())]

    @staticmethod
    def column(values):
        return values[0]

    @staticmethod
    def columns(values):
        return values.tolist()

    @staticmethod
    def gather(rows):
        return rows[0]

    @staticmethod
    def row(rows, i):
        return rows


class _Many:
    """Vector operations for several models' rows (n, P); per-model numbers as (n, 1) columns."""

    @staticmethod
    def dot(a, b):
        return np.vecdot(a, b)[:, None]

    @staticmethod
    def dots(a, b):
        return np.vecdot(a, b).tolist()

    @staticmethod
    def absmax(a):
        return np.abs(a).max(axis=1).tolist()

    @staticmethod
    def abssum(a):
        return np.abs(a).sum(axis=1).tolist()

    @staticmethod
    def column(values):
        return np.array(values)[:, None]

    @staticmethod
    def columns(values):
        return values[..., None]

    @staticmethod
    def gather(rows):
        return np.stack(rows)

    @staticmethod
    def row(rows, i):
        return rows[i]


class LBFGS:
    """L-BFGS for S models whose parameters carry a leading model axis S.

    ``step(closure)`` runs one outer step of every model and returns each model's loss (a list);
    ``closure()`` must evaluate all S models at the current parameters, write the gradients (S, ...)
    to each parameter's ``.grad`` and return the losses (S,). After a step, ``step_evaluations``
    holds each model's number of loss evaluations in it.
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
            raise ValueError("LBFGS needs parameters that all have the same leading model axis S")
        self.n_models = self.params[0].shape[0]
        self.lr, self.max_iter = lr, max_iter
        self.max_eval = max_eval if max_eval is not None else max_iter * 5 // 4
        self.tolerance_grad, self.tolerance_change = tolerance_grad, tolerance_change
        # The zoom ends once its bracket moves the parameters by less than this, relative to
        # max(1, |x|_inf): the same relative tolerance as an iteration's own end test. (Right after a
        # grid update the first direction is the bare gradient, ~1e-10 when the loss is ~1e-15: an
        # absolute 1e-9 ended every zoom at once and the fit stopped while its loss still fell.)
        self.bracket_rtol = tolerance_change
        self.history_size, self.c1, self.c2, self.max_line_search = history_size, c1, c2, max_line_search
        self.stall_rtol, self.stall_window = stall_rtol, stall_window
        self.states = [_ModelState() for _ in range(self.n_models)]
        self.step_evaluations = [0] * self.n_models
        self._link()
        self._reset_history()

    # ---- flat parameter rows ------------------------------------------------------------------
    def _link(self) -> None:
        """Make the parameters views into one (S, P) buffer, row s holding model s's parameters.
        On the CPU ``_rows`` shares the buffer's memory; on a GPU it is a host copy written back by
        :meth:`_push`. :meth:`release` gives the parameters their own storage back."""
        S = self.n_models
        self._flat = torch.cat([p.detach().reshape(S, -1) for p in self.params], dim=1)  # (S, P)
        self._on_host = self._flat.device.type == "cpu"
        self._rows = self._flat.numpy() if self._on_host else self._flat.cpu().numpy()  # (S, P)
        offset = 0
        for p in self.params:
            size = p[0].numel()
            p.data = self._flat[:, offset : offset + size].view(p.shape)
            offset += size
        self._x = self._rows.copy()  # (S, P): each model's current point
        self._d = np.zeros_like(self._rows)  # (S, P): each model's current direction

    def _push(self) -> None:
        """Write the host rows to the parameters (a no-op on the CPU, where they share memory)."""
        if not self._on_host:
            self._flat.copy_(torch.from_numpy(self._rows))

    def _reset_history(self) -> None:
        S, H, P = self.n_models, self.history_size, self._rows.shape[1]
        # position j of model s: its j-th stored pair, oldest first; positions past its count stay zero
        self._steps = np.zeros((H, S, P))  # s_j
        self._grad_diffs = np.zeros((H, S, P))  # y_j
        self._rho = np.zeros((H, S))  # 1 / (y_j . s_j)
        self._count = np.zeros(S, dtype=np.int64)
        self._history_rows = [(list(self._steps[:, s]), list(self._grad_diffs[:, s])) for s in range(S)]
        for state in self.states:
            state.h_diag, state.n_iter = 1.0, 0

    def objective_changed(self, keep_history: bool = True) -> None:
        """The objective or the parameters changed outside the optimizer (e.g. a grid update):
        re-link the parameters, forget the last point and the stall test; keep the curvature pairs
        unless ``keep_history`` is False."""
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
        """The gradients as a fresh (S, P) array (the models keep rows of it). On the CPU from numpy
        views of the gradient tensors, kept while the closure hands back the same tensors (the C kernels
        overwrite theirs at every evaluation)."""
        S = self.n_models
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        if not self._on_host:
            return torch.cat([grad.reshape(S, -1) for grad in grads], dim=1).cpu().numpy()
        views = self.__dict__.get("_grad_views")
        if views is None or any(grad is not kept for grad, kept in zip(grads, views[0])):
            views = self._grad_views = (grads, [grad.detach().reshape(S, -1).numpy() for grad in grads])
        return np.concatenate(views[1], axis=1)

    @property
    def stuck(self) -> bool:
        """Whether every model is stuck (its last iteration found no decrease)."""
        return all(state.stuck for state in self.states)

    @property
    def evaluations(self) -> int:
        """Loss evaluations so far (of the busiest model)."""
        return max(state.evaluations for state in self.states)

    # ---- one outer step, all models: the driver ------------------------------------------------
    def step(self, closure: Callable, reuse_last: bool = False) -> list[float]:
        """One outer step of every model; returns each model's loss. ``reuse_last``: the objective is
        unchanged since the previous step (same data, no grid update), so each model's final loss and
        gradient are reused."""
        self._x[:] = self._rows
        S = self.n_models
        generators = [self._model_step(s, reuse_last) for s in range(S)]
        pending: dict[int, tuple] = {}
        losses: list[float] = [0.0] * S

        def advance(s: int, value) -> None:
            try:
                pending[s] = generators[s].send(value)
            except StopIteration as stop:
                pending.pop(s, None)
                losses[s], self.step_evaluations[s] = stop.value

        for s in range(S):
            advance(s, None)
        run = (self._run_evaluate, self._run_direction, self._run_advance)
        while pending:  # the iterations' ends first, then new directions, then one batched evaluation
            if len(pending) == 1:
                ((s, command),) = pending.items()
                run[command[0]]([s], pending, advance, closure)
                continue
            by_kind = ([], [], [])
            for s, command in pending.items():
                by_kind[command[0]].append(s)
            kind = _ADVANCE if by_kind[_ADVANCE] else _DIRECTION if by_kind[_DIRECTION] else _EVALUATE
            run[kind](sorted(by_kind[kind]), pending, advance, closure)
        self._rows[:] = self._x
        self._push()
        return losses

    def _select(self, members: list[int]):
        """(at, ops) for the models a batched operation serves: one model's index and :class:`_One`, or a
        slice of all models (or an index array of some) and :class:`_Many`."""
        if len(members) == 1:
            return members[0], _One
        return (slice(None) if len(members) == self.n_models else np.array(members)), _Many

    def _run_evaluate(self, members, pending, advance, closure) -> None:
        """One batched closure call at every waiting model's trial point (x + t d, or x itself)."""
        trial = [s for s in members if pending[s][1] is not None]
        if len(trial) < self.n_models:
            self._rows[:] = self._x
        if trial:
            at, ops = self._select(trial)
            self._rows[at] = self._x[at] + ops.column([pending[s][1] for s in trial]) * self._d[at]
        self._push()
        if torch.is_grad_enabled():
            values = closure().tolist()
        else:
            with torch.enable_grad():
                values = closure().tolist()
        grad = self._flat_grad()  # (S, P)
        at, ops = self._select(members)
        # a trial needs the slope along its direction, a step's first evaluation the gradient's size
        extra = ops.dots(grad[at], self._d[at]) if trial else ops.absmax(grad[at])
        if trial and len(trial) < len(members):
            sizes = ops.absmax(grad[at])
            extra = [e if pending[s][1] is not None else size for s, e, size in zip(members, extra, sizes)]
        for i, s in enumerate(members):
            self.states[s].evaluations += 1
            advance(s, (values[s], grad[s], extra[i]))

    def _run_direction(self, members, pending, advance, closure) -> None:
        """New search directions -H g for the models starting an iteration."""
        at, ops = self._select(members)
        grads = ops.gather([pending[s][1] for s in members])  # (n, P), or one model's (P,)
        directions = self._two_loop(members, at, ops, grads)
        self._d[at] = directions
        gtd = ops.dots(grads, directions)
        first = [self.states[s].n_iter == 0 for s in members]  # (only a history's first step needs |g|_1)
        abssum = ops.abssum(grads) if any(first) else first
        for i, s in enumerate(members):
            advance(s, (gtd[i], abssum[i]))

    def _two_loop(self, members, at, ops, grads: np.ndarray) -> np.ndarray:
        """-H g by the two-loop recursion, each model with its own history. A model with fewer stored
        pairs than the others meets zero pairs (rho = 0, s = y = 0) at the positions it lacks, which
        leave q as it is."""
        depth = int(self._count[at].max())
        if isinstance(at, int):  # the model's kept row views (no new view objects per call)
            steps, grad_diffs = self._history_rows[at][0][:depth], self._history_rows[at][1][:depth]  # depth x (P,)
        else:
            steps, grad_diffs = self._steps[:depth, at], self._grad_diffs[:depth, at]  # (depth, n, P)
        rho = ops.columns(self._rho[:depth, at])  # per position, as ops.column
        h_diag = ops.column([self.states[s].h_diag for s in members])
        dot = ops.dot
        q = -grads
        alphas = []
        for s_j, y_j, rho_j in zip(steps[::-1], grad_diffs[::-1], rho[::-1]):  # newest to oldest
            alpha = rho_j * dot(s_j, q)
            q -= alpha * y_j
            alphas.append(alpha)
        q *= h_diag
        for s_j, y_j, rho_j, alpha in zip(steps, grad_diffs, rho, alphas[::-1]):  # oldest to newest
            q += (alpha - rho_j * dot(y_j, q)) * s_j
        return q

    def _run_advance(self, members, pending, advance, closure) -> None:
        """End of an iteration for the models whose line search finished: move, remember the pair."""
        at, ops = self._select(members)
        moved = [s for s in members if pending[s][2]]
        if moved:
            moved_at, moved_ops = self._select(moved)
            self._x[moved_at] += moved_ops.column([pending[s][1] for s in moved]) * self._d[moved_at]  # x + t d
        grads = ops.gather([pending[s][3] for s in members])
        s_vectors = self._d[at] * ops.column([pending[s][1] for s in members])  # direction * step size
        y_vectors = grads - ops.gather([pending[s][4] for s in members])
        ys, yy, ss = ops.dots(y_vectors, s_vectors), ops.dots(y_vectors, y_vectors), ops.dots(s_vectors, s_vectors)
        for i, s in enumerate(members):
            self._remember(s, ops.row(s_vectors, i), ops.row(y_vectors, i), ys[i], yy[i], ss[i])
        g_absmax, d_absmax, x_absmax = ops.absmax(grads), ops.absmax(self._d[at]), ops.absmax(self._x[at])
        for i, s in enumerate(members):
            advance(s, (g_absmax[i], d_absmax[i], x_absmax[i]))

    def _remember(self, s: int, step, grad_diff, ys: float, yy: float, ss: float) -> None:
        """Keep the curvature pair (step, grad_diff) of model s when it is positive enough."""
        if ys > 1e-10 * max(yy, 1e-300) ** 0.5 * max(ss, 1e-300) ** 0.5 and ys > 0:
            count = int(self._count[s])
            if count == self.history_size:  # drop the oldest (numpy copies overlapping blocks safely)
                self._steps[:-1, s] = self._steps[1:, s]
                self._grad_diffs[:-1, s] = self._grad_diffs[1:, s]
                self._rho[:-1, s] = self._rho[1:, s]
                count -= 1
            self._steps[count, s] = step
            self._grad_diffs[count, s] = grad_diff
            self._rho[count, s] = 1.0 / ys
            self._count[s] = count + 1
            self.states[s].h_diag = ys / yy

    # ---- one model's control flow ------------------------------------------------------------------
    def _model_step(self, s: int, reuse_last: bool):
        """One outer step of model s. Yields (_EVALUATE, t or None) -> (loss, grad, gtd or |grad|_inf),
        (_DIRECTION, grad) -> (gtd, |grad|_1 at a history's first step) and (_ADVANCE, t, moved, grad,
        previous grad) -> (|grad|_inf, |d|_inf, |x|_inf); returns (loss, evaluations)."""
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
            gtd, abssum = yield (_DIRECTION, grad)
            step_size = self.lr
            if state.n_iter == 0:
                step_size = min(1.0, 1.0 / abssum) * self.lr
            state.n_iter += 1
            if gtd > -self.tolerance_change * max(abs(loss), 1e-300):  # not a descent direction any more
                state.stuck = True
                break
            previous_loss, previous_grad = loss, grad
            first_trial = step_size
            loss, grad, step_size, ls_evals, moved = yield from self._line_search(s, step_size, loss, grad, gtd)
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

    def _line_search(self, s, t, f, g, gtd):
        """Strong-Wolfe line search of model s along its direction from step t; yields its evaluations.
        Returns (f_new, g_new, t, evaluations, moved); moved is False when no decrease was found (the
        model stays put)."""
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
        if not done:  # (only the zoom needs these two norms)
            d_norm, x_scale = float(np.abs(self._d[s]).max()), max(1.0, float(np.abs(self._x[s]).max()))
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
