#!/usr/bin/env bash
# The GPU checks, as one script for a machine with an NVIDIA GPU (run from the repo root).
# Prints: the CUDA tests, forward+backward cost vs G on GPU and CPU, per-fit time
# CPU vs GPU across G and N, and the seed sweep on the GPU. Output is tee'd to
# ${OUT:-/tmp}/gpu_check.log.
set -u
export PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
log="${OUT:-/tmp}/gpu_check.log"
PY=${PYTHON:-python3}
{
  echo "== machine"; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  echo "== CUDA tests and the numerical tests"
  timeout 240 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_bspline.py tests/test_lstsq.py \
      tests/test_model.py tests/test_checkpoint.py tests/test_optim.py 2>&1 | tail -8
  echo "== forward+backward vs G, N=3000 (GPU, then CPU with all cores)"
  timeout 120 $PY benchmarks/grid_scaling.py --device cuda --no-pykan
  timeout 120 $PY benchmarks/grid_scaling.py --device cpu --no-pykan --threads "$(nproc)"
  echo "== per-fit time, CPU (all cores) vs GPU"
  timeout 420 $PY benchmarks/device_fits.py --threads "$(nproc)"
  echo "== seed sweep on the GPU"
  timeout 200 $PY benchmarks/seed_sweep.py --device cuda --no-pykan
} 2>&1 | tee "$log"
