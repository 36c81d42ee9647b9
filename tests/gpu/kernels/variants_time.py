"""GPU machine: times compile-time variants of the selective scan, each checked against the float64 reference first.

    variants_time.py          a few block-size / tile / reduction variants at 8x1536x2048 N 16 (bf16, fp32)
    variants_time.py --tune   forward and backward candidates; the fastest checked forward and backward settings are
                              written together to $OUT/best.json (run_device.sh then reruns every check with them)
    variants_time.py --ncu    the launches ncu profiles (8x1536x2048 bf16); --ncu-long: the batch-1 long forward
    variants_time.py --split-sweep   the forward's paths (narrow/wide, segments) at issue 9's shapes and batch 1 to 4,
                              each checked first, next to the module's own plan; --ncu-fwd: the forward paths ncu profiles
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
    if "--ncu-fwd" in sys.argv:  # one forward per path (ncu profiles every launch of mamba_scan_fwd*)
        for n, b, ed, length, force in NCU_FWD:
            k = ScanKernels(nv, n, ed, bf16=1)
            k.force = force
            x = make_inputs(k, b, length, 1)
            k.forward(x)
        torch.cuda.synchronize()
        return
    rows = []
    if "--split-sweep" in sys.argv:
        return split_sweep(nv, rows)
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


# Forward paths (wide, segments) timed per shape (b, ED, L) at N 16.
SWEEP = {
    (8, 1536, 2048): [(False, 1), (True, 1), (True, 2), (True, 3), (True, 4), (True, 6)],
    (64, 1536, 256): [(False, 1), (True, 1), (True, 2)],
    (4, 1536, 2048): [(False, 1), (False, 2), (True, 1), (True, 2), (True, 4)],
    (2, 1536, 2048): [(False, 1), (False, 2), (False, 4), (True, 1), (True, 2), (True, 4), (True, 8)],
    (1, 1536, 2048): [(False, 1), (False, 2), (False, 4), (False, 8), (True, 1), (True, 4), (True, 8), (True, 16)],
    (1, 1536, 65536): [(False, 1), (False, 4), (False, 8), (False, 16), (True, 1), (True, 8), (True, 16), (True, 32),
                       (True, 64)],
    (1, 5120, 8192): [(False, 1), (False, 2), (False, 4), (True, 1), (True, 4), (True, 8), (True, 16)],
}
NCU_FWD = [(16, 8, 1536, 2048, (False, 1)), (16, 8, 1536, 2048, (True, 1)), (16, 1, 1536, 2048, (False, 1)),
           (16, 1, 1536, 2048, (True, 8)), (16, 1, 1536, 65536, (True, 32)), (64, 8, 1536, 2048, (True, 1))]


def split_sweep(nv, rows):
    """Forward alone, median of 20 over 3 rotated input copies, for every path in SWEEP (each path's kernels checked
    on the module first); N 64 narrow and wide at 8x1536x2048."""
    cases = [(16, shape[1], shape, forces) for shape, forces in SWEEP.items()]
    cases.append((64, 1536, (8, 1536, 2048), [(False, 1), (True, 1)]))
    modules = {}
    for bf16 in (1, 0):
        for n, ed, (b, _, length), forces in cases:
            key = (n, ed, bf16)
            if key not in modules:
                k = modules[key] = ScanKernels(nv, n, ed, bf16=bf16)
                c0 = len(cat.RESULTS["checks"])
                for force in {f for nn, e, _, fs in cases if (nn, e) == (n, ed) for f in fs}:
                    k.force = force
                    cat.check_kernel(k, 1, (600,), seed=7)
                k.checked = all(c["ok"] for c in cat.RESULTS["checks"][c0:])
            k = modules[key]
            k.force = None
            planned = k.plan(b, length)
            xs = [make_inputs(k, b, length, 100 + i) for i in range(3)]
            for force in forces:
                k.force = force
                ms = cat.median_ms(lambda i: k.forward(xs[i % 3]), 20)
                r = {"N": n, "shape": f"{b}x{ed}x{length}", "dtype": "bf16" if bf16 else "fp32",
                     "wide": force[0], "segments": force[1], "fwd_ms": ms[0], "min_max": ms[1:],
                     "planned": list(planned), "checked": k.checked}
                rows.append(r)
                print(f"sweep N={n} {r['shape']:>14s} {r['dtype']} {'wide  ' if force[0] else 'narrow'} "
                      f"segments {force[1]:3d}: {ms[0]:.4f} ms{'  (plan)' if tuple(planned) == force else ''}"
                      f"{'' if k.checked else '  CHECK FAILED'}", flush=True)
            k.force = None
            if tuple(planned) not in [tuple(f) for f in forces]:
                ms = cat.median_ms(lambda i: k.forward(xs[i % 3]), 20)
                print(f"sweep N={n} {b}x{ed}x{length} {'bf16' if bf16 else 'fp32'} plan {planned}: {ms[0]:.4f} ms",
                      flush=True)
            del xs
            torch.cuda.empty_cache()
    finish(rows)


def finish(rows):
    with open(os.path.join(cat.OUT, "variants.json"), "w") as f:
        json.dump({"rows": rows, "checks": cat.RESULTS["checks"]}, f, indent=1)
    print("failed checks:", [c["case"] for c in cat.RESULTS["checks"] if not c["ok"]])


if __name__ == "__main__":
    main()
