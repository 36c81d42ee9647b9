// Causal depthwise conv over time + bias + SiLU (Mamba's conv1d), forward and backward, with a conv state for
// prefill continuation and decode.
//   pre[b,c,t] = bias[c] + Σ_{k<K} w[c,k]·x[b,c,t−K+1+k]      (x at negative time from conv_state_in, else 0)
//   out = silu(pre)
// x is read through runtime strides (so it can be the x half of in_proj's (batch, L, 2·ED) output); out, dout,
// dx are (batch, ED, L) contiguous. conv_state is (batch, ED, K), newest input last; conv_state_out gets the last
// K inputs after this call. w is (ED, K), bias (ED), fp32.
#ifndef MAMBA_COMMON_CUH
#include "common.cuh"
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

namespace mg_conv {
constexpr int ED = MAMBA_D_INNER;
constexpr int K = MAMBA_CONV_K;
}

// Input at time t (may be negative) of channel c, batch b.
__device__ __forceinline__ float mg_conv_input(const mg_in_t* x, long long sb, long long sc, long long st,
                                               const float* state_in, int b, int c, int t)
{
    using namespace mg_conv;
    if (t >= 0) return mg_load(x + b * sb + c * sc + t * st);
    if (state_in == nullptr || t < -(K - 1)) return 0.f;
    return state_in[((long long)b * ED + c) * K + K + t];
}

__device__ __forceinline__ float mg_conv_pre(const mg_in_t* x, long long sb, long long sc, long long st,
                                             const float* state_in, const float* w, const float* bias,
                                             int b, int c, int t)
{
    using namespace mg_conv;
    float acc = MAMBA_HAS_CONV_BIAS ? bias[c] : 0.f;
#pragma unroll
    for (int k = 0; k < K; ++k) acc = fmaf(w[c * K + k], mg_conv_input(x, sb, sc, st, state_in, b, c, t - K + 1 + k), acc);
    return acc;
}

// One thread per output element; grid-stride. conv_state_out (may be null) receives the last K inputs.
extern "C" __global__ void mamba_conv_fwd(const mg_in_t* __restrict__ x, long long sb, long long sc, long long st,
                                          const float* __restrict__ w, const float* __restrict__ bias,
                                          const float* __restrict__ state_in, mg_in_t* __restrict__ out,
                                          float* __restrict__ state_out, int batch, int L)
{
    using namespace mg_conv;
    const long long total = (long long)batch * ED * L;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
    {
        const int t = (int)(i % L);
        const long long bc = i / L;
        const int c = (int)(bc % ED), b = (int)(bc / ED);
        mg_store(out + i, mg_silu(mg_conv_pre(x, sb, sc, st, state_in, w, bias, b, c, t)));
    }
    if (state_out == nullptr) return;
    const long long states = (long long)batch * ED * K;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < states; i += (long long)gridDim.x * blockDim.x)
    {
        const int k = (int)(i % K);
        const long long bc = i / K;
        const int c = (int)(bc % ED), b = (int)(bc / ED);
        state_out[i] = mg_conv_input(x, sb, sc, st, state_in, b, c, L - K + k);
    }
}

// Backward step 1: dpre = dout·silu'(pre), fp32 scratch (batch, ED, L).
extern "C" __global__ void mamba_conv_bwd_pre(const mg_in_t* __restrict__ x, long long sb, long long sc, long long st,
                                              const float* __restrict__ w, const float* __restrict__ bias,
                                              const float* __restrict__ state_in, const mg_in_t* __restrict__ dout,
                                              float* __restrict__ dpre, int batch, int L)
{
    using namespace mg_conv;
    const long long total = (long long)batch * ED * L;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
    {
        const int t = (int)(i % L);
        const long long bc = i / L;
        const int c = (int)(bc % ED), b = (int)(bc / ED);
        dpre[i] = mg_load(dout + i) * mg_silu_grad(mg_conv_pre(x, sb, sc, st, state_in, w, bias, b, c, t));
    }
}

// Backward step 2: dx[t] = Σ_k w[k]·dpre[t + K−1−k], written through dx's strides (same as x's).
extern "C" __global__ void mamba_conv_bwd_dx(const float* __restrict__ dpre, const float* __restrict__ w,
                                             mg_in_t* __restrict__ dx, long long sb, long long sc, long long st,
                                             int batch, int L)
{
    using namespace mg_conv;
    const long long total = (long long)batch * ED * L;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
    {
        const int t = (int)(i % L);
        const long long bc = i / L;
        const int c = (int)(bc % ED), b = (int)(bc / ED);
        float acc = 0.f;
#pragma unroll
        for (int k = 0; k < K; ++k)
        {
            const int tt = t + K - 1 - k;
            if (tt < L) acc = fmaf(w[c * K + k], dpre[i - t + tt], acc);
        }
        mg_store(dx + b * sb + c * sc + t * st, acc);
    }
}

// Backward step 3: one block per channel sums dw[c,k] = Σ_{b,t} dpre·x(t−K+1+k) and dbias[c] = Σ dpre in a fixed
// order (no atomics).
extern "C" __global__ void mamba_conv_bwd_dw(const mg_in_t* __restrict__ x, long long sb, long long sc, long long st,
                                             const float* __restrict__ state_in, const float* __restrict__ dpre,
                                             float* __restrict__ dw, float* __restrict__ dbias, int batch, int L)
{
    using namespace mg_conv;
    __shared__ float scratch[32];
    const int c = blockIdx.x;
    float acc[K + 1];
#pragma unroll
    for (int k = 0; k <= K; ++k) acc[k] = 0.f;
    const long long per = (long long)batch * L;
    for (long long i = threadIdx.x; i < per; i += blockDim.x)
    {
        const int b = (int)(i / L), t = (int)(i % L);
        const float g = dpre[((long long)b * ED + c) * L + t];
#pragma unroll
        for (int k = 0; k < K; ++k) acc[k] = fmaf(g, mg_conv_input(x, sb, sc, st, state_in, b, c, t - K + 1 + k), acc[k]);
        acc[K] += g;
    }
#pragma unroll
    for (int k = 0; k <= K; ++k)
    {
        const float total = mg_block_sum(acc[k], scratch);
        if (threadIdx.x == 0)
        {
            if (k < K) dw[c * K + k] = total;
            else if (dbias != nullptr) dbias[c] = total;
        }
    }
}
