"""Target functions with the wrong shape or values, for the config-check tests (module:function)."""

import torch


def wrong_shape(x):
    return torch.cat([x[:, [0]], x[:, [1]]], dim=1)  # (n, 2) for a 1-output target


def not_finite(x):
    return torch.log(x[:, [0]] - 10.0)  # NaN everywhere in [-1, 1]


def a_list(x):
    return [0.0] * x.shape[0]
