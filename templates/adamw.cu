// AdamW over the flat fp32 parameter vector, with the CPU path's exact operation order (PyTorch's torch.optim.AdamW):
//   m = β1·m + (1−β1)·g ;  v = β2·v + (1−β2)·g² ;  p = p·decay − step·(m / (√v·isbc2 + ε))
// with decay = 1 − lr·wd on tensors that decay and 1 on the rest (A_log, D, norms, biases, constant B/C), step =
// lr / (1 − β1ᵗ), isbc2 = 1/√(1 − β2ᵗ), all computed by the host. Every operation is an explicitly rounded
// intrinsic (no fused multiply-add), so each element matches the CPU path bit for bit. g is first multiplied by
// grad_scale (the global-norm clipping factor; 1 leaves it unchanged).
// Segments: blockIdx.y picks a run [seg_start[y], seg_start[y+1]) of consecutive tensors sharing the decay flag
// seg_decays[y] (0/1). Optionally writes a bf16 copy of the updated parameters for bf16 compute.
#ifndef MAMBA_COMMON_CUH
#include "common.cuh"
#endif

extern "C" __global__ void mamba_adamw(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                       float* __restrict__ v, mg_bf16* __restrict__ p_bf16,
                                       const long long* __restrict__ seg_start, const int* __restrict__ seg_decays,
                                       float decay_factor, float beta1, float one_minus_beta1, float beta2,
                                       float one_minus_beta2, float step_size, float inv_sqrt_bc2, float eps,
                                       float grad_scale)
{
    const long long first = seg_start[blockIdx.y], end = seg_start[blockIdx.y + 1];
    const float decay = seg_decays[blockIdx.y] ? decay_factor : 1.f;
    for (long long i = first + (long long)blockIdx.x * blockDim.x + threadIdx.x; i < end;
         i += (long long)gridDim.x * blockDim.x)
    {
        const float grad = __fmul_rn(g[i], grad_scale);
        const float m_new = __fadd_rn(__fmul_rn(beta1, m[i]), __fmul_rn(one_minus_beta1, grad));
        const float v_new = __fadd_rn(__fmul_rn(beta2, v[i]), __fmul_rn(one_minus_beta2, __fmul_rn(grad, grad)));
        const float denominator = __fadd_rn(__fmul_rn(__fsqrt_rn(v_new), inv_sqrt_bc2), eps);
        const float p_new = __fsub_rn(__fmul_rn(p[i], decay), __fmul_rn(step_size, __fdiv_rn(m_new, denominator)));
        m[i] = m_new;
        v[i] = v_new;
        p[i] = p_new;
        if (p_bf16 != nullptr) p_bf16[i] = mg_f32_to_bf16(p_new);
    }
}

// Global-norm clipping, step 1: each block writes the sum of squares of its grid-stride share of g (fixed order);
// mg_sum_slices(partials, out, gridDim.x, 1) finishes it.
extern "C" __global__ void mamba_sumsq_partial(const float* __restrict__ g, long long n, float* __restrict__ partials)
{
    __shared__ float scratch[32];
    float acc = 0.f;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        acc = fmaf(g[i], g[i], acc);
    const float total = mg_block_sum(acc, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}
