// Causal depthwise conv over time + bias + SiLU (Mamba's conv1d), forward and backward, with a conv state for
// prefill continuation and decode.
//   pre[b,c,t] = bias[c] + Σ_{k<K} w[c,k]·x[b,c,t−K+1+k]      (x at negative time from conv_state_in, else 0)
//   out = silu(pre)
// x is read through runtime strides (so it can be the x half of in_proj's (batch, L, 2·ED) output); out, dout,
// dx are (batch, ED, L) contiguous. conv_state is (batch, ED, K), newest input last; conv_state_out gets the last
// K inputs after this call. w is (ED, K), bias (ED), fp32.
//
// Work split: a thread takes MAMBA_CONV_ITEMS consecutive time steps of one (batch, channel) row, keeps their inputs
// and the K − 1 before them in registers, and reads the row's K weights once; a block covers blockDim.x of those runs
// of one row. Blocks walk the (row, time tile) pairs with a grid stride, so any grid and block size work; the
// division into row and tile is done once per block-sized tile, not per element.
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

// Time steps per thread.
#ifndef MAMBA_CONV_ITEMS
#define MAMBA_CONV_ITEMS 8
#endif

namespace mg_conv {
constexpr int ED = MAMBA_D_INNER;
constexpr int K = MAMBA_CONV_K;
constexpr int ITEMS = MAMBA_CONV_ITEMS;

// The (row, first time step) of this thread's run in work tile `tile` of `tiles_per_row` per row.
struct Run
{
    int row;
    int t0;
};

__device__ __forceinline__ Run mg_conv_run(long long tile, long long tiles_per_row)
{
    Run r;
    r.row = (int)(tile / tiles_per_row);
    r.t0 = (int)(tile - (long long)r.row * tiles_per_row) * (blockDim.x * ITEMS) + threadIdx.x * ITEMS;
    return r;
}

__device__ __forceinline__ long long mg_conv_tiles_per_row(int L) { return (L + (long long)blockDim.x * ITEMS - 1) / ((long long)blockDim.x * ITEMS); }
__device__ __forceinline__ long long mg_conv_first_tile() { return (long long)blockIdx.y * gridDim.x + blockIdx.x; }
__device__ __forceinline__ long long mg_conv_tile_stride() { return (long long)gridDim.x * gridDim.y; }
}

// For the host: [0] the block size it launches with, [1] time steps per thread, so one block covers [0]·[1] steps of
// a row and a grid of batch·ED·ceil(L / ([0]·[1])) blocks covers everything once. (Any grid and block size work.)
#ifndef MAMBA_CONV_THREADS
#define MAMBA_CONV_THREADS 128
#endif
extern "C" __constant__ int mamba_conv_config[2] = {MAMBA_CONV_THREADS, MAMBA_CONV_ITEMS};

// Input at time t (may be negative) of channel c, batch b.
__device__ __forceinline__ float mg_conv_input(const mg_in_t* x, long long sb, long long sc, long long st,
                                               const float* state_in, int b, int c, int t)
{
    using namespace mg_conv;
    if (t >= 0) return mg_load(x + b * sb + c * sc + t * st);
    if (state_in == nullptr || t < -(K - 1)) return 0.f;
    return state_in[((long long)b * ED + c) * K + K + t];
}

// Inputs t0 − K + 1 … t0 + ITEMS − 1 of row (b, c): the run's own inputs and the K − 1 before them (0 past L).
__device__ __forceinline__ void mg_conv_window(const mg_in_t* x, long long sb, long long sc, long long st, const float* state_in,
                                               int b, int c, int t0, int L, float* in)
{
    using namespace mg_conv;
#pragma unroll
    for (int j = 0; j < ITEMS + K - 1; ++j)
    {
        const int t = t0 - (K - 1) + j;
        in[j] = t < L ? mg_conv_input(x, sb, sc, st, state_in, b, c, t) : 0.f;
    }
}

// pre at the run's step j from its window: bias, then the taps oldest first.
__device__ __forceinline__ float mg_conv_pre_at(const float* in, const float* wk, float b0, int j)
{
    using namespace mg_conv;
    float acc = b0;
#pragma unroll
    for (int k = 0; k < K; ++k) acc = fmaf(wk[k], in[j + k], acc);
    return acc;
}

// Forward: out = silu(pre). conv_state_out (may be null) receives the last K inputs.
extern "C" __global__ void mamba_conv_fwd(const mg_in_t* __restrict__ x, long long sb, long long sc, long long st,
                                          const float* __restrict__ w, const float* __restrict__ bias,
                                          const float* __restrict__ state_in, mg_in_t* __restrict__ out,
                                          float* __restrict__ state_out, int batch, int L)
{
    using namespace mg_conv;
    const long long tiles_per_row = mg_conv_tiles_per_row(L);
    const long long tiles = (long long)batch * ED * tiles_per_row;
    for (long long tile = mg_conv_first_tile(); tile < tiles; tile += mg_conv_tile_stride())
    {
        const Run r = mg_conv_run(tile, tiles_per_row);
        if (r.t0 >= L) continue;
        const int b = r.row / ED, c = r.row % ED;
        float wk[K];
#pragma unroll
        for (int k = 0; k < K; ++k) wk[k] = w[c * K + k];
        const float b0 = MAMBA_HAS_CONV_BIAS ? bias[c] : 0.f;
        float in[ITEMS + K - 1];
        mg_conv_window(x, sb, sc, st, state_in, b, c, r.t0, L, in);
        mg_in_t* o = out + (long long)r.row * L + r.t0;
#pragma unroll
        for (int j = 0; j < ITEMS; ++j)
            if (r.t0 + j < L) mg_store(o + j, mg_silu(mg_conv_pre_at(in, wk, b0, j)));
    }
    if (state_out == nullptr) return;
    const long long states = (long long)batch * ED * K;
    const long long first = mg_conv_first_tile() * blockDim.x + threadIdx.x, stride = mg_conv_tile_stride() * blockDim.x;
    for (long long i = first; i < states; i += stride)
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
    const long long tiles_per_row = mg_conv_tiles_per_row(L);
    const long long tiles = (long long)batch * ED * tiles_per_row;
    for (long long tile = mg_conv_first_tile(); tile < tiles; tile += mg_conv_tile_stride())
    {
        const Run r = mg_conv_run(tile, tiles_per_row);
        if (r.t0 >= L) continue;
        const int b = r.row / ED, c = r.row % ED;
        float wk[K];
#pragma unroll
        for (int k = 0; k < K; ++k) wk[k] = w[c * K + k];
        const float b0 = MAMBA_HAS_CONV_BIAS ? bias[c] : 0.f;
        float in[ITEMS + K - 1];
        mg_conv_window(x, sb, sc, st, state_in, b, c, r.t0, L, in);
        const long long base = (long long)r.row * L + r.t0;
#pragma unroll
        for (int j = 0; j < ITEMS; ++j)
            if (r.t0 + j < L) dpre[base + j] = mg_load(dout + base + j) * mg_silu_grad(mg_conv_pre_at(in, wk, b0, j));
    }
}

// Backward step 2: dx[t] = Σ_k w[k]·dpre[t + K−1−k], written through dx's strides (same as x's).
extern "C" __global__ void mamba_conv_bwd_dx(const float* __restrict__ dpre, const float* __restrict__ w,
                                             mg_in_t* __restrict__ dx, long long sb, long long sc, long long st,
                                             int batch, int L)
{
    using namespace mg_conv;
    const long long tiles_per_row = mg_conv_tiles_per_row(L);
    const long long tiles = (long long)batch * ED * tiles_per_row;
    for (long long tile = mg_conv_first_tile(); tile < tiles; tile += mg_conv_tile_stride())
    {
        const Run r = mg_conv_run(tile, tiles_per_row);
        if (r.t0 >= L) continue;
        const int b = r.row / ED, c = r.row % ED;
        float wk[K];
#pragma unroll
        for (int k = 0; k < K; ++k) wk[k] = w[c * K + k];
        // dpre at t0 … t0 + ITEMS + K − 2 (0 past L).
        const float* g = dpre + (long long)r.row * L;
        float ahead[ITEMS + K - 1];
#pragma unroll
        for (int j = 0; j < ITEMS + K - 1; ++j) ahead[j] = r.t0 + j < L ? g[r.t0 + j] : 0.f;
#pragma unroll
        for (int j = 0; j < ITEMS; ++j)
        {
            const int t = r.t0 + j;
            if (t >= L) break;
            float acc = 0.f;
#pragma unroll
            for (int k = 0; k < K; ++k)
                if (t + K - 1 - k < L) acc = fmaf(wk[k], ahead[j + K - 1 - k], acc);
            mg_store(dx + b * sb + c * sc + t * st, acc);
        }
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
    for (int b = 0; b < batch; ++b)
    {
        const float* g_row = dpre + ((long long)b * ED + c) * L;
        for (int t = threadIdx.x; t < L; t += blockDim.x)
        {
            const float g = g_row[t];
#pragma unroll
            for (int k = 0; k < K; ++k) acc[k] = fmaf(g, mg_conv_input(x, sb, sc, st, state_in, b, c, t - K + 1 + k), acc[k]);
            acc[K] += g;
        }
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
