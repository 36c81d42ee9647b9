// One-token decode step of a Mamba mixer, around the x_proj / dt_proj matrix products (cuBLAS):
//   mamba_decode_conv: conv_state (batch, ED, K) fp32 shifts left and takes x_t (newest last);
//                      xc = silu(Σ_k state[k]·w[c,k] + bias[c]) → xc (batch, ED) in the activation type.
//   [host: x_dbl = xc·W_xᵀ → dt_low, B, C; dt = dt_low·W_dtᵀ]
//   mamba_decode_ssm:  Δ = softplus(dt + b_dt) (softplus(b_dt) when Δ is not selective);
//                      h = h·exp(Δ·A) + Δ·xc·B ; y = h·C + D·xc ; y ⊙= silu(z)   (ssm_state (batch, ED, N) fp32)
// x_t and z_t are read with a row stride so both can point into in_proj's (batch, 2·ED) output; B/C (selective)
// with a row stride into x_dbl; dt with its own row stride. A is passed as A·log2 e, as in the scan.
// One thread per (batch, channel), the N states in registers; B/C reads are shared by a warp's channels.
#ifndef MAMBA_COMMON_CUH
#include "common.cuh"
#endif

#ifndef MAMBA_D_STATE
#define MAMBA_D_STATE 16
#endif
#ifndef MAMBA_D_INNER
#define MAMBA_D_INNER 1536
#endif
#ifndef MAMBA_CONV_K
#define MAMBA_CONV_K 4
#endif
#ifndef MAMBA_HAS_CONV_BIAS
#define MAMBA_HAS_CONV_BIAS 1
#endif
#ifndef MAMBA_SELECTIVE_DELTA
#define MAMBA_SELECTIVE_DELTA 1
#endif
#ifndef MAMBA_SELECTIVE_B
#define MAMBA_SELECTIVE_B 1
#endif
#ifndef MAMBA_SELECTIVE_C
#define MAMBA_SELECTIVE_C 1
#endif
#ifndef MAMBA_HAS_Z
#define MAMBA_HAS_Z 1
#endif

extern "C" __global__ void mamba_decode_conv(const mg_in_t* __restrict__ x_t, long long x_row_stride,
                                             float* __restrict__ conv_state, const float* __restrict__ w,
                                             const float* __restrict__ bias, mg_in_t* __restrict__ xc, int batch)
{
    constexpr int ED = MAMBA_D_INNER, K = MAMBA_CONV_K;
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)batch * ED) return;
    const int c = (int)(i % ED);
    const long long b = i / ED;
    float* st = conv_state + i * K;
    float acc = MAMBA_HAS_CONV_BIAS ? bias[c] : 0.f;
#pragma unroll
    for (int k = 0; k < K - 1; ++k)
    {
        st[k] = st[k + 1];
        acc = fmaf(w[c * K + k], st[k], acc);
    }
    const float newest = mg_load(x_t + b * x_row_stride + c);
    st[K - 1] = newest;
    acc = fmaf(w[c * K + K - 1], newest, acc);
    mg_store(xc + i, mg_silu(acc));
}

#if MAMBA_SELECTIVE_B
typedef mg_in_t mg_decode_b_t;
#else
typedef float mg_decode_b_t;
#endif
#if MAMBA_SELECTIVE_C
typedef mg_in_t mg_decode_c_t;
#else
typedef float mg_decode_c_t;
#endif

extern "C" __global__ void mamba_decode_ssm(const mg_in_t* __restrict__ xc, const mg_in_t* __restrict__ dt,
                                            long long dt_row_stride, const float* __restrict__ dt_bias,
                                            const float* __restrict__ A2, const mg_decode_b_t* __restrict__ Bm,
                                            const mg_decode_c_t* __restrict__ Cm, long long bc_row_stride,
                                            const float* __restrict__ Dv, const mg_in_t* __restrict__ z,
                                            long long z_row_stride, float* __restrict__ ssm_state,
                                            mg_in_t* __restrict__ y, int batch)
{
    constexpr int ED = MAMBA_D_INNER, N = MAMBA_D_STATE;
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)batch * ED) return;
    const int c = (int)(i % ED);
    [[maybe_unused]] const long long b = i / ED;
#if MAMBA_SELECTIVE_DELTA
    const float delta = mg_softplus(mg_load(dt + b * dt_row_stride + c) + dt_bias[c]);
#else
    const float delta = mg_softplus(dt_bias[c]);
#endif
    const float x = mg_load(xc + i);
    const float dx = delta * x;
    float* h = ssm_state + i * N;
    float out = 0.f;
#pragma unroll
    for (int n = 0; n < N; ++n)
    {
#if MAMBA_SELECTIVE_B
        const float bn = mg_load(Bm + b * bc_row_stride + n);
#else
        const float bn = Bm[c * N + n];
#endif
#if MAMBA_SELECTIVE_C
        const float cn = mg_load(Cm + b * bc_row_stride + n);
#else
        const float cn = Cm[c * N + n];
#endif
        const float hn = fmaf(mg_exp2(A2[c * N + n] * delta), h[n], dx * bn);
        h[n] = hn;
        out = fmaf(cn, hn, out);
    }
    out = fmaf(Dv[c], x, out);
#if MAMBA_HAS_Z
    out *= mg_silu(mg_load(z + b * z_row_stride + c));
#endif
    mg_store(y + i, out);
}
