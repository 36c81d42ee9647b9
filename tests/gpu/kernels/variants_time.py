"""GPU machine: times compile-time variants of the selective scan (block size, tile, reduction path) at a few
issue-9 shapes, each checked against the float64 reference first. Prints one line per variant and writes
variants.json under $OUT. Also the target of the ncu run (--ncu: one shape, few launches)."""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_and_time as cat  # noqa: E402
from nvrtc import Nvrtc  # noqa: E402
from scan import ScanKernels, make_inputs  # noqa: E402


def main():
    nv = Nvrtc()
    cat.RESULTS_FILE = "variants_progress.json"
    if "--ncu" in sys.argv:  # 4 warm-up pairs, then the pair ncu profiles (--launch-skip 4 --launch-count 2)
        k = ScanKernels(nv, 16, 1536, bf16=1)
        x = make_inputs(k, 8, 2048, 1)
        dout = torch.randn(8, 1536, 2048, device="cuda").to(k.dtype)
        for _ in range(5):
            y, st = k.forward(x)
            k.backward(x, st, dout)
        torch.cuda.synchronize()
        return
    if "--ncu-long" in sys.argv:  # the batch-1 long sequence, forward in bf16 then fp32 (profile the 2nd of each)
        for bf16 in (1, 0):
            k = ScanKernels(nv, 16, 1536, bf16=bf16)
            x = make_inputs(k, 1, 65536, 1)
            for _ in range(2):
                k.forward(x)
        torch.cuda.synchronize()
        return
    rows = []
    variants = [{}, {"MAMBA_SCAN_SHUFFLE_REDUCE": 0}, {"MAMBA_SCAN_THREADS": 128}, {"MAMBA_SCAN_TILE": 16},
                {"MAMBA_SCAN_THREADS": 32}, {"MAMBA_SCAN_BWD_THREADS": 64}, {"MAMBA_SCAN_BWD_THREADS": 256},
                {"MAMBA_SCAN_TILE": 16, "MAMBA_SCAN_THREADS": 128}]
    if "--final" in sys.argv:
        variants = [{}, {"MAMBA_SCAN_BWD_THREADS": 256}, {"MAMBA_SCAN_BWD_THREADS": 256, "MAMBA_SCAN_CHUNK_TILES": 4},
                    {"MAMBA_SCAN_CHUNK_TILES": 4}, {"MAMBA_SCAN_BWD_THREADS": 512, "MAMBA_SCAN_CHUNK_TILES": 4},
                    {"MAMBA_SCAN_BWD_TILE": 8}]
    for bf16 in (1, 0):
        if "--final" in sys.argv and not bf16:
            break
        for extra in (variants if bf16 else variants[:2]):
            k = ScanKernels(nv, 16, 1536, bf16=bf16, extra=extra)
            long_too = "--final" not in sys.argv and bf16 and extra in ({}, {"MAMBA_SCAN_THREADS": 32}, {"MAMBA_SCAN_THREADS": 128})
            for b, length in ((8, 2048), (1, 65536)) if long_too else ((8, 2048),):
                n0 = len(cat.RESULTS["timings"])
                cat.time_scan(k, b, length, cat.OFFICIAL[(b, 1536, length)], copies=3, iters=20, what="variant")
                r = cat.RESULTS["timings"][n0]
                r["extra"] = extra
                r["regs"] = [ln for ln in k.log.splitlines() if "registers" in ln or "spill" in ln]
                rows.append(r)
                print("   ", extra, r["regs"], flush=True)
    with open(os.path.join(cat.OUT, "variants.json"), "w") as f:
        json.dump({"rows": rows, "checks": cat.RESULTS["checks"]}, f, indent=1)
    print("failed checks:", [c["case"] for c in cat.RESULTS["checks"] if not c["ok"]])


if __name__ == "__main__":
    main()
