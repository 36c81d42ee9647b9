"""GPU machine: times compile-time variants of the selective scan, each checked against the float64 reference first.

    variants_time.py          a few block-size / tile / reduction variants at 8x1536x2048 N 16 (bf16, fp32)
    variants_time.py --tune   forward and backward candidates; the fastest checked forward and backward settings are
                              written together to $OUT/best.json (run_device.sh then reruns every check with them)
    variants_time.py --ncu    the launches ncu profiles (8x1536x2048 bf16); --ncu-long: the batch-1 long forward
Prints one line per variant and writes variants.json under $OUT."""
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
    if "--tune" in sys.argv:
        return tune(nv, rows)
    variants = [{}, {"MAMBA_SCAN_SHUFFLE_REDUCE": 0}, {"MAMBA_SCAN_THREADS": 128}, {"MAMBA_SCAN_TILE": 16},
                {"MAMBA_SCAN_THREADS": 32}, {"MAMBA_SCAN_BWD_THREADS": 64}, {"MAMBA_SCAN_BWD_THREADS": 256},
                {"MAMBA_SCAN_TILE": 16, "MAMBA_SCAN_THREADS": 128}]
    for bf16 in (1, 0):
        for extra in (variants if bf16 else variants[:2]):
            k = ScanKernels(nv, 16, 1536, bf16=bf16, extra=extra)
            for b, length in ((8, 2048), (1, 65536)) if bf16 and extra == {} else ((8, 2048),):
                time_variant(k, b, length, extra, rows)
    finish(rows)


def time_variant(k, b, length, extra, rows):
    n0, c0 = len(cat.RESULTS["timings"]), len(cat.RESULTS["checks"])
    cat.time_scan(k, b, length, cat.OFFICIAL[(b, 1536, length)], copies=3, iters=20, what="variant")
    r = cat.RESULTS["timings"][n0]
    r["extra"] = extra
    r["checked"] = all(c["ok"] for c in cat.RESULTS["checks"][c0:])
    r["regs"] = [ln for ln in k.log.splitlines() if "registers" in ln or "spill" in ln]
    rows.append(r)
    print("   ", extra, "checked" if r["checked"] else "CHECK FAILED", r["regs"], flush=True)
    return r


def tune(nv, rows):
    """Times forward and backward candidates at 8x1536x2048 N 16 bf16 (each checked first), writes the fastest
    checked forward and backward settings together to best.json, and times the tile-32 forward at the batch-1
    long sequence next to the default."""
    fwd = [{}, {"MAMBA_SCAN_FWD_STATES": 2}, {"MAMBA_SCAN_FWD_STATES": 4}]
    bwd = [{"MAMBA_SCAN_BWD_STATES": 2, "MAMBA_SCAN_BWD_TILE": 8, "MAMBA_SCAN_CHUNK_TILES": 4},
           {"MAMBA_SCAN_BWD_STATES": 2, "MAMBA_SCAN_BWD_TILE": 16, "MAMBA_SCAN_CHUNK_TILES": 4},
           {"MAMBA_SCAN_BWD_STATES": 4, "MAMBA_SCAN_BWD_TILE": 4, "MAMBA_SCAN_CHUNK_TILES": 2},
           {"MAMBA_SCAN_BWD_THREADS": 128}]
    timed = [(extra, time_variant(ScanKernels(nv, 16, 1536, bf16=1, extra=extra), 8, 2048, extra, rows))
             for extra in fwd + bwd]
    ok = [(e, r) for e, r in timed if r["checked"]]
    best_fwd = min(((e, r) for e, r in ok if e in fwd), key=lambda er: er[1]["fwd_ms"])[0]
    best_bwd = min(((e, r) for e, r in ok if e in bwd or e == {}), key=lambda er: er[1]["bwd_ms"])[0]
    best = {**best_fwd, **best_bwd}
    print("best forward", best_fwd, "best backward", best_bwd, flush=True)
    with open(os.path.join(cat.OUT, "best.json"), "w") as f:
        json.dump(best, f)
    for extra in ({}, {"MAMBA_SCAN_TILE": 32}):
        time_variant(ScanKernels(nv, 16, 1536, bf16=1, extra=extra), 1, 65536, extra, rows)
    finish(rows)


def finish(rows):
    with open(os.path.join(cat.OUT, "variants.json"), "w") as f:
        json.dump({"rows": rows, "checks": cat.RESULTS["checks"]}, f, indent=1)
    print("failed checks:", [c["case"] for c in cat.RESULTS["checks"] if not c["ok"]])


if __name__ == "__main__":
    main()
