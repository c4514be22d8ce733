#!/bin/bash
# Device side, the last call of bench/gpu/README.md's sequence: stash the last part, set up,
# run issue 10 (stack vs bare vLLM), leave everything under $OUT.
set -u
cd "$(dirname "$0")/../.."
: "${OUT:=/tmp/issue10-out}"; mkdir -p "$OUT"
bash bench/gpu/stash.sh
bash bench/gpu/setup.sh 2>&1 | tee "$OUT/setup.log"
[ "${PIPESTATUS[0]}" = 0 ] || exit 1
export PYTHONPATH="$PWD:/tmp/site"
export VLLM_USE_FLASHINFER_SAMPLER=0 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 \
       TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0
export VLLM_CACHE_ROOT=/root/vllm-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import vllm, ray, torch; print('vllm', vllm.__version__, 'ray', ray.__version__, 'torch', torch.__version__)"
timeout -k 10 "${ISSUE10_TIMEOUT_S:-530}" python3 bench/gpu/issue10.py --out "$OUT" "$@" 2>&1 | tee "$OUT/issue10.log" | grep -v "^INFO\|^(\|Namespace(" | tail -c 9000
echo "=== summary"; grep -h "bench r\|ready\|status:" "$OUT/issue10.log" | tail -20
