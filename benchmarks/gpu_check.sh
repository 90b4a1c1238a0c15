#!/usr/bin/env bash
# The GPU check (issue 13): one prepared script, under 8 minutes on one GPU, that installs nothing from the network.
#   1. the engine tests on cuda (Config's device "auto" resolves to cuda there): hypergradient against numerical
#      derivatives, causality, fast path against plain;
#   2. benchmarks/throughput.py --device cuda for every method, with the step's phases timed (--profile);
#   3. an AutoEmb pass over a 5M-interaction prefix of synthetic-ml20m on cuda.
# Each part has its own time limit, so a hang in one still leaves the others' figures. Everything goes to $OUT
# (default results/gpu_check). Wheels prepared beforehand in ./wheels are installed with --no-index if present.
# Not yet run: no GPU machine has been lent to this project.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-results/gpu_check}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" AUTOEMB_CACHE_DIR="${AUTOEMB_CACHE_DIR:-$OUT/cache}"
if [ -d wheels ]; then
  "$PY" -m pip install --no-index --find-links wheels --quiet wheels/*.whl 2>&1 | tail -3
fi
"$PY" - <<'PYEOF' 2>&1 | tee "$OUT/machine.txt"
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO CUDA DEVICE")
PYEOF
echo "== engine tests on cuda"
timeout 150 "$PY" -m pytest -q -x -p no:cacheprovider tests/test_engine.py \
  -k "hypergradient or causal or fast_path or naive" 2>&1 | tail -20 | tee "$OUT/engine_tests.txt"
echo "== throughput on cuda"
timeout 140 "$PY" benchmarks/throughput.py --device cuda --methods fse sam darts autoemb --rows 10000 1000000 \
  --variants fast plain --steps 60 --profile 2>&1 | tail -40 | tee "$OUT/throughput.txt"
echo "== AutoEmb over 5M interactions of synthetic-ml20m on cuda"
timeout 170 "$PY" -m autoemb_core run --dataset synthetic-ml20m --method autoemb --max-interactions 5000000 \
  --device cuda --no-progress --results-dir "$OUT/runs" 2>&1 | tail -12 | tee "$OUT/autoemb_5m.txt"
echo "== done; figures in $OUT"
