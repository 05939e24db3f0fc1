"""The same bits on any x86-64 CPU: which code path the CPU libraries take, and what a process ran with.

Two libraries under kanlib's CPU path choose their kernels, and with them the order of their sums, by
the processor's instruction set: Intel MKL in torch's CPU build (the MLPs' matrix products, the
vectorised exp/sin of the target functions) and OpenBLAS in numpy and scipy (the dot products of the
L-BFGS optimizer, the banded Cholesky of the splines' least squares; both builds read the same
variables). Left alone, a fit on an AVX-512 node and one on an AVX2
node differ from the first rounding on, and a chain of fits carries the difference to every later
level. Both libraries can be told which kernels to use, through environment variables they read
when they start (MKL at its first operation, OpenBLAS when numpy is imported), so the setting must
be in the environment before the process computes anything:

- ``avx2`` (:data:`DEFAULT`): MKL's conditional numerical reproducibility on its AVX2 branch
  (``MKL_CBWR=AVX2``), numpy's and scipy's OpenBLAS on their AVX2 (Haswell) kernels on one thread
  (``OPENBLAS_CORETYPE=Haswell``, ``OPENBLAS_NUM_THREADS=1``). The same bits on every x86-64 CPU
  with AVX2 (Intel since Haswell, AMD since Excavator/Zen), at the cost of MKL's AVX-512 kernels
  on machines that have them (measured in docs/benchmarks.md, "CPU code paths").
- ``native``: nothing pinned; each library takes the processor's fastest kernels. The bits then
  depend on the CPU type (and MKL's, without CNR, may depend on memory alignment).

The rest of the CPU path needs nothing: the C kernels are compiled without ``-march``; torch's own
vectorised kernels (ATen, AVX-512 or AVX2 by the processor) gave identical bits on both
(tests/core/test_reproducibility.py checks it); the thread count is the caller's (``threads`` of a
sweep, ``torch.set_num_threads``), and MKL's reproducibility holds for a fixed thread count.
Beyond this: no x86-64 processor without AVX2 (ATen's plain kernels differ), no other architecture
(ARM builds use other libraries), no GPU (other kernels: the same accuracy, not the same bits), no
other torch, MKL, numpy or scipy version.

Using kanlib as a library::

    export MKL_CBWR=AVX2 OPENBLAS_CORETYPE=Haswell OPENBLAS_NUM_THREADS=1   # before python starts
    python -c "import kanlib.reproducibility as r; print(r.describe())"
"""

from __future__ import annotations

import ctypes
import functools
import platform
import re
from pathlib import Path

__all__ = ["CODE_PATHS", "DEFAULT", "EMULATED_AVX2_CPU", "environment", "mkl_cbwr", "describe", "check"]

#: The code-path settings, and the environment each puts in place before a process starts.
CODE_PATHS: dict[str, dict[str, str]] = {
    "avx2": {"MKL_CBWR": "AVX2", "OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_NUM_THREADS": "1"},
    "native": {},
}
DEFAULT = "avx2"

#: On an AVX-512 machine, the environment in which a process computes as on an AVX2-only one, as far
#: as the libraries let one emulate it: MKL limited to its AVX2 kernels, torch's kernels on AVX2,
#: numpy's without AVX-512, numpy's OpenBLAS on the kernels it picks on an AVX2 Intel CPU. A pinned
#: code path's environment goes on top of it (tests/core/test_reproducibility.py,
#: benchmarks/code_path_sweeps.py).
EMULATED_AVX2_CPU = {
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL "
    "AVX512_ICL AVX512_SPR AVX512_FP16 AVX512_BF16 AVX512_VNNI X86_V4",
    "OPENBLAS_CORETYPE": "Haswell",
}

# MKL's branch codes (mkl_cbwr.h); MKL_CBWR_STRICT is a flag on top of the branch.
_MKL_BRANCHES = {
    1: "OFF", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 6: "SSSE3", 7: "SSE4_1", 8: "SSE4_2", 9: "AVX",
    10: "AVX2", 11: "AVX512_MIC", 12: "AVX512", 13: "AVX512_MIC_E1", 14: "AVX512_E1",
}  # fmt: skip
_MKL_CBWR_BRANCH, _MKL_CBWR_ALL, _MKL_CBWR_STRICT = 1, -1, 0x10000


def _check_code_path(code_path: str) -> str:
    if code_path not in CODE_PATHS:
        raise ValueError(f"cpu_code_path must be one of {sorted(CODE_PATHS)}, got {code_path!r}")
    return code_path


def environment(code_path: str = DEFAULT) -> dict[str, str]:
    """The environment variables that put ``code_path`` in place; set them before the process starts
    (a workflow exports them to its jobs). ``native``: none (the environment's own settings hold)."""
    return dict(CODE_PATHS[_check_code_path(code_path)])


@functools.cache
def _torch_library():
    """torch's CPU library, which holds MKL (linked in statically), or None."""
    import torch

    try:
        return ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
    except OSError:
        return None


def mkl_cbwr() -> str | None:
    """The branch MKL computes with in this process, as MKL_CBWR spells it ('AVX2', 'AVX2,STRICT';
    'OFF': no reproducibility mode), asked from MKL itself; None where torch has no MKL. Asking
    starts MKL: its setting is fixed from then on."""
    library = _torch_library()
    get = getattr(library, "mkl_serv_cbwr_get", None)
    if get is None:
        return None
    get.argtypes, get.restype = [ctypes.c_int], ctypes.c_int
    branch, everything = get(_MKL_CBWR_BRANCH), get(_MKL_CBWR_ALL)
    name = _MKL_BRANCHES.get(branch, str(branch))
    return f"{name},STRICT" if everything & _MKL_CBWR_STRICT else name


def _openblas() -> dict:
    """numpy's BLAS as threadpoolctl sees it: {'blas': 'openblas 0.3.x', 'blas_core': 'Haswell',
    'blas_threads': 1} (empty values where numpy has none that it knows)."""
    import numpy  # noqa: F401 (loads numpy's BLAS, which threadpoolctl then finds)
    from threadpoolctl import threadpool_info

    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return {
                "blas": f"{pool.get('internal_api')} {pool.get('version')}",
                "blas_core": pool.get("architecture"),
                "blas_threads": pool.get("num_threads"),
            }
    return {"blas": None, "blas_core": None, "blas_threads": None}


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.machine()


def describe() -> dict:
    """What this process computes with: torch and MKL versions, MKL's branch, numpy's BLAS and its
    kernels, the thread count, the CPU model and the instruction set torch's kernels use."""
    import torch

    mkl = re.search(r"Math Kernel Library Version ([0-9.]+)", torch.__config__.show())
    return {
        "torch_version": torch.__version__,
        "mkl_version": mkl.group(1) if mkl else None,
        "mkl_cbwr": mkl_cbwr(),
        **_openblas(),
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_model": _cpu_model(),
    }


def check(code_path: str, described: dict | None = None) -> dict:
    """Raise RuntimeError when this process does not compute on ``code_path`` (the environment was
    set after MKL or numpy had started); returns :func:`describe`'s record. ``native`` asks nothing."""
    described = describe() if described is None else described
    wanted = environment(code_path)
    found = {
        "MKL_CBWR": described["mkl_cbwr"],
        "OPENBLAS_CORETYPE": described["blas_core"],
        "OPENBLAS_NUM_THREADS": described["blas_threads"],
    }
    wrong = {
        name: found[name]
        for name, value in wanted.items()
        if found[name] is not None and str(found[name]).split(",")[0].lower() != value.lower()
    }
    if wrong:
        raise RuntimeError(
            f"cpu_code_path {code_path!r} needs {wanted} in the environment before the process starts; "
            f"this process computes with {wrong}"
        )
    return described
