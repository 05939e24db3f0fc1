"""A KAN's loss and gradient on the CPU through fused C kernels (``cpu_kernels.c``), built on first use.

Why: a small KAN's loss evaluation in torch is ~40 tiny kernels and their Python calls, each a few
microseconds for a few thousand numbers; L-BFGS makes tens of thousands of evaluations per fit.
One C loop per layer for the basis, the forward and the backward does the same arithmetic at 2-5x
less cost per evaluation (docs/benchmarks.md, benchmarks/cpu_kernels.py).

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
model runs, so model s of a :class:`~kanlib.KANStack` gets exactly the numbers of the same
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
# no -march (the library may serve several machines of a cluster) and no contraction into fused
# multiply-adds (the same roundings whatever the compiler's default)
FLAGS = ["-std=c99", "-O3", "-ffp-contract=off", "-fPIC", "-shared"]

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
        b"\0".join(
            [
                SOURCE.read_bytes(),
                platform.machine().encode(),
                sys.platform.encode(),
                compiler.encode(),
                *map(str.encode, FLAGS),
            ]
        )
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
    command = [compiler, *FLAGS, "-o", str(partial), str(SOURCE), "-lm"]
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
            library.kan_mse_and_grad.argtypes = [pointer, pointer, size]  # (the only ones called from Python)
            for function in ("kan_layer_basis", "kan_layer_forward", "kan_mse_and_grad"):
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
    if not uniform or x_t.dtype != torch.float64 or not x_t.is_cpu or getattr(_disabled, "on", False):
        return False
    for layer in layers:  # (plain dict look-ups: this runs once per loss evaluation)
        coef = layer._parameters["coef"]
        if layer.k > MAX_ORDER or coef.dtype != torch.float64 or not coef.is_cpu:
            return False
    return _load() is not None


class _Cache(dict):
    """What this module keeps on a layer between evaluations (grid constants, the evaluation plan).

    It belongs to one module object: a copy or a pickle of the module starts without it (the plan
    holds raw addresses of the original's buffers), and so does a shallow copy (checked by id)."""

    def __init__(self, owner_id: int = 0):
        super().__init__()
        self.owner_id = owner_id

    def __copy__(self):
        return _Cache()

    def __deepcopy__(self, memo):
        return _Cache()

    def __reduce__(self):
        return (_Cache, ())


def _cache(owner) -> _Cache:
    cache = owner.__dict__.get("_c_cache")
    if cache is None or cache.owner_id != id(owner):
        cache = owner.__dict__["_c_cache"] = _Cache(id(owner))
    return cache


def _pointer(tensor: torch.Tensor | None):
    return None if tensor is None else tensor.data_ptr()


def _grid_constants(owner, knots: torch.Tensor, k: int):
    """(shift, inv_h, M, n_intervals) of uniform knots (S, in, K), as kanlib.bspline.UniformGridConstants
    computes them, cached on ``owner`` while the knots stay the same."""
    cache = _cache(owner)
    key = (knots.data_ptr(), knots._version, knots.shape)
    if cache.get("grid_key") != key:
        n_intervals = knots.shape[-1] - 1
        t0 = knots[..., 0]
        inv_h = n_intervals / (knots[..., -1] - t0)  # (S, in)
        M = torch.as_tensor(uniform_basis_polynomials(k), dtype=torch.float64).contiguous()  # (k+1, k+1)
        cache["grid"] = ((-t0 * inv_h).contiguous(), inv_h.contiguous(), M, n_intervals)
        cache["grid_key"], cache["grid_knots"] = key, knots  # (the keyed tensor kept alive: its address stays its own)
    return cache["grid"]


def _basis(layer, h: torch.Tensor, knots: torch.Tensor) -> tuple:
    """(first, val, None, base, None): kan_layer_basis of ``layer``'s uniform knots (S, in, K) at h (S, in, B)."""
    S, in_dim, batch = h.shape
    k = layer.k
    first = torch.empty(S, in_dim, batch, dtype=torch.long)
    val = torch.empty(S, in_dim, batch, k + 1, dtype=torch.float64)
    base = torch.empty(S, in_dim, batch, dtype=torch.float64)
    shift, inv_h, M, n_intervals = _grid_constants(layer, knots, k)
    _loaded["library"].kan_layer_basis(
        S, in_dim, batch, k, n_intervals, h.data_ptr(), shift.data_ptr(), inv_h.data_ptr(), M.data_ptr(),
        first.data_ptr(), val.data_ptr(), None, base.data_ptr(), None,
    )  # fmt: skip
    return first, val, None, base, None


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
        basis = _basis(layer, h, layer_knots)
        h = _layer_forward(layer, coef, scale_base, scale_sp, basis, h)
    return h


LAYER_POINTERS = 17  # the C file's LAYER_POINTERS: a layer's pointers in kan_mse_and_grad


class _Plan:
    """One model (or stack) evaluated on inputs of one shape: the buffers kept between evaluations
    (the L-BFGS hot path allocates nothing) and kan_mse_and_grad's argument arrays, in which only the
    addresses that may move are rewritten before each call."""

    def __init__(self, layers, params, x_t: torch.Tensor):
        S, _, batch = x_t.shape
        self.key = (tuple(x_t.shape), tuple(tuple(p[0].shape) for p in params))
        dims = [S, batch, len(layers)]
        self.layers = []
        for index, (layer, (coef, scale_base, scale_sp)) in enumerate(zip(layers, params)):
            _, in_dim, out_dim, n = coef.shape
            k = layer.k
            hidden = index > 0

            def empty(*shape, dtype=torch.float64):
                return torch.empty(*shape, dtype=dtype)

            grads = (torch.empty_like(coef), torch.empty_like(scale_base), torch.empty_like(scale_sp))
            state = {
                "basis": (
                    empty(S, in_dim, batch, dtype=torch.long),
                    empty(S, in_dim, batch, k + 1),
                    empty(S, in_dim, batch, k + 1) if hidden else None,
                    empty(S, in_dim, batch),
                    empty(S, in_dim, batch) if hidden else None,
                ),
                "y": empty(S, out_dim, batch),
                "grads": grads,
                "grad_x": empty(S, in_dim, batch) if hidden else None,
                "staging": [None, None, None],
            }
            self.layers.append(state)
            dims += [in_dim, out_dim, n, k, 0]  # n_intervals: set with the grid
        self.dims = (ctypes.c_long * len(dims))(*dims)
        self.grad_out = torch.empty_like(self.layers[-1]["y"])
        self.losses = torch.empty(S, dtype=torch.float64)
        self.pointers = (ctypes.c_void_p * (LAYER_POINTERS * len(layers) + 3))()
        for index, state in enumerate(self.layers):  # the addresses that stay: this plan's own buffers
            base_index = LAYER_POINTERS * index
            first, val, dval, base, dbase = state["basis"]
            fixed = {7: first, 8: val, 9: dval, 10: base, 11: dbase, 12: state["y"], 16: state["grad_x"]}
            fixed.update({13 + j: grad for j, grad in enumerate(state["grads"])})
            for slot, tensor in fixed.items():
                self.pointers[base_index + slot] = _pointer(tensor)
            if index > 0:
                self.pointers[base_index] = self.layers[index - 1]["y"].data_ptr()
        self.pointers[LAYER_POINTERS * len(layers) + 1] = self.grad_out.data_ptr()
        self.pointers[LAYER_POINTERS * len(layers) + 2] = self.losses.data_ptr()
        self.input_key = None  # what the first layer's basis was computed for
        self.input_tensors = None  # (x_t, knots): kept alive with that key
        self.y_target = None  # the last call's targets, alive while the C code reads them


def _operand(state: dict, slot: int, tensor: torch.Tensor) -> int:
    """The address of ``tensor``'s numbers, contiguous (a staging copy when the optimizer keeps it strided)."""
    if tensor.is_contiguous():
        return tensor.data_ptr()
    staging = state["staging"][slot]
    if staging is None or staging.shape != tensor.shape:
        staging = state["staging"][slot] = torch.empty(tensor.shape, dtype=torch.float64)
    staging.copy_(tensor)
    return staging.data_ptr()


def mse_and_grads(layers, params, knots, x_t: torch.Tensor, y_t: torch.Tensor):
    """Each model's mean squared error and the gradients of every layer's parameters.

    layers: the modules (the first keeps the buffers; each its ``k``); params: per layer (coef
    (S, in, out, n), scale_base (S, in, out), scale_sp (S, in, out)); knots: per layer (S, in, K),
    uniform; x_t (S, width[0], B), y_t (S, width[-1], B), float64 on the CPU.
    -> losses (S,), per layer (grad_coef, grad_scale_base, grad_scale_sp) shaped like params. The
    gradient tensors are kept and overwritten by the next evaluation of the same model and shapes (an
    optimizer copies them out, as L-BFGS does).
    """
    x_t = x_t.contiguous()
    y_t = y_t.contiguous() if y_t.dtype == torch.float64 else y_t.to(torch.float64).contiguous()
    owner = layers[0]
    cache = _cache(owner)
    plan = cache.get("plan")
    if plan is None or plan.key != (tuple(x_t.shape), tuple(tuple(p[0].shape) for p in params)):
        plan = cache["plan"] = _Plan(layers, params, x_t)
    pointers, dims = plan.pointers, plan.dims
    for index, (layer, layer_params, layer_knots) in enumerate(zip(layers, params, knots)):
        at = LAYER_POINTERS * index
        for slot, tensor in enumerate(layer_params):
            pointers[at + 1 + slot] = _operand(plan.layers[index], slot, tensor)
        shift, inv_h, M, n_intervals = _grid_constants(layer, layer_knots, layer.k)
        pointers[at + 4], pointers[at + 5], pointers[at + 6] = shift.data_ptr(), inv_h.data_ptr(), M.data_ptr()
        dims[3 + 5 * index + 4] = n_intervals
    # the first layer's basis: computed again only for other training inputs or another grid
    version = None if x_t.is_inference() else x_t._version
    key = (x_t.data_ptr(), version, knots[0].data_ptr(), knots[0]._version)
    input_basis = plan.input_key != key
    if input_basis:
        plan.input_key, plan.input_tensors = key, (x_t, knots[0])
        pointers[0] = x_t.data_ptr()
    pointers[LAYER_POINTERS * len(layers)] = y_t.data_ptr()
    plan.y_target = y_t  # (alive until the next evaluation)
    _loaded["library"].kan_mse_and_grad(dims, pointers, int(input_basis))
    return plan.losses.clone(), [state["grads"] for state in plan.layers]
