"""Launch wrapper for templates/selective_scan.cu and its plain PyTorch reference."""
import json
import os

import torch

from driver import Module
from nvrtc import CompileError

LOG2E = 1.4426950408889634


class ScanKernels:
    def __init__(self, nvrtc, n, ed, sel_delta=1, sel_b=1, sel_c=1, has_z=1, bf16=0, arch="sm_90", extra=None):
        self.n, self.ed = n, ed
        self.sel_delta, self.sel_b, self.sel_c, self.has_z, self.bf16 = sel_delta, sel_b, sel_c, has_z, bf16
        # MAMBA_SCAN_DEFINES (JSON) overrides the template's tuning defaults for the kernels built here with
        # 8 <= N <= 32 (where the candidates were timed), so a whole check run can be repeated with a candidate
        # setting before it becomes the default.
        tuning = json.loads(os.environ.get("MAMBA_SCAN_DEFINES") or "{}") if 8 <= n <= 32 else {}
        self.defines = {"MAMBA_D_STATE": n, "MAMBA_D_INNER": ed, "MAMBA_SELECTIVE_DELTA": sel_delta,
                        "MAMBA_SELECTIVE_B": sel_b, "MAMBA_SELECTIVE_C": sel_c, "MAMBA_HAS_Z": has_z,
                        "MAMBA_INPUT_BF16": bf16, **tuning, **(extra or {})}
        try:  # ask ptxas for its resource report (registers, spills) where this NVRTC passes the option on
            image, self.log = nvrtc.compile("selective_scan.cu", self.defines, arch, ("--ptxas-options=-v",))
        except CompileError:
            image, self.log = nvrtc.compile("selective_scan.cu", self.defines, arch)
        self.module = Module(image)
        (self.fwd_threads, self.fwd_blocks, self.fwd_smem, self.chunk,
         self.bwd_threads, self.bwd_blocks, self.bwd_smem, _) = self.module.global_ints("mamba_scan_config", 8)
        (self.wide_threads, self.wide_blocks, self.wide_smem, self.wide_min_rows, self.split_below,
         self.min_segment, self.combine_threads, self.split_target) = self.module.global_ints("mamba_scan_fwd_plan", 8)
        self.sms = torch.cuda.get_device_properties(0).multi_processor_count
        self.dtype = torch.bfloat16 if bf16 else torch.float32
        self.force = None   # (wide, segments) for every forward, instead of the plan (checks and sweeps)

    def chunks(self, length):
        return (length + self.chunk - 1) // self.chunk

    def plan(self, b, length):
        """(wide, segments) by the rule the module publishes in mamba_scan_fwd_plan (CudaMambaModel applies the same)."""
        if self.force:
            return self.force
        wide = b * self.ed >= self.wide_min_rows
        blocks = b * (self.wide_blocks if wide else self.fwd_blocks)
        segments = 1
        if blocks < self.split_below * self.sms and length >= 2 * self.min_segment:
            segments = min(-(-self.split_target * self.sms // blocks), length // self.min_segment)
        return wide, segments

    def forward(self, x):
        """x: dict of inputs (see make_inputs). Returns y and the chunk states (batch, ED, chunks, N)."""
        b, ed, length = x["u"].shape
        y = torch.empty_like(x["u"])
        states = torch.empty(b, ed, self.chunks(length), self.n, device="cuda", dtype=torch.float32)
        wide, segments = self.plan(b, length)
        name = "mamba_scan_fwd_wide" if wide else "mamba_scan_fwd"
        grid = (b * (self.wide_blocks if wide else self.fwd_blocks), segments)
        threads, smem = (self.wide_threads, self.wide_smem) if wide else (self.fwd_threads, self.fwd_smem)
        args = (x["u"], x["dt"], x["dt_bias"], x["A2"], x["B"], x["C"], x["D"], x["z"], y, states, length)
        if segments > 1:
            self.module.launch(name + "_ends", grid, threads, smem, *args)
            rows = b * ed * self.n
            self.module.launch("mamba_scan_fwd_combine", (rows + self.combine_threads - 1) // self.combine_threads,
                               self.combine_threads, 0, states, b, length, segments)
        self.module.launch(name, grid, threads, smem, *args)
        return y, states

    def workspace(self, b, length):
        n, ed = self.n, self.ed
        var_shape = (self.bwd_blocks, b, n, length)
        return {
            "dA": torch.empty(b, ed, n, device="cuda"),
            "dB": torch.empty(var_shape if self.sel_b else (b, ed, n), device="cuda"),
            "dC": torch.empty(var_shape if self.sel_c else (b, ed, n), device="cuda"),
            "dD": torch.empty(b, ed, device="cuda"),
            "dbias": torch.empty(b, ed, device="cuda"),
        }

    def backward(self, x, states, dout, ws=None):
        b, ed, length = x["u"].shape
        ws = ws or self.workspace(b, length)
        du = torch.empty_like(x["u"])
        ddt = torch.empty_like(x["u"]) if self.sel_delta else None
        dz = torch.empty_like(x["u"]) if self.has_z else None
        self.module.launch("mamba_scan_bwd", b * self.bwd_blocks, self.bwd_threads, self.bwd_smem,
                           x["u"], x["dt"], x["dt_bias"], x["A2"], x["B"], x["C"], x["D"], x["z"], dout, states,
                           du, ddt, dz, ws["dA"], ws["dB"], ws["dC"], ws["dD"], ws["dbias"], b, length)
        out = {"u": du, "dt": ddt, "z": dz}
        out["A"] = self._sum(ws["dA"], b)
        out["B"] = self._sum(ws["dB"], self.bwd_blocks if self.sel_b else b)
        out["C"] = self._sum(ws["dC"], self.bwd_blocks if self.sel_c else b)
        out["D"] = self._sum(ws["dD"], b)
        out["dt_bias"] = self._sum(ws["dbias"], b)
        return out

    def _sum(self, parts, count):
        out = torch.empty(parts.shape[1:], device="cuda")
        total = out.numel()
        self.module.launch("mg_sum_slices", min(4096, (total + 255) // 256), 256, 0, parts, out, count, ("i64", total))
        return out


def make_inputs(k, b, length, seed, dtype=None):
    """Random inputs on the GPU for a ScanKernels k (fp32 masters; activations in k's dtype)."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    dtype = dtype or k.dtype
    ed, n = k.ed, k.n

    def rn(*shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, device="cuda", generator=g) * scale + shift

    x = {
        "u": rn(b, ed, length).to(dtype),
        "dt": (rn(b, ed, length, scale=0.5, shift=-1.5) if k.sel_delta else torch.zeros(1, device="cuda")).to(dtype),
        "dt_bias": rn(ed, scale=0.5, shift=-1.0),
        "A": -torch.exp(rn(ed, n, scale=0.5, shift=0.5)),
        "B": rn(b, n, length).to(dtype) if k.sel_b else rn(ed, n),
        "C": rn(b, n, length).to(dtype) if k.sel_c else rn(ed, n),
        "D": rn(ed),
        "z": rn(b, ed, length).to(dtype) if k.has_z else torch.zeros(1, device="cuda", dtype=dtype),
    }
    x["A2"] = (x["A"] * LOG2E).contiguous()
    return x


def softplus(v):
    return torch.where(v > 20, v, torch.log1p(torch.exp(v)))


def reference(k, x, dout=None, chunk=None):
    """float64 sequential scan; with dout, also the gradients by autograd. Returns (y, last state, grads), and with
    chunk also the states after every chunk of that many steps and after the last step (batch, ED, chunks, N)."""
    names = ["u", "dt", "dt_bias", "A", "B", "C", "D", "z"]
    r = {nm: x[nm].detach().double().requires_grad_(dout is not None) for nm in names}
    u = r["u"]
    b, ed, length = u.shape
    if k.sel_delta:
        delta = softplus(r["dt"] + r["dt_bias"][None, :, None])
    else:
        delta = softplus(r["dt_bias"])[None, :, None].expand(b, ed, length)
    decay = torch.exp(delta[..., None] * r["A"][None, :, None, :])           # (b, ed, L, N)
    bt = r["B"].permute(0, 2, 1)[:, None] if k.sel_b else r["B"][None, :, None, :]
    ct = r["C"].permute(0, 2, 1)[:, None] if k.sel_c else r["C"][None, :, None, :]
    drive = (delta * u)[..., None] * bt
    h = torch.zeros(b, ed, k.n, dtype=torch.float64, device="cuda")
    ys, saved = [], []
    for t in range(length):
        h = decay[:, :, t] * h + drive[:, :, t]
        ys.append((h * (ct[:, :, t] if ct.shape[2] > 1 else ct[:, :, 0])).sum(-1))
        if chunk and ((t + 1) % chunk == 0 or t + 1 == length):
            saved.append(h.detach())
    y = torch.stack(ys, -1) + r["D"][None, :, None] * u
    if k.has_z:
        y = y * torch.nn.functional.silu(r["z"])
    grads = None
    if dout is not None:
        y.backward(dout.double())
        grads = {nm: r[nm].grad for nm in names}
    if chunk:
        return y.detach(), h.detach(), grads, torch.stack(saved, 2)
    return y.detach(), h.detach(), grads
