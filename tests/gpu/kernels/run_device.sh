#!/bin/bash
# Run on the GPU machine from the repo root of a copy that carries .device/kernels (templates + this folder).
set -o pipefail
cd "$(dirname "$0")/../../.."
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv | tee "$OUT/gpu.txt"
PYTHONUNBUFFERED=1 timeout "${KERNELS_TIMEOUT:-360}" python3 tests/gpu/kernels/check_and_time.py "$@" 2>&1 | tee "$OUT/log.txt"
