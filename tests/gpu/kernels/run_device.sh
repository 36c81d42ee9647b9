#!/bin/bash
# One device run: every check, the issue-9 timings with the sweeps, a few compile-time variants; with --ncu also an
# Nsight Compute profile of the default scan (8x1536x2048 bf16). Logs go to $OUT.
cd "$(dirname "$0")/../../.."
export PYTHONUNBUFFERED=1
OUT=${OUT:-out}; mkdir -p "$OUT"
D=tests/gpu/kernels
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv > "$OUT/gpu.txt" 2>&1
timeout 170 python3 $D/check_and_time.py > "$OUT/log.txt" 2>&1; echo "check_and_time rc=$?"
grep -E "^(FAIL|errors)" "$OUT/log.txt" | head; grep -c "^PASS" "$OUT/log.txt"
sed -n '/=== selective scan timings/,$p' "$OUT/log.txt"
timeout 60 python3 $D/variants_time.py --final > "$OUT/variants.txt" 2>&1; echo "variants rc=$?"
grep -E "variant|failed|Error" "$OUT/variants.txt"
if [ "$1" = "--ncu" ]; then
  timeout 90 ncu --clock-control none --kernel-name regex:mamba_scan --launch-skip 4 --launch-count 2 \
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats \
    --section LaunchStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    python3 $D/variants_time.py --ncu > "$OUT/ncu.txt" 2>&1; echo "ncu rc=$?"
fi
