#!/usr/bin/env bash
# The GPU checks of issue 27 as one script for a machine with one NVIDIA GPU, run from the repo root.
# Completes within --budget seconds (default 345: under 6 minutes), every part under a `timeout`, and
# prints everything to one log, $OUT/gpu_check.log when OUT is set (the device tool's folder), else
# ${TMPDIR:-/tmp}/gpu_check.log, or --log PATH:
#   machine     nvidia-smi, cores, memory, Python, torch and CUDA versions, the C kernels
#   packages    the versions found; missing ones installed from the wheel folder (--wheels, default .whl/,
#               made beforehand by benchmarks/gpu_prepare.sh: the GPU machine reaches no package index)
#   CUDA tests  tests/core/test_cuda.py
#   evaluation  time per L-BFGS evaluation, KAN stacks S = 1, 4, 16, 64 at N = 1000 and 10,000, GPU and CPU
#   full fit    the seed chain's first level at S = 1 and 16, GPU and CPU; where an evaluation's time goes
#   MLP shapes  the three Fig. 3.1 MLP shapes never run, 3 seeds each as one MLPStack, the paper's budget,
#               in parallel on the GPU until the budget's end (mlp_fig3_1.csv beside the log)
#   goals       the issue's goals, each PASS / FAIL / not measured with its numbers
# The numbers come from benchmarks/gpu_stacks.py (its docstring says what each one measures).
#
#   bash benchmarks/gpu_check.sh                    # on the GPU machine (see docs/benchmarks.md for the call)
#   bash benchmarks/gpu_check.sh --device cpu       # the dry run: tiny sizes on the CPU (tests/core/test_gpu_check.py)
#   bash benchmarks/gpu_check.sh --parts mlp --budget 540   # only the MLP shapes, with 9 minutes
set -u
device=cuda
parts=machine,packages,tests,evals,fit,mlp,goals
wheels=.whl
budget=345
log=""
usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --parts) parts=machine,packages,$2,goals; shift 2 ;;
    --wheels) wheels=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --log) log=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
start=$(date +%s)
deadline=$((start + budget))
out=${OUT:-${TMPDIR:-/tmp}}
log=${log:-$out/gpu_check.log}
mkdir -p "$(dirname "$log")"
results=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "$device" = cpu ]; then  # the dry run: every part at tiny sizes
  evals_args=(--stacks 1 4 --sizes 200)
  fit_args=(--stack 4 --n 200 --n-test 200 --steps 5)
  mlp_args=(--steps 3 --n-train 200 --n-test 200 --threads-per-job 1)
else
  evals_args=(--stacks 1 4 16 64 --sizes 1000 10000)
  fit_args=(--stack 16 --n 1000)
  mlp_args=(--threads-per-job 4)
fi

wants() { case ",$parts," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
elapsed() { echo $(($(date +%s) - start)); }
section() { echo; echo "== $1 (at $(elapsed) s)"; }
# run_part SECONDS COMMAND...: the command under `timeout`, its failure said in the log
run_part() {
  local limit=$1
  shift
  if [ "$limit" -lt 5 ]; then echo "!! skipped: the budget is spent"; return 0; fi
  timeout -k 10 "$limit" "$@"
  local rc=$?
  if [ $rc = 124 ] || [ $rc = 137 ]; then
    echo "!! timed out after $limit s: $*"
  elif [ $rc != 0 ]; then
    echo "!! exit code $rc: $*"
  fi
  return 0
}
# the part's own limit, or what is left of the budget before the parts after it (whichever is less)
limit() { local left=$((deadline - $(date +%s) - $2)); echo $(($1 < left ? $1 : left)); }

PACKAGES="torch numpy scipy pandas pyarrow matplotlib seaborn tabulate tqdm pyyaml jsonschema snakemake mlflow pytest"
IMPORTS="import numpy, scipy, pandas, pyarrow, matplotlib, seaborn, tabulate, tqdm, yaml, jsonschema, snakemake, mlflow, pytest"

install_wheels() {
  # 1: pip's resolver in this Python's own environment: what is there and fits stays, the rest comes
  #    from the wheel folder (no index is reachable), then Snakemake without its pulp (not carried);
  # 2, if that fails (an image package outside a carried package's bounds, say): every carried wheel,
  #    without dependencies, into a folder put first on PYTHONPATH (the device tool's README way)
  echo "installing from $wheels/ ($(ls "$wheels"/*.whl | wc -l) wheels, $(du -sh "$wheels" | cut -f1))"
  local pip=($PY -m pip install --no-index --no-cache-dir --no-compile --disable-pip-version-check --root-user-action=ignore)
  if "${pip[@]}" --find-links "$wheels" -r "$wheels/requirements.txt" >"$results/pip.log" 2>&1 &&
    "${pip[@]}" --no-deps "$wheels"/snakemake-[0-9]*.whl >>"$results/pip.log" 2>&1; then
    grep -E "^Successfully installed" "$results/pip.log" || echo "(nothing to install)"
  else
    grep -E "ERROR|conflict is caused|requires|depends on" "$results/pip.log" | head -8
    echo "pip's resolver failed; installing every wheel with --no-deps into /tmp/kanlib-site"
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/kanlib-site \
      "$wheels"/*.whl 2>&1 | tail -3
    export PYTHONPATH="/tmp/kanlib-site:$PYTHONPATH" PATH="/tmp/kanlib-site/bin:$PATH"
  fi
  $PY -m pip check 2>&1 | grep -iE "snakemake|mlflow|jsonschema|pandas|numpy|torch|protobuf|packaging" | head -8
}

{
  echo "gpu_check.sh --device $device, parts $parts, budget $budget s, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  if wants machine; then
    section machine
    if command -v nvidia-smi >/dev/null; then
      nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.max.sm,power.limit --format=csv
    else
      echo "no nvidia-smi"
    fi
    echo "cores: $(nproc); memory: $(free -g 2>/dev/null | awk '/^Mem:/ {print $2 " GiB, " $7 " GiB available"}')"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //')"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo 'no git here')"
    run_part 60 $PY - <<'PY'
import platform, sys, torch
print(f"python {platform.python_version()} at {sys.executable}")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
      f"CUDA available: {torch.cuda.is_available()}, torch threads {torch.get_num_threads()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU 0: {p.name}, {p.total_memory / 2**30:.1f} GiB, {p.multi_processor_count} SMs, "
          f"capability {p.major}.{p.minor}, free {torch.cuda.mem_get_info()[0] / 2**30:.1f} GiB")
import kanlib
from kanlib import cpu_kernels
print(f"kanlib {kanlib.__version__}; CPU kernels: {cpu_kernels.status()} (built now, outside the timings)")
PY
  fi

  if wants packages; then
    section packages
    if ! $PY -c "$IMPORTS" 2>/dev/null; then
      echo "missing: $($PY -c "
import importlib.util as u
print(' '.join(n for n in '$IMPORTS'.replace('import ', '').split(', ') if u.find_spec(n) is None))")"
      if [ -f "$wheels/requirements.txt" ]; then
        install_wheels
      else
        echo "!! no wheel folder $wheels/ (make it with: bash benchmarks/gpu_prepare.sh, then carry it)"
      fi
    fi
    $PY - "$PACKAGES" <<'PY'
import importlib.metadata as md, sys
found = []
for name in sys.argv[1].split():
    try:
        found.append(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        found.append(f"{name} MISSING")
print("versions: " + ", ".join(found))
PY
  fi

  if wants tests; then
    section "CUDA tests (tests/core/test_cuda.py)"
    run_part "$(limit 110 30)" $PY -m pytest -q -rA -p no:cacheprovider --durations=5 tests/core/test_cuda.py
  fi

  if wants evals; then
    section "evaluation time (benchmarks/gpu_stacks.py evals)"
    run_part "$(limit 45 30)" $PY benchmarks/gpu_stacks.py evals --device "$device" --results "$results" "${evals_args[@]}"
  fi

  if wants fit; then
    section "full fit (benchmarks/gpu_stacks.py fit)"
    run_part "$(limit 50 30)" $PY benchmarks/gpu_stacks.py fit --device "$device" --results "$results" "${fit_args[@]}"
  fi

  if wants mlp; then
    section "Fig. 3.1 MLP shapes (benchmarks/gpu_stacks.py mlp)"
    stop=$((deadline - 15))  # the shapes stop here, with what they reached; the goals and the end after
    run_part "$(limit 100000 5)" $PY benchmarks/gpu_stacks.py mlp --device "$device" --results "$results" \
      --deadline "$stop" "${mlp_args[@]}"
    if [ -n "${OUT:-}" ] && [ -f "$results/mlp_fig3_1.csv" ]; then cp "$results/mlp_fig3_1.csv" "$OUT/"; fi
  fi

  if wants goals; then
    section "goals (issue 27)"
    run_part 20 $PY benchmarks/gpu_stacks.py goals --results "$results"
  fi
  echo
  echo "gpu_check done in $(elapsed) s (budget $budget s); log $log; numbers in $results"
} 2>&1 | tee "$log"
