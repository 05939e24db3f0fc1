"""Argument checks shared by the model classes: one message style, naming the argument."""

from __future__ import annotations

import dataclasses
import numbers

__all__ = ["check_int", "check_width", "ConfigDict"]


class ConfigDict:
    """``to_dict``/``from_dict`` of a model family's frozen config dataclass (checkpoints, metrics.json)."""

    def to_dict(self) -> dict:
        """JSON-serialisable form (lists for tuples)."""
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: dict):
        """The inverse of :meth:`to_dict`; unknown keys raise ValueError naming them."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} key(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


def check_int(name: str, value, minimum: int) -> int:
    """``value`` as an int if it is an integer (not a bool, not a float) >= ``minimum``; else ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}")
    return value


def check_width(width) -> tuple[int, ...]:
    """Layer sizes (input, ..., output), at least two positive integers, e.g. [2, 1, 1]."""
    if not isinstance(width, (list, tuple)) or len(width) < 2:
        raise ValueError(
            f"width must be a list of at least 2 layer sizes (input, ..., output), e.g. [2, 1, 1]; got {width!r}"
        )
    sizes = []
    for i, w in enumerate(width):
        if isinstance(w, (list, tuple)):
            raise ValueError(f"width[{i}] = {w!r}: multiplication nodes are not supported; use plain positive integers")
        sizes.append(check_int(f"width[{i}]", w, 1))
    return tuple(sizes)
