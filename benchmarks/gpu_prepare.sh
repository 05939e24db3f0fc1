#!/usr/bin/env bash
# The wheel folder that benchmarks/gpu_check.sh installs from on the GPU machine, which reaches no
# package index: run here (with the project's .venv set up), then carry the folder with the device tool.
#
#   bash benchmarks/gpu_prepare.sh [FOLDER]       # default .whl (ignored by git: never commit the wheels)
#
# What goes in: the dependency closure of the packages the GPU run imports (Snakemake and MLflow for the
# workflow test, pytest, the project's numerical and table libraries), at the versions this .venv runs,
# as wheels for the GPU machine's Python (--python-version, default 3.12; x86-64 manylinux); a package
# published only as a source archive is built into a wheel here (pure Python). Left out, to stay well
# under the device tool's 64 MiB: torch and its CUDA libraries (the GPU machine has its own CUDA torch;
# ours is the CPU build), the large packages the GPU image already has (numpy, scipy, pandas, pyarrow,
# matplotlib and its font/image libraries, scikit-learn; the image's list is in the device tool's notes),
# and pulp (16 MB; the CUDA tests run Snakemake with --scheduler greedy). requirements.txt in the folder
# names what gpu_check.sh asks pip's resolver for.
set -euo pipefail
folder=${1:-.whl}
python_version=${PYTHON_VERSION:-3.12}
VENV_PY=${VENV_PY:-.venv/bin/python}
ROOTS="snakemake mlflow jsonschema pyyaml tqdm tabulate pandas numpy scipy pyarrow matplotlib seaborn pytest"
# on the GPU image already, and large (or torch's own): not carried
SKIP='^(torch|triton|nvidia-.*|numpy|scipy|pandas|pyarrow|matplotlib|pillow|fonttools|kiwisolver|contourpy|scikit-learn|pulp|sympy|networkx)$'
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
abi=cp${python_version/./}

[ -x "$VENV_PY" ] || { echo "no $VENV_PY: run make setup first" >&2; exit 1; }
mkdir -p "$folder"
rm -f "$folder"/*.whl
pins=$(mktemp)
# the closure, from the installed packages' own metadata (markers read for the GPU machine's Python)
$VENV_PY - "$python_version" $ROOTS >"$pins" <<'PY'
import importlib.metadata as md
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

version, roots = sys.argv[1], sys.argv[2:]
environment = {"python_version": version, "python_full_version": f"{version}.0", "sys_platform": "linux",
               "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
               "implementation_name": "cpython", "platform_python_implementation": "CPython"}
installed = {canonicalize_name(d.metadata["Name"]): d for d in md.distributions()}
seen, todo = set(), [(name, "") for name in roots]
while todo:
    name, extra = todo.pop()
    key = (canonicalize_name(name), extra)
    if key in seen:
        continue
    seen.add(key)
    dist = installed.get(key[0])
    if dist is None:
        sys.exit(f"{name} is not installed in this .venv")
    for text in dist.requires or []:
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate({**environment, "extra": extra}):
            continue
        todo.append((requirement.name, ""))
        todo.extend((requirement.name, wanted) for wanted in requirement.extras)
for name in sorted({name for name, _ in seen}):
    print(f"{name}=={installed[name].version}")
PY
built=()
while IFS= read -r pin; do
  name=${pin%%==*}
  if [[ $name =~ $SKIP ]]; then continue; fi
  # shellcheck disable=SC2086
  if ! $VENV_PY -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" \
    --implementation cp --abi "$abi" $PLATFORMS -d "$folder" "$pin" 2>/dev/null; then
    $VENV_PY -m pip wheel -q --no-deps -w "$folder" "$pin" 2>/dev/null  # a source archive: build it here
    built+=("$pin")
  fi
done <"$pins"
rm -f "$pins"
# what gpu_check.sh asks pip's resolver for (the image's own packages satisfy the unpinned ones): Snakemake's
# own requirements but pulp, MLflow at our version, the project's libraries; Snakemake itself then goes in
# with --no-deps (its one missing requirement, pulp, is not carried)
$VENV_PY - "$python_version" >"$folder/requirements.txt" <<'PY'
import importlib.metadata as md
import sys

from packaging.requirements import Requirement

version = sys.argv[1]
environment = {"python_version": version, "python_full_version": f"{version}.0", "sys_platform": "linux",
               "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
               "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
print(f"# made by benchmarks/gpu_prepare.sh; snakemake=={md.version('snakemake')} is installed after these with --no-deps")
for text in md.requires("snakemake") or []:
    requirement = Requirement(text)
    if requirement.name.lower() != "pulp" and (not requirement.marker or requirement.marker.evaluate(environment)):
        print(f"{requirement.name}{requirement.specifier}  # snakemake's")
print(f"mlflow=={md.version('mlflow')}")
for line in ("jsonschema>=4.20", "pyyaml>=6", "tqdm>=4.66", "tabulate>=0.9", "pandas>=2.1", "numpy>=1.26",
             "scipy>=1.11", "pyarrow>=14", "matplotlib>=3.8", "seaborn>=0.13", "pytest>=8"):
    print(line)
PY
size=$(du -sm "$folder" | cut -f1)
echo "$folder: $(ls "$folder"/*.whl | wc -l) wheels, ${size} MiB, for CPython $python_version${built:+ (built here: ${built[*]})}"
ls -S -s "$folder" | sed -n '2,6p'
if [ "$size" -gt 56 ]; then
  echo "!! $folder is over 56 MiB: with the repository it may not fit the device tool's 64 MiB" >&2
  exit 1
fi
cat <<EOF
Carry it with the device tool, e.g.:
  run(command="bash benchmarks/gpu_check.sh", carry=["$folder"], timeout_s=420)
gpu_check.sh installs from ./$folder when the GPU machine's Python lacks a package (--wheels to name another folder).
EOF
