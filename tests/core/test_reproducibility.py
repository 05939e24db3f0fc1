"""The same bits on another x86-64 CPU (kanlib.reproducibility, config cpu_code_path).

An AVX2 machine is emulated on this one the way the libraries allow
(kanlib.reproducibility.EMULATED_AVX2_CPU: MKL restricted to its AVX2 kernels, torch's own kernels
on AVX2, numpy's kernels without AVX-512, numpy's OpenBLAS on the kernels it picks on an AVX2 Intel
CPU). A short seed chain with grid extension, an MLP and the
datasets they train on run in a fresh process on each side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from kanlib import reproducibility

# The seed chain at N = 1000 (G = 5, 10, 20; grid extension's least squares between levels), an MLP
# (MKL's matrix products), their datasets (torch's exp and sin): final RMSEs and the models' bytes.
CHAIN = r"""
import hashlib, io, json, sys, torch
torch.set_num_threads(1)
from kanlib import KAN, MLP, create_dataset
from kanlib.functions import get_function

f = get_function("exp_sin_pi_x_plus_y2")
dataset = create_dataset(f, n_var=2, train_num=1000, test_num=1000, seed=0)
digest = hashlib.sha256(dataset["train_label"].numpy().tobytes() + dataset["test_label"].numpy().tobytes())
rmse, model = [], None
for grid in (5, 10, 20):
    fresh = KAN(width=[2, 1, 1], grid=grid, k=3, seed=1)
    model = fresh if model is None else fresh.initialize_from_another_model(model, dataset["train_input"])
    fit = model.fit(dataset, steps=30, stop_grid_update_step=20, progress=False)
    rmse.append([fit["train_loss"][-1], fit["test_loss"][-1]])
mlp = MLP(width=[2, 20, 20, 1], seed=2)
fit = mlp.fit(dataset, steps=40, progress=False)
rmse.append([fit["train_loss"][-1], fit["test_loss"][-1]])
for m in (model, mlp):
    buffer = io.BytesIO()
    torch.save({k: v for k, v in m.state_dict().items()}, buffer)
    digest.update(buffer.getvalue())
import kanlib.reproducibility as r
print(json.dumps({"rmse": rmse, "sha256": digest.hexdigest(), "described": r.describe()}))
"""

EMULATED_AVX2 = reproducibility.EMULATED_AVX2_CPU
PINNED_NAMES = tuple(reproducibility.CODE_PATHS[reproducibility.DEFAULT])


def _chain(**env) -> dict:
    clean = {name: value for name, value in os.environ.items() if name not in (*PINNED_NAMES, *EMULATED_AVX2)}
    result = subprocess.run(
        [sys.executable, "-c", CHAIN], env={**clean, **env}, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def machine():
    native = _chain()
    if native["described"]["mkl_version"] is None:
        pytest.skip("torch has no MKL here (not an x86-64 build): the code path cannot be pinned")
    if native["described"]["cpu_capability"] != "AVX512":
        pytest.skip("no AVX-512 here: an AVX2 machine cannot be emulated as a different one on this CPU")
    return native


def test_the_emulated_avx2_machine_computes_other_bits_unpinned_and_the_same_bits_pinned(machine):
    emulated = _chain(**EMULATED_AVX2)
    assert emulated["described"]["cpu_capability"] == "AVX2"  # the emulation took effect
    if emulated["sha256"] == machine["sha256"]:
        pytest.skip("the emulated AVX2 machine computes the same bits unpinned: the test proves nothing here")
    assert emulated["rmse"] != machine["rmse"]

    pinned = reproducibility.environment("avx2")
    here, there = _chain(**pinned), _chain(**{**EMULATED_AVX2, **pinned})
    assert here["described"]["mkl_cbwr"] == there["described"]["mkl_cbwr"] == "AVX2"
    assert here["described"]["blas_core"] == there["described"]["blas_core"] == "Haswell"
    assert here["rmse"] == there["rmse"]  # bit for bit, every level, KAN and MLP
    assert here["sha256"] == there["sha256"]  # datasets and model files


def test_a_setting_made_after_mkl_started_is_detected():
    code = (
        "import os, torch\n"
        "torch.randn(8, 8) @ torch.randn(8, 8)\n"  # MKL starts unpinned
        "os.environ.update(MKL_CBWR='AVX2')\n"
        "import kanlib.reproducibility as r\n"
        "try:\n    r.check('avx2')\nexcept RuntimeError as error:\n    print('refused', error)\n"
    )
    clean = {name: value for name, value in os.environ.items() if name not in PINNED_NAMES}
    result = subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True, text=True, timeout=120)
    if reproducibility.mkl_cbwr() is None:
        pytest.skip("torch has no MKL here")
    assert result.stdout.startswith("refused"), result.stdout + result.stderr
    assert "MKL_CBWR" in result.stdout


def test_unknown_code_path_names_the_allowed_values():
    with pytest.raises(ValueError, match="avx2") as error:
        reproducibility.environment("fast")
    assert "native" in str(error.value)


def test_the_summary_says_whether_every_job_ran_with_the_same_setting():
    from kanlib.analysis.summary import numerics_paragraph

    base = {
        "cpu_code_path": "avx2",
        "mkl_cbwr": "AVX2",
        "blas_core": "Haswell",
        "threads": 1,
        "torch_version": "2.13.0+cpu",
        "mkl_version": "2024.2",
        "cpu_model": "Intel Xeon",
    }
    same = pd.DataFrame([base] * 3)
    assert "3 jobs" in numerics_paragraph(same) and "Not every" not in numerics_paragraph(same)
    older = {**base, **dict.fromkeys(["cpu_code_path", "mkl_cbwr", "blas_core", "mkl_version"])}
    mixed = pd.DataFrame([base, base, {**base, "cpu_code_path": "native", "mkl_cbwr": "OFF"}, older])
    text = numerics_paragraph(mixed)
    assert "3 settings" in text and "2 jobs with cpu_code_path avx2" in text
    assert "1 job with cpu_code_path native" in text and "1 job with no record" in text
