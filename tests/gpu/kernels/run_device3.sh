#!/bin/bash
# Final device run: every check, the issue-9 timings with the sweeps, and a few compile-time variants.
cd "$(dirname "$0")/../../.."
export PYTHONUNBUFFERED=1
D=tests/gpu/kernels
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv > "$OUT/gpu.txt" 2>&1
timeout 170 python3 $D/check_and_time.py > "$OUT/log.txt" 2>&1; echo "check_and_time rc=$?"
grep -E "^(FAIL|errors)" "$OUT/log.txt" | head; grep -c "^PASS" "$OUT/log.txt"
sed -n '/=== selective scan timings/,$p' "$OUT/log.txt"
timeout 60 python3 $D/variants_time.py --final > "$OUT/variants.txt" 2>&1; echo "variants rc=$?"
grep -E "variant|failed|Error" "$OUT/variants.txt"
