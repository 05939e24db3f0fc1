"""kanlib.optim.LBFGS against independent references."""

import numpy as np
import pytest
import torch
from scipy.optimize import rosen

from kanlib.optim import LBFGS


def two_loop(grad, steps, grad_diffs, gamma):
    """The textbook two-loop recursion (Nocedal & Wright, Algorithm 7.4), in numpy."""
    q = grad.copy()
    alphas = []
    for s, y in zip(reversed(steps), reversed(grad_diffs)):
        alpha = (s @ q) / (y @ s)
        q -= alpha * y
        alphas.append(alpha)
    r = gamma * q
    for (s, y), alpha in zip(zip(steps, grad_diffs), reversed(alphas)):
        beta = (y @ r) / (y @ s)
        r += (alpha - beta) * s
    return -r


@pytest.mark.parametrize("pairs", [[7], [7, 3, 10]], ids=["one model", "three models, different history lengths"])
def test_direction_equals_textbook_two_loop_recursion(pairs):
    """Each model's direction, alone or beside models with more or fewer stored pairs (a history
    of 10 keeps the newest 10 of the 12 pairs given to the third model)."""
    rng = np.random.default_rng(0)
    n, S = 30, len(pairs)
    optimizer = LBFGS([torch.zeros(S, n, dtype=torch.float64, requires_grad=True)], history_size=10)
    kept = []
    for s, count in enumerate(pairs):
        A = rng.normal(size=(n, n))
        hessian = A @ A.T + n * np.eye(n)  # positive definite: y = H s keeps s.y > 0
        steps = [rng.normal(size=n) for _ in range(count + (2 if count == 10 else 0))]
        grad_diffs = [hessian @ step for step in steps]
        for step, diff in zip(steps, grad_diffs):
            optimizer._remember(s, step, diff, float(diff @ step), float(diff @ diff), float(step @ step))
        kept.append((steps[-10:], grad_diffs[-10:]))
    grads = rng.normal(size=(S, n))
    at, ops = optimizer._select(list(range(S)))
    ours = np.asarray(optimizer._two_loop(list(range(S)), at, ops, grads if S > 1 else grads[0])).reshape(S, n)
    for s, (steps, grad_diffs) in enumerate(kept):
        gamma = optimizer.states[s].h_diag
        assert gamma == pytest.approx(float(grad_diffs[-1] @ steps[-1]) / float(grad_diffs[-1] @ grad_diffs[-1]))
        np.testing.assert_allclose(ours[s], two_loop(grads[s], steps, grad_diffs, gamma), rtol=1e-10, atol=1e-12)


def test_minimizes_rosenbrock_to_its_known_minimum():
    x = torch.tensor([[-1.2, 1.0, -0.5, 0.8]], dtype=torch.float64, requires_grad=True)  # one model
    optimizer = LBFGS([x], max_iter=200, tolerance_change=0.0, tolerance_grad=1e-14)

    def closure():
        x.grad = None
        value = torch.sum(100 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1 - x[:, :-1]) ** 2, dim=1)  # (1,)
        value.sum().backward()
        return value

    for _ in range(5):
        optimizer.step(closure)
    optimizer.release()
    np.testing.assert_allclose(x.detach().numpy()[0], np.ones(4), atol=1e-6)
    assert rosen(x.detach().numpy()[0]) < 1e-12


def test_a_first_step_with_a_tiny_gradient_still_makes_progress():
    """After a restart (a grid update) the first direction is the bare gradient; near a fit's minimum
    it is ~1e-10 while the loss still falls. The line search must shrink its overshooting first
    trial instead of taking the short bracket for "no longer moves" (before the fix: stuck for good)."""
    curvature = torch.tensor([10.0, 30.0, 5.0, 20.0], dtype=torch.float64)
    centre = torch.tensor([1.0, -0.5, 0.25, 2.0], dtype=torch.float64)
    x = (centre + 1e-11)[None].clone().requires_grad_(True)  # |gradient| <= 3e-10: a unit step overshoots

    def closure():
        x.grad = None
        value = 0.5 * torch.sum(curvature * (x - centre) ** 2, dim=1)  # (1,)
        value.sum().backward()
        return value

    start = float(closure())
    optimizer = LBFGS([x])  # fresh: no curvature pairs, like right after a grid update
    (loss,) = optimizer.step(closure)
    optimizer.release()
    assert loss < 1e-4 * start and not optimizer.stuck  # the quadratic's minimum, to rounding
    assert optimizer.evaluations > 2
