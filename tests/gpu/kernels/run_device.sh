#!/bin/bash
# One device run: tuning candidates (each checked), then every check and the issue-9 timings with the sweeps under
# the chosen setting, the forward paths (narrow/wide, segments along L) side by side, compute-sanitizer (memcheck,
# racecheck) over the scan kernels, and an Nsight Compute profile of the scan at 8x1536x2048 bf16. Logs go to $OUT.
# Pass --all-sanitize to run the sanitizer over every template.
cd "$(dirname "$0")/../../.."
export PYTHONUNBUFFERED=1
OUT=${OUT:-out}; mkdir -p "$OUT"; export OUT
D=tests/gpu/kernels
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv > "$OUT/gpu.txt" 2>&1
timeout 80 python3 $D/variants_time.py --tune > "$OUT/tune.txt" 2>&1; echo "tune rc=$?"
grep -E "^variant|best|FAIL|failed|Error" "$OUT/tune.txt"
export MAMBA_SCAN_DEFINES=$(cat "$OUT/best.json" 2>/dev/null || echo '{}')
echo "MAMBA_SCAN_DEFINES=$MAMBA_SCAN_DEFINES"
timeout 110 python3 $D/check_and_time.py > "$OUT/log.txt" 2>&1; echo "check_and_time rc=$?"
grep -E "^(FAIL|errors)" "$OUT/log.txt" | head; grep -c "^PASS" "$OUT/log.txt"
sed -n '/=== selective scan timings/,$p' "$OUT/log.txt"
timeout 75 python3 $D/variants_time.py --split-sweep > "$OUT/split-sweep.txt" 2>&1; echo "split sweep rc=$?"
grep -E "^sweep|FAIL" "$OUT/split-sweep.txt"
ALL=; [ "$1" = "--all-sanitize" ] && ALL=all
for tool in memcheck racecheck; do
  timeout 60 compute-sanitizer --tool $tool --kernel-name kns=mamba --error-exitcode 9 \
    python3 $D/sanitize.py $ALL > "$OUT/$tool.txt" 2>&1; echo "$tool rc=$?"; tail -1 "$OUT/$tool.txt"
done
timeout 40 ncu --clock-control none --kernel-name regex:mamba_scan --launch-skip 4 --launch-count 2 \
  --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats \
  --section LaunchStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section InstructionStats \
  python3 $D/variants_time.py --ncu > "$OUT/ncu.txt" 2>&1; echo "ncu rc=$?"
