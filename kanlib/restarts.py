"""Several initialisations of one model, the best by training loss: :func:`best_of`.

A small KAN started from some seeds ends its first fit in a poor minimum (it learns roughly the
target's mean) and a chain of grid levels never leaves it. Training R initialisations and keeping
the one with the lowest final *training* RMSE (test data never chooses) is ordinary multi-start
optimisation; the R models train as one stack, each following the trajectory it would alone.

Seeds: candidate 0 is the model's own seed, so ``restarts=1`` is the plain fit; candidates 1..R-1
are drawn from ``numpy.random.SeedSequence(seed)`` (63-bit seeds, the same for a given seed on any
machine, distinct across seeds with overwhelming probability), and the first R of R' > R are the
same, so more restarts only add candidates.

    model, result = best_of(lambda s: KAN(width=[2, 1, 1], grid=3, k=3, seed=s), 1, 4, dataset, steps=200)
    result["restarts"]   # {"seeds": [...], "train_loss": [...], "chosen": i}
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .checks import check_int
from .stack import ModelStack
from .training import fit

__all__ = ["restart_seeds", "best_of"]


def restart_seeds(seed: int, restarts: int) -> list[int]:
    """The model seeds of ``restarts`` initialisations of the model seeded ``seed``: ``seed`` itself,
    then ``restarts - 1`` seeds from ``SeedSequence(seed)``."""
    seed, restarts = check_int("seed", seed, 0), check_int("restarts", restarts, 1)
    drawn = np.random.SeedSequence(seed).generate_state(max(restarts - 1, 0), dtype=np.uint64) >> np.uint64(1)
    return [seed, *(int(value) for value in drawn)]


def best_of(
    build: Callable[[int], ModelStack], model_seed: int, restarts: int, dataset, *, as_stack: bool = True, **fit_options
) -> tuple[ModelStack, dict]:
    """Train ``build(s)`` for the seeds ``restart_seeds(model_seed, restarts)`` on ``dataset`` (one dataset
    dict) with ``fit_options`` (:func:`kanlib.training.fit`'s) and return the model whose final
    training RMSE is lowest (the first of equals) with its fit's result dict; that dict's
    ``"restarts"`` holds every candidate's seed and final training RMSE and the chosen index.

    ``as_stack``: train the candidates as one stack (the default; each follows its lone fit) or one
    after another (the same numbers; faster for MLPs on the CPU). A candidate that diverges raises,
    as a lone fit does."""
    seeds = restart_seeds(model_seed, restarts)
    models = [build(s) for s in seeds]
    if as_stack and len(models) > 1:
        stack = type(models[0]).stack(models)  # the R models in one object (S = R)
        results = fit(stack, dataset, **fit_options)  # one result dict per candidate
        models = stack.unstack()
    else:
        results = [fit(model, dataset, **fit_options)[0] for model in models]
    final = [float(result["train_loss"][-1]) for result in results]
    chosen = int(np.argmin(np.where(np.isfinite(final), final, np.inf)))  # NaN never wins
    result = dict(results[chosen])
    result["restarts"] = {"seeds": seeds, "train_loss": final, "chosen": chosen}
    return models[chosen], result
