"""Checks and timings for causal_conv1d.cu and rms_norm.cu (and the other small templates) against plain PyTorch
(float64) references. `python3 others.py conv` runs only the conv and cross-entropy checks and timings."""
import torch
import torch.nn.functional as F

from driver import Module


def grid(total, threads=256):
    return max(1, min(132 * 16, (total + threads - 1) // threads))


class Conv:
    """causal_conv1d.cu's kernels, launched the way the C# host launches them: batch·ED·segments blocks of the
    published block size (or `blocks` to exercise the grid-stride loop), the backward's partials summed by
    mamba_conv_bwd_weights."""

    def __init__(self, nv, ed, k, has_bias=1, bf16=0):
        self.ed, self.k, self.has_bias, self.bf16 = ed, k, has_bias, bf16
        image, _ = nv.compile("causal_conv1d.cu", {"MAMBA_D_INNER": ed, "MAMBA_CONV_K": k,
                                                   "MAMBA_HAS_CONV_BIAS": has_bias, "MAMBA_INPUT_BF16": bf16}, "sm_90")
        self.m = Module(image)
        self.threads, self.items = self.m.global_ints("mamba_conv_config", 2)

    def segments(self, length):
        return -(-length // (self.threads * self.items))

    def forward(self, x, w, bias, state_in=None, want_state=False, blocks=None):
        b, ed, length = x.shape
        out = torch.empty(b, ed, length, device="cuda", dtype=x.dtype)
        state_out = torch.empty(b, ed, self.k, device="cuda") if want_state else None
        sb, sc, st = x.stride()
        self.m.launch("mamba_conv_fwd", blocks or b * ed * self.segments(length), self.threads, 0, x, ("i64", sb),
                      ("i64", sc), ("i64", st), w, bias, state_in, out, state_out, b, length)
        return out, state_out

    def backward(self, x, w, bias, dout, state_in=None, blocks=None):
        b, ed, length = x.shape
        sb, sc, st = x.stride()
        parts = b * self.segments(length)
        part = torch.empty(parts, ed, self.k + 1, device="cuda")
        dx = torch.empty_strided(x.shape, x.stride(), device="cuda", dtype=x.dtype)
        dw = torch.empty(ed, self.k, device="cuda")
        db = torch.empty(ed, device="cuda") if self.has_bias else None
        self.m.launch("mamba_conv_bwd", blocks or b * ed * self.segments(length), self.threads, 0, x, ("i64", sb),
                      ("i64", sc), ("i64", st), w, bias, state_in, dout, dx, part, b, length)
        self.m.launch("mamba_conv_bwd_weights", grid(ed * (self.k + 1)), 256, 0, part, dw, db, parts)
        return dx, dw, db


def conv_reference(x, w, bias, state_in, dout):
    xd = x.detach().double().requires_grad_()
    wd = w.double().requires_grad_()
    bd = bias.double().requires_grad_()
    k = w.shape[1]
    pad = state_in[:, :, 1:].double() if state_in is not None else torch.zeros(x.shape[0], x.shape[1], k - 1,
                                                                             dtype=torch.float64, device="cuda")
    ext = torch.cat([pad, xd], dim=2)
    out = F.silu(F.conv1d(ext, wd[:, None, :], bd, groups=x.shape[1]))
    out.backward(dout.double())
    return out.detach(), ext[:, :, -k:].detach(), xd.grad, wd.grad, bd.grad


def conv_inputs(b, ed, length, k, dt, layout, has_bias, with_state, seed):
    """x contiguous (b, ED, L), or the x half of a (b, L, 2·ED) tensor (time stride 2·ED, as in_proj's output)."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, device="cuda", generator=g)  # noqa: E731
    if layout == "strided":
        x = rand(b, length, 2 * ed).to(dt)[:, :, :ed].permute(0, 2, 1)
    else:
        x = rand(b, ed, length).to(dt)
    w = rand(ed, k) * 0.5
    bias = rand(ed) if has_bias else torch.zeros(ed, device="cuda")
    state = rand(b, ed, k) if with_state else None
    dout = rand(b, ed, length).to(dt)
    return x, w, bias, state, dout


def check_conv(nv, results, compare):
    """Every conv width the generator allows that the harness compiles (1 … 8), with and without bias, against the
    float64 reference: L = 1, 2, 3 (shorter than K), odd L (one by one), L a multiple of 8 (16-byte vectors) inside
    one segment and across two, x contiguous or strided, with and without a conv state, ED not a multiple of
    anything; once with a 3-block grid (the grid-stride loop); each backward run twice and compared bit for bit."""
    for bf16 in (0, 1):
        dt = torch.bfloat16 if bf16 else torch.float32
        for k, has_bias in ((4, 1), (2, 0), (3, 1), (1, 1), (5, 0), (8, 1)):
            ed, b = 40, 3
            conv = Conv(nv, ed, k, has_bias, bf16)
            cases = [(length, "contiguous", False) for length in (1, 2, 3, 77, 200, 4104)]
            cases += [(length, "strided", True) for length in (3, 77, 200)]
            cases += [(length, "contiguous", True) for length in (2, 200)]
            for length, layout, with_state in cases:
                for blocks in ((None, 3) if (length, layout, with_state) == (200, "contiguous", True) else (None,)):
                    x, w, bias, state, dout = conv_inputs(b, ed, length, k, dt, layout, has_bias, with_state,
                                                          length * 10 + k)
                    out, st = conv.forward(x, w, bias, state, want_state=True, blocks=blocks)
                    g1 = conv.backward(x, w, bias, dout, state, blocks=blocks)
                    g2 = conv.backward(x, w, bias, dout, state, blocks=blocks)
                    ro, rst, rdx, rdw, rdb = conv_reference(x, w, bias, state, dout)
                    parts = [compare("out", out, ro, bf16), compare("state_out", st, rst, bf16),
                             compare("dx", g1[0], rdx, bf16), compare("dw", g1[1], rdw, bf16)]
                    if has_bias:
                        parts.append(compare("dbias", g1[2], rdb, bf16))
                    det = all(a is None or torch.equal(a, c) for a, c in zip(g1, g2))
                    ok = all(p["ok"] for p in parts) and det
                    case = (f"conv K={k} bias={has_bias} L={length} {layout} state={with_state}"
                            f"{' grid=' + str(blocks) if blocks else ''} {'bf16' if bf16 else 'fp32'}")
                    results["checks"].append({"kernel": "causal_conv1d", "case": case, "ok": ok, "deterministic": det,
                                              "parts": parts})
                    print(("PASS " if ok else "FAIL ") + case + ("" if ok else str(parts)), flush=True)


def gpu_ms(fn, iters=30, hold_busy=True):
    """(median, min, max) GPU milliseconds of fn(i) between CUDA events, after 3 warm-up calls. With hold_busy the GPU
    is held busy (torch.cuda._sleep, about 1 ms) while the host enqueues each call, so host launch overhead, comparable
    to the conv's and cross-entropy's tens of microseconds, is not counted; the scan timings run without it."""
    for i in range(3):
        fn(i)
    torch.cuda.synchronize()
    times = []
    for i in range(iters):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        if hold_busy and hasattr(torch.cuda, "_sleep"):
            torch.cuda._sleep(2_000_000)
        s.record()
        fn(i)
        e.record()
        times.append((s, e))
    torch.cuda.synchronize()
    ms = sorted(s.elapsed_time(e) for s, e in times)
    return ms[len(ms) // 2], ms[0], ms[-1]


def time_conv(nv, results, hbm=4.2e12):
    """Forward and backward (both launches) at the training / prefill shapes, x contiguous as the model stores it
    and x strided inside in_proj's (b, L, 2·ED) output; three input sets rotated (each larger than L2); median of 30
    (gpu_ms).
    Bytes: forward reads x and writes out, backward reads x and dout and writes dx (the partials are 0.1 %)."""
    rows = results.setdefault("other_timings", [])
    k = 4
    for bf16 in (1, 0):
        dt = torch.bfloat16 if bf16 else torch.float32
        s = 2 if bf16 else 4
        conv = Conv(nv, 1536, k, 1, bf16)
        for b, ed, length, layout in ((8, 1536, 2048, "contiguous"), (8, 1536, 2048, "strided"),
                                      (1, 1536, 2048, "contiguous")):
            sets = [conv_inputs(b, ed, length, k, dt, layout, True, False, 900 + i) for i in range(3)]
            fwd = gpu_ms(lambda i: conv.forward(sets[i % 3][0], sets[i % 3][1], sets[i % 3][2]), 30)
            bwd = gpu_ms(lambda i: conv.backward(sets[i % 3][0], sets[i % 3][1], sets[i % 3][2], sets[i % 3][4]), 30)
            elems = b * ed * length
            fwd_bytes, bwd_bytes = 2 * elems * s, 3 * elems * s
            row = {"kernel": "causal_conv1d", "shape": f"{b}x{ed}x{length} K{k} x {layout}",
                   "dtype": "bf16" if bf16 else "fp32", "fwd_ms": fwd[0], "bwd_ms": bwd[0],
                   "fwd_GBps": fwd_bytes / fwd[0] / 1e6, "bwd_GBps": bwd_bytes / bwd[0] / 1e6,
                   "fwd_hbm_floor": fwd_bytes / hbm * 1e3, "bwd_hbm_floor": bwd_bytes / hbm * 1e3,
                   "fwd_x_floor": fwd[0] / (fwd_bytes / hbm * 1e3), "bwd_x_floor": bwd[0] / (bwd_bytes / hbm * 1e3)}
            rows.append(row)
            print(f"conv {row['shape']:>32s} {row['dtype']}  fwd {fwd[0]:.4f} ms {row['fwd_GBps']:6.0f} GB/s "
                  f"{row['fwd_x_floor']:.2f}x floor  bwd {bwd[0]:.4f} ms {row['bwd_GBps']:6.0f} GB/s "
                  f"{row['bwd_x_floor']:.2f}x floor", flush=True)
            del sets
            torch.cuda.empty_cache()


class Norm:
    def __init__(self, nv, d, bf16=0):
        self.d, self.bf16 = d, bf16
        image, _ = nv.compile("rms_norm.cu", {"MAMBA_D_MODEL": d, "MAMBA_INPUT_BF16": bf16}, "sm_90")
        self.m = Module(image)
        self.threads, self.rows_per_block, _ = self.m.global_ints("mamba_norm_config", 3)

    def forward(self, r_in, x, w):
        rows = r_in.shape[0]
        r_out = torch.empty_like(r_in)
        y = torch.empty(rows, self.d, device="cuda", dtype=torch.bfloat16 if self.bf16 else torch.float32)
        rstd = torch.empty(rows, device="cuda")
        self.m.launch("mamba_rmsnorm_fwd", rows, self.threads, 0, r_in, x, w, r_out, y, rstd, rows)
        return r_out, y, rstd

    def backward(self, r_out, rstd, w, dy, d_r_out):
        rows = r_out.shape[0]
        blocks = (rows + self.rows_per_block - 1) // self.rows_per_block
        dr = torch.empty_like(r_out)
        part = torch.empty(blocks, self.d, device="cuda")
        dw = torch.empty(self.d, device="cuda")
        self.m.launch("mamba_rmsnorm_bwd", blocks, self.threads, 0, r_out, rstd, w, dy, d_r_out, dr, part, rows)
        self.m.launch("mg_sum_slices", grid(self.d), 256, 0, part, dw, blocks, ("i64", self.d))
        return dr, dw


def norm_reference(r_in, x, w, dy, d_r_out):
    rd = r_in.double().requires_grad_()
    xd = x.double().requires_grad_() if x is not None else None
    wd = w.double().requires_grad_()
    r = rd + xd if xd is not None else rd * 1.0
    y = r * torch.rsqrt(r.pow(2).mean(-1, keepdim=True) + 1e-5) * wd
    (y * dy.double()).sum().backward(retain_graph=True)
    # d_r_out flows into r directly
    (r * d_r_out.double()).sum().backward()
    return r.detach(), y.detach(), rd.grad, wd.grad


def check_all(nv, results, compare):
    check_conv(nv, results, compare)
    for bf16 in (0, 1):
        dt = torch.bfloat16 if bf16 else torch.float32
        for d, with_x in ((768, True), (64, False), (2560, True)):
            norm = Norm(nv, d, bf16)
            rows = 300
            r_in = torch.randn(rows, d, device="cuda")
            x = torch.randn(rows, d, device="cuda").to(dt) if with_x else None
            w = torch.randn(d, device="cuda") * 0.3 + 1
            dy = torch.randn(rows, d, device="cuda").to(dt)
            d_r = torch.randn(rows, d, device="cuda")
            r_out, y, rstd = norm.forward(r_in, x, w)
            g1 = norm.backward(r_out, rstd, w, dy, d_r)
            g2 = norm.backward(r_out, rstd, w, dy, d_r)
            rr, ry, rdr, rdw = norm_reference(r_in, x, w, dy, d_r)
            parts = [compare("r_out", r_out, rr, False), compare("y", y, ry, bf16), compare("dr", g1[0], rdr, bf16),
                     compare("dw", g1[1], rdw, bf16)]
            det = all(torch.equal(a, c) for a, c in zip(g1, g2))
            ok = all(p["ok"] for p in parts) and det
            case = f"rmsnorm D={d} x={with_x} {'bf16' if bf16 else 'fp32'}"
            results["checks"].append({"kernel": "rms_norm", "case": case, "ok": ok, "deterministic": det,
                                      "parts": parts})
            print(("PASS " if ok else "FAIL ") + case + ("" if ok else str(parts)), flush=True)


def time_all(nv, results, median_ms):
    time_conv(nv, results)
    time_cross_entropy(nv, results)
    rows = results.setdefault("other_timings", [])
    for bf16 in (1, 0):
        dt = torch.bfloat16 if bf16 else torch.float32
        s = 2 if bf16 else 4
        d, n = 768, 8 * 2048
        norm = Norm(nv, d, bf16)
        r_ins = [torch.randn(n, d, device="cuda") for _ in range(3)]
        xs = [torch.randn(n, d, device="cuda").to(dt) for _ in range(3)]
        w = torch.randn(d, device="cuda")
        outs = [norm.forward(r_ins[i], xs[i], w) for i in range(3)]
        fwd = median_ms(lambda i: norm.forward(r_ins[i % 3], xs[i % 3], w), 30)
        bwd = median_ms(lambda i: norm.backward(outs[i % 3][0], outs[i % 3][2], w, xs[i % 3], r_ins[i % 3]), 30)
        rows.append({"kernel": "rms_norm", "shape": f"{n}x{d}", "dtype": "bf16" if bf16 else "fp32",
                     "fwd_ms": fwd[0], "bwd_ms": bwd[0],
                     "fwd_hbm_floor": n * d * (4 + s + 4 + s) / 4.2e9, "bwd_hbm_floor": n * d * (4 + s + 4 + 4) / 4.2e9})
        print(rows[-1], flush=True)
        del r_ins, xs, outs
        torch.cuda.empty_cache()


def _module(nv, name, defines):
    image, _ = nv.compile(name, defines, "sm_90")
    return Module(image)


def _record(results, kernel, case, parts, det=True):
    ok = all(p["ok"] for p in parts) and det
    results["checks"].append({"kernel": kernel, "case": case, "ok": ok, "deterministic": det, "parts": parts})
    print(("PASS " if ok else "FAIL ") + kernel + " " + case + ("" if ok else str(parts)), flush=True)


def check_rest(nv, results, compare):
    """AdamW (bit-exact against the CPU path's operation order), embedding, cross-entropy, decode step."""
    check_cross_entropy(nv, results, compare)
    # AdamW: reference = the CPU path's formula with separately rounded fp32 operations (PyTorch CPU ops).
    m = _module(nv, "adamw.cu", {})
    n = 10007
    p, g = torch.randn(n), torch.randn(n) * 0.1
    mo, vo = torch.randn(n) * 0.01, torch.rand(n) * 1e-3
    seg = torch.tensor([0, 3000, 7000, n], dtype=torch.int64)
    decays = torch.tensor([1, 0, 1], dtype=torch.int32)
    lr, wd, b1, b2, eps, t, scale = 3e-3, 0.1, 0.9, 0.95, 1e-8, 7, 0.75
    step = float(torch.tensor(lr / (1 - b1 ** t), dtype=torch.float32))
    isbc2 = float(torch.tensor(1 / (1 - b2 ** t) ** 0.5, dtype=torch.float32))
    f32 = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    decay_factor = float(f32(1) - f32(lr) * f32(wd))
    omb1, omb2 = float(f32(1) - f32(b1)), float(f32(1) - f32(b2))   # as the CPU path: 1 − β in float
    gs = g * f32(scale)
    m_ref = f32(b1) * mo + f32(omb1) * gs
    v_ref = f32(b2) * vo + f32(omb2) * (gs * gs)
    den = torch.sqrt(v_ref) * f32(isbc2) + f32(eps)
    dec = torch.ones(n)
    dec[0:3000] = decay_factor
    dec[7000:] = decay_factor
    p_ref = p * dec - f32(step) * (m_ref / den)
    pd, gd, md, vd = p.cuda(), g.cuda(), mo.cuda(), vo.cuda()
    bf = torch.empty(n, dtype=torch.bfloat16, device="cuda")
    _launch2d(m, "mamba_adamw", (8, 3), 256, pd, gd, md, vd, bf, seg.cuda(), decays.cuda(), decay_factor, b1, omb1,
              b2, omb2, step, isbc2, eps, scale)
    torch.cuda.synchronize()
    parts = [{"name": nm, "ok": bool(torch.equal(a.cpu(), b)), "max_abs": (a.cpu() - b).abs().max().item(),
              "rel_norm": 0.0, "bad": int((a.cpu() != b).sum())}
             for nm, a, b in (("p", pd, p_ref), ("m", md, m_ref), ("v", vd, v_ref))]
    parts.append(compare("p_bf16", bf.float(), p_ref.cuda(), True))
    _record(results, "adamw", "bit-exact vs CPU formula, 3 segments", parts)

    for bf16 in (0, 1):
        dt = torch.bfloat16 if bf16 else torch.float32
        d, vocab, count = 64, 37, 500
        m = _module(nv, "embedding.cu", {"MAMBA_D_MODEL": d, "MAMBA_INPUT_BF16": bf16})
        E = torch.randn(vocab, d, device="cuda").to(dt)
        tokens = torch.randint(0, vocab, (count,), device="cuda", dtype=torch.int32)
        out = torch.empty(count, d, device="cuda")
        m.launch("mamba_embed_fwd", grid(count * d), 256, 0, tokens, E, out, count, vocab)
        dout = torch.randn(count, d, device="cuda")
        order = torch.argsort(tokens.long() * count + torch.arange(count, device="cuda")).to(torch.int32)
        offsets = torch.zeros(vocab + 1, dtype=torch.int32, device="cuda")
        offsets[1:] = torch.cumsum(torch.bincount(tokens.long(), minlength=vocab), 0).to(torch.int32)
        dE1 = torch.full((vocab, d), 0.5, device="cuda")
        dE2 = dE1.clone()
        m.launch("mamba_embed_bwd", vocab, 64, 0, dout, order, offsets, dE1, vocab, 1)
        m.launch("mamba_embed_bwd", vocab, 64, 0, dout, order, offsets, dE2, vocab, 1)
        ref_dE = torch.full((vocab, d), 0.5, dtype=torch.float64, device="cuda").index_add_(0, tokens.long(), dout.double())
        _record(results, "embedding", f"gather + scatter-add {'bf16' if bf16 else 'fp32'}",
                [compare("out", out, E.double()[tokens.long()], False), compare("dE", dE1, ref_dE, False)],
                bool(torch.equal(dE1, dE2)))

        ed, nst, k, b = 40, 16, 4, 3
        m = _module(nv, "decode_step.cu", {"MAMBA_D_INNER": ed, "MAMBA_D_STATE": nst, "MAMBA_CONV_K": k,
                                           "MAMBA_INPUT_BF16": bf16})
        xz = torch.randn(b, 2 * ed, device="cuda").to(dt)
        conv_state = torch.randn(b, ed, k, device="cuda")
        w, cb = torch.randn(ed, k, device="cuda") * 0.5, torch.randn(ed, device="cuda")
        ref_state = torch.cat([conv_state[:, :, 1:], xz[:, None, :ed].double().permute(0, 2, 1).float()], 2)
        ref_xc = F.silu((ref_state.double() * w.double()).sum(-1) + cb.double())
        xc = torch.empty(b, ed, device="cuda", dtype=dt)
        m.launch("mamba_decode_conv", grid(b * ed), 256, 0, xz, ("i64", 2 * ed), conv_state, w, cb, xc, b)
        dtv = (torch.randn(b, ed, device="cuda") * 0.5 - 1).to(dt)
        bias = torch.randn(ed, device="cuda") * 0.5
        A = -torch.exp(torch.randn(ed, nst, device="cuda") * 0.5)
        BC = torch.randn(b, 2 * nst, device="cuda").to(dt)
        Dv = torch.randn(ed, device="cuda")
        h0 = torch.randn(b, ed, nst, device="cuda")
        h = h0.clone()
        y = torch.empty(b, ed, device="cuda", dtype=dt)
        m.launch("mamba_decode_ssm", grid(b * ed), 256, 0, xc, dtv, ("i64", ed), bias, (A * 1.4426950408889634),
                 BC, BC[:, nst:], ("i64", 2 * nst), Dv, xz[:, ed:], ("i64", 2 * ed), h, y, b)
        delta = F.softplus(dtv.double() + bias.double())
        xcd = xc.double()
        ref_h = h0.double() * torch.exp(delta[..., None] * A.double()) + (delta * xcd)[..., None] * BC.double()[:, None, :nst]
        ref_y = ((ref_h * BC.double()[:, None, nst:]).sum(-1) + Dv.double() * xcd) * F.silu(xz[:, ed:].double())
        _record(results, "decode_step", f"conv + ssm one token {'bf16' if bf16 else 'fp32'}",
                [compare("conv_state", conv_state, ref_state, False), compare("xc", xc, ref_xc, bf16),
                 compare("ssm_state", h, ref_h, bf16), compare("y", y, ref_y, bf16)])


class CrossEntropy:
    """cross_entropy.cu launched as the C# host does: one block per row of mamba_ce_config[0] threads."""

    def __init__(self, nv, vocab, bf16):
        self.m = _module(nv, "cross_entropy.cu", {"MAMBA_VOCAB": vocab, "MAMBA_INPUT_BF16": bf16})
        self.threads = self.m.global_ints("mamba_ce_config", 1)[0]

    def run(self, logits, targets, loss, dlogits, valid, scale):
        self.m.launch("mamba_cross_entropy", logits.shape[0], self.threads, 0, logits, targets, loss, dlogits, valid,
                      scale)


def check_cross_entropy(nv, results, compare):
    """Loss and dlogits against float64 PyTorch: padded columns left out or included, an ignored row, targets on the
    first and last scored column, vocabularies that fill a thread's registers partly (64, 300, 9000) or as the
    130M model (50280), widths that are not whole 16-byte vectors (one by one), and dlogits written over the logits
    as the host does."""
    for bf16 in (0, 1):
        dt = torch.bfloat16 if bf16 else torch.float32
        for vp, valid, rows, in_place in ((300, 290, 64, False), (64, 64, 40, True), (9000, 8999, 33, False),
                                         (50280, 50277, 24, True), (50280, 50280, 16, False), (298, 298, 20, True)):
            ce = CrossEntropy(nv, vp, bf16)
            g = torch.Generator(device="cuda").manual_seed(vp + rows)
            logits = (torch.randn(rows, vp, device="cuda", generator=g) * 3).to(dt)
            targets = torch.randint(0, valid, (rows,), device="cuda", dtype=torch.int32, generator=g)
            targets[5] = -1
            targets[0], targets[1] = 0, valid - 1
            ld = logits.double()[:, :valid].clone().requires_grad_()
            keep = targets >= 0
            ref_loss = F.cross_entropy(ld, targets.long().clamp_min(0), reduction="none") * keep
            (ref_loss.sum() / (rows - 1)).backward()
            ref_grad = torch.zeros(rows, vp, dtype=torch.float64, device="cuda")
            ref_grad[:, :valid] = ld.grad
            loss = torch.empty(rows, device="cuda")
            dl = logits if in_place else torch.empty_like(logits)
            ce.run(logits, targets, loss, dl, valid, 1.0 / (rows - 1))
            _record(results, "cross_entropy", f"V {vp} ({valid} scored) rows {rows} one ignored "
                    f"{'in place ' if in_place else ''}{'bf16' if bf16 else 'fp32'}",
                    [compare("loss", loss, ref_loss.detach(), bf16), compare("dlogits", dl, ref_grad, bf16)])


def time_cross_entropy(nv, results, hbm=4.2e12):
    """The 130M training step's cross-entropy: 8·2048 rows × 50280, dlogits over the logits (as the host runs it),
    three logit sets rotated; bytes = the logits read once and the gradient written once."""
    rows_out = results.setdefault("other_timings", [])
    rows, vocab = 8 * 2048, 50280
    for bf16 in (1, 0):
        dt = torch.bfloat16 if bf16 else torch.float32
        s = 2 if bf16 else 4
        ce = CrossEntropy(nv, vocab, bf16)
        sets = [(torch.randn(rows, vocab, device="cuda") * 3).to(dt) for _ in range(3)]
        targets = torch.randint(0, vocab, (rows,), device="cuda", dtype=torch.int32)
        loss = torch.empty(rows, device="cuda")
        ms = gpu_ms(lambda i: ce.run(sets[i % 3], targets, loss, sets[i % 3], vocab, 1.0 / rows), 30)
        floor = 2 * rows * vocab * s / hbm * 1e3
        row = {"kernel": "cross_entropy", "shape": f"{rows}x{vocab}", "dtype": "bf16" if bf16 else "fp32",
               "ms": ms[0], "GBps": 2 * rows * vocab * s / ms[0] / 1e6, "hbm_floor": floor, "x_floor": ms[0] / floor}
        rows_out.append(row)
        print(f"cross-entropy {row['shape']} {row['dtype']}  {ms[0]:.4f} ms {row['GBps']:6.0f} GB/s "
              f"{row['x_floor']:.2f}x floor ({floor:.4f} ms)", flush=True)
        del sets
        torch.cuda.empty_cache()


def main():
    """`others.py conv`: the conv and cross-entropy checks and timings only (the rest runs from check_and_time.py)."""
    import json
    import os
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import check_and_time as cat
    from nvrtc import Nvrtc
    if sys.argv[1:] != ["conv"]:
        sys.exit("usage: python3 others.py conv")
    nv = Nvrtc()
    cat.RESULTS["device"] = torch.cuda.get_device_name()
    print(cat.RESULTS["device"], "NVRTC", nv.version, "torch", torch.__version__, flush=True)
    cat.section("conv checks", lambda: check_conv(nv, cat.RESULTS, cat.compare))
    cat.section("cross-entropy checks", lambda: check_cross_entropy(nv, cat.RESULTS, cat.compare))
    cat.section("conv timing", lambda: time_conv(nv, cat.RESULTS))
    cat.section("cross-entropy timing", lambda: time_cross_entropy(nv, cat.RESULTS))
    failed = [c["case"] for c in cat.RESULTS["checks"] if not c["ok"]]
    print(f"{len(cat.RESULTS['checks']) - len(failed)} checks passed, {len(failed)} failed: {failed}")
    print("errors:", cat.RESULTS.get("errors"))
    with open(os.path.join(cat.OUT, "conv-results.json"), "w") as f:
        json.dump(cat.RESULTS, f, indent=1)
    sys.exit(1 if failed or cat.RESULTS.get("errors") else 0)


def _launch2d(module, name, grid2, block, *args):
    """Module.launch with a 2-D grid (x, y)."""
    import ctypes
    from driver import _cuda, check
    f = module.function(name)
    holders = []
    for a in args:
        if isinstance(a, torch.Tensor):
            holders.append(ctypes.c_void_p(a.data_ptr()))
        elif isinstance(a, float):
            holders.append(ctypes.c_float(a))
        else:
            holders.append(ctypes.c_int(a))
    params = (ctypes.c_void_p * len(holders))(*[ctypes.cast(ctypes.byref(h), ctypes.c_void_p) for h in holders])
    stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
    check(_cuda.cuLaunchKernel(f, grid2[0], grid2[1], 1, block, 1, 1, 0, stream, params, None), f"cuLaunchKernel {name}")


if __name__ == "__main__":
    main()
