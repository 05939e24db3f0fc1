"""A KAN's loss and gradient on the CPU through fused C kernels (``cpu_kernels.c``), built on first use.

Why: a small KAN's loss evaluation in torch is ~40 tiny kernels and their Python calls, each a few
microseconds for a few thousand numbers; L-BFGS makes tens of thousands of evaluations per fit.
One C loop per layer for the basis, the forward and the backward does the same arithmetic at 2-5x
less cost per evaluation (docs/benchmarks.md, benchmarks/fused_kernel.py).

When it is used (:func:`usable`): the tensors are float64 on the CPU, every layer's grid is uniform
(the default; quantile grids, ``grid_eps < 1``, keep the torch path), ``k <= 7``, the kernels built,
and the environment variable ``KANLIB_CPU_KERNEL`` is not ``torch``. Otherwise, and on GPUs, the torch
path of :mod:`kanlib.layer` runs. Both compute the same function; they differ by rounding (relative
1e-12 on a gradient), so a fit's trajectory can differ slightly between them.
:func:`status` says which one this process uses and why; the workflow records it per job.

Build: ``$CC`` (default ``cc``) compiles the C file once per source version and machine into
``$KANLIB_CACHE_DIR`` (default ``$XDG_CACHE_HOME/kanlib`` or ``~/.cache/kanlib``); a temporary file
renamed into place, so concurrent jobs on a shared home never load a half-written library. Without
a compiler the torch path runs and :func:`status` gives the reason (one warning per process).

Exactness: the kernels loop over a stack's S models one after another, each with the loops a lone
model runs, so model s of a :class:`~kanlib.stack.KANStack` gets exactly the numbers of the same
model alone (as in the torch path).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import torch

from .bspline import uniform_basis_polynomials

SOURCE = Path(__file__).with_name("cpu_kernels.c")
ENVIRONMENT_SWITCH = "KANLIB_CPU_KERNEL"  # "torch": never use the C kernels
MAX_ORDER = 7  # the C file's MAX_ORDER

_lock = threading.Lock()
_disabled = threading.local()  # disabled(): the torch path in this thread for a while
_loaded: dict = {}  # "library": ctypes.CDLL or None, "reason": why not (process-wide, built once)


def cache_dir() -> Path:
    """Where built kernels are kept: $KANLIB_CACHE_DIR, else $XDG_CACHE_HOME/kanlib, else ~/.cache/kanlib."""
    if os.environ.get("KANLIB_CACHE_DIR"):
        return Path(os.environ["KANLIB_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kanlib"


def _library_path(compiler: str) -> Path:
    digest = hashlib.sha256(
        b"\0".join([SOURCE.read_bytes(), platform.machine().encode(), sys.platform.encode(), compiler.encode()])
    ).hexdigest()[:16]
    return cache_dir() / f"cpu_kernels-{digest}.so"


def build() -> Path:
    """Compile the kernels unless this source version is already built; returns the library's path."""
    compiler = os.environ.get("CC") or "cc"
    target = _library_path(compiler)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.partial")
    command = [compiler, "-std=c99", "-O2", "-fPIC", "-shared", "-o", str(partial), str(SOURCE), "-lm"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise RuntimeError(f"could not run the C compiler {compiler!r} ($CC): {error}") from error
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    os.replace(partial, target)  # atomic: a concurrent job sees no library or a whole one
    return target


def _load() -> ctypes.CDLL | None:
    """The built library, or None with the reason in ``_loaded["reason"]`` (tried once per process)."""
    if "library" in _loaded:
        return _loaded["library"]
    with _lock:
        if "library" in _loaded:
            return _loaded["library"]
        library, reason = None, ""
        if os.environ.get(ENVIRONMENT_SWITCH, "").strip().lower() == "torch":
            reason = f"{ENVIRONMENT_SWITCH}=torch"
        elif sys.platform == "win32":
            reason = "not built on Windows"
        else:
            try:
                library = ctypes.CDLL(str(build()))
            except (OSError, RuntimeError) as error:
                reason = f"the C kernels could not be built: {error}"
                warnings.warn(f"kanlib: using the torch path on the CPU ({reason})", RuntimeWarning, stacklevel=3)
        if library is not None:
            size, pointer = ctypes.c_long, ctypes.c_void_p
            library.kan_layer_basis.argtypes = [size] * 5 + [pointer] * 9
            library.kan_layer_forward.argtypes = [size] * 6 + [pointer] * 7
            library.kan_layer_backward.argtypes = [size] * 6 + [pointer] * 13
            library.kan_mse.argtypes = [size] * 2 + [pointer] * 4
            for function in ("kan_layer_basis", "kan_layer_forward", "kan_layer_backward", "kan_mse"):
                getattr(library, function).restype = None
        _loaded["library"], _loaded["reason"] = library, reason
        return library


def status() -> str:
    """``"c"`` when this process evaluates eligible KANs with the C kernels, else ``"torch (<why>)"``."""
    return "c" if _load() is not None else f"torch ({_loaded['reason']})"


def kernel_for(layers, dtype: torch.dtype, uniform: bool) -> str:
    """Which code evaluates these layers' loss on the CPU: ``"c"`` or ``"torch (<why>)"`` (provenance)."""
    if dtype != torch.float64:
        return f"torch ({str(dtype).replace('torch.', '')}: the C kernels are float64)"
    if not uniform:
        return "torch (non-uniform grids)"
    if any(layer.k > MAX_ORDER for layer in layers):
        return f"torch (k > {MAX_ORDER})"
    return status()


@contextlib.contextmanager
def disabled():
    """Within ``with cpu_kernels.disabled():`` this thread evaluates KANs through the torch path
    (e.g. to compare the two, as benchmarks/cpu_kernels.py does)."""
    before = getattr(_disabled, "on", False)
    _disabled.on = True
    try:
        yield
    finally:
        _disabled.on = before


def usable(x_t: torch.Tensor, layers, uniform: bool) -> bool:
    """Whether the C kernels can evaluate these layers on x_t (see the module's docstring)."""
    return (
        not getattr(_disabled, "on", False)
        and x_t.device.type == "cpu"
        and x_t.dtype == torch.float64
        and uniform
        and all(
            layer.k <= MAX_ORDER and layer.coef.dtype == torch.float64 and not layer.coef.is_cuda for layer in layers
        )
        and _load() is not None
    )


def _pointer(tensor: torch.Tensor | None):
    return None if tensor is None else tensor.data_ptr()


def _grid_constants(owner, knots: torch.Tensor, k: int):
    """(shift, inv_h, M, n_intervals) of uniform knots (S, in, K), as kanlib.bspline.UniformGridConstants
    computes them, cached on ``owner`` while the knots stay the same."""
    key = (knots.data_ptr(), knots._version, knots.shape)
    if owner.__dict__.get("_c_grid_key") != key:
        n_intervals = knots.shape[-1] - 1
        t0 = knots[..., 0]
        inv_h = n_intervals / (knots[..., -1] - t0)  # (S, in)
        M = torch.as_tensor(uniform_basis_polynomials(k), dtype=torch.float64).contiguous()  # (k+1, k+1)
        owner._c_grid = ((-t0 * inv_h).contiguous(), inv_h.contiguous(), M, n_intervals)
        owner._c_grid_key, owner._c_grid_knots = key, knots  # (the keyed tensor kept alive: its address stays its own)
    return owner._c_grid


def _basis(owner, h: torch.Tensor, knots: torch.Tensor, k: int, derivatives: bool, slot: str | None):
    """(first, val, dval, base, dbase) of kan_layer_basis at h (S, in, B).

    ``slot`` "input": buffers kept on ``owner`` for the first layer's training input, reused without
    recomputation while that input and the grid stay the same; "hidden": buffers kept on ``owner``
    and overwritten each evaluation; None: new tensors (an evaluation that must not disturb either)."""
    S, in_dim, batch = h.shape
    if slot == "input":
        version = None if h.is_inference() else h._version  # (inference tensors keep no version counter)
        key = (h.data_ptr(), version, h.shape, knots.data_ptr(), knots._version, derivatives)
        if owner.__dict__.get("_c_input_key") == key:
            return owner._c_input
        owner._c_input_key = None
    shape_key = (S, in_dim, batch, k, derivatives)
    buffers = owner.__dict__.get(f"_c_{slot}") if slot else None
    if buffers is None or owner.__dict__.get(f"_c_{slot}_shape") != shape_key:
        buffers = (
            torch.empty(S, in_dim, batch, dtype=torch.long),
            torch.empty(S, in_dim, batch, k + 1, dtype=torch.float64),
            torch.empty(S, in_dim, batch, k + 1, dtype=torch.float64) if derivatives else None,
            torch.empty(S, in_dim, batch, dtype=torch.float64),
            torch.empty(S, in_dim, batch, dtype=torch.float64) if derivatives else None,
        )
        if slot:
            owner.__dict__[f"_c_{slot}"], owner.__dict__[f"_c_{slot}_shape"] = buffers, shape_key
    first, val, dval, base, dbase = buffers
    shift, inv_h, M, n_intervals = _grid_constants(owner, knots, k)
    _loaded["library"].kan_layer_basis(
        S, in_dim, batch, k, n_intervals, h.data_ptr(), shift.data_ptr(), inv_h.data_ptr(), M.data_ptr(),
        first.data_ptr(), val.data_ptr(), _pointer(dval), base.data_ptr(), _pointer(dbase),
    )  # fmt: skip
    if slot == "input":  # (the input is kept alive with the key: no other tensor can take its address)
        owner._c_input_key, owner._c_input, owner._c_input_tensors = key, buffers, (h, knots)
    return buffers


def _layer_forward(layer, coef, scale_base, scale_sp, basis, h: torch.Tensor) -> torch.Tensor:
    """kan_layer_forward: (S, in, B) -> (S, out, B)."""
    S, in_dim, batch = h.shape
    out_dim, n = coef.shape[2], coef.shape[3]
    first, val, _, base, _ = basis
    y = torch.empty(S, out_dim, batch, dtype=torch.float64)
    _loaded["library"].kan_layer_forward(
        S, in_dim, out_dim, batch, n, layer.k, coef.data_ptr(), scale_base.data_ptr(), scale_sp.data_ptr(),
        first.data_ptr(), val.data_ptr(), base.data_ptr(), y.data_ptr(),
    )  # fmt: skip
    return y


def _contiguous(params, knots):
    # (an optimizer may keep the parameters as views into one flat vector: strided across models)
    return [tuple(t.contiguous() for t in layer_params) for layer_params in params], [t.contiguous() for t in knots]


@torch.inference_mode()
def forward(layers, params, knots, x_t: torch.Tensor) -> torch.Tensor:
    """The models' outputs (S, width[-1], B) at x_t (S, width[0], B); arguments as :func:`mse_and_grads`."""
    params, knots = _contiguous(params, knots)
    h = x_t.contiguous()
    for layer, (coef, scale_base, scale_sp), layer_knots in zip(layers, params, knots):
        basis = _basis(layer, h, layer_knots, layer.k, derivatives=False, slot=None)
        h = _layer_forward(layer, coef, scale_base, scale_sp, basis, h)
    return h


@torch.inference_mode()
def mse_and_grads(layers, params, knots, x_t: torch.Tensor, y_t: torch.Tensor):
    """Each model's mean squared error and the gradients of every layer's parameters.

    layers: the modules (each keeps its buffers and ``k``); params: per layer (coef (S, in, out, n),
    scale_base (S, in, out), scale_sp (S, in, out)); knots: per layer (S, in, K), uniform;
    x_t (S, width[0], B), y_t (S, width[-1], B), float64 on the CPU.
    -> losses (S,), per layer (grad_coef, grad_scale_base, grad_scale_sp) shaped like params.
    """
    library = _loaded["library"]
    params, knots = _contiguous(params, knots)
    x_t, y_t = x_t.contiguous(), y_t.to(dtype=torch.float64, device="cpu").contiguous()
    saved = []
    h = x_t
    for index, (layer, (coef, scale_base, scale_sp), layer_knots) in enumerate(zip(layers, params, knots)):
        slot = "hidden" if index > 0 else "input"
        basis = _basis(layer, h, layer_knots, layer.k, derivatives=index > 0, slot=slot)
        h = _layer_forward(layer, coef, scale_base, scale_sp, basis, h)
        saved.append(basis)
    S, out_dim, batch = h.shape
    grad = torch.empty_like(h)
    losses = torch.empty(S, dtype=torch.float64)
    library.kan_mse(S, out_dim * batch, h.data_ptr(), y_t.data_ptr(), grad.data_ptr(), losses.data_ptr())
    grads = [None] * len(layers)
    for index in range(len(layers) - 1, -1, -1):
        layer, (coef, scale_base, scale_sp) = layers[index], params[index]
        first, val, dval, base, dbase = saved[index]
        S, in_dim, out_dim, n = coef.shape
        grad_coef, grad_scale_base, grad_scale_sp = (
            torch.empty_like(coef), torch.empty_like(scale_base), torch.empty_like(scale_sp)
        )  # fmt: skip
        grad_x = torch.empty(S, in_dim, batch, dtype=torch.float64) if index > 0 else None
        library.kan_layer_backward(
            S, in_dim, out_dim, batch, n, layer.k, coef.data_ptr(), scale_base.data_ptr(), scale_sp.data_ptr(),
            first.data_ptr(), val.data_ptr(), _pointer(dval), base.data_ptr(), _pointer(dbase), grad.data_ptr(),
            grad_coef.data_ptr(), grad_scale_base.data_ptr(), grad_scale_sp.data_ptr(), _pointer(grad_x),
        )  # fmt: skip
        grads[index] = (grad_coef, grad_scale_base, grad_scale_sp)
        grad = grad_x
    return losses, grads
