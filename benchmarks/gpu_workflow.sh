#!/usr/bin/env bash
# GPU check of the workflow: the tiny sweep and the seed sweep with device cuda, on a machine
# whose Python lacks Snakemake/MLflow (their wheels travel in .whl/, see docs/benchmarks.md).
set -u
export PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true
log="${OUT:-/tmp}/gpu_workflow.log"
{
  if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site:$PWD && export PATH=/tmp/site/bin:$PATH
  fi
  export PYTHONPATH="${PYTHONPATH:-$PWD}"
  python3 -c "import snakemake, mlflow, torch; print('snakemake', snakemake.__version__, 'mlflow', mlflow.__version__, 'torch', torch.__version__, torch.cuda.get_device_name(0))"
  echo "== CUDA tests"
  timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -4
  echo "== tiny sweep, device cuda"
  start=$(date +%s)
  timeout 240 python3 -m snakemake --cores 4 --scheduler greedy --configfile config/test.yaml --config device=cuda \
      2>&1 | tail -5
  echo "tiny sweep wall $(( $(date +%s) - start )) s"
  cat results/*/results.csv 2>/dev/null | cut -d, -f1-14 | head -20
  echo "== seed sweep through the workflow, device cuda, 8 jobs at once"
  start=$(date +%s)
  timeout 300 python3 -m snakemake --cores 8 --scheduler greedy --config device=cuda 2>&1 | tail -3
  echo "seed sweep wall $(( $(date +%s) - start )) s"
  python3 - <<'PY'
import pandas as pd, glob
for path in sorted(glob.glob("results/*/results.csv")):
    t = pd.read_csv(path)
    print(path, len(t), "rows; devices", sorted(t["device"].unique()), "; training time", round(t["wall_time_s"].sum(), 1), "s")
    print(t.pivot_table(index="n_train", columns="grid_size", values="test_rmse").to_string(float_format="%.2e"))
PY
} 2>&1 | tee "$log"
