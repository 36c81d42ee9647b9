"""Checks and timings for causal_conv1d.cu and rms_norm.cu against plain PyTorch (float64) references."""
import torch
import torch.nn.functional as F

from driver import Module


def grid(total, threads=256):
    return max(1, min(132 * 16, (total + threads - 1) // threads))


class Conv:
    def __init__(self, nv, ed, k, has_bias=1, bf16=0):
        self.ed, self.k, self.has_bias, self.bf16 = ed, k, has_bias, bf16
        image, _ = nv.compile("causal_conv1d.cu", {"MAMBA_D_INNER": ed, "MAMBA_CONV_K": k,
                                                   "MAMBA_HAS_CONV_BIAS": has_bias, "MAMBA_INPUT_BF16": bf16}, "sm_90")
        self.m = Module(image)

    def forward(self, x, w, bias, state_in=None, want_state=False):
        b, ed, length = x.shape
        out = torch.empty(b, ed, length, device="cuda", dtype=x.dtype)
        state_out = torch.empty(b, ed, self.k, device="cuda") if want_state else None
        sb, sc, st = x.stride()
        self.m.launch("mamba_conv_fwd", grid(out.numel()), 256, 0, x, ("i64", sb), ("i64", sc), ("i64", st), w, bias,
                      state_in, out, state_out, b, length)
        return out, state_out

    def backward(self, x, w, bias, dout, state_in=None):
        b, ed, length = x.shape
        sb, sc, st = x.stride()
        dpre = torch.empty(b, ed, length, device="cuda")
        dx = torch.empty_strided(x.shape, x.stride(), device="cuda", dtype=x.dtype)
        dw = torch.empty(ed, self.k, device="cuda")
        db = torch.empty(ed, device="cuda")
        args = (("i64", sb), ("i64", sc), ("i64", st))
        self.m.launch("mamba_conv_bwd_pre", grid(dpre.numel()), 256, 0, x, *args, w, bias, state_in, dout, dpre, b, length)
        self.m.launch("mamba_conv_bwd_dx", grid(dpre.numel()), 256, 0, dpre, w, dx, *args, b, length)
        self.m.launch("mamba_conv_bwd_dw", ed, 256, 0, x, *args, state_in, dpre, dw, db, b, length)
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
    for bf16 in (0, 1):
        dt = torch.bfloat16 if bf16 else torch.float32
        for k, has_bias in ((4, 1), (2, 0), (5, 1)):
            ed, b, length = 40, 3, 77
            conv = Conv(nv, ed, k, has_bias, bf16)
            for strided, with_state in ((False, False), (True, True)):
                if strided:
                    full = torch.randn(b, length, 2 * ed, device="cuda").to(dt)
                    x = full[:, :, :ed].permute(0, 2, 1)
                else:
                    x = torch.randn(b, ed, length, device="cuda").to(dt)
                w = torch.randn(ed, k, device="cuda") * 0.5
                bias = torch.randn(ed, device="cuda") if has_bias else torch.zeros(ed, device="cuda")
                state = torch.randn(b, ed, k, device="cuda") if with_state else None
                dout = torch.randn(b, ed, length, device="cuda").to(dt)
                out, st = conv.forward(x, w, bias, state, want_state=True)
                g1 = conv.backward(x, w, bias, dout, state)
                g2 = conv.backward(x, w, bias, dout, state)
                ro, rst, rdx, rdw, rdb = conv_reference(x, w, bias, state, dout)
                parts = [compare("out", out, ro, bf16), compare("state_out", st, rst, bf16),
                         compare("dx", g1[0], rdx, bf16), compare("dw", g1[1], rdw, bf16)]
                if has_bias:
                    parts.append(compare("dbias", g1[2], rdb, bf16))
                det = all(torch.equal(a, c) for a, c in zip(g1, g2))
                ok = all(p["ok"] for p in parts) and det
                case = f"conv K={k} bias={has_bias} strided={strided} state={with_state} {'bf16' if bf16 else 'fp32'}"
                results["checks"].append({"kernel": "causal_conv1d", "case": case, "ok": ok, "deterministic": det,
                                          "parts": parts})
                print(("PASS " if ok else "FAIL ") + case + ("" if ok else str(parts)), flush=True)
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
    rows = results.setdefault("other_timings", [])
    for bf16 in (1, 0):
        dt = torch.bfloat16 if bf16 else torch.float32
        s = 2 if bf16 else 4
        b, ed, length, k = 8, 1536, 2048, 4
        conv = Conv(nv, ed, k, 1, bf16)
        fulls = [torch.randn(b, length, 2 * ed, device="cuda").to(dt) for _ in range(3)]
        xs = [f[:, :, :ed].permute(0, 2, 1) for f in fulls]
        w = torch.randn(ed, k, device="cuda")
        bias = torch.randn(ed, device="cuda")
        douts = [torch.randn(b, ed, length, device="cuda").to(dt) for _ in range(3)]
        fwd = median_ms(lambda i: conv.forward(xs[i % 3], w, bias), 30)
        bwd = median_ms(lambda i: conv.backward(xs[i % 3], w, bias, douts[i % 3]), 30)
        elems = b * ed * length
        rows.append({"kernel": "causal_conv1d", "shape": f"{b}x{ed}x{length} K{k} (x strided)",
                     "dtype": "bf16" if bf16 else "fp32", "fwd_ms": fwd[0], "bwd_ms": bwd[0],
                     "fwd_hbm_floor": 2 * elems * s / 4.2e9, "bwd_hbm_floor": 3 * elems * s / 4.2e9})
        print(rows[-1], flush=True)
        del fulls, xs, douts
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

        vp, valid, rows = 300, 290, 64
        m = _module(nv, "cross_entropy.cu", {"MAMBA_VOCAB": vp, "MAMBA_INPUT_BF16": bf16})
        logits = (torch.randn(rows, vp, device="cuda") * 3).to(dt)
        targets = torch.randint(0, valid, (rows,), device="cuda", dtype=torch.int32)
        targets[5] = -1
        loss = torch.empty(rows, device="cuda")
        dl = torch.empty_like(logits)
        m.launch("mamba_cross_entropy", rows, 256, 0, logits, targets, loss, dl, valid, 1.0 / (rows - 1))
        ld = logits.double()[:, :valid].clone().requires_grad_()
        keep = targets >= 0
        ref_loss = F.cross_entropy(ld, targets.long().clamp_min(0), reduction="none") * keep
        (ref_loss.sum() / (rows - 1)).backward()
        ref_grad = torch.zeros(rows, vp, dtype=torch.float64, device="cuda")
        ref_grad[:, :valid] = ld.grad
        _record(results, "cross_entropy", f"padded 300 (290 valid), one ignored row {'bf16' if bf16 else 'fp32'}",
                [compare("loss", loss, ref_loss.detach(), bf16), compare("dlogits", dl, ref_grad, bf16)])

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
