#!/bin/bash
# Second device run: checks + main timings (quick), compile-time variants, and an ncu profile of the default scan.
cd "$(dirname "$0")/../../.."
export PYTHONUNBUFFERED=1
D=tests/gpu/kernels
timeout 90 python3 $D/check_and_time.py --quick > "$OUT/log.txt" 2>&1; echo "check_and_time rc=$?"
grep -E "^(FAIL|scan |errors)" "$OUT/log.txt" | head -40
timeout 120 python3 $D/variants_time.py > "$OUT/variants.txt" 2>&1; echo "variants rc=$?"
grep -E "variant|failed|FAIL|Error" "$OUT/variants.txt" | head -60
timeout 90 ncu --clock-control none --kernel-name regex:mamba_scan --launch-skip 4 --launch-count 2 \
  --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats --section LaunchStats \
  --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
  python3 $D/variants_time.py --ncu > "$OUT/ncu.txt" 2>&1; echo "ncu rc=$?"
grep -E "mamba_scan_|Duration|Throughput|Achieved Occupancy|Theoretical Occupancy|Stall|Issued Warp|No Eligible|Registers|Block Limit|Warp Cycles Per Issued" "$OUT/ncu.txt" | head -80
