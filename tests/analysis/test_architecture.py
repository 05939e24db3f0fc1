"""What import-linter cannot check about the layers: which modules an import actually loads.

`make lint` checks the import graph with import-linter (pyproject.toml, ``[tool.importlinter]``):
workflow above analysis above the model core, the core's own order, no cycles, no mlflow,
snakemake, pandas or matplotlib in the core, no torch in the analysis layer. That graph counts an
import inside a function like one at the top of a module, and the analysis layer may call
``kanlib.functions``, whose registered functions import torch when they are called. So whether
importing the analysis layer loads torch is checked here, in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "kanlib"


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_the_analysis_layer_never_loads_torch():
    modules = sorted(
        f"kanlib.analysis.{path.stem}" for path in (PACKAGE / "analysis").glob("*.py") if path.stem != "__init__"
    )
    assert "kanlib.analysis.report" in modules
    loaded = loaded_after("; ".join(f"import {name}" for name in modules))
    assert "pandas" in loaded  # the probe imports what it claims to
    assert "torch" not in loaded and "mlflow" not in loaded and "snakemake" not in loaded
