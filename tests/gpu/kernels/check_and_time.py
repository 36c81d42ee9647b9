"""GPU machine: checks every template's kernels against plain PyTorch references, checks the backward is
bit-deterministic, then times them at issue 9's shapes. Writes results.json (and prints a table) under $OUT or ./out.

    python3 tests/gpu/kernels/check_and_time.py [--quick]
"""
import json
import os
import sys
import time
import traceback

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nvrtc import Nvrtc  # noqa: E402
from scan import ScanKernels, make_inputs, reference  # noqa: E402
import others  # noqa: E402

OUT = os.environ.get("OUT", "out")
os.makedirs(OUT, exist_ok=True)
RESULTS_FILE = "results.json"   # variants_time.py writes its own file
RESULTS = {"device": None, "date": "2026-11-29", "checks": [], "timings": []}
HBM = 4.2e12        # bytes/s, device-to-device copy bandwidth measured on this H200
EXP = 4.2e12        # exp/s, the H200's MUFU rate
TOL = {False: (6e-4, 2e-3), True: (3e-2, 5e-2)}   # (rtol, atol) fp32 / bf16
OFFICIAL = {  # the official mamba_ssm kernel on this H200, ms: (fp32 fwd, fp32 bwd, bf16 fwd, bf16 bwd)
    (8, 1536, 2048): (0.903, 2.155, 0.464, 1.844),
    (1, 5120, 8192): (1.643, 3.593, 0.919, 3.372),
    (64, 1536, 256): (0.718, 2.365, 0.452, 2.229),
    (1, 1536, 65536): (3.919, 8.742, 2.201, 7.746),
}
OFFICIAL_N = {8: (0.53, None, 0.29, None), 32: (1.64, None, 0.82, None), 64: (3.11, None, 1.52, None)}
OFFICIAL_CONSTBC = (0.36, 0.98, 0.32, 0.87)


def save():
    with open(os.path.join(OUT, RESULTS_FILE), "w") as f:
        json.dump(RESULTS, f, indent=1)


def compare(name, got, ref, bf16):
    rtol, atol = TOL[bf16]
    got = got.double()
    ref = ref.double()
    err = (got - ref).abs()
    bad = (err > atol + rtol * ref.abs()) | ~torch.isfinite(got)
    rel = (err.norm() / ref.norm().clamp_min(1e-30)).item()
    return {"name": name, "ok": not bool(bad.any()), "max_abs": err.max().item(), "rel_norm": rel,
            "bad": int(bad.sum())}


# Forward paths a check runs besides the plan's own choice: (wide, segments); the backward runs on each one's
# chunk states. A segment count whose segments would be shorter than two chunks gives fewer, longer segments.
SPLITS = ((True, 1), (False, 3), (True, 3))


def check_scan(nv, n, ed, b, lengths, bf16=0, sel=(1, 1, 1), has_z=1, seed=0, forces=(None,) + SPLITS):
    k = ScanKernels(nv, n, ed, *sel, has_z=has_z, bf16=bf16)
    for force in forces:
        k.force = force
        check_kernel(k, b, lengths, seed)
    k.force = None
    return k


def check_kernel(k, b, lengths, seed=0):
    """Forward, last state and every gradient against the float64 reference; the backward run twice must agree
    bit for bit."""
    n, ed, bf16, has_z = k.n, k.ed, k.bf16, k.has_z
    sel = (k.sel_delta, k.sel_b, k.sel_c)
    label = f"scan N={n} ED={ed} b={b} sel(d,B,C)={sel} z={has_z} {'bf16' if bf16 else 'fp32'}"
    for length in lengths:
        wide, segments = k.plan(b, length)
        x = make_inputs(k, b, length, seed + length)
        dout = torch.randn(b, ed, length, device="cuda").to(k.dtype)
        y, states = k.forward(x)
        yr, hr, gr, sr = reference(k, x, dout, chunk=k.chunk)
        parts = [compare("y", y, yr, bf16), compare("last_state", states[:, :, -1, :], hr, bf16),
                 compare("chunk_states", states, sr, bf16)]
        g1 = k.backward(x, states, dout)
        g2 = k.backward(x, states, dout)
        torch.cuda.synchronize()
        for nm in ["u", "dt", "z", "A", "B", "C", "D", "dt_bias"]:
            if g1.get(nm) is None or gr[nm] is None:
                continue
            ref = gr[nm]
            parts.append(compare("d" + nm, g1[nm], ref.reshape(g1[nm].shape), bf16))
        det = all(torch.equal(g1[nm], g2[nm]) for nm in g1 if g1[nm] is not None)
        ok = all(p["ok"] for p in parts) and det
        case = f"{label} L={length} fwd {'wide' if wide else 'narrow'} segments {segments}"
        entry = {"kernel": "selective_scan", "case": case, "ok": ok, "deterministic": det, "parts": parts}
        RESULTS["checks"].append(entry)
        worst = max(parts, key=lambda p: p["rel_norm"])
        print(f"{'PASS' if ok else 'FAIL'} {case} det={det} worst rel {worst['name']} "
              f"{worst['rel_norm']:.2e}" + ("" if ok else " " + str([p for p in parts if not p["ok"]])), flush=True)
    return k


def median_ms(fn, iters):
    """others.gpu_ms without holding the GPU busy: the scan's timings as they were always taken."""
    return others.gpu_ms(fn, iters, hold_busy=False)


def time_scan(k, b, length, official, copies=3, iters=30, what="scan"):
    if not getattr(k, "verified", False):  # the exact compiled kernels that are timed are checked first
        for force in (None,) + SPLITS:
            k.force = force
            check_kernel(k, 1, (600,), seed=7)
        k.force = None
        k.verified = True
        RESULTS.setdefault("ptxas", {})[str(k.defines)] = [ln for ln in k.log.splitlines() if "ptxas" in ln or
                                                            "registers" in ln or "spill" in ln]
    s = 2 if k.bf16 else 4
    elems = b * k.ed * length
    xs = [make_inputs(k, b, length, 100 + i) for i in range(copies)]
    douts = [torch.randn(b, k.ed, length, device="cuda").to(k.dtype) for _ in range(copies)]
    fw = [k.forward(x) for x in xs]
    ws = k.workspace(b, length)
    fwd = median_ms(lambda i: k.forward(xs[i % copies]), iters)
    bwd = median_ms(lambda i: k.backward(xs[i % copies], fw[i % copies][1], douts[i % copies], ws), iters)
    bc = 2 * b * k.n * length * s if k.sel_b else 0
    floors = {
        "fwd_hbm": (4 * elems * s + bc) / HBM * 1e3,
        "bwd_hbm": (7 * elems * s + 2 * bc) / HBM * 1e3,
        "exp": elems * k.n / EXP * 1e3,
    }
    col = 2 if k.bf16 else 0
    wide, segments = k.plan(b, length)
    row = {"what": what, "shape": f"{b}x{k.ed}x{length}", "N": k.n, "dtype": "bf16" if k.bf16 else "fp32",
           "fwd_plan": f"{'wide' if wide else 'narrow'}/{segments}",
           "sel": [k.sel_delta, k.sel_b, k.sel_c], "fwd_ms": fwd[0], "fwd_min_max": fwd[1:], "bwd_ms": bwd[0],
           "bwd_min_max": bwd[1:], "official_fwd": official[col] if official else None,
           "official_bwd": official[col + 1] if official else None, **floors,
           "chunk_state_bytes": fw[0][1].numel() * 4, "partial_bytes": sum(v.numel() * 4 for v in ws.values())}
    RESULTS["timings"].append(row)
    save()
    of = f"{row['official_fwd']}" if row["official_fwd"] else "-"
    ob = f"{row['official_bwd']}" if row["official_bwd"] else "-"
    print(f"{what:10s} {row['shape']:>14s} N={k.n:<3d} {row['dtype']}  fwd {fwd[0]:.3f} ms [{row['fwd_plan']}] (official {of}, "
          f"floor hbm {floors['fwd_hbm']:.3f} exp {floors['exp']:.3f})  bwd {bwd[0]:.3f} ms (official {ob}, "
          f"hbm {floors['bwd_hbm']:.3f})", flush=True)
    del xs, douts, fw, ws
    torch.cuda.empty_cache()


def section(name, fn):
    t = time.time()
    try:
        fn()
    except Exception as e:  # keep the other sections running; the failure is recorded
        traceback.print_exc()
        RESULTS.setdefault("errors", []).append(f"{name}: {e!r}")
    print(f"-- {name}: {time.time() - t:.1f} s", flush=True)
    save()


def main():
    quick = "--quick" in sys.argv
    nv = Nvrtc()
    RESULTS["device"] = torch.cuda.get_device_name()
    RESULTS["nvrtc"] = list(nv.version)
    print(RESULTS["device"], "NVRTC", nv.version, "torch", torch.__version__, flush=True)

    def scan_checks():
        for n in (16, 8, 32, 64, 1, 256, 12):   # 12: lanes past N in the backward's power-of-two lane groups
            check_scan(nv, n, 50, 2, (1, 37, 600) if n in (16, 8) else (37, 300))
        for sel in [(0, 0, 0), (1, 0, 0), (0, 1, 1), (1, 1, 0), (1, 0, 1)]:
            check_scan(nv, 16, 50, 2, (300,), sel=sel)
        check_scan(nv, 16, 50, 2, (300,), has_z=0)
        for n in (16, 8):
            check_scan(nv, n, 50, 2, (37, 600), bf16=1)
        check_scan(nv, 16, 50, 2, (300,), bf16=1, sel=(0, 0, 0))
        check_scan(nv, 16, 1536, 3, (520,), forces=(None, (True, 1), (False, 4), (True, 4)))
        check_scan(nv, 16, 5120, 1, (1000,), forces=(None, (False, 1), (True, 8)))   # 8 segments of 2 chunks

    section("scan checks", scan_checks)
    section("other kernels", lambda: others.check_all(nv, RESULTS, compare))
    section("adamw, embedding, cross-entropy, decode", lambda: others.check_rest(nv, RESULTS, compare))

    def scan_timing():
        for bf16 in (1, 0):
            k = ScanKernels(nv, 16, 1536, bf16=bf16)
            for shape in [(8, 1536, 2048), (64, 1536, 256), (1, 1536, 65536)]:
                time_scan(k, shape[0], shape[2], OFFICIAL[shape])
            time_scan(k, 1, 2048, None, what="prefill")   # one layer of the 130M model's batch-1 prefill
            k = ScanKernels(nv, 16, 5120, bf16=bf16)
            time_scan(k, 1, 8192, OFFICIAL[(1, 5120, 8192)])
        if quick:
            return
        for bf16 in (1, 0):
            for n in (8, 32, 64):
                time_scan(ScanKernels(nv, n, 1536, bf16=bf16), 8, 2048, OFFICIAL_N[n], what=f"N{n}")
            time_scan(ScanKernels(nv, 16, 1536, 1, 0, 0, bf16=bf16), 8, 2048, OFFICIAL_CONSTBC, what="constBC")
        k = ScanKernels(nv, 16, 1536, bf16=1)
        for length in (256, 4096, 65536, 262144):
            time_scan(k, max(1, 262144 // length), length, None, copies=2, iters=20, what="Lsweep")
        for length in (2048, 8192, 65536, 262144):   # batch 1 (prefill): the L split's range
            time_scan(k, 1, length, None, copies=2, iters=20, what="b1 L")

    section("scan timing", scan_timing)
    section("other timing", lambda: others.time_all(nv, RESULTS, median_ms))

    print("\n=== checks ===")
    for c in RESULTS["checks"]:
        print(("PASS " if c["ok"] else "FAIL ") + c["case"])
    print("\n=== selective scan timings (ms, median; H200) ===")
    print(f"{'what':10s} {'shape':>14s} {'N':>3s} {'dtype':5s} {'plan':>9s} {'fwd':>7s} {'off':>6s} {'bwd':>7s} "
          f"{'off':>6s} {'hbmF':>6s} {'hbmB':>6s} {'exp':>6s}")
    for r in RESULTS["timings"]:
        print(f"{r['what']:10s} {r['shape']:>14s} {r['N']:3d} {r['dtype']:5s} {r['fwd_plan']:>9s} {r['fwd_ms']:7.3f} "
              f"{(r['official_fwd'] or 0):6.3f} {r['bwd_ms']:7.3f} {(r['official_bwd'] or 0):6.3f} "
              f"{r['fwd_hbm']:6.3f} {r['bwd_hbm']:6.3f} {r['exp']:6.3f}")
    for r in RESULTS.get("other_timings", []):
        print(r)
    print("errors:", RESULTS.get("errors"))
    save()


if __name__ == "__main__":
    main()
